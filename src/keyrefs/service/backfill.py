"""Backfill: create the rows of legacy configs and inject reference ids.

The input is one record per actor (JSON Lines or the rows of a SQL query)
with `actor_id`, `workspace_id`, `organization_id`, `spec` and `config`,
whose secret fields hold `{"_secret": COORD}` markers. For each batch of
records, in one transaction:

1. insert the missing secret_config rows (managed when the coordinate starts
   with one of the managed prefixes, external otherwise), many rows in one
   INSERT ... ON CONFLICT DO NOTHING, then select their ids back;
2. insert the secret_reference rows (scope actor, the marker's path) and the
   actors' owners the same way, then select the references back.

After the commit the batch's output lines are written and a checkpoint
records the last input line, so `resume` continues after an interruption.
Rows are found by their unique keys, so a second run creates nothing and
writes the same output. Memory depends on the batch size only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Connection, Engine, Table, select, text
from sqlalchemy.dialects import postgresql, sqlite

from keyrefs.backends.base import Absent
from keyrefs.domain.coordinates import (
    Coordinate,
    ExternalCoordinate,
    managed_coordinate_from_name,
)
from keyrefs.domain.jsonpath import JsonPath
from keyrefs.domain.markers import Marker, find_markers
from keyrefs.errors import ConfigurationError, InvalidInput, KeyrefsError
from keyrefs.ids import DEFAULT_STORAGE_ID, SecretReferenceId, SecretStorageId
from keyrefs.service.backend_pool import BackendPool
from keyrefs.service.types import JsonObject
from keyrefs.store import repositories as repo
from keyrefs.store.api_models import ActorOwner
from keyrefs.store.database import create_database_engine
from keyrefs.store.models import SecretConfig, SecretReference
from keyrefs.store.types import utc_now

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 500
# Entries listed in the summary; the counts include all of them.
MAX_LISTED = 100
CHECKPOINT_SUFFIX = ".checkpoint"

ConfigKey = tuple[uuid.UUID, str]


@dataclass(frozen=True)
class BackfillOptions:
    managed_prefixes: tuple[str, ...]
    storage_id: SecretStorageId = DEFAULT_STORAGE_ID
    batch_size: int = DEFAULT_BATCH_SIZE
    verify: bool = False


@dataclass(frozen=True)
class InputRecord:
    """One input actor; `line` is its 1-based line or row number."""

    line: int
    document: JsonObject


@dataclass
class BackfillSummary:
    """Counts of one run; `failed` and `missing` list the first MAX_LISTED."""

    resumed_after_line: int = 0
    actors: int = 0
    markers: int = 0
    secret_configs_created: int = 0
    references_created: int = 0
    batches: int = 0
    verified: int = 0
    failed_count: int = 0
    missing_count: int = 0
    failed: list[JsonObject] = field(default_factory=list)
    missing: list[JsonObject] = field(default_factory=list)

    def fail(self, line: int, actor_id: object, error: str) -> None:
        self.failed_count += 1
        if len(self.failed) < MAX_LISTED:
            self.failed.append(
                {"line": line, "actor_id": str(actor_id), "error": error}
            )

    def report_missing(self, entry: JsonObject) -> None:
        self.missing_count += 1
        if len(self.missing) < MAX_LISTED:
            self.missing.append(entry)

    def to_json(self) -> JsonObject:
        return {
            "resumed_after_line": self.resumed_after_line,
            "actors": self.actors,
            "markers": self.markers,
            "secret_configs_created": self.secret_configs_created,
            "references_created": self.references_created,
            "batches": self.batches,
            "verified": self.verified,
            "failed_count": self.failed_count,
            "failed": self.failed,
            "missing_count": self.missing_count,
            "missing": self.missing,
        }


# Input ---------------------------------------------------------------------


def read_json_lines(stream: IO[str]) -> Iterator[InputRecord]:
    """Yield one record per non-blank line; raise InvalidInput on a bad line."""
    for number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            document = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidInput(
                f"input line {number} is not valid JSON (column {exc.colno}): fix "
                "it and run again with --resume"
            ) from None
        if not isinstance(document, dict):
            raise InvalidInput(f"input line {number} is not a JSON object")
        yield InputRecord(number, document)


def read_query(url: str, query: str, batch_size: int) -> Iterator[InputRecord]:
    """Yield the rows of `query`, streamed; numbered from 1 in the query's order.

    Resuming skips rows by number, so the query needs a stable ORDER BY.
    """
    engine = create_database_engine(url)
    try:
        with engine.connect() as connection:
            result = connection.execution_options(
                stream_results=True, yield_per=batch_size
            ).execute(text(query))
            for number, row in enumerate(result.mappings(), start=1):
                yield InputRecord(number, _document_from_row(dict(row)))
    finally:
        engine.dispose()


def _document_from_row(row: dict[str, Any]) -> JsonObject:
    document: JsonObject = {}
    for name, value in row.items():
        if name in ("spec", "config") and isinstance(value, str):
            # A value that is not JSON stays a string, and its actor fails.
            with contextlib.suppress(json.JSONDecodeError):
                value = json.loads(value)
        elif isinstance(value, uuid.UUID):
            value = str(value)
        document[name] = value
    return document


def describe_input(path: str | None, url: str | None, query: str | None) -> str:
    """Identify an input for the checkpoint, without the URL's credentials."""
    if path is not None:
        return f"file:{Path(path).resolve()}"
    digest = hashlib.sha256(f"{url}\n{query}".encode()).hexdigest()
    return f"query:{digest}"


