"""Helpers of the rollout tests: legacy configs, JSON Lines files, services."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from sqlalchemy import event, select

from keyrefs.backends.base import SecretWrite
from keyrefs.domain.coordinates import (
    ManagedCoordinate,
    OpaqueManagedCoordinate,
)
from keyrefs.ids import DEFAULT_STORAGE_ID, OrganizationId
from keyrefs.secret_value import SecretValue
from keyrefs.service import KeyrefsService
from keyrefs.service.backfill import (
    Backfill,
    BackfillOptions,
    BackfillSummary,
    Checkpoint,
    read_json_lines,
)
from keyrefs.settings import Settings
from keyrefs.store.models import SecretConfig, SecretReference
from tests.helpers import SECRET

SPEC = {
    "type": "object",
    "required": ["host"],
    "properties": {
        "host": {"type": "string"},
        "password": SECRET,
        "token": SECRET,
        "nested": {"type": "object", "properties": {"key": SECRET}},
    },
}
AIRBYTE_PREFIX = "airbyte_"


def airbyte_coordinate(workspace_id: uuid.UUID) -> ManagedCoordinate:
    return ManagedCoordinate(
        scope="workspace",
        scope_id=workspace_id,
        secret_id=uuid.uuid4(),
        prefix=AIRBYTE_PREFIX,
    )


def plant_legacy_actor(
    service: KeyrefsService,
    organization_id: uuid.UUID,
    workspace_id: uuid.UUID,
    tag: str,
    write: Callable[[str, str], None] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Store three secrets under Airbyte coordinates; return (record, full config).

    `write(coordinate, value)` writes a value straight into a backend; by
    default it goes through the default storage's backend.
    """
    actor_id = uuid.uuid4()
    values = {
        "password": f"pw-{tag}",
        "token": f"tok-{tag}",
        "key": f"key-{tag}",
    }
    coordinates = {name: airbyte_coordinate(workspace_id) for name in values}
    for name, value in values.items():
        if write is not None:
            write(coordinates[name].render(), value)
            continue
        service.backends.get(DEFAULT_STORAGE_ID).write(
            SecretWrite(
                coordinate=coordinates[name],
                value=SecretValue(value, "text"),
                organization_id=OrganizationId(organization_id),
            )
        )
    config = {
        "host": f"db-{tag}",
        "password": {"_secret": coordinates["password"].render()},
        "token": {"_secret": coordinates["token"].render()},
        "nested": {"key": {"_secret": coordinates["key"].render()}},
    }
    full = {
        "host": f"db-{tag}",
        "password": values["password"],
        "token": values["token"],
        "nested": {"key": values["key"]},
    }
    record = {
        "actor_id": str(actor_id),
        "workspace_id": str(workspace_id),
        "organization_id": str(organization_id),
        "spec": SPEC,
        "config": config,
    }
    return record, full


def write_opaque(service: KeyrefsService, name: str, value: str) -> None:
    service.backends.get(DEFAULT_STORAGE_ID).write(
        SecretWrite(
            coordinate=OpaqueManagedCoordinate.of(name),
            value=SecretValue(value, "text"),
            organization_id=OrganizationId(uuid.uuid4()),
        )
    )


def write_lines(path: Path, records: Iterable[dict[str, Any]]) -> Path:
    with path.open("w", encoding="utf-8") as stream:
        for record in records:
            stream.write(json.dumps(record) + "\n")
    return path


def read_lines(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as stream:
        return [json.loads(line) for line in stream if line.strip()]


def run_backfill(
    service: KeyrefsService,
    input_path: Path,
    output_path: Path,
    *,
    batch_size: int = 2,
    verify: bool = False,
    resume: bool = False,
    prefixes: tuple[str, ...] = (AIRBYTE_PREFIX,),
) -> BackfillSummary:
    """Run a backfill in-process as the CLI does, checkpoint included."""
    checkpoint = Checkpoint.for_output(output_path, f"file:{input_path.resolve()}")
    resume_line, keep = 0, 0
    state = checkpoint.load() if resume else None
    if state is not None:
        resume_line, keep = state
    options = BackfillOptions(
        managed_prefixes=prefixes, batch_size=batch_size, verify=verify
    )
    runner = Backfill(service.engine, service.backends, options)
    mode = "r+b" if resume_line else "wb"
    with input_path.open(encoding="utf-8") as source, output_path.open(mode) as out:
        if resume_line:
            out.truncate(keep)
            out.seek(keep)
        summary = runner.run(read_json_lines(source), out, checkpoint, resume_line)
    checkpoint.remove()
    return summary


def row_counts(service: KeyrefsService) -> tuple[int, int]:
    with service.session() as session:
        configs = len(list(session.scalars(select(SecretConfig.id))))
        references = len(list(session.scalars(select(SecretReference.id))))
    return configs, references


class StatementCounter:
    """Counts the statements an engine sends, by their first SQL keyword."""

    def __init__(self, service: KeyrefsService) -> None:
        self.statements: list[str] = []
        self._engine = service.engine
        event.listen(self._engine, "before_cursor_execute", self._record)

    def _record(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        self.statements.append(statement.split(None, 1)[0].upper())

    def close(self) -> None:
        event.remove(self._engine, "before_cursor_execute", self._record)

    def count(self, keyword: str) -> int:
        return sum(1 for item in self.statements if item == keyword)


def service_with(
    make_settings: Callable[..., Settings], **variables: str
) -> KeyrefsService:
    keyrefs = KeyrefsService(make_settings(**variables))
    keyrefs.init()
    return keyrefs
