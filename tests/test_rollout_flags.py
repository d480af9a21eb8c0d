"""Rollout flags: persist-references, read-by-reference-id and cleanup-orphans."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from openfeature.provider.in_memory_provider import InMemoryFlag, InMemoryProvider

from keyrefs.errors import (
    ConfigurationError,
    ForeignReference,
    MaskWithoutStoredSecret,
    ReferenceNotFound,
)
from keyrefs.ids import ActorId, OrganizationId, WorkspaceId
from keyrefs.secret_value import MASK
from keyrefs.service import KeyrefsService
from keyrefs.service.types import ActorScope
from keyrefs.settings import Settings
from keyrefs.store.api_models import ActorOwner
from tests.fixtures.flags import flag_file
from tests.helpers import local_coordinates, reference_count
from tests.rollout_support import SPEC, service_with

PERSIST = "keyrefs.persist-references"
READ_BY_ID = "keyrefs.read-by-reference-id"
CLEANUP = "keyrefs.cleanup-orphans"

ORG_ON = uuid.uuid4()
ORG_OFF = uuid.uuid4()


def scope_in(organization_id: uuid.UUID) -> ActorScope:
    return ActorScope(
        ActorId(uuid.uuid4()),
        WorkspaceId(uuid.uuid4()),
        OrganizationId(organization_id),
    )


@pytest.fixture
def legacy_for_one(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> Iterator[KeyrefsService]:
    """References on for ORG_ON, the legacy mode for ORG_OFF."""
    path = flag_file(
        tmp_path / "flags.json",
        enabled_for={PERSIST: [ORG_ON], READ_BY_ID: [ORG_ON]},
        disabled_for={PERSIST: [ORG_OFF], READ_BY_ID: [ORG_OFF]},
    )
    keyrefs = service_with(make_settings, flags_file=str(path))
    try:
        yield keyrefs
    finally:
        keyrefs.close()


CONFIG = {
    "host": "h",
    "password": "pw-1",
    "token": "tok-1",
    "nested": {"key": "key-1"},
}


def test_flag_file_targets_organizations(legacy_for_one: KeyrefsService) -> None:
    on = legacy_for_one.process(scope_in(ORG_ON), SPEC, CONFIG)
    off = legacy_for_one.process(scope_in(ORG_OFF), SPEC, CONFIG)
    assert set(on["password"]) == {
        "_secret",
        "_secret_storage_id",
        "_secret_reference_id",
    }
    assert set(off["password"]) == {"_secret"}
    assert off["password"]["_secret"].startswith("legacy_workspace_")
    assert reference_count(legacy_for_one) == 3


def test_legacy_mode_writes_values_without_rows(
    legacy_for_one: KeyrefsService,
) -> None:
    scope = scope_in(ORG_OFF)
    stored = legacy_for_one.process(scope, SPEC, CONFIG)
    assert reference_count(legacy_for_one) == 0
    assert stored["password"]["_secret"] in local_coordinates(legacy_for_one)
    full = legacy_for_one.hydrate(
        stored, scope.actor_id, scope.organization_id, scope.workspace_id
    )
    assert full == CONFIG


def test_reference_mode_round_trip(legacy_for_one: KeyrefsService) -> None:
    scope = scope_in(ORG_ON)
    stored = legacy_for_one.process(scope, SPEC, CONFIG)
    assert legacy_for_one.hydrate(stored, scope.actor_id, scope.organization_id) == (
        CONFIG
    )


def test_legacy_mask_requires_previous_config(
    legacy_for_one: KeyrefsService,
) -> None:
    scope = scope_in(ORG_OFF)
    legacy_for_one.process(scope, SPEC, CONFIG)
    update = {**CONFIG, "password": MASK}
    with pytest.raises(MaskWithoutStoredSecret) as caught:
        legacy_for_one.process(scope, SPEC, update)
    assert "previous_config" in str(caught.value)
    assert "--previous" in str(caught.value)


def test_legacy_update_restores_masks_and_versions(
    legacy_for_one: KeyrefsService,
) -> None:
    scope = scope_in(ORG_OFF)
    first = legacy_for_one.process(scope, SPEC, CONFIG)
    update = {**CONFIG, "password": MASK, "token": "tok-2"}
    second = legacy_for_one.process(scope, SPEC, update, previous_config=first)
    assert second["password"] == first["password"]
    assert second["token"]["_secret"].endswith("_v2")
    old_name = first["token"]["_secret"]
    assert second["token"]["_secret"] == old_name[: -len("_v1")] + "_v2"
    full = legacy_for_one.hydrate(second, scope.actor_id, scope.organization_id)
    assert full == {**CONFIG, "token": "tok-2"}


def test_legacy_rejects_marker_not_in_previous(
    legacy_for_one: KeyrefsService,
) -> None:
    victim = scope_in(ORG_OFF)
    stored = legacy_for_one.process(victim, SPEC, CONFIG)
    attacker = scope_in(ORG_OFF)
    first = legacy_for_one.process(attacker, SPEC, CONFIG)
    stolen = {**CONFIG, "password": stored["password"]}
    with pytest.raises(ForeignReference):
        legacy_for_one.process(attacker, SPEC, stolen, previous_config=first)


def test_hydrate_by_coordinate_skips_ownership(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    path = flag_file(tmp_path / "flags.json", {}, {READ_BY_ID: [ORG_OFF]})
    with service_with(make_settings, flags_file=str(path)) as keyrefs:
        owner = scope_in(ORG_OFF)
        stored = keyrefs.process(owner, SPEC, CONFIG)
        assert keyrefs.hydrate(stored, owner.actor_id, owner.organization_id) == (
            CONFIG
        )
        # By coordinate another actor's config hydrates too: the documented
        # weakness of the legacy read. By reference id it is rejected.
        other = scope_in(ORG_OFF)
        assert keyrefs.hydrate(stored, other.actor_id, other.organization_id) == (
            CONFIG
        )
        with pytest.raises(ForeignReference):
            keyrefs.hydrate(stored, other.actor_id, OrganizationId(ORG_ON))


def test_hydrate_uses_recorded_actor_owner(
    legacy_for_one: KeyrefsService,
) -> None:
    scope = scope_in(ORG_OFF)
    stored = legacy_for_one.process(scope, SPEC, CONFIG)
    with legacy_for_one.session() as session, session.begin():
        session.add(
            ActorOwner(
                actor_id=scope.actor_id,
                workspace_id=scope.workspace_id,
                organization_id=scope.organization_id,
            )
        )
    assert legacy_for_one.hydrate(stored, scope.actor_id) == CONFIG


def test_hydrate_without_owner_takes_defaults(
    legacy_for_one: KeyrefsService,
) -> None:
    scope = scope_in(ORG_OFF)
    stored = legacy_for_one.process(scope, SPEC, CONFIG)
    # Without an organization, read-by-reference-id takes its default (on),
    # which cannot resolve a legacy marker that has no row.
    with pytest.raises(ReferenceNotFound):
        legacy_for_one.hydrate(stored, scope.actor_id)


def test_no_flag_file_means_defaults(service: KeyrefsService) -> None:
    scope = scope_in(ORG_OFF)
    stored = service.process(scope, SPEC, CONFIG)
    assert "_secret_reference_id" in stored["password"]


def test_missing_flag_file_is_a_configuration_error(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings(flags_file=str(tmp_path / "absent.json"))
    with pytest.raises(ConfigurationError):
        KeyrefsService(settings)


def test_custom_provider_via_constructor(
    make_settings: Callable[..., Settings],
) -> None:
    provider = InMemoryProvider(
        {PERSIST: InMemoryFlag("off", {"on": True, "off": False})}
    )
    with KeyrefsService(make_settings(), flag_provider=provider) as keyrefs:
        keyrefs.init()
        stored = keyrefs.process(scope_in(ORG_ON), SPEC, CONFIG)
    assert set(stored["password"]) == {"_secret"}


@pytest.mark.parametrize("cleanup", [True, False], ids=["cleanup-on", "cleanup-off"])
def test_cleanup_orphans_flag(
    make_settings: Callable[..., Settings], tmp_path: Path, cleanup: bool
) -> None:
    lists = {CLEANUP: [ORG_ON]}
    path = flag_file(
        tmp_path / "flags.json",
        enabled_for=lists if cleanup else {},
        disabled_for={} if cleanup else lists,
    )
    with service_with(make_settings, flags_file=str(path)) as keyrefs:
        scope = scope_in(ORG_ON)
        first = keyrefs.process(scope, SPEC, CONFIG)
        update = {**CONFIG, "password": "pw-2"}
        keyrefs.process(scope, SPEC, update, previous_config=first)
        old_kept = first["password"]["_secret"] in local_coordinates(keyrefs)
    assert old_kept is not cleanup
