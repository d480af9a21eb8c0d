"""The protocol every secret backend implements.

A backend instance serves one secret storage. It maps coordinates to legal
names of its service, enforces the service's size and name limits before
calling it, and translates every SDK exception into a keyrefs exception from
`keyrefs.errors` (`raise ... from exc`), so no vendor exception escapes.

Reads return `Found` or `Absent` explicitly. "Not found" is never signalled by
an exception from `read` or `read_many`; "access denied", "throttled",
"unavailable" and "invalid" are.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel

from keyrefs.domain.coordinates import Coordinate, ManagedCoordinate
from keyrefs.ids import OrganizationId, SecretStorageId
from keyrefs.secret_value import SecretValue


@dataclass(frozen=True)
class Capabilities:
    """Features a backend's service offers beyond plain reads and writes."""

    batch_read: bool = False
    native_expiry: bool = False
    versions: bool = False
    soft_delete: bool = False
    max_value_bytes: int | None = None


@dataclass(frozen=True)
class SecretWrite:
    """A new managed secret to create under `coordinate`."""

    coordinate: ManagedCoordinate
    value: SecretValue
    organization_id: OrganizationId
    expires_at: datetime | None = None


@dataclass(frozen=True)
class Found:
    value: SecretValue


@dataclass(frozen=True)
class Absent:
    pass


ReadResult = Found | Absent


@dataclass(frozen=True)
class ListedSecret:
    """A managed object found in a backend, for garbage collection."""

    coordinate: ManagedCoordinate
    created_at: datetime | None


@runtime_checkable
class SecretBackend(Protocol):
    capabilities: Capabilities

    def write(self, request: SecretWrite) -> None:
        """Create the managed secret; writing the same coordinate again replaces it."""

    def read(self, coordinate: Coordinate) -> ReadResult:
        """Read one secret."""

    def read_many(
        self, coordinates: Sequence[Coordinate]
    ) -> dict[Coordinate, ReadResult]:
        """Read several secrets, in batches where the service has a batch read."""

    def delete(self, coordinate: ManagedCoordinate) -> None:
        """Delete a managed secret and all its versions; an absent one is no error."""

    def list_managed(self, prefix: str) -> Iterator[ListedSecret]:
        """Yield every managed secret whose coordinate starts with `prefix`."""

    def check_connection(self) -> None:
        """Raise a keyrefs BackendError when the service cannot be used."""

    def close(self) -> None:
        """Release connections."""


@dataclass(frozen=True)
class BackendContext:
    """Shared resources the service hands a factory, besides the storage config."""

    storage_id: SecretStorageId
    # Shared resources some backends need: the local backend takes the
    # SQLAlchemy engine and the master key from here.
    resources: Mapping[str, Any] = field(default_factory=dict)


class BackendFactory(Protocol):
    """Build the backends of one storage type (entry point group `keyrefs.backends`)."""

    storage_type: ClassVar[str]
    config_model: ClassVar[type[BaseModel]]

    def create(self, config: BaseModel, context: BackendContext) -> SecretBackend:
        """Build a backend for one storage from its validated config."""


def read_each(
    backend: SecretBackend, coordinates: Sequence[Coordinate]
) -> dict[Coordinate, ReadResult]:
    """Implement `read_many` by reading one coordinate after another."""
    return {coordinate: backend.read(coordinate) for coordinate in coordinates}
