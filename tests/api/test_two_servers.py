"""Two `keyrefs serve` processes on one PostgreSQL schema, updating the same actors."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from keyrefs.service import KeyrefsService
from keyrefs.service.tokens import Role, create_token
from keyrefs.settings import Settings
from keyrefs.store.models import SecretReference
from tests.api.conftest import actor_body
from tests.conftest import TEST_MASTER_KEY, make_postgres_schema_url, postgres_url

ACTORS = 4
UPDATES_PER_ACTOR = 8
START_TIMEOUT_SECONDS = 30


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def two_servers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[list[str], KeyrefsService]]:
    base = postgres_url()
    assert base is not None, "set KEYREFS_TEST_POSTGRES_URL to run this test"
    url, drop = make_postgres_schema_url(base)
    variables = {
        "KEYREFS_DATABASE_URL": url,
        "KEYREFS_MASTER_KEY": TEST_MASTER_KEY,
        "KEYREFS_HOME": str(tmp_path / "home"),
    }
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    service = KeyrefsService(Settings())
    service.init()
    environment = {**os.environ, **variables}
    processes: list[subprocess.Popen[bytes]] = []
    addresses = []
    try:
        for index in range(2):
            port = free_port()
            log = (tmp_path / f"server-{index}.log").open("wb")
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "keyrefs.cli", "serve", "--port", str(port)],
                    env=environment,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
            addresses.append(f"http://127.0.0.1:{port}")
        for address in addresses:
            wait_until_healthy(address)
        yield addresses, service
    finally:
        for index in range(2):
            print(
                (tmp_path / f"server-{index}.log").read_text(errors="replace")[-3000:]
            )
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=10)
        service.close()
        drop()


def wait_until_healthy(address: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{address}/healthz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"server at {address} did not start")


@pytest.mark.postgres
def test_concurrent_updates_end_consistent(
    two_servers: tuple[list[str], KeyrefsService],
) -> None:
    addresses, service = two_servers
    control = create_token(service.session, Role.CONTROL_PLANE, None, "two servers")
    data = create_token(service.session, Role.DATA_PLANE, None, "two servers")
    control_headers = {"Authorization": f"Bearer {control.secret}"}
    data_headers = {"Authorization": f"Bearer {data.secret}"}
    org, workspace = uuid.uuid4(), uuid.uuid4()
    actors = [uuid.uuid4() for _ in range(ACTORS)]

    def update(job: tuple[int, uuid.UUID, int]) -> tuple[int, str]:
        index, actor, version = job
        response = httpx.put(
            f"{addresses[index % 2]}/v1/actors/{actor}/config",
            json=actor_body(org, workspace, f"pw-{actor}-{version}"),
            headers=control_headers,
            timeout=30,
        )
        return response.status_code, response.text

    jobs = [
        (index, actor, version)
        for version in range(UPDATES_PER_ACTOR)
        for index, actor in enumerate(actors)
    ]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(update, [(i + v, a, v) for i, a, v in jobs]))
    failures = [text for status, text in results if status != 200]
    assert failures == []

    for number, actor in enumerate(actors):
        final = httpx.put(
            f"{addresses[number % 2]}/v1/actors/{actor}/config",
            json=actor_body(org, workspace, f"final-{actor}"),
            headers=control_headers,
            timeout=30,
        )
        assert final.status_code == 200, final.text
        stored = final.json()["config"]
        for address in addresses:
            hydrated = httpx.post(
                f"{address}/v1/actors/{actor}/config/hydrate",
                json={"config": stored},
                headers=data_headers,
                timeout=30,
            )
            assert hydrated.status_code == 200, hydrated.text
            assert hydrated.json()["config"]["password"] == f"final-{actor}"
        with service.session() as session:
            references = list(
                session.scalars(
                    select(SecretReference).where(SecretReference.scope_id == actor)
                )
            )
        assert [r.hydration_path for r in references] == ["$.password"]
        assert str(references[0].id) == stored["password"]["_secret_reference_id"]
