"""Contract, and the `keyrefs migrate` commands run as a subprocess."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from keyrefs.ids import ActorId
from keyrefs.service import KeyrefsService
from keyrefs.service.contract import ContractRejected, contract_file
from tests.rollout_support import (
    plant_legacy_actor,
    read_lines,
    run_backfill,
    write_lines,
)
from tests.test_cli import Cli

ORGANIZATION = uuid.uuid4()


def backfilled(
    service: KeyrefsService, tmp_path: Path, count: int
) -> tuple[Path, list[dict[str, object]]]:
    planted = [
        plant_legacy_actor(service, ORGANIZATION, uuid.uuid4(), str(index))
        for index in range(count)
    ]
    source = write_lines(tmp_path / "in.jsonl", [record for record, _ in planted])
    run_backfill(service, source, tmp_path / "backfilled.jsonl")
    return tmp_path / "backfilled.jsonl", [full for _, full in planted]


def test_contract_keeps_only_reference_ids(
    service: KeyrefsService, tmp_path: Path
) -> None:
    source, fulls = backfilled(service, tmp_path, 3)
    summary = contract_file(service.engine, source, tmp_path / "out.jsonl")
    assert summary.markers_contracted == 9
    lines = read_lines(tmp_path / "out.jsonl")
    assert set(lines[0]["config"]["password"]) == {"_secret_reference_id"}
    assert set(lines[0]["config"]["nested"]["key"]) == {"_secret_reference_id"}
    hydrated = [
        service.hydrate(line["config"], ActorId(uuid.UUID(line["actor_id"])))
        for line in lines
    ]
    assert hydrated == fulls


def test_contract_rejects_legacy_markers(
    service: KeyrefsService, tmp_path: Path
) -> None:
    source, _ = backfilled(service, tmp_path, 3)
    lines = read_lines(source)
    lines[1]["config"]["token"] = {"_secret": "airbyte_workspace_never_backfilled"}
    lines[2]["config"]["password"]["_secret_reference_id"] = str(uuid.uuid4())
    write_lines(source, lines)
    with pytest.raises(ContractRejected) as caught:
        contract_file(service.engine, source, tmp_path / "out.jsonl")
    assert caught.value.summary.rejected_count == 2
    assert lines[1]["actor_id"] in str(caught.value)
    assert lines[2]["actor_id"] in str(caught.value)
    assert lines[0]["actor_id"] not in str(caught.value)
    assert not (tmp_path / "out.jsonl").exists()


def test_contract_rejects_foreign_reference(
    service: KeyrefsService, tmp_path: Path
) -> None:
    source, _ = backfilled(service, tmp_path, 2)
    lines = read_lines(source)
    lines[0]["config"]["password"] = lines[1]["config"]["password"]
    write_lines(source, lines)
    with pytest.raises(ContractRejected) as caught:
        contract_file(service.engine, source, tmp_path / "out.jsonl")
    assert caught.value.summary.rejected[0]["actor_id"] == lines[0]["actor_id"]


# Command line --------------------------------------------------------------


@pytest.fixture
def cli(tmp_path: Path, database_url: str) -> Cli:
    home = tmp_path / "home"
    home.mkdir()
    runner = Cli(home, database_url)
    assert runner.run("init").returncode == 0
    return runner


def legacy_lines(cli: Cli, tmp_path: Path, count: int) -> Path:
    """Process configs in legacy mode through the CLI, as the expand step does."""
    flags = {
        "flags": {
            "keyrefs.persist-references": {
                "state": "ENABLED",
                "variants": {"on": True, "off": False},
                "defaultVariant": "off",
            }
        }
    }
    cli.env["KEYREFS_FLAGS_FILE"] = cli.write("flags.json", flags)
    spec = cli.write(
        "spec.json",
        {
            "type": "object",
            "properties": {"password": {"type": "string", "airbyte_secret": True}},
        },
    )
    records = []
    for index in range(count):
        actor, workspace = str(uuid.uuid4()), str(uuid.uuid4())
        config = cli.write("config.json", {"password": f"pw-{index}"})
        result = cli.run(
            "process",
            "--spec",
            spec,
            "--config",
            config,
            "--actor-id",
            actor,
            "--workspace-id",
            workspace,
            "--organization-id",
            str(ORGANIZATION),
        )
        assert result.returncode == 0, result.stderr
        records.append(
            {
                "actor_id": actor,
                "workspace_id": workspace,
                "organization_id": str(ORGANIZATION),
                "spec": json.loads(Path(spec).read_text()),
                "config": json.loads(result.stdout),
            }
        )
    del cli.env["KEYREFS_FLAGS_FILE"]
    return write_lines(tmp_path / "legacy.jsonl", records)


def test_cli_backfill_then_contract(cli: Cli, tmp_path: Path) -> None:
    source = legacy_lines(cli, tmp_path, 3)
    backfilled = tmp_path / "backfilled.jsonl"
    result = cli.run(
        "migrate",
        "backfill",
        "--input",
        str(source),
        "--output",
        str(backfilled),
        "--verify",
        "--batch-size",
        "2",
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["references_created"] == 3
    assert summary["missing_count"] == 0
    contracted = tmp_path / "contracted.jsonl"
    result = cli.run(
        "migrate", "contract", "--input", str(backfilled), "--output", str(contracted)
    )
    assert result.returncode == 0, result.stderr
    line = read_lines(contracted)[0]
    config = cli.write("stored.json", line["config"])
    result = cli.run("hydrate", "--config", config, "--actor-id", line["actor_id"])
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"password": "pw-0"}


def test_cli_contract_refusal_exits_3(cli: Cli, tmp_path: Path) -> None:
    source = legacy_lines(cli, tmp_path, 2)
    result = cli.run(
        "migrate",
        "contract",
        "--input",
        str(source),
        "--output",
        str(tmp_path / "out.jsonl"),
    )
    assert result.returncode == 3
    for record in read_lines(source):
        assert record["actor_id"] in result.stderr
    assert not (tmp_path / "out.jsonl").exists()


def test_cli_backfill_exit_codes(cli: Cli, tmp_path: Path) -> None:
    source = legacy_lines(cli, tmp_path, 2)
    output = str(tmp_path / "out.jsonl")
    both = cli.run(
        "migrate",
        "backfill",
        "--input",
        str(source),
        "--input-url",
        "sqlite://",
        "--input-query",
        "SELECT 1",
        "--output",
        output,
    )
    assert both.returncode == 2
    records = read_lines(source)
    records[0]["config"]["password"] = {"_secret": "legacy_missing"}
    write_lines(source, records)
    missing = cli.run(
        "migrate", "backfill", "--input", str(source), "--output", output, "--verify"
    )
    assert missing.returncode == 4
    records[1]["actor_id"] = "not-a-uuid"
    write_lines(source, records)
    failed = cli.run("migrate", "backfill", "--input", str(source), "--output", output)
    assert failed.returncode == 3
    assert json.loads(failed.stdout)["failed_count"] == 1


def test_cli_legacy_mask_without_previous_exits_3(cli: Cli, tmp_path: Path) -> None:
    source = legacy_lines(cli, tmp_path, 1)
    record = read_lines(source)[0]
    cli.env["KEYREFS_FLAGS_FILE"] = str(cli.home / "flags.json")
    spec = cli.write("spec2.json", record["spec"])
    config = cli.write("mask.json", {"password": "**********"})
    arguments = [
        "process",
        "--spec",
        spec,
        "--config",
        config,
        "--actor-id",
        record["actor_id"],
        "--workspace-id",
        record["workspace_id"],
        "--organization-id",
        record["organization_id"],
    ]
    result = cli.run(*arguments)
    assert result.returncode == 3
    assert "--previous" in result.stderr
    previous = cli.write("previous.json", record["config"])
    result = cli.run(*arguments, "--previous", previous)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == record["config"]
