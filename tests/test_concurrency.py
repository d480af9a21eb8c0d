"""Concurrent writers on PostgreSQL end with one consistent set of references."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from keyrefs.secret_value import MASK
from keyrefs.service import KeyrefsService
from keyrefs.service.types import ActorScope
from keyrefs.settings import Settings
from tests.conftest import postgres_url
from tests.helpers import SECRET, config_coordinates, local_coordinates

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(
        postgres_url() is None, reason="KEYREFS_TEST_POSTGRES_URL is not set"
    ),
]

SPEC = {
    "type": "object",
    "properties": {"password": SECRET, "token": SECRET, "name": {"type": "string"}},
}
ROUNDS = 8


@pytest.fixture
def database_url(tmp_path: Any) -> Any:
    from tests.conftest import make_postgres_schema_url

    base = postgres_url()
    assert base is not None
    url, drop = make_postgres_schema_url(base)
    yield url
    drop()


def run_together(*workers: Callable[[], None]) -> list[BaseException]:
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(workers))

    def wrap(worker: Callable[[], None]) -> None:
        barrier.wait()
        try:
            worker()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=wrap, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return errors


def test_two_writers_on_one_actor_end_consistent(
    make_settings: Callable[..., Settings], scope: ActorScope
) -> None:
    settings = make_settings()
    first, second = KeyrefsService(settings), KeyrefsService(settings)
    first.init()
    results: dict[str, dict[str, Any]] = {}
    try:
        first.process(scope, SPEC, {"password": "p0", "token": "t0"})

        def writer(service: KeyrefsService, label: str) -> Callable[[], None]:
            def work() -> None:
                for round_number in range(ROUNDS):
                    config = {
                        "password": f"{label}-{round_number}",
                        "token": MASK,
                        "name": label,
                    }
                    results[label] = service.process(scope, SPEC, config)

            return work

        errors = run_together(writer(first, "a"), writer(second, "b"))
        assert errors == []

        references = first.references_of_actor(scope.actor_id)
        assert sorted(r.hydration_path or "" for r in references) == [
            "$.password",
            "$.token",
        ]
        for stored in results.values():
            full = first.hydrate(stored, scope.actor_id)
            assert full["token"] == "t0"
            assert full["password"] in {f"a-{ROUNDS - 1}", f"b-{ROUNDS - 1}"}
        referenced = {r.external_coordinate for r in references}
        # Only the referenced versions keep rows; older ones were deleted.
        assert config_coordinates(first) == referenced
        assert referenced <= local_coordinates(first)
    finally:
        first.close()
        second.close()


def test_gc_racing_updates_deletes_nothing_referenced(
    make_settings: Callable[..., Settings], scope: ActorScope
) -> None:
    from datetime import timedelta

    from keyrefs.service.gc import GcOptions

    settings = make_settings()
    writer, collector = KeyrefsService(settings), KeyrefsService(settings)
    writer.init()
    stored: list[dict[str, Any]] = []
    try:
        stored.append(writer.process(scope, SPEC, {"password": "p0", "token": "t0"}))

        def update() -> None:
            for round_number in range(ROUNDS * 2):
                config = {"password": f"p{round_number}", "token": MASK}
                stored.append(writer.process(scope, SPEC, config))

        def collect() -> None:
            # Rows get no grace, so old versions race the writer; orphans keep a
            # short grace, which is what protects a writer between its backend
            # write and its commit.
            options = GcOptions(grace=timedelta(seconds=2))
            for _ in range(ROUNDS * 2):
                collector.collect_garbage(options)

        errors = run_together(update, collect)
        assert errors == []
        last = writer.hydrate(stored[-1], scope.actor_id)
        assert last == {"password": f"p{ROUNDS * 2 - 1}", "token": "t0"}
        for config in stored:
            assert writer.hydrate(config, scope.actor_id) == last
        referenced = {
            r.external_coordinate for r in writer.references_of_actor(scope.actor_id)
        }
        assert referenced <= local_coordinates(writer)
    finally:
        writer.close()
        collector.close()
