"""The read path: hydrate and mask."""

from __future__ import annotations

import copy
import uuid

import pytest
from sqlalchemy import event

from keyrefs.domain.coordinates import parse_managed
from keyrefs.errors import (
    ForeignReference,
    InvalidInput,
    ReferenceNotFound,
    SecretNotFound,
)
from keyrefs.ids import DEFAULT_STORAGE_ID
from keyrefs.secret_value import MASK
from keyrefs.service import KeyrefsService
from keyrefs.service.types import ActorScope
from tests.conftest import new_scope
from tests.helpers import SECRET

SPEC = {
    "type": "object",
    "properties": {"host": {"type": "string"}, "a": SECRET, "b": SECRET, "c": SECRET},
}
CONFIG = {"host": "h", "a": "va", "b": "vb", "c": "vc"}


def test_config_without_markers_is_returned_as_is(service: KeyrefsService) -> None:
    assert service.hydrate({"host": "h", "n": [1]}, uuid.uuid4()) == {
        "host": "h",
        "n": [1],
    }  # type: ignore[arg-type]


def test_hydrate_resolves_all_markers_in_one_query(
    service: KeyrefsService, scope: ActorScope
) -> None:
    stored = service.process(scope, SPEC, CONFIG)
    statements: list[str] = []

    def record(*args: object) -> None:
        statements.append(str(args[2]))

    event.listen(service.engine, "before_cursor_execute", record)
    try:
        full = service.hydrate(stored, scope.actor_id)
    finally:
        event.remove(service.engine, "before_cursor_execute", record)
    assert full == CONFIG
    on_references = [s for s in statements if "FROM secret_reference" in s]
    assert len(on_references) == 1


def test_missing_secret_names_path_and_coordinate(
    service: KeyrefsService, scope: ActorScope
) -> None:
    stored = service.process(scope, SPEC, CONFIG)
    name = stored["b"]["_secret"]
    service.backends.get(DEFAULT_STORAGE_ID).delete(parse_managed(name))
    with pytest.raises(SecretNotFound) as caught:
        service.hydrate(stored, scope.actor_id)
    assert "$.b" in str(caught.value)
    assert name in str(caught.value)


def test_missing_reference_is_its_own_error(
    service: KeyrefsService, scope: ActorScope
) -> None:
    stored = service.process(scope, SPEC, CONFIG)
    broken = copy.deepcopy(stored)
    missing = str(uuid.uuid4())
    broken["c"]["_secret_reference_id"] = missing
    with pytest.raises(ReferenceNotFound) as caught:
        service.hydrate(broken, scope.actor_id)
    assert "$.c" in str(caught.value)
    assert missing in str(caught.value)


def test_reference_of_another_actor_is_refused(
    service: KeyrefsService, scope: ActorScope
) -> None:
    other = new_scope()
    theirs = service.process(other, SPEC, {"host": "h", "a": "their-secret"})
    with pytest.raises(ForeignReference, match=r"\$\.a"):
        service.hydrate(theirs, scope.actor_id)
    mixed = service.process(scope, SPEC, {"host": "h", "a": "mine"})
    mixed["b"] = theirs["a"]
    with pytest.raises(ForeignReference, match=r"\$\.b"):
        service.hydrate(mixed, scope.actor_id)


def test_legacy_marker_hydrates_only_for_its_actor(
    service: KeyrefsService, scope: ActorScope
) -> None:
    stored = service.process(scope, SPEC, {"host": "h", "a": "va"})
    legacy = {"host": "h", "a": {"_secret": stored["a"]["_secret"]}}
    assert service.hydrate(legacy, scope.actor_id) == {"host": "h", "a": "va"}
    with pytest.raises(ForeignReference):
        service.hydrate(legacy, new_scope().actor_id)
    with pytest.raises(ReferenceNotFound):
        service.hydrate({"a": {"_secret": "keyrefs_nothing"}}, scope.actor_id)


def test_hydrate_does_not_change_its_input(
    service: KeyrefsService, scope: ActorScope
) -> None:
    stored = service.process(scope, SPEC, CONFIG)
    before = copy.deepcopy(stored)
    service.hydrate(stored, scope.actor_id)
    assert stored == before


def test_malformed_marker_is_invalid_input(
    service: KeyrefsService, scope: ActorScope
) -> None:
    with pytest.raises(InvalidInput, match=r"\$\.a"):
        service.hydrate({"a": {"_secret_reference_id": "nope"}}, scope.actor_id)


def test_mask_replaces_every_secret_field(service: KeyrefsService) -> None:
    assert service.mask(SPEC, CONFIG) == {"host": "h", "a": MASK, "b": MASK, "c": MASK}


def test_mask_hides_markers_too(service: KeyrefsService, scope: ActorScope) -> None:
    stored = service.process(scope, SPEC, CONFIG)
    assert service.mask(SPEC, stored) == {"host": "h", "a": MASK, "b": MASK, "c": MASK}
    # A marker at a path the spec does not mark secret is masked as well.
    assert service.mask(
        {"type": "object", "properties": {"x": {}}}, {"x": stored["a"]}
    ) == {"x": MASK}


def test_mask_of_spec_without_properties_hides_every_value(
    service: KeyrefsService,
) -> None:
    config = {
        "user": "u",
        "password": "canary-5",
        "nested": {"token": "t", "port": 5},
        "l": ["x"],
    }
    masked = service.mask({"type": "object"}, config)
    assert masked == {
        "user": MASK,
        "password": MASK,
        "nested": {"token": MASK, "port": MASK},
        "l": [MASK],
    }


def test_mask_covers_secrets_of_any_branch(service: KeyrefsService) -> None:
    spec = {
        "type": "object",
        "properties": {
            "auth": {
                "oneOf": [
                    {
                        "properties": {"kind": {"const": "a"}, "key": SECRET},
                        "required": ["kind"],
                    },
                    {
                        "properties": {"kind": {"const": "b"}, "token": SECRET},
                        "required": ["kind"],
                    },
                ]
            }
        },
    }
    # The config matches no branch: every field any branch marks secret is masked.
    masked = service.mask(spec, {"auth": {"kind": "zzz", "key": "k", "token": "t"}})
    assert masked == {"auth": {"kind": "zzz", "key": MASK, "token": MASK}}
