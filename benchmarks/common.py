"""Shared parts of the benchmarks: servers on 127.0.0.1, services and timing."""

from __future__ import annotations

import base64
import os
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests
from tests.fixtures.vault import find_bao_binary, free_port_pair

from keyrefs.ids import ActorId, OrganizationId, WorkspaceId
from keyrefs.service import KeyrefsService
from keyrefs.service.types import ActorScope
from keyrefs.settings import Settings

ROOT_TOKEN = "root"
AWS_REGION = "us-east-1"
AWS_KEY = "testing"
SECRET_FIELD = {"type": "string", "airbyte_secret": True}


def new_scope() -> ActorScope:
    return ActorScope(
        ActorId(uuid.uuid4()), WorkspaceId(uuid.uuid4()), OrganizationId(uuid.uuid4())
    )


def spec_with(count: int) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {f"field_{i}": SECRET_FIELD for i in range(count)},
    }


def config_with(count: int, tag: str) -> dict[str, Any]:
    return {f"field_{i}": f"{tag}-{i}" for i in range(count)}


def median_seconds(call: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    """Return the median wall time of `repeats` calls after `warmup` calls."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@contextmanager
def openbao_server() -> Iterator[int]:
    """Start an OpenBao dev server on 127.0.0.1; yield its port; stop it."""
    home = Path(tempfile.mkdtemp(prefix="keyrefs-bench-bao-"))
    port = free_port_pair()
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))
    }
    environment["HOME"] = str(home)
    command = [
        str(find_bao_binary()),
        "server",
        "-dev",
        f"-dev-root-token-id={ROOT_TOKEN}",
        f"-dev-listen-address=127.0.0.1:{port}",
    ]
    with (home / "server.log").open("wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=environment, cwd=home
        )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                health = requests.get(
                    f"http://127.0.0.1:{port}/v1/sys/health", timeout=1
                )
                if health.status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.05)
        else:
            raise RuntimeError("OpenBao did not become healthy within 30 s")
        yield port
    finally:
        process.terminate()
        process.wait(10)


@contextmanager
def moto_server() -> Iterator[int]:
    """Start moto (Secrets Manager) on 127.0.0.1; yield its port; stop it."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        yield server.get_host_and_port()[1]
    finally:
        server.stop()


@contextmanager
def service(**variables: str) -> Iterator[KeyrefsService]:
    """Build and init a service on a fresh SQLite file with KEYREFS_* `variables`."""
    home = Path(tempfile.mkdtemp(prefix="keyrefs-bench-"))
    values: dict[str, Any] = {
        "home": home,
        "database_url": f"sqlite:///{home / 'keyrefs.db'}",
        "master_key": base64.b64encode(os.urandom(32)).decode(),
    }
    values.update(variables)
    keyrefs = KeyrefsService(Settings(**values))
    keyrefs.init()
    try:
        yield keyrefs
    finally:
        keyrefs.close()


def vault_variables(url: str) -> dict[str, str]:
    return {
        "secret_storage": "vault",
        "vault_address": url,
        "vault_token": ROOT_TOKEN,
        "vault_prefix": f"bench/{uuid.uuid4().hex}",
    }


def aws_variables(url: str) -> dict[str, str]:
    return {
        "secret_storage": "aws",
        "aws_region": AWS_REGION,
        "aws_endpoint_url": url,
        "aws_access_key_id": AWS_KEY,
        "aws_secret_access_key": AWS_KEY,
    }


def print_row(*cells: object) -> None:
    print(
        "  ".join(
            f"{cell:>14}" if not isinstance(cell, str) else f"{cell:<34}"
            for cell in cells
        )
    )
