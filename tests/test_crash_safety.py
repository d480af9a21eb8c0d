"""Failures between the backend write and the commit leave configs hydratable."""

from __future__ import annotations

import pytest
from sqlalchemy import event, select

from keyrefs.errors import BackendUnavailable
from keyrefs.ids import DEFAULT_STORAGE_ID
from keyrefs.service import KeyrefsService
from keyrefs.service.types import ActorScope
from keyrefs.store.models import GcAttempt, SecretConfig
from tests.helpers import SECRET, config_coordinates, local_coordinates

SPEC = {"type": "object", "properties": {"password": SECRET, "token": SECRET}}


class InjectedFailure(Exception):
    pass


def fail_on_statement(service: KeyrefsService, fragment: str) -> object:
    def before(conn: object, cursor: object, statement: str, *args: object) -> None:
        if fragment in statement:
            raise InjectedFailure(fragment)

    event.listen(service.engine, "before_cursor_execute", before)
    return before


@pytest.mark.parametrize(
    "fragment",
    [
        "INSERT INTO secret_config",
        "UPDATE secret_reference",
        "INSERT INTO secret_reference",
    ],
)
def test_failure_before_commit_keeps_previous_config(
    service: KeyrefsService, scope: ActorScope, fragment: str
) -> None:
    stored = service.process(scope, SPEC, {"password": "old-pw"})
    before_rows = config_coordinates(service)

    hook = fail_on_statement(service, fragment)
    try:
        with pytest.raises(InjectedFailure):
            service.process(scope, SPEC, {"password": "new-pw", "token": "new-token"})
    finally:
        event.remove(service.engine, "before_cursor_execute", hook)

    assert service.hydrate(stored, scope.actor_id) == {"password": "old-pw"}
    assert config_coordinates(service) == before_rows
    orphans = local_coordinates(service) - config_coordinates(service)
    assert len(orphans) == 2, (
        "the new values are left as orphans for garbage collection"
    )


def test_failed_backend_delete_keeps_tombstoned_row(
    service: KeyrefsService, scope: ActorScope, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = service.process(scope, SPEC, {"password": "old-pw"})
    backend = service.backends.get(DEFAULT_STORAGE_ID)

    def unavailable(coordinate: object) -> None:
        raise BackendUnavailable("injected outage")

    monkeypatch.setattr(backend, "delete", unavailable)
    second = service.process(scope, SPEC, {"password": "new-pw"})

    assert service.hydrate(second, scope.actor_id) == {"password": "new-pw"}
    old_name = first["password"]["_secret"]
    assert old_name in local_coordinates(service)
    with service.session() as session:
        row = session.scalar(
            select(SecretConfig).where(SecretConfig.external_coordinate == old_name)
        )
        attempt = session.get(GcAttempt, (DEFAULT_STORAGE_ID, old_name))
    assert row is not None, "the row stays for a later garbage collection"
    assert row.tombstone
    assert attempt is not None
    assert attempt.attempts == 1
    assert attempt.last_error == "backend_unavailable"


def test_failed_backend_write_changes_no_row(
    service: KeyrefsService, scope: ActorScope, monkeypatch: pytest.MonkeyPatch
) -> None:
    stored = service.process(scope, SPEC, {"password": "old-pw"})
    backend = service.backends.get(DEFAULT_STORAGE_ID)

    def unavailable(request: object) -> None:
        raise BackendUnavailable("injected outage")

    monkeypatch.setattr(backend, "write", unavailable)
    with pytest.raises(BackendUnavailable):
        service.process(scope, SPEC, {"password": "new-pw"})
    monkeypatch.undo()

    assert service.hydrate(stored, scope.actor_id) == {"password": "old-pw"}
    [reference] = service.references_of_actor(scope.actor_id)
    assert reference.external_coordinate == stored["password"]["_secret"]