# Checkpoint ----------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    """The last committed input line and the output size at that moment."""

    path: Path
    input: str

    @classmethod
    def for_output(cls, output: Path, input_description: str) -> Checkpoint:
        return cls(output.with_name(output.name + CHECKPOINT_SUFFIX), input_description)

    def load(self) -> tuple[int, int] | None:
        """Return (last line, output bytes), or None when there is no checkpoint."""
        try:
            state = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, json.JSONDecodeError) as exc:
            raise InvalidInput(
                f"checkpoint {self.path} cannot be read ({type(exc).__name__}): "
                "delete it and run without --resume"
            ) from None
        if state.get("input") != self.input:
            raise InvalidInput(
                f"checkpoint {self.path} belongs to another input: run without "
                "--resume to start over"
            )
        return int(state["line"]), int(state["output_bytes"])

    def save(self, line: int, output_bytes: int) -> None:
        state = {"input": self.input, "line": line, "output_bytes": output_bytes}
        temporary = self.path.with_name(self.path.name + ".tmp")
        temporary.write_text(json.dumps(state), encoding="utf-8")
        os.replace(temporary, self.path)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


# Batches -------------------------------------------------------------------


@dataclass
class _ActorEntry:
    record: InputRecord
    actor_id: uuid.UUID | None = None
    workspace_id: uuid.UUID | None = None
    organization_id: uuid.UUID | None = None
    config: JsonObject | None = None
    markers: list[tuple[JsonPath, Marker]] = field(default_factory=list)
    error: str | None = None


@dataclass
class _BatchRows:
    """What the database holds for one batch after its inserts."""

    configs: dict[ConfigKey, tuple[uuid.UUID, bool, bool]]
    # (actor id, hydration path) -> (reference id, secret config id)
    references: dict[tuple[uuid.UUID, str], tuple[uuid.UUID, uuid.UUID]]
    configs_created: int
    references_created: int
    _by_actor: dict[uuid.UUID, set[uuid.UUID]] | None = None

    def ids_of(self, actor_id: uuid.UUID) -> set[uuid.UUID]:
        """Return the reference ids of one actor of the batch."""
        if self._by_actor is None:
            self._by_actor = defaultdict(set)
            for (actor, _), (reference_id, _) in self.references.items():
                self._by_actor[actor].add(reference_id)
        return self._by_actor.get(actor_id, set())


