"""Prometheus metrics of the HTTP service, in a registry of each app's own.

Labels hold route templates (`/v1/actors/{actor_id}/config`), methods,
statuses and error codes, never an id from a path or a value from a body.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

UNMATCHED_ROUTE = "unmatched"


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "keyrefs_http_requests",
            "HTTP requests by route template, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.hydrations = Counter(
            "keyrefs_hydrations",
            "Hydration requests by result: ok or the error code.",
            ["result"],
            registry=self.registry,
        )
        self.errors = Counter(
            "keyrefs_errors",
            "Error responses by error code.",
            ["code"],
            registry=self.registry,
        )

    def count_request(self, route: str, method: str, status: int) -> None:
        self.requests.labels(route, method, str(status)).inc()

    def count_hydration(self, result: str) -> None:
        self.hydrations.labels(result).inc()

    def count_error(self, code: str) -> None:
        self.errors.labels(code).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
