"""Config markers: what a secret field holds in a stored or incoming config.

Stored forms, all accepted on input:

- `{"_secret": COORD, "_secret_storage_id": UUID, "_secret_reference_id": UUID}`
  (dual-write, written by default)
- `{"_secret_reference_id": UUID}` (after the contract step of a migration)
- `{"_secret": COORD}` (legacy form, in the default storage)

On input a secret field may also hold a raw value, the mask, or the string
`secret_coordinate::NAME` naming an external secret.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from keyrefs.domain.jsonpath import JsonPath, iter_nodes
from keyrefs.errors import InvalidInput
from keyrefs.ids import SecretReferenceId, SecretStorageId
from keyrefs.secret_value import MASK, SecretValue

SECRET_KEY = "_secret"
STORAGE_KEY = "_secret_storage_id"
REFERENCE_KEY = "_secret_reference_id"
MARKER_KEYS = frozenset({SECRET_KEY, STORAGE_KEY, REFERENCE_KEY})
COORDINATE_STRING_PREFIX = "secret_coordinate::"


@dataclass(frozen=True)
class Marker:
    """A parsed marker object; at least one of coordinate and reference id is set."""

    coordinate: str | None = None
    storage_id: SecretStorageId | None = None
    reference_id: SecretReferenceId | None = None

    def to_json(self) -> dict[str, str]:
        document: dict[str, str] = {}
        if self.coordinate is not None:
            document[SECRET_KEY] = self.coordinate
        if self.storage_id is not None:
            document[STORAGE_KEY] = str(self.storage_id)
        if self.reference_id is not None:
            document[REFERENCE_KEY] = str(self.reference_id)
        return document


@dataclass(frozen=True)
class RawValue:
    value: SecretValue


@dataclass(frozen=True)
class MaskValue:
    pass


@dataclass(frozen=True)
class CoordinateString:
    """`secret_coordinate::NAME`: a reference to an existing external secret."""

    name: str


IncomingSecret = RawValue | MaskValue | CoordinateString | Marker


def looks_like_marker(node: object) -> bool:
    return isinstance(node, dict) and (SECRET_KEY in node or REFERENCE_KEY in node)


def parse_marker(node: dict[str, Any], path: JsonPath) -> Marker:
    """Parse a marker object; raise InvalidInput naming the path when malformed."""
    unexpected = set(node) - MARKER_KEYS
    if unexpected:
        # The keys are not echoed: a pasted credential could sit in a key as well.
        raise InvalidInput(
            f"secret marker at {path} has {len(unexpected)} unexpected keys: a "
            f"marker holds only {', '.join(sorted(MARKER_KEYS))}"
        )
    coordinate = node.get(SECRET_KEY)
    if coordinate is not None and (not isinstance(coordinate, str) or not coordinate):
        raise InvalidInput(
            f"secret marker at {path}: {SECRET_KEY} must be a non-empty string"
        )
    storage_id = _parse_uuid(node.get(STORAGE_KEY), STORAGE_KEY, path)
    reference_id = _parse_uuid(node.get(REFERENCE_KEY), REFERENCE_KEY, path)
    if coordinate is None and reference_id is None:
        raise InvalidInput(
            f"secret marker at {path} has neither {SECRET_KEY} nor {REFERENCE_KEY}"
        )
    return Marker(
        coordinate=coordinate,
        storage_id=SecretStorageId(storage_id) if storage_id else None,
        reference_id=SecretReferenceId(reference_id) if reference_id else None,
    )


def classify(node: object, path: JsonPath) -> IncomingSecret:
    """Classify the value found in a secret field of an incoming config."""
    if node == MASK:
        return MaskValue()
    if isinstance(node, str) and node.startswith(COORDINATE_STRING_PREFIX):
        name = node[len(COORDINATE_STRING_PREFIX) :]
        if not name:
            raise InvalidInput(
                f"secret field at {path} holds {COORDINATE_STRING_PREFIX!r} "
                "with no name after it"
            )
        return CoordinateString(name)
    if looks_like_marker(node):
        assert isinstance(node, dict)
        return parse_marker(node, path)
    return RawValue(SecretValue.from_json(node))


def find_markers(config: object) -> Iterator[tuple[JsonPath, Marker]]:
    """Yield every marker object in a stored config, with its path."""
    for path, node in iter_nodes(config):
        if looks_like_marker(node):
            assert isinstance(node, dict)
            yield path, parse_marker(node, path)


def _parse_uuid(value: object, key: str, path: JsonPath) -> uuid.UUID | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            pass
    raise InvalidInput(f"secret marker at {path}: {key} must be a UUID string")