class Backfill:
    """Runs a backfill over records, writing one output line per record."""

    def __init__(
        self,
        engine: Engine,
        pool: BackendPool,
        options: BackfillOptions,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        if options.batch_size < 1:
            raise InvalidInput("batch size must be at least 1")
        self._engine = engine
        self._pool = pool
        self._options = options
        self._progress = progress or (lambda _count: None)

    def run(
        self,
        records: Iterable[InputRecord],
        output: IO[bytes],
        checkpoint: Checkpoint,
        resume_after_line: int = 0,
    ) -> BackfillSummary:
        summary = BackfillSummary(resumed_after_line=resume_after_line)
        batch: list[InputRecord] = []
        for record in records:
            if record.line <= resume_after_line:
                continue
            batch.append(record)
            if len(batch) >= self._options.batch_size:
                self._finish_batch(batch, output, checkpoint, summary)
                batch = []
        if batch:
            self._finish_batch(batch, output, checkpoint, summary)
        return summary

    def _finish_batch(
        self,
        batch: list[InputRecord],
        output: IO[bytes],
        checkpoint: Checkpoint,
        summary: BackfillSummary,
    ) -> None:
        entries = [self._parse(record) for record in batch]
        lines = self.process_batch(entries, summary)
        output.write(b"".join(lines))
        output.flush()
        os.fsync(output.fileno())
        checkpoint.save(batch[-1].line, output.tell())
        summary.batches += 1
        summary.actors += len(batch)
        self._progress(len(batch))

    def process_batch(
        self, entries: list[_ActorEntry], summary: BackfillSummary
    ) -> list[bytes]:
        """Commit one batch's rows; return its output lines in input order."""
        for entry in entries:
            summary.markers += len(entry.markers)
        with self._engine.begin() as connection:
            rows = self.commit_batch(connection, entries)
        summary.secret_configs_created += rows.configs_created
        summary.references_created += rows.references_created
        lines = [self._render(entry, rows, summary) for entry in entries]
        if self._options.verify:
            self._verify(entries, rows, summary)
        return lines

    # Parsing -----------------------------------------------------------------

    def _parse(self, record: InputRecord) -> _ActorEntry:
        entry = _ActorEntry(record)
        document = record.document
        try:
            entry.actor_id = _uuid_field(document, "actor_id", required=True)
            entry.workspace_id = _uuid_field(document, "workspace_id")
            entry.organization_id = _uuid_field(document, "organization_id")
            config = document.get("config")
            if not isinstance(config, dict):
                raise InvalidInput("config is not a JSON object")
            entry.config = config
            entry.markers = list(find_markers(config))
            for _, marker in entry.markers:
                if marker.coordinate is not None:
                    self._coordinate(marker.coordinate, self._is_managed(marker))
        except KeyrefsError as exc:
            entry.error = str(exc)
            entry.markers = []
        return entry

    def _is_managed(self, marker: Marker) -> bool:
        assert marker.coordinate is not None
        return marker.coordinate.startswith(self._options.managed_prefixes)

    def _storage_of(self, marker: Marker) -> uuid.UUID:
        return marker.storage_id or self._options.storage_id

    @staticmethod
    def _coordinate(name: str, managed: bool) -> Coordinate:
        if managed:
            return managed_coordinate_from_name(name)
        return ExternalCoordinate(name)

    # Database ----------------------------------------------------------------

    def commit_batch(
        self, connection: Connection, entries: Sequence[_ActorEntry]
    ) -> _BatchRows:
        """Insert and read back one batch's rows: five statements per batch."""
        now = utc_now()
        live = [entry for entry in entries if entry.error is None]
        new_configs: dict[ConfigKey, JsonObject] = {}
        for entry in live:
            for _, marker in entry.markers:
                if marker.coordinate is None:
                    continue
                key = (self._storage_of(marker), marker.coordinate)
                if key not in new_configs:
                    new_configs[key] = _config_row(key, self._is_managed(marker), now)
        configs = _insert_and_select_configs(connection, list(new_configs.values()))
        configs_created = sum(
            1 for key, row in new_configs.items() if configs[key][0] == row["id"]
        )

        new_references = _reference_rows(live, configs, self._storage_of, now)
        references = _insert_and_select_references(
            connection, new_references, [e.actor_id for e in live if e.actor_id]
        )
        created_ids = {row["id"] for row in new_references}
        references_created = sum(
            1 for ref_id, _ in references.values() if ref_id in created_ids
        )
        _insert_owners(connection, live, now)
        return _BatchRows(configs, references, configs_created, references_created)

    # Output ------------------------------------------------------------------

    def _render(
        self, entry: _ActorEntry, rows: _BatchRows, summary: BackfillSummary
    ) -> bytes:
        document = entry.record.document
        if entry.error is None:
            try:
                document = {**document, "config": self._inject(entry, rows)}
            except InvalidInput as exc:
                entry.error = str(exc)
        if entry.error is not None:
            summary.fail(entry.record.line, document.get("actor_id"), entry.error)
        return (json.dumps(document, ensure_ascii=False) + "\n").encode()

    def _inject(self, entry: _ActorEntry, rows: _BatchRows) -> JsonObject:
        assert entry.config is not None and entry.actor_id is not None
        config: JsonObject = json.loads(json.dumps(entry.config))
        actor_references = rows.ids_of(entry.actor_id)
        for path, marker in entry.markers:
            if marker.coordinate is None:
                if marker.reference_id not in actor_references:
                    raise InvalidInput(
                        f"marker at {path} names reference {marker.reference_id}, "
                        f"which actor {entry.actor_id} does not have"
                    )
                continue
            key = (self._storage_of(marker), marker.coordinate)
            config_id, _, tombstone = rows.configs[key]
            reference_id, referenced = rows.references[(entry.actor_id, path.render())]
            if tombstone:
                raise InvalidInput(
                    f"secret {marker.coordinate} at {path} is being deleted: "
                    "process the config again"
                )
            if referenced != config_id:
                raise InvalidInput(
                    f"actor {entry.actor_id} already references another secret at "
                    f"{path}: the stored config is older than its references"
                )
            if marker.reference_id is not None and marker.reference_id != reference_id:
                raise InvalidInput(
                    f"marker at {path} names reference {marker.reference_id}, but "
                    f"the actor's reference at that path is {reference_id}"
                )
            filled = Marker(
                marker.coordinate,
                SecretStorageId(key[0]),
                reference_id=SecretReferenceId(reference_id),
            )
            path.set(config, filled.to_json())
        return config

    # Verification ------------------------------------------------------------

    def _verify(
        self,
        entries: list[_ActorEntry],
        rows: _BatchRows,
        summary: BackfillSummary,
    ) -> None:
        """Read every coordinate of the batch and report the missing ones."""
        users: dict[ConfigKey, list[tuple[_ActorEntry, JsonPath]]] = defaultdict(list)
        for entry in entries:
            if entry.error is not None:
                continue
            for path, marker in entry.markers:
                if marker.coordinate is not None:
                    users[(self._storage_of(marker), marker.coordinate)].append(
                        (entry, path)
                    )
        by_storage: dict[uuid.UUID, list[ConfigKey]] = defaultdict(list)
        for key in users:
            by_storage[key[0]].append(key)
        for storage_id, keys in by_storage.items():
            problems = self._read_storage(SecretStorageId(storage_id), keys, rows)
            summary.verified += len(keys)
            for key, problem in problems.items():
                for entry, path in users[key]:
                    summary.report_missing(
                        {
                            "actor_id": str(entry.actor_id),
                            "path": path.render(),
                            "storage_id": str(key[0]),
                            "coordinate": key[1],
                            "error": problem,
                        }
                    )

    def _read_storage(
        self, storage_id: SecretStorageId, keys: list[ConfigKey], rows: _BatchRows
    ) -> dict[ConfigKey, str]:
        """Return the keys that could not be read, with the reason."""
        coordinates = {
            key: self._coordinate(key[1], rows.configs[key][1]) for key in keys
        }
        try:
            results = self._pool.get(storage_id).read_many(list(coordinates.values()))
        except KeyrefsError as exc:
            logger.warning("could not verify storage %s: %s", storage_id, exc)
            return dict.fromkeys(keys, exc.code)
        problems = {}
        for key, coordinate in coordinates.items():
            if isinstance(results.get(coordinate, Absent()), Absent):
                problems[key] = "secret_not_found"
        return problems


# Statements ----------------------------------------------------------------


def _insert_ignoring_conflicts(
    connection: Connection, table: Table, rows: list[JsonObject]
) -> None:
    """Insert `rows` with one executemany, skipping rows that already exist."""
    if not rows:
        return
    name = connection.dialect.name
    statement: postgresql.Insert | sqlite.Insert
    if name == "postgresql":
        statement = postgresql.insert(table).on_conflict_do_nothing()
    elif name == "sqlite":
        statement = sqlite.insert(table).on_conflict_do_nothing()
    else:
        raise ConfigurationError(f"backfill supports PostgreSQL and SQLite, not {name}")
    connection.execute(statement, rows)


def _config_row(key: ConfigKey, managed: bool, now: Any) -> JsonObject:
    storage_id, coordinate = key
    return {
        "id": uuid.uuid4(),
        "secret_storage_id": storage_id,
        "descriptor": coordinate,
        "external_coordinate": coordinate,
        "managed": managed,
        "value_format": "text",
        "expires_at": None,
        "tombstone": False,
        "created_at": now,
        "updated_at": now,
    }


def _insert_and_select_configs(
    connection: Connection, rows: list[JsonObject]
) -> dict[ConfigKey, tuple[uuid.UUID, bool, bool]]:
    if not rows:
        return {}
    table = SecretConfig.__table__
    assert isinstance(table, Table)
    _insert_ignoring_conflicts(connection, table, rows)
    # One select per storage, usually one per batch. PostgreSQL 15 turns a
    # row-value IN list into one OR branch per key, which took about a second
    # per batch of 1,500 keys in benchmarks/backfill.py; `= ANY` on the
    # coordinate is a single index scan.
    by_storage: dict[uuid.UUID, list[str]] = defaultdict(list)
    for row in rows:
        by_storage[row["secret_storage_id"]].append(row["external_coordinate"])
    found: dict[ConfigKey, tuple[uuid.UUID, bool, bool]] = {}
    for storage_id, coordinates in by_storage.items():
        result = connection.execute(
            select(
                table.c.external_coordinate,
                table.c.id,
                table.c.managed,
                table.c.tombstone,
            ).where(
                table.c.secret_storage_id == storage_id,
                table.c.external_coordinate.in_(coordinates),
            )
        )
        for name, config_id, managed, tombstone in result:
            found[(storage_id, name)] = (config_id, managed, tombstone)
    return found


def _reference_rows(
    entries: Iterable[_ActorEntry],
    configs: dict[ConfigKey, tuple[uuid.UUID, bool, bool]],
    storage_of: Callable[[Marker], uuid.UUID],
    now: Any,
) -> list[JsonObject]:
    rows = []
    for entry in entries:
        for path, marker in entry.markers:
            if marker.coordinate is None:
                continue
            config_id = configs[(storage_of(marker), marker.coordinate)][0]
            rows.append(
                {
                    "id": uuid.uuid4(),
                    "secret_config_id": config_id,
                    "scope_type": repo.ACTOR_SCOPE,
                    "scope_id": entry.actor_id,
                    "hydration_path": path.render(),
                    "created_at": now,
                    "updated_at": now,
                }
            )
    return rows


def _insert_and_select_references(
    connection: Connection, rows: list[JsonObject], actor_ids: list[uuid.UUID]
) -> dict[tuple[uuid.UUID, str], tuple[uuid.UUID, uuid.UUID]]:
    if not actor_ids:
        return {}
    table = SecretReference.__table__
    assert isinstance(table, Table)
    _insert_ignoring_conflicts(connection, table, rows)
    found = connection.execute(
        select(
            table.c.scope_id,
            table.c.hydration_path,
            table.c.id,
            table.c.secret_config_id,
        ).where(
            table.c.scope_type == repo.ACTOR_SCOPE,
            table.c.scope_id.in_(set(actor_ids)),
        )
    )
    return {(r[0], r[1] or ""): (r[2], r[3]) for r in found}


def _insert_owners(
    connection: Connection, entries: Iterable[_ActorEntry], now: Any
) -> None:
    """Record each actor's owner unless one is recorded already."""
    table = ActorOwner.__table__
    assert isinstance(table, Table)
    rows = {
        entry.actor_id: {
            "actor_id": entry.actor_id,
            "workspace_id": entry.workspace_id,
            "organization_id": entry.organization_id,
            "created_at": now,
        }
        for entry in entries
        if entry.actor_id and entry.workspace_id and entry.organization_id
    }
    _insert_ignoring_conflicts(connection, table, list(rows.values()))


def _uuid_field(
    document: JsonObject, name: str, *, required: bool = False
) -> uuid.UUID | None:
    value = document.get(name)
    if value is None:
        if required:
            raise InvalidInput(f"{name} is missing")
        return None
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise InvalidInput(f"{name} is not a UUID") from None
