"""Single flight: concurrent requests for one key share one in-flight fetch."""

from __future__ import annotations

import threading
from collections.abc import Hashable, Iterable
from concurrent.futures import Future
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SingleFlight(Generic[K, V]):
    """Hands out one future per key while a fetch of that key is in flight.

    `claim` returns the keys the caller must fetch (it leads them) and the
    futures of keys that another caller is fetching already. A leader must
    call `resolve` or `fail` for every key it leads, or the joiners wait
    forever.
    """

    def __init__(self) -> None:
        self._in_flight: dict[K, Future[V]] = {}
        self._lock = threading.Lock()

    def claim(self, keys: Iterable[K]) -> tuple[dict[K, Future[V]], dict[K, Future[V]]]:
        led: dict[K, Future[V]] = {}
        joined: dict[K, Future[V]] = {}
        with self._lock:
            for key in keys:
                existing = self._in_flight.get(key)
                if existing is not None:
                    joined[key] = existing
                    continue
                future: Future[V] = Future()
                self._in_flight[key] = future
                led[key] = future
        return led, joined

    def resolve(self, key: K, value: V) -> None:
        self._pop(key).set_result(value)

    def fail(self, key: K, error: BaseException) -> None:
        self._pop(key).set_exception(error)

    def in_flight(self) -> int:
        with self._lock:
            return len(self._in_flight)

    def _pop(self, key: K) -> Future[V]:
        # Removed before the result is set, so a later claim starts a new fetch.
        with self._lock:
            return self._in_flight.pop(key)
