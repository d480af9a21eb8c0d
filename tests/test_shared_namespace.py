"""Storages that reach one backend namespace must not delete each other's secrets."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from keyrefs.backends.memory import MemoryBackend
from keyrefs.errors import Conflict, InvalidInput
from keyrefs.ids import OrganizationId, SecretStorageId
from keyrefs.service import KeyrefsService
from keyrefs.service.gc import GcOptions
from keyrefs.service.types import ActorScope
from tests.backends.conformance import ConformanceTarget
from tests.helpers import SECRET

SPEC = {"type": "object", "properties": {"password": SECRET}}


def test_gc_keeps_objects_another_storage_records(
    service: KeyrefsService, scope: ActorScope
) -> None:
    organization = OrganizationId(scope.organization_id)
    first = service.add_storage(
        "local", "organization", organization, organization, "a", {}
    )
    second = service.add_storage(
        "local", "workspace", scope.workspace_id, organization, "b", {}
    )
    shared = MemoryBackend()
    service.backends.put(SecretStorageId(first.id), shared, "memory")
    service.backends.put(SecretStorageId(second.id), shared, "memory")

    # The workspace storage wins the choice, so the secret is recorded there.
    stored = service.process(scope, SPEC, {"password": "pw"})
    assert stored["password"]["_secret_storage_id"] == str(second.id)

    report = service.collect_garbage(
        GcOptions(grace=timedelta(0), storage_id=SecretStorageId(first.id))
    )
    assert report.counts[str(first.id)]["orphaned"] == 0
    assert service.hydrate(stored, scope.actor_id) == {"password": "pw"}


def test_storage_with_same_vault_location_is_rejected(
    service: KeyrefsService, vault_conformance: ConformanceTarget
) -> None:
    organization = OrganizationId(uuid.uuid4())
    config = vault_conformance.config
    service.add_storage(
        "vault", "organization", organization, organization, "a", config
    )
    with pytest.raises(Conflict, match="already writes"):
        service.add_storage(
            "vault",
            "organization",
            uuid.uuid4(),
            OrganizationId(uuid.uuid4()),
            "b",
            config,
        )
    other_prefix = {**config, "prefix": f"/{config['prefix']}/"}
    with pytest.raises(Conflict):
        service.add_storage(
            "vault", "organization", organization, organization, "c", other_prefix
        )
    distinct = {**config, "prefix": config["prefix"] + "-other"}
    added = service.add_storage(
        "vault", "organization", organization, organization, "d", distinct
    )
    assert added.storage_type == "vault"


def test_migrate_between_same_location_is_rejected(
    service: KeyrefsService, vault_conformance: ConformanceTarget, scope: ActorScope
) -> None:
    organization = OrganizationId(scope.organization_id)
    config = vault_conformance.config
    source = service.add_storage(
        "vault", "organization", organization, organization, "a", config
    )
    target = service.add_storage(
        "vault", "organization", organization, organization, "b",
        {**config, "prefix": config["prefix"] + "-b"},
    )  # fmt: skip
    # Make the target report the source's location, as a hand-edited stored
    # config would; storage add rejects such a pair.
    original = service.backends.config_of

    def same_location(storage_id: SecretStorageId) -> object:
        kind, found = original(storage_id)
        if storage_id == target.id:
            return original(SecretStorageId(source.id))
        return kind, found

    service.backends.config_of = same_location  # type: ignore[assignment,method-assign]
    with pytest.raises(InvalidInput, match="same backend location"):
        service.migrate_storage(SecretStorageId(source.id), SecretStorageId(target.id))
