"""Cache bounds, the token bucket, throttle handling, leaks and `hydrate --input`."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from keyrefs.backends.memory import MemoryBackend
from keyrefs.domain.coordinates import ManagedCoordinate
from keyrefs.errors import Throttled
from keyrefs.ids import SecretStorageId
from keyrefs.secret_value import SecretValue
from keyrefs.service import KeyrefsService
from keyrefs.service.cache import SecretCache
from keyrefs.service.guarded_backend import GuardedBackend
from keyrefs.service.limiter import TokenBucket
from keyrefs.service.metrics import ServiceMetrics
from keyrefs.service.types import ActorScope
from keyrefs.settings import Settings
from tests.conftest import new_scope
from tests.helpers import SECRET
from tests.test_cli import Cli

CANARY = f"canary-{uuid.uuid4().hex}"
STORAGE = SecretStorageId(uuid.uuid4())


class FakeClock:
    """A monotonic clock that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def key(name: str) -> tuple[SecretStorageId, str]:
    return STORAGE, name


# Cache bounds ------------------------------------------------------------


def test_cache_evicts_least_recently_used_entry() -> None:
    cache = SecretCache(ttl=60, max_entries=2)
    generation = cache.generation
    cache.put(key("a"), SecretValue("1"), generation)
    cache.put(key("b"), SecretValue("2"), generation)
    assert cache.get(key("a")) == SecretValue("1")

    cache.put(key("c"), SecretValue("3"), generation)

    assert cache.get(key("b")) is None, "b was the least recently used"
    assert cache.get(key("a")) == SecretValue("1")
    assert cache.get(key("c")) == SecretValue("3")
    assert len(cache) == 2


def test_cache_stays_within_max_bytes() -> None:
    cache = SecretCache(ttl=60, max_bytes=10)
    generation = cache.generation
    cache.put(key("a"), SecretValue("x" * 6), generation)
    cache.put(key("b"), SecretValue("y" * 6), generation)

    assert cache.size_bytes == 6
    assert cache.get(key("a")) is None
    assert not cache.put(key("big"), SecretValue("z" * 11), generation)
    assert cache.get(key("big")) is None


def test_cache_entry_expires_after_ttl() -> None:
    clock = FakeClock()
    cache = SecretCache(ttl=5, clock=clock)
    cache.put(key("a"), SecretValue("1"), cache.generation)
    clock.now += 4.9
    assert cache.get(key("a")) == SecretValue("1")
    clock.now += 0.2
    assert cache.get(key("a")) is None
    assert len(cache) == 0


def test_cache_drops_value_read_before_invalidation() -> None:
    cache = SecretCache(ttl=60)
    generation = cache.generation
    cache.invalidate([key("a")])

    assert not cache.put(key("a"), SecretValue("stale"), generation)
    assert cache.get(key("a")) is None


def test_cache_repr_hides_values() -> None:
    cache = SecretCache(ttl=60)
    cache.put(key("a"), SecretValue(CANARY), cache.generation)
    assert CANARY not in repr(cache)


# Token bucket ------------------------------------------------------------


def test_bucket_allows_burst_then_paces() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=10, burst=3, clock=clock, sleep=clock.sleep)

    waits = [bucket.acquire() for _ in range(5)]

    assert waits[:3] == [0.0, 0.0, 0.0]
    assert waits[3] == pytest.approx(0.1)
    assert waits[4] == pytest.approx(0.1)
    assert clock.sleeps == pytest.approx([0.1, 0.1])


def test_bucket_refills_while_idle() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=10, burst=2, clock=clock, sleep=clock.sleep)
    bucket.acquire(2)
    clock.now += 10

    assert bucket.acquire(2) == 0.0, "the bucket refilled, but only to its burst"
    assert bucket.acquire() == pytest.approx(0.1)


def test_bucket_charges_batch_cost() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=4, burst=4, clock=clock, sleep=clock.sleep)
    assert bucket.acquire(4) == 0.0
    assert bucket.acquire(2) == pytest.approx(0.5)


def test_throttle_pauses_bucket_with_growing_jitter() -> None:
    clock = FakeClock()
    ranges: list[tuple[float, float]] = []

    def jitter(low: float, high: float) -> float:
        ranges.append((low, high))
        return high

    bucket = TokenBucket(
        rate=100, burst=100, clock=clock, sleep=clock.sleep, jitter=jitter
    )
    first = bucket.record_throttle()
    second = bucket.record_throttle()

    assert ranges == [(0.05, 0.1), (0.1, 0.2)]
    assert bucket.acquire() == pytest.approx(second)
    assert first < second
    bucket.record_success()
    bucket.record_throttle()
    assert ranges[-1] == (0.05, 0.1), "a success resets the backoff"


# Guarded backend ---------------------------------------------------------


def coordinate() -> ManagedCoordinate:
    return ManagedCoordinate("workspace", uuid.uuid4(), uuid.uuid4())


