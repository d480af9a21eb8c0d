"""Benchmark of `keyrefs migrate backfill` against a plain Core bulk insert.

    python -m benchmarks.backfill [--actors N] [--postgres-url URL]

For SQLite (a temporary file) and PostgreSQL (a fresh schema under
`--postgres-url`, default KEYREFS_TEST_POSTGRES_URL; skipped without one),
it measures in child processes, so that each peak RSS is its own:

- the backfill of 10,000 actors and of N actors (3 secrets each, batches of
  500, without --verify, so no backend is read), in actors per second and
  peak RSS (`resource.getrusage`, ru_maxrss);
- a plain SQLAlchemy Core executemany insert of the same secret_config,
  secret_reference and actor_owner rows in batches of 500 actors, without
  parsing, conflict handling or reading ids back.

The ratio plain / backfill is the overhead of the backfill's own work.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SECRETS_PER_ACTOR = 3
BATCH_SIZE = 500
MEMORY_POINTS = (10_000,)


def write_input(path: Path, actors: int) -> None:
    """Write `actors` legacy records with Airbyte coordinates, streamed."""
    with path.open("w", encoding="utf-8") as stream:
        for _ in range(actors):
            workspace = uuid.uuid4()
            config: dict[str, Any] = {"host": "db.internal", "port": 5432}
            for index in range(SECRETS_PER_ACTOR):
                coordinate = f"airbyte_workspace_{workspace}_secret_{uuid.uuid4()}_v1"
                config[f"secret_{index}"] = {"_secret": coordinate}
            record = {
                "actor_id": str(uuid.uuid4()),
                "workspace_id": str(workspace),
                "organization_id": str(uuid.uuid4()),
                "spec": {},
                "config": config,
            }
            stream.write(json.dumps(record) + "\n")


# Child processes -----------------------------------------------------------


def _service(url: str, home: Path) -> Any:
    from keyrefs.service import KeyrefsService
    from keyrefs.settings import Settings

    settings = Settings(
        home=home,
        database_url=url,
        master_key="a2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2s=",
    )
    service = KeyrefsService(settings)
    service.init()
    return service


def run_backfill(url: str, input_path: Path, home: Path) -> dict[str, Any]:
    from keyrefs.service.backfill import (
        Backfill,
        BackfillOptions,
        Checkpoint,
        read_json_lines,
    )

    service = _service(url, home)
    options = BackfillOptions(managed_prefixes=("airbyte_",), batch_size=BATCH_SIZE)
    output = home / "out.jsonl"
    checkpoint = Checkpoint.for_output(output, "benchmark")
    started = time.perf_counter()
    with input_path.open(encoding="utf-8") as source, output.open("wb") as out:
        summary = Backfill(service.engine, service.backends, options).run(
            read_json_lines(source), out, checkpoint
        )
    elapsed = time.perf_counter() - started
    service.close()
    return {"seconds": elapsed, "actors": summary.actors}


def run_plain(url: str, input_path: Path, home: Path) -> dict[str, Any]:
    from keyrefs.store.api_models import ActorOwner
    from keyrefs.store.models import SecretConfig, SecretReference
    from keyrefs.store.types import utc_now

    service = _service(url, home)
    configs = SecretConfig.__table__
    references = SecretReference.__table__
    owners = ActorOwner.__table__
    started = time.perf_counter()
    actors = 0
    for batch in _batches(input_path):
        now = utc_now()
        config_rows, reference_rows, owner_rows = [], [], []
        for record in batch:
            actor = uuid.UUID(record["actor_id"])
            for name, marker in record["config"].items():
                if not isinstance(marker, dict):
                    continue
                config_id = uuid.uuid4()
                config_rows.append(
                    {
                        "id": config_id,
                        "secret_storage_id": uuid.UUID(int=1),
                        "descriptor": marker["_secret"],
                        "external_coordinate": marker["_secret"],
                        "managed": True,
                        "value_format": "text",
                        "expires_at": None,
                        "tombstone": False,
                        "created_at": now,
                        "updated_at": now,
                    }
                )
                reference_rows.append(
                    {
                        "id": uuid.uuid4(),
                        "secret_config_id": config_id,
                        "scope_type": "actor",
                        "scope_id": actor,
                        "hydration_path": f"$.{name}",
                        "created_at": now,
                        "updated_at": now,
                    }
                )
            owner_rows.append(
                {
                    "actor_id": actor,
                    "workspace_id": uuid.UUID(record["workspace_id"]),
                    "organization_id": uuid.UUID(record["organization_id"]),
                    "created_at": now,
                }
            )
        with service.engine.begin() as connection:
            connection.execute(configs.insert(), config_rows)
            connection.execute(references.insert(), reference_rows)
            connection.execute(owners.insert(), owner_rows)
        actors += len(batch)
    elapsed = time.perf_counter() - started
    service.close()
    return {"seconds": elapsed, "actors": actors}


def _batches(input_path: Path) -> Iterator[list[dict[str, Any]]]:
    batch = []
    with input_path.open(encoding="utf-8") as stream:
        for line in stream:
            batch.append(json.loads(line))
            if len(batch) == BATCH_SIZE:
                yield batch
                batch = []
    if batch:
        yield batch


def child(arguments: argparse.Namespace) -> None:
    home = Path(tempfile.mkdtemp(prefix="keyrefs-bench-"))
    url = arguments.url or f"sqlite:///{home / 'keyrefs.db'}"
    run = run_backfill if arguments.mode == "backfill" else run_plain
    result = run(url, Path(arguments.input), home)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result["peak_rss_mib"] = peak_kib / 1024
    print(json.dumps(result))


# Parent --------------------------------------------------------------------


def postgres_schema(base_url: str) -> tuple[str, Any]:
    import sqlalchemy
    from sqlalchemy.engine import make_url

    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = sqlalchemy.create_engine(base_url)
    with admin.begin() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    url = make_url(base_url).update_query_dict({"options": f"-csearch_path={schema}"})

    def drop() -> None:
        with admin.begin() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()

    return url.render_as_string(hide_password=False), drop


def measure(mode: str, input_path: Path, url: str | None) -> dict[str, Any]:
    command = [
        sys.executable,
        "-m",
        "benchmarks.backfill",
        "--child",
        "--mode",
        mode,
        "--input",
        str(input_path),
    ]
    if url is not None:
        command += ["--url", url]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"{mode} child failed:\n{completed.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    result["actors_per_second"] = result["actors"] / result["seconds"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--actors", type=int, default=100_000)
    parser.add_argument(
        "--postgres-url", default=os.environ.get("KEYREFS_TEST_POSTGRES_URL")
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="backfill", help=argparse.SUPPRESS)
    parser.add_argument("--input", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child:
        child(arguments)
        return

    work = Path(tempfile.mkdtemp(prefix="keyrefs-bench-input-"))
    sizes = sorted(
        {*[n for n in MEMORY_POINTS if n < arguments.actors], arguments.actors}
    )
    inputs = {}
    for size in sizes:
        inputs[size] = work / f"actors-{size}.jsonl"
        write_input(inputs[size], size)

    databases: list[tuple[str, str | None]] = [("sqlite", None)]
    if arguments.postgres_url:
        databases.append(("postgresql", arguments.postgres_url))
    results = []
    for name, base in databases:
        for size in sizes:
            for mode in ("backfill", "plain"):
                drop = None
                url = None
                if base is not None:
                    url, drop = postgres_schema(base)
                try:
                    result = measure(mode, inputs[size], url)
                finally:
                    if drop is not None:
                        drop()
                result.update(database=name, mode=mode)
                results.append(result)
                print(
                    f"{name:10} {mode:8} {size:>7} actors: "
                    f"{result['actors_per_second']:8.0f} actors/s, "
                    f"peak RSS {result['peak_rss_mib']:.0f} MiB",
                    flush=True,
                )
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
