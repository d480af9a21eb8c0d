"""Backfill of legacy configs: rows, reference ids, resume, verify, SQL input."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from sqlalchemy import select

from keyrefs.errors import InvalidInput
from keyrefs.ids import DEFAULT_STORAGE_ID, ActorId, OrganizationId, WorkspaceId
from keyrefs.secret_value import MASK
from keyrefs.service import KeyrefsService
from keyrefs.service import backfill as backfill_module
from keyrefs.service.types import ActorScope
from keyrefs.store.models import SecretConfig
from tests.helpers import local_coordinates
from tests.rollout_support import (
    SPEC,
    StatementCounter,
    plant_legacy_actor,
    read_lines,
    row_counts,
    run_backfill,
    write_lines,
    write_opaque,
)

ORGANIZATIONS = [uuid.uuid4(), uuid.uuid4()]


def plant_fleet(
    service: KeyrefsService, count: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    records, fulls = [], []
    for index in range(count):
        organization = ORGANIZATIONS[index % 2]
        record, full = plant_legacy_actor(
            service, organization, uuid.uuid4(), str(index)
        )
        records.append(record)
        fulls.append(full)
    return records, fulls


def hydrate_all(service: KeyrefsService, records: list[dict[str, Any]]) -> list[Any]:
    return [
        service.hydrate(record["config"], ActorId(uuid.UUID(record["actor_id"])))
        for record in records
    ]


def test_backfill_injects_references(service: KeyrefsService, tmp_path: Path) -> None:
    records, fulls = plant_fleet(service, 5)
    source = write_lines(tmp_path / "in.jsonl", records)
    summary = run_backfill(service, source, tmp_path / "out.jsonl")
    output = read_lines(tmp_path / "out.jsonl")
    assert [line["actor_id"] for line in output] == [r["actor_id"] for r in records]
    marker = output[0]["config"]["nested"]["key"]
    assert set(marker) == {"_secret", "_secret_storage_id", "_secret_reference_id"}
    assert marker["_secret_storage_id"] == str(DEFAULT_STORAGE_ID)
    assert output[0]["spec"] == SPEC
    assert summary.secret_configs_created == 15
    assert summary.references_created == 15
    assert summary.failed_count == 0
    assert hydrate_all(service, output) == fulls


def test_backfill_twice_is_identical(service: KeyrefsService, tmp_path: Path) -> None:
    records, _ = plant_fleet(service, 4)
    source = write_lines(tmp_path / "in.jsonl", records)
    run_backfill(service, source, tmp_path / "first.jsonl")
    counts = row_counts(service)
    again = run_backfill(service, source, tmp_path / "second.jsonl")
    first = (tmp_path / "first.jsonl").read_bytes()
    assert (tmp_path / "second.jsonl").read_bytes() == first
    assert row_counts(service) == counts
    assert again.secret_configs_created == 0
    assert again.references_created == 0


def test_backfill_of_its_own_output_changes_nothing(
    service: KeyrefsService, tmp_path: Path
) -> None:
    records, _ = plant_fleet(service, 3)
    source = write_lines(tmp_path / "in.jsonl", records)
    run_backfill(service, source, tmp_path / "out.jsonl")
    run_backfill(service, tmp_path / "out.jsonl", tmp_path / "again.jsonl")
    assert read_lines(tmp_path / "again.jsonl") == read_lines(tmp_path / "out.jsonl")


def test_backfill_resumes_after_failure(
    service: KeyrefsService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    records, fulls = plant_fleet(service, 7)
    source = write_lines(tmp_path / "in.jsonl", records)
    output = tmp_path / "out.jsonl"
    original = backfill_module.Backfill.commit_batch
    calls = []

    def failing(self: Any, connection: Any, entries: Any) -> Any:
        calls.append(len(entries))
        if len(calls) == 3:
            raise RuntimeError("injected failure")
        return original(self, connection, entries)

    monkeypatch.setattr(backfill_module.Backfill, "commit_batch", failing)
    with pytest.raises(RuntimeError):
        run_backfill(service, source, output, batch_size=2)
    checkpoint = json.loads(Path(f"{output}.checkpoint").read_text())
    assert checkpoint["line"] == 4
    assert len(read_lines(output)) == 4

    monkeypatch.setattr(backfill_module.Backfill, "commit_batch", original)
    resumed = run_backfill(service, source, output, batch_size=2, resume=True)
    assert resumed.resumed_after_line == 4
    assert resumed.actors == 3
    lines = read_lines(output)
    assert [line["actor_id"] for line in lines] == [r["actor_id"] for r in records]
    assert hydrate_all(service, lines) == fulls
    fresh = run_backfill(service, source, tmp_path / "fresh.jsonl", batch_size=2)
    assert fresh.references_created == 0
    assert (tmp_path / "fresh.jsonl").read_bytes() == output.read_bytes()


def test_backfill_stops_at_invalid_line(
    service: KeyrefsService, tmp_path: Path
) -> None:
    records, _ = plant_fleet(service, 4)
    source = tmp_path / "in.jsonl"
    lines = [json.dumps(record) for record in records]
    lines.insert(2, "{not json")
    source.write_text("\n".join(lines) + "\n")
    with pytest.raises(InvalidInput) as caught:
        run_backfill(service, source, tmp_path / "out.jsonl", batch_size=2)
    assert "line 3" in str(caught.value)
    assert len(read_lines(tmp_path / "out.jsonl")) == 2


def test_backfill_verify_reports_missing(
    service: KeyrefsService, tmp_path: Path
) -> None:
    records, fulls = plant_fleet(service, 3)
    records[1]["config"]["token"] = {"_secret": "airbyte_workspace_gone"}
    source = write_lines(tmp_path / "in.jsonl", records)
    summary = run_backfill(service, source, tmp_path / "out.jsonl", verify=True)
    assert summary.missing_count == 1
    assert summary.missing[0]["coordinate"] == "airbyte_workspace_gone"
    assert summary.missing[0]["actor_id"] == records[1]["actor_id"]
    assert summary.verified == 9
    output = read_lines(tmp_path / "out.jsonl")
    assert "_secret_reference_id" in output[1]["config"]["token"]
    assert hydrate_all(service, [output[0], output[2]]) == [fulls[0], fulls[2]]


def test_backfill_marks_managed_by_prefix(
    service: KeyrefsService, tmp_path: Path
) -> None:
    records, _ = plant_fleet(service, 1)
    records[0]["config"]["token"] = {"_secret": "external/path/token"}
    source = write_lines(tmp_path / "in.jsonl", records)
    run_backfill(service, source, tmp_path / "out.jsonl")
    with service.session() as session:
        managed = {
            row.external_coordinate: row.managed
            for row in session.scalars(select(SecretConfig))
        }
    assert managed["external/path/token"] is False
    password = records[0]["config"]["password"]["_secret"]
    assert managed[password] is True


def test_opaque_managed_name_hydrates_and_rotates(
    service: KeyrefsService, tmp_path: Path
) -> None:
    records, fulls = plant_fleet(service, 1)
    write_opaque(service, "airbyte_custom_name", "custom-value")
    records[0]["config"]["token"] = {"_secret": "airbyte_custom_name"}
    source = write_lines(tmp_path / "in.jsonl", records)
    run_backfill(service, source, tmp_path / "out.jsonl")
    stored = read_lines(tmp_path / "out.jsonl")[0]
    actor = ActorId(uuid.UUID(stored["actor_id"]))
    full = service.hydrate(stored["config"], actor)
    assert full == {**fulls[0], "token": "custom-value"}

    scope = ActorScope(
        actor,
        WorkspaceId(uuid.UUID(stored["workspace_id"])),
        OrganizationId(uuid.UUID(stored["organization_id"])),
    )
    update = {**full, "password": MASK, "nested": {"key": MASK}, "token": "new"}
    rotated = service.process(scope, SPEC, update, previous_config=stored["config"])
    assert rotated["token"]["_secret"].startswith("keyrefs_workspace_")
    assert "airbyte_custom_name" not in local_coordinates(service)
    assert service.hydrate(rotated, actor) == {**fulls[0], "token": "new"}


def test_backfill_reports_conflicting_reference(
    service: KeyrefsService, tmp_path: Path
) -> None:
    records, _ = plant_fleet(service, 2)
    source = write_lines(tmp_path / "in.jsonl", records)
    run_backfill(service, source, tmp_path / "out.jsonl")
    other = plant_legacy_actor(service, ORGANIZATIONS[0], uuid.uuid4(), "x")[0]
    records[0]["config"]["password"] = other["config"]["password"]
    write_lines(source, records)
    summary = run_backfill(service, source, tmp_path / "again.jsonl")
    assert summary.failed_count == 1
    assert summary.failed[0]["actor_id"] == records[0]["actor_id"]
    again = read_lines(tmp_path / "again.jsonl")
    assert again[0]["config"] == records[0]["config"]


@pytest.mark.parametrize("actors", [10, 40])
def test_backfill_statements_per_batch(
    service: KeyrefsService, tmp_path: Path, actors: int
) -> None:
    records, _ = plant_fleet(service, actors)
    source = write_lines(tmp_path / "in.jsonl", records)
    counter = StatementCounter(service)
    try:
        summary = run_backfill(
            service, source, tmp_path / "out.jsonl", batch_size=actors // 2
        )
    finally:
        counter.close()
    assert summary.batches == 2
    # Per batch: secret_config, secret_reference and actor_owner inserts,
    # whatever the number of actors in it.
    assert counter.count("INSERT") == 3 * summary.batches
    assert counter.count("SELECT") == 2 * summary.batches


def test_backfill_reads_sql_query(service: KeyrefsService, tmp_path: Path) -> None:
    records, fulls = plant_fleet(service, 3)
    url = f"sqlite:///{tmp_path / 'platform.db'}"
    engine = sqlalchemy.create_engine(url)
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "CREATE TABLE actor (position INTEGER, actor_id TEXT, workspace_id TEXT,"
            " organization_id TEXT, spec TEXT, config TEXT)"
        )
        for position, record in enumerate(records):
            connection.exec_driver_sql(
                "INSERT INTO actor VALUES (?, ?, ?, ?, ?, ?)",
                (
                    position,
                    record["actor_id"],
                    record["workspace_id"],
                    record["organization_id"],
                    json.dumps(record["spec"]),
                    json.dumps(record["config"]),
                ),
            )
    engine.dispose()
    query = (
        "SELECT actor_id, workspace_id, organization_id, spec, config FROM actor "
        "ORDER BY position"
    )
    runner = backfill_module.Backfill(
        service.engine,
        service.backends,
        backfill_module.BackfillOptions(managed_prefixes=("airbyte_",), batch_size=2),
    )
    checkpoint = backfill_module.Checkpoint.for_output(
        tmp_path / "sql.jsonl", backfill_module.describe_input(None, url, query)
    )
    with (tmp_path / "sql.jsonl").open("wb") as output:
        runner.run(backfill_module.read_query(url, query, 2), output, checkpoint)
    from_sql = read_lines(tmp_path / "sql.jsonl")
    assert hydrate_all(service, from_sql) == fulls
    source = write_lines(tmp_path / "in.jsonl", records)
    run_backfill(service, source, tmp_path / "file.jsonl")
    assert read_lines(tmp_path / "file.jsonl") == from_sql
