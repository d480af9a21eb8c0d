"""Costs of the read and write paths: backend calls, SQL statements, single flight.

No test measures time. Each counts requests, statements or calls, so a
regression shows up as a different count on any machine.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from typing import Any

import pytest
from sqlalchemy import event

from keyrefs.backends.base import Found, ReadResult
from keyrefs.backends.memory import MemoryBackend
from keyrefs.domain.coordinates import Coordinate, parse_managed
from keyrefs.errors import ForeignReference, InvalidInput, ReferenceNotFound
from keyrefs.ids import DEFAULT_STORAGE_ID
from keyrefs.service import KeyrefsService
from keyrefs.service.guarded_backend import unwrap
from keyrefs.service.types import ActorScope
from keyrefs.settings import Settings
from tests.conftest import new_scope
from tests.fixtures.aws import REGION, TEST_KEY
from tests.helpers import SECRET


def spec_with(count: int) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {f"field_{i}": SECRET for i in range(count)},
    }


def config_with(count: int, tag: str) -> dict[str, Any]:
    return {f"field_{i}": f"{tag}-{i}" for i in range(count)}


class StatementLog:
    """Every SQL statement an engine sends, via `before_cursor_execute`."""

    def __init__(self, service: KeyrefsService) -> None:
        self.statements: list[str] = []
        event.listen(service.engine, "before_cursor_execute", self._record)

    def _record(self, *args: Any) -> None:
        self.statements.append(args[2])

    def count(self, call: Callable[[], object]) -> int:
        self.statements.clear()
        call()
        return len(self.statements)

    def selects(self) -> list[str]:
        return [
            statement
            for statement in self.statements
            if statement.lstrip().upper().startswith("SELECT")
        ]


@pytest.fixture
def memory_service(service: KeyrefsService) -> Iterator[KeyrefsService]:
    """The service with an in-memory default backend, so SQL counts keyrefs' own."""
    service.backends.put(DEFAULT_STORAGE_ID, MemoryBackend(), "memory")
    yield service


# SQL statements ----------------------------------------------------------


def process_cost(
    service: KeyrefsService, log: StatementLog, count: int
) -> tuple[int, int]:
    """Return the statements of creating, then updating, a config of `count` secrets."""
    scope = new_scope()
    spec = spec_with(count)
    create = log.count(lambda: service.process(scope, spec, config_with(count, "a")))
    stored: dict[str, Any] = {}

    def update() -> None:
        stored.update(service.process(scope, spec, config_with(count, "b")))

    change = log.count(update)
    assert service.hydrate(stored, scope.actor_id) == config_with(count, "b")
    return create, change


def test_process_statement_count_is_constant(memory_service: KeyrefsService) -> None:
    log = StatementLog(memory_service)
    costs = {count: process_cost(memory_service, log, count) for count in (1, 20, 100)}

    creates = {count: cost[0] for count, cost in costs.items()}
    updates = {count: cost[1] for count, cost in costs.items()}
    assert creates[1] == creates[20] == creates[100], creates
    assert updates[1] == updates[20] == updates[100], updates


def test_hydrate_many_resolves_markers_in_one_query(
    memory_service: KeyrefsService,
) -> None:
    spec = spec_with(3)
    items = []
    for index in range(100):
        scope = new_scope()
        stored = memory_service.process(scope, spec, config_with(3, f"c{index}"))
        items.append((stored, scope.actor_id))
    log = StatementLog(memory_service)

    results = memory_service.hydrate_many(items)

    queries = log.selects()
    assert len(queries) == 1, queries
    assert "FROM secret_reference" in queries[0]
    assert "JOIN secret_config" in queries[0], "configs are joined into that query"
    assert [r.error for r in results] == [None] * 100
    assert [r.config for r in results] == [config_with(3, f"c{i}") for i in range(100)]


def test_hydrate_many_fails_only_the_bad_item(
    memory_service: KeyrefsService,
) -> None:
    spec = spec_with(1)
    owner, other = new_scope(), new_scope()
    stored = memory_service.process(owner, spec, config_with(1, "x"))

    results = memory_service.hydrate_many(
        [
            (stored, owner.actor_id),
            (stored, other.actor_id),
            ("not an object", owner.actor_id),
        ]
    )

    assert results[0].config == config_with(1, "x")
    assert isinstance(results[1].error, ForeignReference)
    assert results[1].config is None
    assert isinstance(results[2].error, InvalidInput)


# AWS batch reads ---------------------------------------------------------


@pytest.fixture
def aws_service(
    make_settings: Callable[..., Settings], aws_environment: str
) -> Iterator[KeyrefsService]:
    settings = make_settings(
        secret_storage="aws",
        aws_region=REGION,
        aws_endpoint_url=aws_environment,
        aws_access_key_id=TEST_KEY,
        aws_secret_access_key=TEST_KEY,
    )
    keyrefs = KeyrefsService(settings)
    keyrefs.init()
    try:
        yield keyrefs
    finally:
        keyrefs.close()


def test_aws_hydration_of_50_secrets_makes_3_batch_calls(
    aws_service: KeyrefsService, scope: ActorScope
) -> None:
    stored = aws_service.process(scope, spec_with(50), config_with(50, "aws"))
    client = unwrap(aws_service.backends.get(DEFAULT_STORAGE_ID))._client  # type: ignore[attr-defined]
    operations: list[str] = []
    client.meta.events.register(
        "before-call.secrets-manager",
        lambda model, **_: operations.append(model.name),
    )

    full = aws_service.hydrate(stored, scope.actor_id)

    assert full == config_with(50, "aws")
    assert operations == ["BatchGetSecretValue"] * 3
    counted = aws_service.metrics.backend_requests.labels(
        "aws_secrets_manager", "batch_read"
    )._value.get()
    assert counted == 3


