"""A bounded in-process cache of secret values read during hydration.

Entries are keyed by storage id and rendered coordinate, live for `ttl`
seconds and are evicted least recently used first once the cache holds more
than `max_entries` entries or `max_bytes` bytes of values. Values stay
`SecretValue`, so no repr or log line shows them.

keyrefs' own writes and deletes call `invalidate` for their coordinates. An
invalidation also raises the cache's generation, and `put` drops a value read
under an older generation: a read that started before a delete therefore
cannot put the deleted value back. Changes made outside keyrefs, for example
to an external secret, show up after at most `ttl` seconds.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from keyrefs.ids import SecretStorageId
from keyrefs.secret_value import SecretValue
from keyrefs.settings import Settings

CacheKey = tuple[SecretStorageId, str]

DEFAULT_MAX_ENTRIES = 10_000
DEFAULT_MAX_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class _Entry:
    value: SecretValue
    expires_at: float
    size: int


class SecretCache:
    def __init__(
        self,
        ttl: float,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        max_bytes: int = DEFAULT_MAX_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl <= 0:
            raise ValueError(f"ttl must be positive, got {ttl}")
        self.ttl = ttl
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._clock = clock
        self._entries: OrderedDict[CacheKey, _Entry] = OrderedDict()
        self._bytes = 0
        self._generation = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"SecretCache(ttl={self.ttl}, entries={len(self._entries)}, "
            f"bytes={self._bytes})"
        )

    @property
    def generation(self) -> int:
        """Counter that each invalidation raises; pass it to `put`."""
        with self._lock:
            return self._generation

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    @property
    def size_bytes(self) -> int:
        with self._lock:
            return self._bytes

    def get(self, key: CacheKey) -> SecretValue | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry.expires_at <= self._clock():
                self._remove(key)
                return None
            self._entries.move_to_end(key)
            return entry.value

    def put(self, key: CacheKey, value: SecretValue, generation: int) -> bool:
        """Store `value` unless an invalidation happened since `generation`.

        A value larger than `max_bytes` is not stored. Returns whether it was.
        """
        size = value.encoded_size()
        with self._lock:
            if generation != self._generation or size > self.max_bytes:
                return False
            if key in self._entries:
                self._remove(key)
            self._entries[key] = _Entry(value, self._clock() + self.ttl, size)
            self._bytes += size
            self._evict()
            return True

    def invalidate(self, keys: Iterable[CacheKey]) -> None:
        with self._lock:
            self._generation += 1
            for key in keys:
                if key in self._entries:
                    self._remove(key)

    def clear(self) -> None:
        with self._lock:
            self._generation += 1
            self._entries.clear()
            self._bytes = 0

    def _evict(self) -> None:
        while self._entries and (
            len(self._entries) > self.max_entries or self._bytes > self.max_bytes
        ):
            oldest = next(iter(self._entries))
            self._remove(oldest)

    def _remove(self, key: CacheKey) -> None:
        entry = self._entries.pop(key)
        self._bytes -= entry.size


def cache_from_settings(settings: Settings) -> SecretCache | None:
    """Build the cache that `KEYREFS_CACHE_TTL` asks for, or None when it is 0."""
    if settings.cache_ttl <= 0:
        return None
    return SecretCache(
        settings.cache_ttl, settings.cache_max_entries, settings.cache_max_bytes
    )
