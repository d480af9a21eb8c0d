"""Injected failures on every backend, then gc: no orphan is left in the backend."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, select

from keyrefs.errors import BackendUnavailable
from keyrefs.ids import OrganizationId, SecretStorageId
from keyrefs.service import KeyrefsService
from keyrefs.service.gc import GcOptions
from keyrefs.service.types import ActorScope
from keyrefs.store.models import SecretConfig, SecretReference
from tests.backends.conformance import ConformanceTarget
from tests.backends.test_conformance import BACKENDS, local_conformance  # noqa: F401
from tests.helpers import SECRET

SPEC = {"type": "object", "properties": {"password": SECRET, "token": SECRET}}


class InjectedFailure(Exception):
    pass


@pytest.fixture(params=BACKENDS)
def target(request: pytest.FixtureRequest) -> ConformanceTarget:
    found = request.getfixturevalue(f"{request.param}_conformance")
    assert isinstance(found, ConformanceTarget)
    return found


def referenced_names(service: KeyrefsService, storage_id: uuid.UUID) -> set[str]:
    with service.session() as session:
        return set(
            session.scalars(
                select(SecretConfig.external_coordinate)
                .join(
                    SecretReference, SecretReference.secret_config_id == SecretConfig.id
                )
                .where(SecretConfig.secret_storage_id == storage_id)
            )
        )


def test_gc_after_failures_leaves_no_orphan(
    service: KeyrefsService,
    scope: ActorScope,
    target: ConformanceTarget,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    storage = service.add_storage(
        target.storage_type,
        "organization",
        scope.organization_id,
        OrganizationId(scope.organization_id),
        f"crash-{uuid.uuid4().hex[:8]}",
        target.config,
    )
    stored = service.process(scope, SPEC, {"password": "pw", "token": "tk"})
    backend = service.backends.get(SecretStorageId(storage.id))

    # A failure between the backend writes and the commit leaves two orphans.
    def fail(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith("INSERT INTO secret_config"):
            raise InjectedFailure(statement[:30])

    event.listen(service.engine, "before_cursor_execute", fail)
    try:
        with pytest.raises(InjectedFailure):
            service.process(scope, SPEC, {"password": "pw-2", "token": "tk-2"})
    finally:
        event.remove(service.engine, "before_cursor_execute", fail)

    # An outage during the delete of an old version leaves a tombstoned row.
    original_delete = backend.delete

    def unavailable(coordinate: Any) -> None:
        raise BackendUnavailable("injected outage")

    monkeypatch.setattr(backend, "delete", unavailable)
    updated = service.process(scope, SPEC, {"password": "pw-3", "token": "**********"})
    monkeypatch.setattr(backend, "delete", original_delete)

    report = service.collect_garbage(
        GcOptions(grace=timedelta(0), storage_id=SecretStorageId(storage.id))
    )
    assert report.failures == []
    listed = {item.coordinate.render() for item in backend.list_managed("keyrefs_")}
    assert listed == referenced_names(service, storage.id)
    for name in listed:
        assert target.object_exists(name)
    assert service.hydrate(updated, scope.actor_id) == {
        "password": "pw-3",
        "token": "tk",
    }
    assert service.hydrate(stored, scope.actor_id) == {
        "password": "pw-3",
        "token": "tk",
    }
