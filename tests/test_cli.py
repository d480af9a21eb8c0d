"""The keyrefs command line, run as a subprocess like a user would."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SPECS_DIR

CANARY = f"canary-{uuid.uuid4().hex}"
SPEC = {
    "type": "object",
    "required": ["host"],
    "properties": {
        "host": {"type": "string"},
        "password": {"type": "string", "airbyte_secret": True},
    },
}


class Cli:
    def __init__(self, home: Path, database_url: str) -> None:
        self.home = home
        self.env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("KEYREFS_")
        }
        self.env.update(
            {"KEYREFS_HOME": str(home), "KEYREFS_DATABASE_URL": database_url}
        )
        executable = shutil.which("keyrefs", path=str(Path(sys.executable).parent))
        self.command = (
            [executable] if executable else [sys.executable, "-m", "keyrefs.cli"]
        )

    def run(
        self, *args: str, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.command, *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=120,
        )

    def write(self, name: str, document: Any) -> str:
        path = self.home / name
        path.write_text(json.dumps(document), encoding="utf-8")
        return str(path)


@pytest.fixture
def cli(tmp_path: Path, database_url: str) -> Cli:
    home = tmp_path / "home"
    home.mkdir()
    runner = Cli(home, database_url)
    result = runner.run("init")
    assert result.returncode == 0, result.stderr
    return runner


def ids() -> list[str]:
    return [
        "--actor-id", str(uuid.uuid4()),
        "--workspace-id", str(uuid.uuid4()),
        "--organization-id", str(uuid.uuid4()),
    ]  # fmt: skip


def test_init_creates_key_file_and_is_idempotent(tmp_path: Path) -> None:
    home = tmp_path / "fresh"
    runner = Cli(home, f"sqlite:///{home / 'keyrefs.db'}")
    first = runner.run("init")
    assert first.returncode == 0, first.stderr
    key_file = home / "master.key"
    assert f"created master key file {key_file}" in first.stderr
    assert key_file.stat().st_mode & 0o777 == 0o600
    storage = json.loads(first.stdout)
    assert storage["storage_type"] == "local"
    assert storage["configured_from_environment"] is True
    second = runner.run("init")
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout) == storage
    assert "created master key file" not in second.stderr


def test_unknown_secret_storage_is_an_error(cli: Cli) -> None:
    cli.env["KEYREFS_SECRET_STORAGE"] = "dropbox"
    result = cli.run("init")
    assert result.returncode == 2
    assert "KEYREFS_SECRET_STORAGE" in result.stderr
    assert "Traceback" not in result.stderr


def test_process_hydrate_references_delete(cli: Cli) -> None:
    arguments = ids()
    actor_id = arguments[1]
    spec = cli.write("spec.json", SPEC)
    config = cli.write("config.json", {"host": "h", "password": CANARY})

    processed = cli.run("process", "--spec", spec, "--config", config, *arguments)
    assert processed.returncode == 0, processed.stderr
    stored = json.loads(processed.stdout)
    assert CANARY not in processed.stdout
    assert set(stored["password"]) == {
        "_secret",
        "_secret_storage_id",
        "_secret_reference_id",
    }

    hydrated = cli.run(
        "hydrate", "--config", "-", "--actor-id", actor_id, stdin=processed.stdout
    )
    assert hydrated.returncode == 0, hydrated.stderr
    assert json.loads(hydrated.stdout) == {"host": "h", "password": CANARY}

    listed = cli.run("references", "--actor-id", actor_id)
    assert listed.returncode == 0, listed.stderr
    [reference] = json.loads(listed.stdout)
    assert reference["hydration_path"] == "$.password"
    assert reference["managed"] is True
    assert reference["scope_type"] == "actor"
    assert reference["id"] == stored["password"]["_secret_reference_id"]
    by_config = cli.run(
        "references", "--secret-config-id", reference["secret_config_id"]
    )
    assert json.loads(by_config.stdout) == [reference]

    masked = cli.run("mask", "--spec", spec, "--config", "-", stdin=processed.stdout)
    assert json.loads(masked.stdout) == {"host": "h", "password": "**********"}

    deleted = cli.run("delete-actor", "--actor-id", actor_id)
    assert deleted.returncode == 0, deleted.stderr
    gone = cli.run(
        "hydrate", "--config", "-", "--actor-id", actor_id, stdin=processed.stdout
    )
    assert gone.returncode == 4
    assert "$.password" in gone.stderr
    for result in (processed, listed, masked, deleted, gone):
        assert CANARY not in result.stderr


def test_update_with_previous_and_mask(cli: Cli) -> None:
    arguments = ids()
    spec = cli.write("spec.json", SPEC)
    config = cli.write("config.json", {"host": "h", "password": CANARY})
    stored = cli.run("process", "--spec", spec, "--config", config, *arguments).stdout
    previous = cli.write("stored.json", json.loads(stored))
    masked = cli.write("masked.json", {"host": "h2", "password": "**********"})
    updated = cli.run(
        "process",
        "--spec",
        spec,
        "--config",
        masked,
        "--previous",
        previous,
        *arguments,
    )
    assert updated.returncode == 0, updated.stderr
    assert json.loads(updated.stdout)["password"] == json.loads(stored)["password"]


@pytest.mark.parametrize(
    ("config", "code", "fragment"),
    [
        ({"password": CANARY}, 3, "'host' is a required property"),
        ({"host": "h", "password": "**********"}, 3, "mask"),
        ({"host": "h", "password": {"_secret": "ext/name"}}, 3, "external secret"),
        (
            {"host": "h", "password": {"_secret_reference_id": str(uuid.uuid4())}},
            4,
            "reference",
        ),
        ({"host": "h", "password": {"_secret": "x", CANARY: 1}}, 3, "unexpected keys"),
    ],
)
def test_process_errors_map_to_exit_codes(
    cli: Cli, config: dict[str, Any], code: int, fragment: str
) -> None:
    spec = cli.write("spec.json", SPEC)
    path = cli.write("bad.json", config)
    result = cli.run("process", "--spec", spec, "--config", path, *ids())
    assert result.returncode == code, result.stderr
    assert fragment in result.stderr
    assert result.stdout == ""
    assert CANARY not in result.stderr
    assert "Traceback" not in result.stderr


def test_usage_errors_exit_with_two(cli: Cli) -> None:
    spec = cli.write("spec.json", SPEC)
    bad_uuid = cli.run("hydrate", "--config", spec, "--actor-id", "not-a-uuid")
    assert bad_uuid.returncode == 2
    neither = cli.run("references")
    assert neither.returncode == 2
    both_stdin = cli.run("mask", "--spec", "-", "--config", "-", stdin="{}")
    assert both_stdin.returncode == 2


def test_unreadable_input_files_are_invalid_input(cli: Cli) -> None:
    missing = cli.run(
        "mask", "--spec", "/nonexistent.json", "--config", "-", stdin="{}"
    )
    assert missing.returncode == 3
    assert "/nonexistent.json does not exist" in missing.stderr
    broken = cli.write("broken.json", {})
    Path(broken).write_text('{"password": "' + CANARY, encoding="utf-8")
    result = cli.run("hydrate", "--config", broken, "--actor-id", str(uuid.uuid4()))
    assert result.returncode == 3
    assert "not valid JSON" in result.stderr
    assert CANARY not in result.stderr


def test_real_connector_through_cli(cli: Cli) -> None:
    spec_file = SPECS_DIR / "source-hubspot.spec.json"
    if not spec_file.exists():
        pytest.skip(f"connector specs not found at {SPECS_DIR}")
    arguments = ids()
    config_file = SPECS_DIR / "source-hubspot.config.json"
    processed = cli.run(
        "process", "--spec", str(spec_file), "--config", str(config_file), *arguments
    )
    assert processed.returncode == 0, processed.stderr
    hydrated = cli.run(
        "hydrate", "--config", "-", "--actor-id", arguments[1], stdin=processed.stdout
    )
    assert json.loads(hydrated.stdout) == json.loads(
        config_file.read_text(encoding="utf-8")
    )


def test_command_before_init_says_to_run_init(tmp_path: Path) -> None:
    home = tmp_path / "empty"
    runner = Cli(home, f"sqlite:///{home / 'keyrefs.db'}")
    result = runner.run("references", "--actor-id", str(uuid.uuid4()))
    assert result.returncode == 1
    assert "keyrefs init" in result.stderr
    assert "Traceback" not in result.stderr


def test_init_refuses_new_key_when_data_keys_exist(cli: Cli) -> None:
    spec = cli.write("spec.json", SPEC)
    config = cli.write("config.json", {"host": "h", "password": CANARY})
    assert (
        cli.run("process", "--spec", spec, "--config", config, *ids()).returncode == 0
    )
    url = cli.env["KEYREFS_DATABASE_URL"]
    folder = (
        Path(url.removeprefix("sqlite:///")).parent
        if url.startswith("sqlite")
        else cli.home
    )
    key_file = folder / "master.key"
    key_file.unlink()
    result = cli.run("init")
    assert result.returncode == 2
    assert "restore the key file" in result.stderr
    assert not key_file.exists()


def test_gc_failures_exit_with_backend_code(cli: Cli) -> None:
    result = cli.run("gc", "--grace", "0s", "--storage-id", str(uuid.uuid4()))
    assert result.returncode == 4
    assert "does not exist" in result.stderr


def test_workspace_storage_records_its_organization(cli: Cli) -> None:
    from keyrefs.errors import NotFound
    from keyrefs.ids import ActorId, OrganizationId, WorkspaceId
    from keyrefs.service import KeyrefsService, tenancy
    from keyrefs.service.types import ActorScope
    from keyrefs.settings import Settings

    workspace, organization = str(uuid.uuid4()), str(uuid.uuid4())
    config = cli.write("local.json", {})
    base = ["storage", "add", "--type", "local", "--scope", "workspace"]
    unknown = cli.run(
        *base, "--scope-id", workspace, "--descriptor", "w", "--config", config
    )
    assert unknown.returncode == 3
    assert "send organization_id" in unknown.stderr
    added = cli.run(
        *base, "--scope-id", workspace, "--organization-id", organization,
        "--descriptor", "w", "--config", config,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr

    settings = Settings(home=cli.home, database_url=cli.env["KEYREFS_DATABASE_URL"])
    with KeyrefsService(settings) as service:
        stranger = ActorScope(
            ActorId(uuid.uuid4()),
            WorkspaceId(uuid.UUID(workspace)),
            OrganizationId(uuid.uuid4()),
        )
        with pytest.raises(NotFound):
            tenancy.claim_actor(service.session, stranger, stranger.organization_id)
