"""The default storage set from the environment, on each external backend."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.conftest import SPECS_DIR
from tests.fixtures.vault import OpenBaoServer

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"


def _connector() -> tuple[Path, Path]:
    spec = SPECS_DIR / "destination-snowflake.spec.json"
    if spec.exists():
        return spec, SPECS_DIR / "destination-snowflake.config.json"
    return (
        EXAMPLES_DIR / "source-postgres.spec.json",
        EXAMPLES_DIR / "source-postgres.config.json",
    )


def _keyrefs(
    env: dict[str, str], *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).parent / "keyrefs"), *args]
    return subprocess.run(
        command, input=stdin, capture_output=True, text=True, env=env, timeout=120
    )


def test_vault_default_storage_round_trip(
    openbao_server: OpenBaoServer, tmp_path: Path, database_url: str
) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("KEYREFS_")
    }
    prefix = f"default-{uuid.uuid4().hex[:8]}"
    env.update(
        {
            "KEYREFS_HOME": str(tmp_path),
            "KEYREFS_DATABASE_URL": database_url,
            "KEYREFS_SECRET_STORAGE": "vault",
            "KEYREFS_VAULT_ADDRESS": openbao_server.address,
            "KEYREFS_VAULT_TOKEN": openbao_server.root_token,
            "KEYREFS_VAULT_PREFIX": prefix,
        }
    )
    init = _keyrefs(env, "init")
    assert init.returncode == 0, init.stderr
    assert json.loads(init.stdout)["storage_type"] == "vault"

    spec, config = _connector()
    actor = str(uuid.uuid4())
    ids = [
        "--actor-id",
        actor,
        "--workspace-id",
        str(uuid.uuid4()),
        "--organization-id",
        str(uuid.uuid4()),
    ]
    processed = _keyrefs(
        env, "process", "--spec", str(spec), "--config", str(config), *ids
    )
    assert processed.returncode == 0, processed.stderr
    stored = json.loads(processed.stdout)

    client = openbao_server.root_client()
    listed = client.secrets.kv.v2.list_secrets(path=prefix, mount_point="secret")
    assert len(listed["data"]["keys"]) >= 1

    hydrated = _keyrefs(
        env, "hydrate", "--config", "-", "--actor-id", actor, stdin=json.dumps(stored)
    )
    assert hydrated.returncode == 0, hydrated.stderr
    assert json.loads(hydrated.stdout) == json.loads(config.read_text(encoding="utf-8"))


def test_switching_default_storage_warns(
    openbao_server: OpenBaoServer, tmp_path: Path, database_url: str
) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("KEYREFS_")
    }
    env.update({"KEYREFS_HOME": str(tmp_path), "KEYREFS_DATABASE_URL": database_url})
    assert _keyrefs(env, "init").returncode == 0
    env.update(
        {
            "KEYREFS_SECRET_STORAGE": "vault",
            "KEYREFS_VAULT_ADDRESS": openbao_server.address,
            "KEYREFS_VAULT_TOKEN": openbao_server.root_token,
        }
    )
    switched = _keyrefs(env, "init")
    assert switched.returncode == 0, switched.stderr
    assert "existing secrets were not moved" in switched.stderr


def test_missing_backend_settings_are_a_clear_error(tmp_path: Path) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("KEYREFS_")
    }
    env.update({"KEYREFS_HOME": str(tmp_path), "KEYREFS_SECRET_STORAGE": "aws"})
    result = _keyrefs(env, "init")
    assert result.returncode == 2
    assert "KEYREFS_AWS_REGION" in result.stderr


@pytest.mark.parametrize("name", ["vault", "gcp", "azure"])
def test_missing_settings_name_the_variable(tmp_path: Path, name: str) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("KEYREFS_")
    }
    env.update({"KEYREFS_HOME": str(tmp_path), "KEYREFS_SECRET_STORAGE": name})
    result = _keyrefs(env, "init")
    assert result.returncode == 2, result.stderr
    assert f"KEYREFS_{name.upper()}_" in result.stderr
    assert "Traceback" not in result.stderr
