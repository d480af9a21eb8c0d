"""JSON paths, coordinates and markers."""

from __future__ import annotations

import uuid

import pytest

from keyrefs.domain.coordinates import (
    ExternalCoordinate,
    ManagedCoordinate,
    coordinate_from_row,
    parse_managed,
)
from keyrefs.domain.jsonpath import JsonPath
from keyrefs.domain.markers import (
    CoordinateString,
    Marker,
    MaskValue,
    RawValue,
    classify,
    parse_marker,
)
from keyrefs.errors import InvalidCoordinate, InvalidInput
from keyrefs.secret_value import MASK, SecretValue


@pytest.mark.parametrize(
    ("segments", "rendered"),
    [
        ((), "$"),
        (("credentials", "client_secret"), "$.credentials.client_secret"),
        (("keys", 1, "password"), "$.keys[1].password"),
        (("a.b",), "$['a.b']"),
        (("it's",), "$['it\\'s']"),
        (("with space", "x[0]", "*"), "$['with space']['x[0]']['*']"),
        (("back\\slash",), "$['back\\\\slash']"),
        (("9lives",), "$['9lives']"),
    ],
)
def test_json_path_renders_and_parses_back(
    segments: tuple[object, ...], rendered: str
) -> None:
    path = JsonPath(segments)  # type: ignore[arg-type]
    assert path.render() == rendered
    assert JsonPath.parse(rendered) == path


@pytest.mark.parametrize("text", ["", "credentials", "$.", "$[x]", "$['open", "$..a"])
def test_json_path_parse_rejects_malformed(text: str) -> None:
    with pytest.raises(ValueError):
        JsonPath.parse(text)


def test_json_path_get_and_set() -> None:
    document = {"a": [{"b": 1}, {"b": 2}]}
    path = JsonPath(("a", 1, "b"))
    assert path.get(document) == 2
    path.set(document, 3)
    assert document == {"a": [{"b": 1}, {"b": 3}]}
    with pytest.raises(KeyError):
        JsonPath(("a", 5)).get(document)


def test_managed_coordinate_round_trip() -> None:
    scope_id, secret_id = uuid.uuid4(), uuid.uuid4()
    coordinate = ManagedCoordinate("workspace", scope_id, secret_id, 3)
    text = coordinate.render()
    assert text == f"keyrefs_workspace_{scope_id}_secret_{secret_id}_v3"
    assert parse_managed(text) == coordinate
    assert parse_managed(text, "keyrefs_") == coordinate


def test_managed_coordinate_next_version_keeps_identity() -> None:
    coordinate = ManagedCoordinate("organization", uuid.uuid4(), uuid.uuid4())
    following = coordinate.next_version()
    assert following.version == 2
    assert following.secret_id == coordinate.secret_id
    assert following.scope_id == coordinate.scope_id


def test_managed_coordinate_with_other_prefix_parses() -> None:
    coordinate = ManagedCoordinate(
        "workspace", uuid.uuid4(), uuid.uuid4(), 1, "airbyte_"
    )
    assert parse_managed(coordinate.render()) == coordinate
    with pytest.raises(InvalidCoordinate):
        parse_managed(coordinate.render(), "keyrefs_")


@pytest.mark.parametrize(
    "text",
    [
        "keyrefs_workspace_nope_secret_x_v1",
        f"keyrefs_team_{uuid.uuid4()}_secret_{uuid.uuid4()}_v1",
        f"keyrefs_workspace_{uuid.uuid4()}_secret_{uuid.uuid4()}_v0",
        f"keyrefs_workspace_{uuid.uuid4()}_secret_{uuid.uuid4()}",
        "my-own-secret",
    ],
)
def test_parse_managed_rejects_other_names(text: str) -> None:
    with pytest.raises(InvalidCoordinate):
        parse_managed(text)


@pytest.mark.parametrize("prefix", ["", "Keyrefs_", "1x_", "has space_", "x" * 40])
def test_managed_prefix_is_validated(prefix: str) -> None:
    with pytest.raises(InvalidCoordinate):
        ManagedCoordinate("workspace", uuid.uuid4(), uuid.uuid4(), prefix=prefix)


def test_ownership_comes_from_the_row_not_the_name() -> None:
    # A customer may name an external secret exactly like a managed one.
    name = ManagedCoordinate("workspace", uuid.uuid4(), uuid.uuid4()).render()
    assert coordinate_from_row(name, managed=False) == ExternalCoordinate(name)
    assert isinstance(coordinate_from_row(name, managed=True), ManagedCoordinate)


@pytest.mark.parametrize("name", ["", "   ", "x" * 257, "line\nbreak"])
def test_external_coordinate_rejects_bad_names(name: str) -> None:
    with pytest.raises(InvalidCoordinate):
        ExternalCoordinate(name)


def test_classify_recognises_each_input_form() -> None:
    path = JsonPath(("password",))
    reference_id = uuid.uuid4()
    assert classify(MASK, path) == MaskValue()
    assert classify("secret_coordinate::prod/db", path) == CoordinateString("prod/db")
    assert classify({"_secret": "prod/db"}, path) == Marker(coordinate="prod/db")
    marker = classify({"_secret_reference_id": str(reference_id)}, path)
    assert marker == Marker(reference_id=reference_id)  # type: ignore[arg-type]
    assert classify("hunter2", path) == RawValue(SecretValue("hunter2"))
    assert classify(42, path) == RawValue(SecretValue("42", "json"))
    assert classify({"k": [1]}, path) == RawValue(SecretValue('{"k":[1]}', "json"))


@pytest.mark.parametrize(
    "node",
    [
        {"_secret": "x", "extra": 1},
        {"_secret": ""},
        {"_secret": 5},
        {"_secret_reference_id": "not-a-uuid"},
        {"_secret_storage_id": str(uuid.uuid4()), "_secret_reference_id": 7},
    ],
)
def test_malformed_marker_names_the_path(node: dict[str, object]) -> None:
    with pytest.raises(InvalidInput, match=r"\$\.creds\.password"):
        parse_marker(node, JsonPath(("creds", "password")))


def test_empty_coordinate_string_is_invalid() -> None:
    with pytest.raises(InvalidInput):
        classify("secret_coordinate::", JsonPath(("x",)))


def test_secret_value_hides_itself() -> None:
    value = SecretValue("canary-hunter2")
    assert "canary" not in repr(value)
    assert "canary" not in str(value)
    assert "canary" not in f"{value!r} {value}"
    assert value.reveal() == "canary-hunter2"
    assert SecretValue.from_json([1, "a"]).to_json() == [1, "a"]
