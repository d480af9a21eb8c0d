"""The `keyrefs migrate backfill` and `keyrefs migrate contract` commands.

Both print a JSON summary on standard output. Exit codes as for every
command, plus: backfill exits with 3 when some actors could not be
backfilled (their lines are copied unchanged) and with 4 when `--verify`
found missing secrets; contract exits with 3, writing nothing, when a marker
has no existing reference.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Annotated, NoReturn

import typer

from keyrefs.errors import InvalidInput
from keyrefs.ids import DEFAULT_STORAGE_ID, SecretStorageId
from keyrefs.service import KeyrefsService
from keyrefs.service.backfill import (
    DEFAULT_BATCH_SIZE,
    Backfill,
    BackfillOptions,
    Checkpoint,
    InputRecord,
    describe_input,
    read_json_lines,
    read_query,
)
from keyrefs.service.contract import ContractRejected, contract_file

EXIT_ACTORS_FAILED = 3
EXIT_SECRETS_MISSING = 4

migrate_app = typer.Typer(
    help="Move stored configs from legacy markers to references.",
    no_args_is_help=True,
)


def register_rollout_commands(app: typer.Typer) -> None:
    """Add the `migrate` command group to the main CLI app."""
    app.add_typer(migrate_app, name="migrate")


@migrate_app.command("backfill")
def backfill_command(
    output: Annotated[Path, typer.Option(help="JSON Lines file to write.")],
    input: Annotated[
        Path | None, typer.Option(help="JSON Lines file, one actor per line.")
    ] = None,
    input_url: Annotated[
        str | None,
        typer.Option(help="SQLAlchemy URL of a database to read actors from."),
    ] = None,
    input_query: Annotated[
        str | None,
        typer.Option(
            help="SQL query returning actor_id, workspace_id, organization_id, "
            "spec and config, with a stable ORDER BY for --resume."
        ),
    ] = None,
    managed_prefix: Annotated[
        list[str] | None,
        typer.Option(
            help="Coordinates starting with this prefix are managed (repeatable); "
            "default: KEYREFS_MANAGED_PREFIX and KEYREFS_LEGACY_PREFIX."
        ),
    ] = None,
    storage_id: Annotated[
        uuid.UUID | None,
        typer.Option(help="Storage of markers without _secret_storage_id."),
    ] = None,
    batch_size: Annotated[
        int, typer.Option(min=1, help="Actors per database transaction.")
    ] = DEFAULT_BATCH_SIZE,
    resume: Annotated[
        bool, typer.Option(help="Continue after the checkpoint of an earlier run.")
    ] = False,
    verify: Annotated[
        bool, typer.Option(help="Read every secret and report missing ones.")
    ] = False,
) -> None:
    """Create secret_config and secret_reference rows; inject reference ids."""
    if (input is None) == (input_url is None) or (input_url is None) != (
        input_query is None
    ):
        _usage_error("give either --input, or --input-url with --input-query")
    checkpoint = Checkpoint.for_output(
        output, describe_input(str(input) if input else None, input_url, input_query)
    )
    resume_line, output_bytes = 0, 0
    if resume:
        state = checkpoint.load()
        if state is not None:
            resume_line, output_bytes = state
    else:
        checkpoint.remove()

    with _service() as service:
        prefixes = tuple(managed_prefix or ()) or (
            service.settings.managed_prefix,
            service.settings.legacy_prefix,
        )
        options = BackfillOptions(
            managed_prefixes=prefixes,
            storage_id=SecretStorageId(storage_id or DEFAULT_STORAGE_ID),
            batch_size=batch_size,
            verify=verify,
        )
        with (
            _records(input, input_url, input_query, batch_size) as records,
            _open_output(output, output_bytes if resume_line else None) as stream,
            _progress("backfilling actors") as advance,
        ):
            runner = Backfill(service.engine, service.backends, options, advance)
            summary = runner.run(records, stream, checkpoint, resume_line)
    checkpoint.remove()
    _print_json(summary.to_json())
    if summary.failed_count:
        _message(f"error: {summary.failed_count} actors were not backfilled")
        raise typer.Exit(EXIT_ACTORS_FAILED)
    if summary.missing_count:
        _message(f"error: {summary.missing_count} secrets are missing from storage")
        raise typer.Exit(EXIT_SECRETS_MISSING)


@migrate_app.command("contract")
def contract_command(
    input: Annotated[Path, typer.Option(help="JSON Lines output of a backfill.")],
    output: Annotated[Path, typer.Option(help="JSON Lines file to write.")],
) -> None:
    """Remove _secret and _secret_storage_id from markers with a reference id."""
    with _service() as service:
        try:
            summary = contract_file(service.engine, input, output)
        except ContractRejected as exc:
            _print_json(exc.summary.to_json())
            raise
    _print_json(summary.to_json())


@contextmanager
def _records(
    path: Path | None, url: str | None, query: str | None, batch_size: int
) -> Iterator[Iterator[InputRecord]]:
    if path is not None:
        try:
            stream = path.open(encoding="utf-8")
        except OSError as exc:
            raise InvalidInput(
                f"--input file {path} cannot be read: {type(exc).__name__}"
            ) from None
        with stream:
            yield read_json_lines(stream)
        return
    assert url is not None and query is not None
    yield read_query(url, query, batch_size)


@contextmanager
def _open_output(path: Path, keep_bytes: int | None) -> Iterator[IO[bytes]]:
    """Open the output; on resume keep its first `keep_bytes` bytes."""
    stream: IO[bytes]
    if keep_bytes is None or not path.exists():
        stream = path.open("wb")
    else:
        stream = path.open("r+b")
        stream.truncate(keep_bytes)
        stream.seek(keep_bytes)
    with stream:
        yield stream


@contextmanager
def _service() -> Iterator[KeyrefsService]:
    # Imported here: keyrefs.cli imports this module before it defines
    # build_settings.
    from keyrefs.cli import build_settings

    service = KeyrefsService(build_settings())
    try:
        yield service
    finally:
        service.close()


@contextmanager
def _progress(description: str) -> Iterator[Callable[[int], None]]:
    """Yield a callback that advances a progress bar on a terminal, else a no-op."""
    if not sys.stderr.isatty():
        yield lambda _count: None
        return
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}: {task.completed}"),
        TimeElapsedColumn(),
    )
    console = Console(stderr=True)
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(description, total=None)
        yield lambda count: progress.advance(task, count)


def _print_json(document: object) -> None:
    sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")


def _message(text: str) -> None:
    sys.stderr.write(text + "\n")


def _usage_error(text: str) -> NoReturn:
    _message(f"error: {text}")
    raise typer.Exit(2)
