"""Moving managed secrets between storages of one organization."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import select

from keyrefs.errors import BackendUnavailable, InvalidInput
from keyrefs.ids import OrganizationId, SecretStorageId
from keyrefs.secret_value import MASK
from keyrefs.service import KeyrefsService
from keyrefs.service.types import ActorScope, StorageView
from keyrefs.store.models import LocalSecret
from tests.backends.conformance import ConformanceTarget
from tests.conftest import new_scope
from tests.helpers import SECRET

SPEC = {"type": "object", "properties": {"password": SECRET, "token": SECRET}}


def add_local(
    service: KeyrefsService, organization: uuid.UUID, name: str
) -> StorageView:
    return service.add_storage(
        "local", "organization", organization, OrganizationId(organization), name, {}
    )


def objects_in(service: KeyrefsService, storage: StorageView) -> set[str]:
    with service.session() as session:
        return set(
            session.scalars(
                select(LocalSecret.coordinate).where(
                    LocalSecret.secret_storage_id == storage.id
                )
            )
        )


def scope_in(organization: uuid.UUID) -> ActorScope:
    scope = new_scope()
    return ActorScope(scope.actor_id, scope.workspace_id, OrganizationId(organization))


def test_migrate_moves_secrets_and_configs_still_hydrate(
    service: KeyrefsService, scope: ActorScope
) -> None:
    source = add_local(service, scope.organization_id, "old")
    stored = service.process(scope, SPEC, {"password": "pw", "token": "tk"})
    names = {stored["password"]["_secret"], stored["token"]["_secret"]}
    assert objects_in(service, source) == names
    target = add_local(service, scope.organization_id, "new")

    report = service.migrate_storage(
        SecretStorageId(source.id), SecretStorageId(target.id)
    )
    assert sorted(report.moved) == sorted(names)
    assert report.failures == []
    assert objects_in(service, source) == set()
    assert objects_in(service, target) == names
    assert service.hydrate(stored, scope.actor_id) == {"password": "pw", "token": "tk"}
    references = service.references_of_actor(scope.actor_id)
    assert {str(r.secret_storage_id) for r in references} == {str(target.id)}
    # A later update still finds the moved secrets for its masks.
    updated = service.process(scope, SPEC, {"password": MASK, "token": MASK})
    assert service.hydrate(updated, scope.actor_id) == {"password": "pw", "token": "tk"}


def test_dry_run_moves_nothing(service: KeyrefsService, scope: ActorScope) -> None:
    source = add_local(service, scope.organization_id, "old")
    stored = service.process(scope, SPEC, {"password": "pw"})
    target = add_local(service, scope.organization_id, "new")
    report = service.migrate_storage(
        SecretStorageId(source.id), SecretStorageId(target.id), dry_run=True
    )
    assert report.moved == [stored["password"]["_secret"]]
    assert objects_in(service, source) == {stored["password"]["_secret"]}
    assert objects_in(service, target) == set()


def test_rerun_after_failed_source_delete_finishes(
    service: KeyrefsService, scope: ActorScope, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = add_local(service, scope.organization_id, "old")
    stored = service.process(scope, SPEC, {"password": "pw"})
    target = add_local(service, scope.organization_id, "new")
    source_backend = service.backends.get(SecretStorageId(source.id))

    def unavailable(coordinate: Any) -> None:
        raise BackendUnavailable("injected outage")

    monkeypatch.setattr(source_backend, "delete", unavailable)
    first = service.migrate_storage(
        SecretStorageId(source.id), SecretStorageId(target.id)
    )
    assert [f["error"] for f in first.failures] == ["backend_unavailable"]
    assert service.hydrate(stored, scope.actor_id) == {"password": "pw"}
    monkeypatch.undo()

    second = service.migrate_storage(
        SecretStorageId(source.id), SecretStorageId(target.id)
    )
    assert second.failures == []
    assert second.leftovers_deleted == [stored["password"]["_secret"]]
    assert objects_in(service, source) == set()
    assert service.hydrate(stored, scope.actor_id) == {"password": "pw"}


def test_failed_copy_leaves_secret_in_source(
    service: KeyrefsService, scope: ActorScope, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = add_local(service, scope.organization_id, "old")
    stored = service.process(scope, SPEC, {"password": "pw"})
    target = add_local(service, scope.organization_id, "new")
    target_backend = service.backends.get(SecretStorageId(target.id))

    def unavailable(request: Any) -> None:
        raise BackendUnavailable("injected outage")

    monkeypatch.setattr(target_backend, "write", unavailable)
    report = service.migrate_storage(
        SecretStorageId(source.id), SecretStorageId(target.id)
    )
    assert report.moved == []
    assert objects_in(service, source) == {stored["password"]["_secret"]}
    [reference] = service.references_of_actor(scope.actor_id)
    assert reference.secret_storage_id == source.id
    assert service.hydrate(stored, scope.actor_id) == {"password": "pw"}


def test_external_secrets_are_listed_and_left(
    service: KeyrefsService, scope: ActorScope
) -> None:
    source = add_local(service, scope.organization_id, "old")
    service.process(scope, SPEC, {"password": {"_secret": "customer/db"}})
    target = add_local(service, scope.organization_id, "new")
    report = service.migrate_storage(
        SecretStorageId(source.id), SecretStorageId(target.id)
    )
    assert report.actors_with_external_secrets == [str(scope.actor_id)]
    assert report.moved == []
    [reference] = service.references_of_actor(scope.actor_id)
    assert reference.secret_storage_id == source.id


@pytest.mark.parametrize(
    "pair", ["other organization", "default storage", "same storage"]
)
def test_invalid_moves_are_rejected(service: KeyrefsService, pair: str) -> None:
    organization = uuid.uuid4()
    source = add_local(service, organization, "a")
    if pair == "other organization":
        target_id = add_local(service, uuid.uuid4(), "b").id
    elif pair == "default storage":
        target_id = service.list_storages()[0].id
    else:
        target_id = source.id
    with pytest.raises(InvalidInput):
        service.migrate_storage(SecretStorageId(source.id), SecretStorageId(target_id))


def test_migrate_from_local_to_vault(
    service: KeyrefsService, vault_conformance: ConformanceTarget
) -> None:
    organization = uuid.uuid4()
    scope = scope_in(organization)
    source = add_local(service, organization, "local")
    stored = service.process(scope, SPEC, {"password": "pw", "token": "tk"})
    target = service.add_storage(
        "vault",
        "organization",
        organization,
        OrganizationId(organization),
        "vault",
        vault_conformance.config,
    )
    report = service.migrate_storage(
        SecretStorageId(source.id), SecretStorageId(target.id)
    )
    assert len(report.moved) == 2
    for name in report.moved:
        assert vault_conformance.object_exists(name)
    assert objects_in(service, source) == set()
    assert service.hydrate(stored, scope.actor_id) == {"password": "pw", "token": "tk"}