def test_guard_raises_throttle_once_and_pauses_bucket() -> None:
    inner = MemoryBackend()

    def throttle(operation: str, name: str) -> None:
        raise Throttled(f"{operation} of {name} throttled")

    inner.fail_with = throttle
    clock = FakeClock()
    bucket = TokenBucket(
        rate=100, clock=clock, sleep=clock.sleep, jitter=lambda lo, hi: hi
    )
    metrics = ServiceMetrics()
    guard = GuardedBackend(inner, STORAGE, "vault", metrics, bucket=bucket)

    with pytest.raises(Throttled):
        guard.read(coordinate())

    assert len(inner.calls) == 1, "the guard does not retry on top of the backend"
    assert metrics.backend_throttles.labels("vault", "read")._value.get() == 1
    assert bucket.acquire() == pytest.approx(0.1)


def test_guard_counts_one_request_per_aws_batch() -> None:
    metrics = ServiceMetrics()
    guard = GuardedBackend(MemoryBackend(), STORAGE, "aws_secrets_manager", metrics)

    guard.read_many([coordinate() for _ in range(50)])

    counted = metrics.backend_requests.labels("aws_secrets_manager", "batch_read")
    assert counted._value.get() == 3


def test_guard_paces_requests_through_bucket() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=2, burst=1, clock=clock, sleep=clock.sleep)
    guard = GuardedBackend(MemoryBackend(), STORAGE, "vault", ServiceMetrics(), bucket)

    for _ in range(3):
        guard.read(coordinate())

    assert clock.sleeps == pytest.approx([0.5, 0.5])


def test_settings_set_limiter_rates(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(vault_max_rps="7", aws_max_rps="0")
    keyrefs = KeyrefsService(settings)
    try:
        guard = keyrefs.backends.guard(MemoryBackend(), STORAGE, "vault")
        unlimited = keyrefs.backends.guard(
            MemoryBackend(), STORAGE, "aws_secrets_manager"
        )
    finally:
        keyrefs.close()
    assert guard._bucket is not None
    assert guard._bucket.rate == 7
    assert unlimited._bucket is None


# Leaks -------------------------------------------------------------------


def test_canary_stays_out_of_logs_and_metrics(
    make_settings: Callable[..., Settings],
    scope: ActorScope,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    keyrefs = KeyrefsService(make_settings(cache_ttl="60"))
    keyrefs.init()
    try:
        spec = {"type": "object", "properties": {"password": SECRET}}
        stored = keyrefs.process(scope, spec, {"password": CANARY})
        results = keyrefs.hydrate_many([(stored, scope.actor_id)] * 3)
        metrics_text = keyrefs.metrics.render().decode()
        cache_text = repr(keyrefs.cache)
    finally:
        keyrefs.close()

    assert [result.config for result in results] == [{"password": CANARY}] * 3
    assert "keyrefs_cache_lookups_total" in metrics_text
    assert CANARY not in metrics_text
    assert CANARY not in caplog.text
    assert CANARY not in cache_text


# CLI ---------------------------------------------------------------------


@pytest.fixture
def cli(tmp_path: Path, database_url: str) -> Cli:
    runner = Cli(tmp_path, database_url)
    assert runner.run("init").returncode == 0
    return runner


def test_hydrate_input_and_config_are_exclusive(cli: Cli) -> None:
    lines = cli.write("in.jsonl", {})
    config = cli.write("config.json", {})

    result = cli.run("hydrate", "--input", lines, "--config", config)

    assert result.returncode == 2
    assert "--input excludes --config" in result.stderr


def test_hydrate_input_prints_lines_in_order(cli: Cli) -> None:
    spec = cli.write("spec.json", {"type": "object", "properties": {"pw": SECRET}})
    scopes = [new_scope() for _ in range(3)]
    stored = []
    for index, scope in enumerate(scopes):
        config = cli.write(f"c{index}.json", {"pw": f"value-{index}"})
        result = cli.run(
            "process",
            "--spec", spec,
            "--config", config,
            "--actor-id", str(scope.actor_id),
            "--workspace-id", str(scope.workspace_id),
            "--organization-id", str(scope.organization_id),
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        stored.append(json.loads(result.stdout))
    requests = [
        {"actor_id": str(scopes[2].actor_id), "config": stored[2]},
        {"actor_id": str(scopes[0].actor_id), "config": stored[1]},
        "not a request",
        {"actor_id": str(scopes[0].actor_id), "config": stored[0]},
    ]
    path = cli.home / "in.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in requests) + "\n")

    result = cli.run("hydrate", "--input", str(path))

    output = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["line"] for line in output] == [1, 2, 3, 4]
    assert output[0]["config"] == {"pw": "value-2"}
    assert output[1]["error"]["code"] == "foreign_reference"
    assert output[2]["error"]["code"] == "invalid_input"
    assert output[3]["config"] == {"pw": "value-0"}
    assert result.returncode == 3, "the first failed line decides the exit code"
