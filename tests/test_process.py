"""The write path: process creates and updates an actor's stored config."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from keyrefs.errors import (
    ExternalSecretNotAllowed,
    ForeignReference,
    InvalidConfig,
    InvalidInput,
    MaskWithoutStoredSecret,
    ReferenceNotFound,
)
from keyrefs.ids import DEFAULT_STORAGE_ID
from keyrefs.secret_value import MASK
from keyrefs.service import KeyrefsService
from keyrefs.service.types import ActorScope
from tests.conftest import new_scope
from tests.helpers import SECRET, config_coordinates, local_coordinates, marker

BASIC_SPEC = {
    "type": "object",
    "required": ["host"],
    "properties": {"host": {"type": "string"}, "password": SECRET, "token": SECRET},
}

HEADERS_SPEC = {
    "type": "object",
    "properties": {
        "headers": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "value": SECRET},
            },
        }
    },
}

BRANCH_SPEC = {
    "type": "object",
    "properties": {
        "api_key": SECRET,
        "auth": {
            "type": "object",
            "oneOf": [
                {
                    "properties": {"kind": {"const": "password"}, "password": SECRET},
                    "required": ["kind", "password"],
                },
                {
                    "properties": {"kind": {"const": "oauth"}, "refresh_token": SECRET},
                    "required": ["kind", "refresh_token"],
                },
            ],
        },
    },
}


def test_process_replaces_secrets_with_dual_write_markers(
    service: KeyrefsService, scope: ActorScope
) -> None:
    stored = service.process(scope, BASIC_SPEC, {"host": "h", "password": "pw-1"})
    assert stored["host"] == "h"
    node = marker(stored, "password")
    assert set(node) == {"_secret", "_secret_storage_id", "_secret_reference_id"}
    assert node["_secret"].startswith(f"keyrefs_workspace_{scope.workspace_id}_secret_")
    assert node["_secret"].endswith("_v1")
    assert node["_secret_storage_id"] == str(DEFAULT_STORAGE_ID)
    assert node["_secret"] in local_coordinates(service)


def test_process_then_hydrate_round_trip(
    service: KeyrefsService, scope: ActorScope
) -> None:
    config = {"host": "h", "password": "pw", "token": "tk"}
    stored = service.process(scope, BASIC_SPEC, config)
    assert service.hydrate(stored, scope.actor_id) == config


def test_references_record_actor_and_paths(
    service: KeyrefsService, scope: ActorScope
) -> None:
    stored = service.process(
        scope, BASIC_SPEC, {"host": "h", "password": "pw", "token": "tk"}
    )
    references = service.references_of_actor(scope.actor_id)
    assert [r.hydration_path for r in references] == ["$.password", "$.token"]
    assert all(
        r.scope_type == "actor" and r.scope_id == scope.actor_id for r in references
    )
    assert all(r.managed for r in references)
    ids = {str(r.id) for r in references}
    assert ids == {
        stored["password"]["_secret_reference_id"],
        stored["token"]["_secret_reference_id"],
    }


def test_update_with_mask_keeps_stored_secret(
    service: KeyrefsService, scope: ActorScope
) -> None:
    first = service.process(scope, BASIC_SPEC, {"host": "h", "password": "pw"})
    second = service.process(scope, BASIC_SPEC, {"host": "h2", "password": MASK})
    assert second["password"] == first["password"]
    assert service.hydrate(second, scope.actor_id) == {"host": "h2", "password": "pw"}


def test_mask_restoration_needs_no_previous_config(
    service: KeyrefsService, scope: ActorScope
) -> None:
    service.process(scope, BASIC_SPEC, {"host": "h", "password": "pw"})
    stored = service.process(scope, BASIC_SPEC, {"host": "h", "password": MASK}, None)
    assert service.hydrate(stored, scope.actor_id)["password"] == "pw"


def test_mask_without_stored_secret_is_invalid(
    service: KeyrefsService, scope: ActorScope
) -> None:
    with pytest.raises(MaskWithoutStoredSecret, match=r"\$\.password"):
        service.process(scope, BASIC_SPEC, {"host": "h", "password": MASK})
    assert local_coordinates(service) == set()


def test_update_with_new_value_writes_next_version(
    service: KeyrefsService, scope: ActorScope
) -> None:
    first = service.process(scope, BASIC_SPEC, {"host": "h", "password": "old"})
    second = service.process(scope, BASIC_SPEC, {"host": "h", "password": "new"})
    old_name = first["password"]["_secret"]
    new_name = second["password"]["_secret"]
    assert new_name == old_name[: -len("_v1")] + "_v2"
    assert (
        second["password"]["_secret_reference_id"]
        == first["password"]["_secret_reference_id"]
    )
    assert local_coordinates(service) == {new_name}
    assert config_coordinates(service) == {new_name}
    assert service.hydrate(second, scope.actor_id)["password"] == "new"


def test_removed_secret_field_drops_reference_and_secret(
    service: KeyrefsService, scope: ActorScope
) -> None:
    first = service.process(
        scope, BASIC_SPEC, {"host": "h", "password": "pw", "token": "tk"}
    )
    service.process(scope, BASIC_SPEC, {"host": "h", "password": MASK})
    paths = [r.hydration_path for r in service.references_of_actor(scope.actor_id)]
    assert paths == ["$.password"]
    assert first["token"]["_secret"] not in local_coordinates(service)
    assert first["password"]["_secret"] in local_coordinates(service)


def test_array_update_with_masks_at_two_indices(
    service: KeyrefsService, scope: ActorScope
) -> None:
    config = {
        "headers": [
            {"name": "a", "value": "va"},
            {"name": "b", "value": "vb"},
            {"name": "c", "value": "vc"},
        ]
    }
    first = service.process(scope, HEADERS_SPEC, config)
    update = {
        "headers": [
            {"name": "a", "value": MASK},
            {"name": "b", "value": "vb-new"},
            {"name": "c", "value": MASK},
        ]
    }
    second = service.process(scope, HEADERS_SPEC, update)
    assert second["headers"][0]["value"] == first["headers"][0]["value"]
    assert second["headers"][2]["value"] == first["headers"][2]["value"]
    assert second["headers"][1]["value"]["_secret"].endswith("_v2")
    full = service.hydrate(second, scope.actor_id)
    assert [h["value"] for h in full["headers"]] == ["va", "vb-new", "vc"]


def test_array_shrinks_and_drops_last_reference(
    service: KeyrefsService, scope: ActorScope
) -> None:
    config = {"headers": [{"name": "a", "value": "va"}, {"name": "b", "value": "vb"}]}
    first = service.process(scope, HEADERS_SPEC, config)
    second = service.process(
        scope, HEADERS_SPEC, {"headers": [{"name": "a", "value": MASK}]}
    )
    assert service.hydrate(second, scope.actor_id) == {
        "headers": [{"name": "a", "value": "va"}]
    }
    assert first["headers"][1]["value"]["_secret"] not in local_coordinates(service)


def test_switching_one_of_branch_keeps_other_secret(
    service: KeyrefsService, scope: ActorScope
) -> None:
    first = service.process(
        scope,
        BRANCH_SPEC,
        {"api_key": "key-1", "auth": {"kind": "password", "password": "pw"}},
    )
    second = service.process(
        scope,
        BRANCH_SPEC,
        {"api_key": MASK, "auth": {"kind": "oauth", "refresh_token": "rt"}},
    )
    assert second["api_key"] == first["api_key"]
    full = service.hydrate(second, scope.actor_id)
    assert full == {
        "api_key": "key-1",
        "auth": {"kind": "oauth", "refresh_token": "rt"},
    }
    paths = [r.hydration_path for r in service.references_of_actor(scope.actor_id)]
    assert paths == ["$.api_key", "$.auth.refresh_token"]
    assert first["auth"]["password"]["_secret"] not in local_coordinates(service)


def test_mask_inside_one_of_branch(service: KeyrefsService, scope: ActorScope) -> None:
    service.process(
        scope, BRANCH_SPEC, {"auth": {"kind": "password", "password": "pw"}}
    )
    stored = service.process(
        scope, BRANCH_SPEC, {"auth": {"kind": "password", "password": MASK}}
    )
    assert service.hydrate(stored, scope.actor_id) == {
        "auth": {"kind": "password", "password": "pw"}
    }


@pytest.mark.parametrize(
    "value",
    [
        1234,
        0,
        3.5,
        True,
        {"type": "service_account", "key": "k", "n": [1, 2]},
        ["a", 1, None],
        "",
    ],
)
def test_non_string_secret_round_trips_with_type(
    service: KeyrefsService, scope: ActorScope, value: Any
) -> None:
    spec = {"type": "object", "properties": {"credential": {"airbyte_secret": True}}}
    stored = service.process(scope, spec, {"credential": value})
    assert isinstance(stored["credential"], dict)
    full = service.hydrate(stored, scope.actor_id)
    assert full == {"credential": value}
    assert type(full["credential"]) is type(value)


def test_property_name_with_a_dot(service: KeyrefsService, scope: ActorScope) -> None:
    spec = {
        "type": "object",
        "properties": {"db.password": SECRET, "db": {"type": "object"}},
    }
    stored = service.process(
        scope, spec, {"db.password": "pw", "db": {"password": "plain"}}
    )
    [reference] = service.references_of_actor(scope.actor_id)
    assert reference.hydration_path == "$['db.password']"
    assert stored["db"] == {"password": "plain"}
    assert service.hydrate(stored, scope.actor_id)["db.password"] == "pw"


def test_invalid_config_changes_nothing(
    service: KeyrefsService, scope: ActorScope
) -> None:
    with pytest.raises(InvalidConfig, match="'host' is a required property"):
        service.process(scope, BASIC_SPEC, {"password": "canary-invalid-3"})
    assert local_coordinates(service) == set()
    assert service.references_of_actor(scope.actor_id) == []


def test_config_must_be_an_object(service: KeyrefsService, scope: ActorScope) -> None:
    with pytest.raises(InvalidInput, match="JSON object"):
        service.process(scope, BASIC_SPEC, ["not", "an", "object"])


def test_secret_value_pattern_is_enforced(
    service: KeyrefsService, scope: ActorScope
) -> None:
    spec = {"type": "object", "properties": {"key": {**SECRET, "pattern": "^sk_"}}}
    with pytest.raises(InvalidConfig, match="pattern"):
        service.process(scope, spec, {"key": "canary-4"})
    stored = service.process(scope, spec, {"key": "sk_ok"})
    # The mask does not match the pattern, and must not be checked against it.
    service.process(scope, spec, {"key": MASK})
    assert service.hydrate(stored, scope.actor_id) == {"key": "sk_ok"}


def test_external_reference_in_default_storage_is_rejected(
    service: KeyrefsService, scope: ActorScope
) -> None:
    for value in (
        {"_secret": "prod/db-password"},
        "secret_coordinate::prod/db-password",
    ):
        with pytest.raises(ExternalSecretNotAllowed, match="storage"):
            service.process(scope, BASIC_SPEC, {"host": "h", "password": value})
    assert config_coordinates(service) == set()


def test_reference_of_another_actor_is_rejected(
    service: KeyrefsService, scope: ActorScope
) -> None:
    other = new_scope()
    theirs = service.process(other, BASIC_SPEC, {"host": "h", "password": "their-pw"})
    with pytest.raises(ForeignReference, match=r"\$\.password"):
        service.process(
            scope, BASIC_SPEC, {"host": "h", "password": theirs["password"]}
        )
    with pytest.raises(ForeignReference):
        # The legacy form, naming the other actor's managed coordinate.
        service.process(
            scope,
            BASIC_SPEC,
            {"host": "h", "password": {"_secret": theirs["password"]["_secret"]}},
        )
    assert service.references_of_actor(scope.actor_id) == []


def test_unknown_reference_id_is_not_found(
    service: KeyrefsService, scope: ActorScope
) -> None:
    config = {"host": "h", "password": {"_secret_reference_id": str(uuid.uuid4())}}
    with pytest.raises(ReferenceNotFound):
        service.process(scope, BASIC_SPEC, config)


def test_stored_config_sent_back_is_unchanged(
    service: KeyrefsService, scope: ActorScope
) -> None:
    stored = service.process(
        scope, BASIC_SPEC, {"host": "h", "password": "pw", "token": "t"}
    )
    again = service.process(scope, BASIC_SPEC, stored)
    assert again == stored
    legacy = {
        "host": "h",
        "password": {"_secret": stored["password"]["_secret"]},
        "token": MASK,
    }
    assert service.process(scope, BASIC_SPEC, legacy) == stored


def test_previous_config_restores_a_mask(
    service: KeyrefsService, scope: ActorScope
) -> None:
    stored = service.process(scope, BASIC_SPEC, {"host": "h", "password": "pw"})
    # The actor's references are gone, but the caller still holds the old config: a
    # marker naming a reference that no longer exists is reported, not dropped.
    service.delete_actor(scope.actor_id)
    with pytest.raises(ReferenceNotFound):
        service.process(scope, BASIC_SPEC, {"host": "h", "password": MASK}, stored)


def test_delete_actor_removes_references_and_managed_secrets(
    service: KeyrefsService, scope: ActorScope
) -> None:
    stored = service.process(
        scope, BASIC_SPEC, {"host": "h", "password": "pw", "token": "t"}
    )
    other = new_scope()
    kept = service.process(other, BASIC_SPEC, {"host": "h", "password": "theirs"})
    assert service.delete_actor(scope.actor_id) == 2
    assert service.references_of_actor(scope.actor_id) == []
    assert local_coordinates(service) == {kept["password"]["_secret"]}
    assert stored["password"]["_secret"] not in config_coordinates(service)
    assert service.hydrate(kept, other.actor_id)["password"] == "theirs"


def test_references_of_secret_config(
    service: KeyrefsService, scope: ActorScope
) -> None:
    service.process(scope, BASIC_SPEC, {"host": "h", "password": "pw"})
    [reference] = service.references_of_actor(scope.actor_id)
    listed = service.references_of_secret_config(reference.secret_config_id)  # type: ignore[arg-type]
    assert listed == [reference]


def test_marker_copied_to_two_paths_keeps_both_values(
    service: KeyrefsService, scope: ActorScope
) -> None:
    spec = {"type": "object", "properties": {"p1": SECRET, "p2": SECRET}}
    first = service.process(scope, spec, {"p1": "one", "p2": "two"})
    # A UI that duplicates an item sends the same marker at both paths.
    service.process(scope, spec, {"p1": first["p1"], "p2": first["p1"]})
    third = service.process(scope, spec, {"p1": "one-new", "p2": MASK})
    fourth = service.process(scope, spec, {"p1": MASK, "p2": "two-new"})
    assert service.hydrate(fourth, scope.actor_id) == {"p1": "one-new", "p2": "two-new"}
    assert service.hydrate(third, scope.actor_id) == {"p1": "one-new", "p2": "two-new"}
    both = service.process(scope, spec, {"p1": "a", "p2": "b"})
    assert both["p1"]["_secret"] != both["p2"]["_secret"]
    assert service.hydrate(both, scope.actor_id) == {"p1": "a", "p2": "b"}


def test_too_many_secret_fields_is_invalid(
    service: KeyrefsService, scope: ActorScope
) -> None:
    spec = {
        "type": "object",
        "properties": {"keys": {"type": "array", "items": SECRET}},
    }
    with pytest.raises(InvalidInput, match="at most 1000"):
        service.process(scope, spec, {"keys": [f"k{i}" for i in range(1001)]})
    assert local_coordinates(service) == set()
