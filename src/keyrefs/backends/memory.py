"""An in-memory backend for tests, with hooks to inject failures."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from keyrefs.backends.base import (
    Absent,
    BackendContext,
    Capabilities,
    Found,
    ListedSecret,
    ReadResult,
    SecretBackend,
    SecretWrite,
)
from keyrefs.domain.coordinates import Coordinate, ManagedCoordinate, parse_managed
from keyrefs.errors import InvalidCoordinate
from keyrefs.secret_value import SecretValue
from keyrefs.store.types import utc_now

FailureHook = Callable[[str, str], None]


class MemoryConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = "memory"


class MemoryBackend:
    """Keeps secrets in a dict; `fail_with` runs before every operation."""

    capabilities = Capabilities(batch_read=True)

    def __init__(self) -> None:
        self.objects: dict[str, tuple[str, datetime]] = {}
        self.calls: list[tuple[str, str]] = []
        self.fail_with: FailureHook | None = None
        self._lock = threading.Lock()

    def _before(self, operation: str, name: str) -> None:
        with self._lock:
            self.calls.append((operation, name))
        if self.fail_with is not None:
            self.fail_with(operation, name)

    def write(self, request: SecretWrite) -> None:
        name = request.coordinate.render()
        self._before("write", name)
        with self._lock:
            self.objects[name] = (request.value.reveal(), utc_now())

    def read(self, coordinate: Coordinate) -> ReadResult:
        name = coordinate.render()
        self._before("read", name)
        with self._lock:
            stored = self.objects.get(name)
        if stored is None:
            return Absent()
        return Found(SecretValue(stored[0]))

    def read_many(
        self, coordinates: Sequence[Coordinate]
    ) -> dict[Coordinate, ReadResult]:
        return {coordinate: self.read(coordinate) for coordinate in coordinates}

    def delete(self, coordinate: ManagedCoordinate) -> None:
        name = coordinate.render()
        self._before("delete", name)
        with self._lock:
            self.objects.pop(name, None)

    def list_managed(self, prefix: str) -> Iterator[ListedSecret]:
        self._before("list", prefix)
        with self._lock:
            items = [
                (n, c) for n, (_, c) in self.objects.items() if n.startswith(prefix)
            ]
        for name, created_at in items:
            try:
                yield ListedSecret(parse_managed(name, prefix), created_at)
            except InvalidCoordinate:
                continue

    def check_connection(self) -> None:
        self._before("check", "")

    def close(self) -> None:
        pass


class MemoryBackendFactory:
    """Hands out one shared MemoryBackend per config name, so tests can inspect it."""

    storage_type: ClassVar[str] = "memory"
    config_model: ClassVar[type[BaseModel]] = MemoryConfig
    instances: ClassVar[dict[str, MemoryBackend]] = {}

    def create(self, config: BaseModel, context: BackendContext) -> SecretBackend:
        assert isinstance(config, MemoryConfig)
        return self.instances.setdefault(config.name, MemoryBackend())
