"""A backend wrapper that rate-limits, counts and invalidates around every call.

The backend pool wraps each backend it builds in a `GuardedBackend`, so every
caller (hydration, processing, cleanup, garbage collection) goes through it:

- each call first takes tokens from the storage's bucket, one per request the
  call makes (a batch read of 50 secrets on AWS is 3 requests);
- a call that still ends `Throttled` after the backend's own retries pauses
  the bucket for a jittered backoff and is raised, not retried again here;
- writes and deletes invalidate the cached value of their coordinate, whether
  they succeed or fail, since a failed call may have reached the service.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

from keyrefs.backends.base import (
    Capabilities,
    ListedSecret,
    ReadResult,
    SecretBackend,
    SecretWrite,
)
from keyrefs.domain.coordinates import Coordinate, ManagedCoordinate
from keyrefs.errors import Throttled
from keyrefs.ids import SecretStorageId
from keyrefs.service.cache import SecretCache
from keyrefs.service.limiter import TokenBucket, batch_request_count
from keyrefs.service.metrics import ServiceMetrics

T = TypeVar("T")

# Ids per batch read request of the services that have one. AWS
# BatchGetSecretValue takes at most 20 ids when they are listed by name,
# as the aws backend's MAX_BATCH_IDS states.
BATCH_SIZES = {"aws_secrets_manager": 20}


class GuardedBackend:
    """Wraps one storage's backend; `inner` is the backend itself."""

    def __init__(
        self,
        inner: SecretBackend,
        storage_id: SecretStorageId,
        storage_type: str,
        metrics: ServiceMetrics,
        bucket: TokenBucket | None = None,
        batch_bucket: TokenBucket | None = None,
        cache: SecretCache | None = None,
    ) -> None:
        self.inner = inner
        self.storage_id = storage_id
        self.storage_type = storage_type
        self.capabilities: Capabilities = inner.capabilities
        self._metrics = metrics
        self._bucket = bucket
        self._batch_bucket = batch_bucket
        self._cache = cache

    def __repr__(self) -> str:
        return f"GuardedBackend({self.inner!r})"

    def write(self, request: SecretWrite) -> None:
        try:
            self._guarded("write", 1, lambda: self.inner.write(request))
        finally:
            self._invalidate(request.coordinate)

    def read(self, coordinate: Coordinate) -> ReadResult:
        return self._guarded("read", 1, lambda: self.inner.read(coordinate))

    def read_many(
        self, coordinates: Sequence[Coordinate]
    ) -> dict[Coordinate, ReadResult]:
        if not coordinates:
            return {}
        if not self.capabilities.batch_read:
            return self._guarded(
                "read", len(coordinates), lambda: self.inner.read_many(coordinates)
            )
        requests = batch_request_count(
            len(set(coordinates)), BATCH_SIZES.get(self.storage_type)
        )
        if self._batch_bucket is not None:
            waited = self._batch_bucket.acquire(requests)
            self._metrics.count_wait(self.storage_type, waited)
        return self._guarded(
            "batch_read", requests, lambda: self.inner.read_many(coordinates)
        )

    def delete(self, coordinate: ManagedCoordinate) -> None:
        try:
            self._guarded("delete", 1, lambda: self.inner.delete(coordinate))
        finally:
            self._invalidate(coordinate)

    def list_managed(self, prefix: str) -> Iterator[ListedSecret]:
        # One token for the first page; later pages are not limited.
        self._take("list", 1)
        return self.inner.list_managed(prefix)

    def check_connection(self) -> None:
        self._guarded("check_connection", 1, self.inner.check_connection)

    def close(self) -> None:
        self.inner.close()

    def _guarded(self, operation: str, requests: int, call: Callable[[], T]) -> T:
        self._take(operation, requests)
        try:
            result = call()
        except Throttled:
            self._metrics.count_throttle(self.storage_type, operation)
            if self._bucket is not None:
                self._bucket.record_throttle()
            raise
        if self._bucket is not None:
            self._bucket.record_success()
        return result

    def _take(self, operation: str, requests: int) -> None:
        if self._bucket is not None:
            waited = self._bucket.acquire(requests)
            self._metrics.count_wait(self.storage_type, waited)
        self._metrics.count_request(self.storage_type, operation, requests)

    def _invalidate(self, coordinate: Coordinate) -> None:
        if self._cache is not None:
            self._cache.invalidate([(self.storage_id, coordinate.render())])


def unwrap(backend: SecretBackend) -> SecretBackend:
    """Return the backend inside a `GuardedBackend`, or `backend` itself."""
    return backend.inner if isinstance(backend, GuardedBackend) else backend
