"""Secret coordinates: the name of a secret inside its backend.

A coordinate is either managed (created, versioned and deleted by keyrefs) or
external (owned by the customer and only read). Which one applies is stored in
`secret_config.managed` when keyrefs creates the row; it is never inferred from
a name that a user supplied. `parse_managed` exists to read back names that
keyrefs itself rendered, for example while listing a backend's objects.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, replace
from typing import Literal

from keyrefs.errors import InvalidCoordinate

ManagedScope = Literal["organization", "workspace"]

DEFAULT_MANAGED_PREFIX = "keyrefs_"
MAX_COORDINATE_LENGTH = 256

_PREFIX = re.compile(r"[a-z][a-z0-9_]{0,31}")
_MANAGED = re.compile(
    r"(?P<prefix>[a-z][a-z0-9_]{0,31}?)(?P<scope>organization|workspace)_(?P<scope_id>[0-9a-f-]{36})"
    r"_secret_(?P<secret>[0-9a-f-]{36})_v(?P<version>[1-9][0-9]{0,8})"
)


@dataclass(frozen=True)
class ManagedCoordinate:
    """`<prefix><scope>_<scope-id>_secret_<uuid>_v<version>`."""

    scope: ManagedScope
    scope_id: uuid.UUID
    secret_id: uuid.UUID
    version: int = 1
    prefix: str = DEFAULT_MANAGED_PREFIX

    def __post_init__(self) -> None:
        if not _PREFIX.fullmatch(self.prefix):
            raise InvalidCoordinate(
                f"managed prefix {self.prefix!r} is invalid: expected 1 to 32 "
                "lowercase letters, digits or '_', starting with a letter"
            )
        if self.version < 1:
            raise InvalidCoordinate(f"version {self.version} is invalid: expected >= 1")

    def render(self) -> str:
        return (
            f"{self.prefix}{self.scope}_{self.scope_id}"
            f"_secret_{self.secret_id}_v{self.version}"
        )

    def next_version(self) -> ManagedCoordinate:
        return replace(self, version=self.version + 1)

    def __str__(self) -> str:
        return self.render()


@dataclass(frozen=True)
class ExternalCoordinate:
    """A name the customer gives: an ARN, `projects/p/secrets/s`, a Vault path."""

    name: str

    def __post_init__(self) -> None:
        if not self.name or not self.name.strip():
            raise InvalidCoordinate("external coordinate is empty: expected a name")
        if len(self.name) > MAX_COORDINATE_LENGTH:
            raise InvalidCoordinate(
                f"external coordinate is {len(self.name)} characters long: "
                f"the maximum is {MAX_COORDINATE_LENGTH}"
            )
        if any(ord(char) < 32 for char in self.name):
            raise InvalidCoordinate(
                "external coordinate contains a control character: remove it"
            )

    def render(self) -> str:
        return self.name

    def __str__(self) -> str:
        return self.name


Coordinate = ManagedCoordinate | ExternalCoordinate


def parse_managed(text: str, prefix: str | None = None) -> ManagedCoordinate:
    """Parse a managed coordinate that keyrefs rendered.

    With `prefix` the name must start with it; without, any valid prefix is
    accepted, so rows written under an earlier prefix setting still parse.
    """
    if prefix is not None and not text.startswith(prefix):
        raise InvalidCoordinate(
            f"coordinate {text!r} does not start with the managed prefix {prefix!r}"
        )
    match = _MANAGED.fullmatch(text)
    if match is None or (prefix is not None and match["prefix"] != prefix):
        raise InvalidCoordinate(
            f"coordinate {text!r} is not a managed coordinate: expected "
            "<prefix><scope>_<scope-id>_secret_<uuid>_v<version>"
        )
    scope: ManagedScope = "organization"
    if match["scope"] == "workspace":
        scope = "workspace"
    return ManagedCoordinate(
        scope=scope,
        scope_id=uuid.UUID(match["scope_id"]),
        secret_id=uuid.UUID(match["secret"]),
        version=int(match["version"]),
        prefix=match["prefix"],
    )


@dataclass(frozen=True)
class OpaqueManagedCoordinate(ManagedCoordinate):
    """A managed secret whose name keyrefs did not render, e.g. a migrated one.

    Backends read and delete it under `name`, where they keep managed
    secrets. It has no version to increment, so a new value becomes a new
    secret. NOTE: the Azure backend builds its names from the scope and ids,
    so it cannot address an opaque name.
    """

    name: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        ExternalCoordinate(self.name)  # the same emptiness and length checks

    @classmethod
    def of(cls, name: str) -> OpaqueManagedCoordinate:
        nil = uuid.UUID(int=0)
        return cls(scope="workspace", scope_id=nil, secret_id=nil, name=name)

    def render(self) -> str:
        return self.name

    def next_version(self) -> ManagedCoordinate:
        raise InvalidCoordinate(
            f"managed coordinate {self.name!r} has no version: store a new secret"
        )

    def __str__(self) -> str:
        return self.name


def managed_coordinate_from_name(text: str) -> ManagedCoordinate:
    """Parse a managed name; a name of another shape becomes an opaque coordinate."""
    try:
        return parse_managed(text)
    except InvalidCoordinate:
        return OpaqueManagedCoordinate.of(text)


def coordinate_from_row(text: str, *, managed: bool) -> Coordinate:
    """Build the coordinate of a `secret_config` row from its stored ownership."""
    if managed:
        return managed_coordinate_from_name(text)
    return ExternalCoordinate(text)
