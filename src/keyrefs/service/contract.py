"""Contract: drop `_secret` and `_secret_storage_id` once reads use reference ids.

The input is the JSON Lines output of a backfill. A first pass checks, a
batch of actors per query, that every marker carries a `_secret_reference_id`
whose reference exists, belongs to the actor and has the marker's path. Only
when every marker passes does a second pass write the output, through a
temporary file renamed at the end, so a rejected run writes nothing.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine, select

from keyrefs.domain.jsonpath import JsonPath
from keyrefs.domain.markers import Marker, find_markers
from keyrefs.errors import InvalidInput, KeyrefsError
from keyrefs.service.backfill import MAX_LISTED, InputRecord, read_json_lines
from keyrefs.service.types import JsonObject
from keyrefs.store import repositories as repo
from keyrefs.store.models import SecretReference

DEFAULT_BATCH_SIZE = 1000


@dataclass
class ContractSummary:
    actors: int = 0
    markers_contracted: int = 0
    rejected_count: int = 0
    rejected: list[JsonObject] = field(default_factory=list)

    def reject(self, record: InputRecord, reason: str) -> None:
        self.rejected_count += 1
        if len(self.rejected) < MAX_LISTED:
            self.rejected.append(
                {
                    "line": record.line,
                    "actor_id": str(record.document.get("actor_id")),
                    "error": reason,
                }
            )

    def to_json(self) -> JsonObject:
        return {
            "actors": self.actors,
            "markers_contracted": self.markers_contracted,
            "rejected_count": self.rejected_count,
            "rejected": self.rejected,
        }


class ContractRejected(InvalidInput):
    """Some markers have no existing reference, so no output was written."""

    def __init__(self, summary: ContractSummary) -> None:
        listed = ", ".join(item["actor_id"] for item in summary.rejected)
        more = summary.rejected_count - len(summary.rejected)
        suffix = f" and {more} more" if more > 0 else ""
        super().__init__(
            f"{summary.rejected_count} actors have markers without an existing "
            f"_secret_reference_id, so nothing was written: {listed}{suffix}; "
            "run `keyrefs migrate backfill` for them first"
        )
        self.summary = summary


def contract_file(
    engine: Engine,
    input_path: Path,
    output_path: Path,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> ContractSummary:
    """Check every marker of `input_path`, then write the contracted configs."""
    summary = ContractSummary()
    for batch in _batches(input_path, batch_size):
        _check_batch(engine, batch, summary)
        summary.actors += len(batch)
    if summary.rejected_count:
        raise ContractRejected(summary)

    temporary = output_path.with_name(output_path.name + ".tmp")
    with temporary.open("wb") as output:
        for batch in _batches(input_path, batch_size):
            for record, markers in batch:
                document = {**record.document, "config": _contract(record, markers)}
                summary.markers_contracted += sum(
                    1 for _, marker in markers if marker.coordinate is not None
                )
                output.write((json.dumps(document, ensure_ascii=False) + "\n").encode())
        output.flush()
        os.fsync(output.fileno())
    os.replace(temporary, output_path)
    return summary


Batch = list[tuple[InputRecord, list[tuple[JsonPath, Marker]]]]


def _batches(input_path: Path, batch_size: int) -> Iterator[Batch]:
    batch: Batch = []
    with input_path.open(encoding="utf-8") as stream:
        for record in read_json_lines(stream):
            config = record.document.get("config")
            try:
                markers = list(find_markers(config)) if isinstance(config, dict) else []
            except KeyrefsError:
                markers = []  # reported by _check_batch, which parses again
            batch.append((record, markers))
            if len(batch) >= batch_size:
                yield batch
                batch = []
    if batch:
        yield batch


def _check_batch(engine: Engine, batch: Batch, summary: ContractSummary) -> None:
    wanted = [
        marker.reference_id
        for _, markers in batch
        for _, marker in markers
        if marker.reference_id is not None
    ]
    with engine.connect() as connection:
        table = SecretReference.__table__
        rows = connection.execute(
            select(
                table.c.id, table.c.scope_type, table.c.scope_id, table.c.hydration_path
            ).where(table.c.id.in_(wanted))
        )
        references = {row[0]: (row[1], row[2], row[3]) for row in rows}
    for record, markers in batch:
        reason = _problem(record, markers, references)
        if reason is not None:
            summary.reject(record, reason)


def _problem(
    record: InputRecord,
    markers: list[tuple[JsonPath, Marker]],
    references: dict[uuid.UUID, tuple[str, uuid.UUID, str | None]],
) -> str | None:
    config = record.document.get("config")
    if not isinstance(config, dict):
        return "config is not a JSON object"
    try:
        actor_id = uuid.UUID(str(record.document.get("actor_id")))
        list(find_markers(config))
    except (ValueError, KeyrefsError) as exc:
        return str(exc) if isinstance(exc, KeyrefsError) else "actor_id is not a UUID"
    for path, marker in markers:
        if marker.reference_id is None:
            return f"marker at {path} has no _secret_reference_id"
        found = references.get(marker.reference_id)
        if found is None:
            return f"reference {marker.reference_id} at {path} does not exist"
        scope_type, scope_id, hydration_path = found
        if scope_type != repo.ACTOR_SCOPE or scope_id != actor_id:
            return f"reference {marker.reference_id} at {path} belongs to another scope"
        if hydration_path != path.render():
            return f"reference {marker.reference_id} is for another path than {path}"
    return None


def _contract(record: InputRecord, markers: list[tuple[JsonPath, Marker]]) -> object:
    config: JsonObject = json.loads(json.dumps(record.document["config"]))
    for path, marker in markers:
        path.set(config, Marker(reference_id=marker.reference_id).to_json())
    return config