# Single flight -----------------------------------------------------------


class BlockingBackend(MemoryBackend):
    """Counts `read_many` calls and blocks each one until `release` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.read_calls = 0
        self.started = threading.Event()
        self.release = threading.Event()

    def read_many(
        self, coordinates: Sequence[Coordinate]
    ) -> dict[Coordinate, ReadResult]:
        self.read_calls += 1
        self.started.set()
        assert self.release.wait(30), "the test never released the read"
        return super().read_many(coordinates)


def test_concurrent_identical_reads_are_fetched_once(
    service: KeyrefsService, scope: ActorScope
) -> None:
    backend = BlockingBackend()
    service.backends.put(DEFAULT_STORAGE_ID, backend, "memory")
    stored = service.process(scope, spec_with(5), config_with(5, "sf"))
    flights = service._reader._flights
    joined = threading.Event()
    claim = flights.claim

    def spying_claim(keys: Any) -> tuple[dict[Any, Future[Any]], dict[Any, Any]]:
        led, others = claim(keys)
        if others:
            joined.set()
        return led, others

    flights.claim = spying_claim  # type: ignore[method-assign]
    results: list[dict[str, Any]] = []

    def hydrate() -> None:
        results.append(service.hydrate(stored, scope.actor_id))

    first = threading.Thread(target=hydrate)
    first.start()
    assert backend.started.wait(30)
    second = threading.Thread(target=hydrate)
    second.start()
    assert joined.wait(30), "the second hydration did not join the first read"
    backend.release.set()
    first.join(30)
    second.join(30)

    assert backend.read_calls == 1
    assert results == [config_with(5, "sf")] * 2
    assert flights.in_flight() == 0


# Cache -------------------------------------------------------------------


@pytest.fixture
def cached_service(make_settings: Callable[..., Settings]) -> Iterator[KeyrefsService]:
    keyrefs = KeyrefsService(make_settings(cache_ttl="60"))
    keyrefs.init()
    keyrefs.backends.put(DEFAULT_STORAGE_ID, MemoryBackend(), "memory")
    try:
        yield keyrefs
    finally:
        keyrefs.close()


def memory_reads(service: KeyrefsService) -> int:
    backend = unwrap(service.backends.get(DEFAULT_STORAGE_ID))
    assert isinstance(backend, MemoryBackend)
    return sum(operation == "read" for operation, _ in backend.calls)


def cache_count(service: KeyrefsService, result: str) -> float:
    value: float = service.metrics.cache_lookups.labels(result)._value.get()
    return value


def test_cache_serves_repeated_hydration(
    cached_service: KeyrefsService, scope: ActorScope
) -> None:
    stored = cached_service.process(scope, spec_with(4), config_with(4, "c"))

    first = cached_service.hydrate(stored, scope.actor_id)
    reads_after_first = memory_reads(cached_service)
    second = cached_service.hydrate(stored, scope.actor_id)

    assert first == second == config_with(4, "c")
    assert reads_after_first == 4
    assert memory_reads(cached_service) == 4, "the second hydration read nothing"
    assert cache_count(cached_service, "miss") == 4
    assert cache_count(cached_service, "hit") == 4


def test_cache_is_off_by_default(
    memory_service: KeyrefsService, scope: ActorScope
) -> None:
    stored = memory_service.process(scope, spec_with(2), config_with(2, "c"))
    memory_service.hydrate(stored, scope.actor_id)
    memory_service.hydrate(stored, scope.actor_id)

    assert memory_service.cache is None
    assert memory_reads(memory_service) == 4


def test_cache_drops_values_of_a_new_config(
    cached_service: KeyrefsService, scope: ActorScope
) -> None:
    spec = spec_with(2)
    first = cached_service.process(scope, spec, config_with(2, "old"))
    cached_service.hydrate(first, scope.actor_id)
    assert cached_service.cache is not None
    assert len(cached_service.cache) == 2

    second = cached_service.process(scope, spec, config_with(2, "new"))

    assert len(cached_service.cache) == 0, "cleanup deleted and invalidated v1"
    assert cached_service.hydrate(second, scope.actor_id) == config_with(2, "new")


def test_cache_forgets_deleted_actor(
    cached_service: KeyrefsService, scope: ActorScope
) -> None:
    stored = cached_service.process(scope, spec_with(3), config_with(3, "d"))
    cached_service.hydrate(stored, scope.actor_id)
    assert cached_service.cache is not None
    assert len(cached_service.cache) == 3

    cached_service.delete_actor(scope.actor_id)

    assert len(cached_service.cache) == 0
    with pytest.raises(ReferenceNotFound):
        cached_service.hydrate(stored, scope.actor_id)


def test_backend_delete_invalidates_cached_value(
    cached_service: KeyrefsService, scope: ActorScope
) -> None:
    stored = cached_service.process(scope, spec_with(1), config_with(1, "gc"))
    cached_service.hydrate(stored, scope.actor_id)
    assert cached_service.cache is not None
    assert len(cached_service.cache) == 1
    backend = cached_service.backends.get(DEFAULT_STORAGE_ID)
    coordinate = parse_managed(stored["field_0"]["_secret"])

    # Garbage collection and cleanup delete through the pool's backend, too.
    backend.delete(coordinate)

    assert len(cached_service.cache) == 0
    assert not isinstance(backend.read(coordinate), Found)
