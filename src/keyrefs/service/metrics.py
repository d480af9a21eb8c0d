"""Prometheus metrics of the service layer: backend requests, throttles, cache.

Labels hold storage types, operation names and outcomes, never a coordinate,
an id or a value. Each service has a registry of its own, so that several
services in one process (tests, tools) do not collide. The HTTP app adds these
collectors to its registry with `register_on`, so they appear at /metrics.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, generate_latest


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.backend_requests = Counter(
            "keyrefs_backend_requests",
            "Requests sent to secret backends, by storage type and operation.",
            ["storage_type", "operation"],
            registry=self.registry,
        )
        self.backend_throttles = Counter(
            "keyrefs_backend_throttles",
            "Backend calls that ended throttled after the backend's own retries.",
            ["storage_type", "operation"],
            registry=self.registry,
        )
        self.limiter_waits = Counter(
            "keyrefs_limiter_wait_seconds",
            "Seconds callers waited for the request limiter, by storage type.",
            ["storage_type"],
            registry=self.registry,
        )
        self.cache_lookups = Counter(
            "keyrefs_cache_lookups",
            "Lookups in the hydration cache, by result: hit or miss.",
            ["result"],
            registry=self.registry,
        )

    def count_request(self, storage_type: str, operation: str, amount: int) -> None:
        if amount > 0:
            self.backend_requests.labels(storage_type, operation).inc(amount)

    def count_throttle(self, storage_type: str, operation: str) -> None:
        self.backend_throttles.labels(storage_type, operation).inc()

    def count_wait(self, storage_type: str, seconds: float) -> None:
        if seconds > 0:
            self.limiter_waits.labels(storage_type).inc(seconds)

    def count_cache(self, hits: int, misses: int) -> None:
        if hits:
            self.cache_lookups.labels("hit").inc(hits)
        if misses:
            self.cache_lookups.labels("miss").inc(misses)

    def register_on(self, registry: CollectorRegistry) -> None:
        """Add these collectors to another registry, such as the HTTP app's."""
        for collector in (
            self.backend_requests,
            self.backend_throttles,
            self.limiter_waits,
            self.cache_lookups,
        ):
            registry.register(collector)

    def render(self) -> bytes:
        return generate_latest(self.registry)
