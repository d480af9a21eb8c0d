"""Reading secret values for hydration: cache, single flight, batches per storage.

`SecretReader.read` takes the (storage, coordinate) pairs of any number of
configs and returns a result per pair:

1. values in the cache are returned at once;
2. pairs that another thread is reading already are joined, not read again;
3. the rest are grouped by storage and read concurrently on the executor,
   in one `read_many` per storage where the backend has batch reads and one
   call per coordinate where it does not.

A failing storage fails only its own pairs: the result is then the keyrefs
error instead of a `ReadResult`.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Collection
from concurrent.futures import Executor, Future

from keyrefs.backends.base import Absent, Found, ReadResult, SecretBackend
from keyrefs.domain.coordinates import Coordinate
from keyrefs.errors import KeyrefsError
from keyrefs.ids import SecretStorageId
from keyrefs.service.backend_pool import BackendPool
from keyrefs.service.cache import SecretCache
from keyrefs.service.single_flight import SingleFlight

logger = logging.getLogger(__name__)

ReadKey = tuple[SecretStorageId, Coordinate]
ReadOutcome = ReadResult | KeyrefsError


class SecretReader:
    def __init__(
        self, pool: BackendPool, executor: Executor, cache: SecretCache | None = None
    ) -> None:
        self._pool = pool
        self._executor = executor
        self._cache = cache
        self._flights: SingleFlight[ReadKey, ReadResult] = SingleFlight()

    def read(self, keys: Collection[ReadKey]) -> dict[ReadKey, ReadOutcome]:
        """Read every key once; errors other than keyrefs errors are raised."""
        outcomes: dict[ReadKey, ReadOutcome] = {}
        misses = self._read_cached(set(keys), outcomes)
        # Taken before the reads start, so that an invalidation during the
        # reads keeps their values out of the cache.
        generation = self._cache.generation if self._cache is not None else 0
        led, joined = self._flights.claim(sorted(misses, key=_sort_key))
        self._start_reads(list(led), generation)
        for key, future in {**led, **joined}.items():
            try:
                outcomes[key] = future.result()
            except KeyrefsError as exc:
                outcomes[key] = exc
        return outcomes

    def _read_cached(
        self, keys: set[ReadKey], outcomes: dict[ReadKey, ReadOutcome]
    ) -> set[ReadKey]:
        if self._cache is None:
            return keys
        misses = set()
        for key in keys:
            value = self._cache.get(_cache_key(key))
            if value is None:
                misses.add(key)
            else:
                outcomes[key] = Found(value)
        self._pool.metrics.count_cache(len(keys) - len(misses), len(misses))
        return misses

    def _start_reads(self, led: list[ReadKey], generation: int) -> None:
        by_storage: dict[SecretStorageId, list[Coordinate]] = defaultdict(list)
        for storage_id, coordinate in led:
            by_storage[storage_id].append(coordinate)
        for storage_id, coordinates in by_storage.items():
            try:
                backend = self._pool.get(storage_id)
            except BaseException as exc:
                self._fail(storage_id, coordinates, exc)
                continue
            for chunk in _read_chunks(backend, coordinates):
                task: Future[None] = self._executor.submit(
                    self._read_chunk, storage_id, backend, chunk, generation
                )
                task.add_done_callback(_log_unexpected)

    def _read_chunk(
        self,
        storage_id: SecretStorageId,
        backend: SecretBackend,
        chunk: list[Coordinate],
        generation: int,
    ) -> None:
        try:
            results = backend.read_many(chunk)
        except BaseException as exc:
            self._fail(storage_id, chunk, exc)
            return
        for coordinate in chunk:
            result = results.get(coordinate, Absent())
            if self._cache is not None and isinstance(result, Found):
                self._cache.put(
                    _cache_key((storage_id, coordinate)), result.value, generation
                )
            self._flights.resolve((storage_id, coordinate), result)

    def _fail(
        self,
        storage_id: SecretStorageId,
        coordinates: list[Coordinate],
        error: BaseException,
    ) -> None:
        for coordinate in coordinates:
            self._flights.fail((storage_id, coordinate), error)


def _read_chunks(
    backend: SecretBackend, coordinates: list[Coordinate]
) -> list[list[Coordinate]]:
    """Split into one chunk for a batch-reading backend, else one per coordinate."""
    if backend.capabilities.batch_read:
        return [coordinates]
    return [[coordinate] for coordinate in coordinates]


def _cache_key(key: ReadKey) -> tuple[SecretStorageId, str]:
    return key[0], key[1].render()


def _sort_key(key: ReadKey) -> tuple[str, str]:
    return str(key[0]), key[1].render()


def _log_unexpected(task: Future[None]) -> None:
    # `_read_chunk` hands every error to the waiting callers, so this only
    # fires on a bug inside it.
    error = task.exception()
    if error is not None:
        logger.error("secret read task failed: %s", type(error).__name__)
