"""The `keyrefs` command line: JSON on standard output, messages on standard error.

Exit codes: 0 success; 2 usage or settings error; 3 invalid input (spec,
config, mask without a stored secret, foreign reference); 4 secret, reference
or storage not found; 5 backend unavailable or access denied; 1 anything else.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError

from keyrefs import hydration_lines
from keyrefs.api.cli import register_api_commands
from keyrefs.domain.durations import parse_duration
from keyrefs.errors import ConfigurationError, InvalidInput, KeyrefsError
from keyrefs.ids import (
    ActorId,
    OrganizationId,
    SecretConfigId,
    SecretStorageId,
    WorkspaceId,
)
from keyrefs.rollout_cli import register_rollout_commands
from keyrefs.service import KeyrefsService, tenancy
from keyrefs.service.environment import describe_validation_error
from keyrefs.service.gc import GcOptions
from keyrefs.service.storages import ScopeType
from keyrefs.service.types import ActorScope
from keyrefs.settings import Settings

logger = logging.getLogger("keyrefs.cli")

EXIT_INTERNAL = 1
EXIT_BACKEND = 5

app = typer.Typer(
    help="keyrefs: keep connector secrets out of stored configs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
storage_app = typer.Typer(help="Manage secret storages.", no_args_is_help=True)
app.add_typer(storage_app, name="storage")

FileArgument = Annotated[
    str, typer.Option(help="Path of a JSON file, or - for standard input.")
]
UuidOption = Annotated[uuid.UUID, typer.Option()]


@app.callback()
def configure(
    verbose: Annotated[
        bool,
        typer.Option("--verbose", "-v", help="Log INFO messages to standard error."),
    ] = False,
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


# Commands ---------------------------------------------------------------------


@app.command()
def init() -> None:
    """Apply migrations and create or update the default storage."""
    with _service() as service:
        result = service.init()
    if result.created_master_key_file is not None:
        _message(
            f"created master key file {result.created_master_key_file} (mode 0600)"
        )
    if result.previous_storage_type is not None:
        _message(
            f"default storage changed from {result.previous_storage_type} to "
            f"{result.storage.storage_type}: existing secrets were not moved"
        )
    _print_json(result.storage.to_json())


@app.command()
def process(
    spec: FileArgument,
    config: FileArgument,
    actor_id: UuidOption,
    workspace_id: UuidOption,
    organization_id: UuidOption,
    previous: Annotated[
        str | None, typer.Option(help="The previously stored config, or -.")
    ] = None,
    ephemeral: Annotated[
        bool,
        typer.Option(help="Store short-lived secrets, without actor references."),
    ] = False,
    ttl: Annotated[
        str | None,
        typer.Option(help="Lifetime of --ephemeral secrets: 90s, 15m, 2h or 1d."),
    ] = None,
) -> None:
    """Split the secrets out of a config and print the stored config."""
    if ephemeral != (ttl is not None):
        _usage_error("--ephemeral and --ttl go together: give both or neither")
    lifetime = _duration(ttl, "--ttl") if ttl is not None else None
    scope = ActorScope(
        ActorId(actor_id), WorkspaceId(workspace_id), OrganizationId(organization_id)
    )
    documents = _read_json_files(spec=spec, config=config, previous=previous)
    with _service() as service:
        stored = service.process(
            scope,
            documents["spec"],
            documents["config"],
            documents.get("previous"),
            ttl=lifetime,
        )
    _print_json(stored)


@app.command()
def hydrate(
    config: Annotated[
        str | None, typer.Option(help="Path of a JSON file, or - for standard input.")
    ] = None,
    actor_id: Annotated[uuid.UUID | None, typer.Option()] = None,
    input_file: Annotated[
        str | None,
        typer.Option(
            "--input",
            help='JSON Lines file, or -, of {"actor_id": ..., "config": {...}}; '
            "prints one JSON line per input line, in order.",
        ),
    ] = None,
    organization_id: Annotated[
        uuid.UUID | None,
        typer.Option(help="Organization for the feature flags; default: the owner."),
    ] = None,
    workspace_id: Annotated[
        uuid.UUID | None,
        typer.Option(help="Workspace for the feature flags; default: the owner."),
    ] = None,
) -> None:
    """Print the full config of a stored config, secret values included.

    With --input, exits 0 when every line was hydrated, else with the exit
    code of the first line that failed.
    """
    if input_file is not None:
        if config is not None or actor_id is not None:
            _usage_error("--input excludes --config and --actor-id")
        _hydrate_lines(input_file)
        return
    if config is None or actor_id is None:
        _usage_error("give --config and --actor-id, or --input")
    document = _read_json_files(config=config)["config"]
    with _service() as service:
        full = service.hydrate(
            document,
            ActorId(actor_id),
            OrganizationId(organization_id) if organization_id else None,
            WorkspaceId(workspace_id) if workspace_id else None,
        )
    _print_json(full)


def _hydrate_lines(path: str) -> None:
    try:
        text = (
            sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
        )
    except FileNotFoundError:
        raise InvalidInput(f"--input file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(
            f"--input file {path} cannot be read: {type(exc).__name__}"
        ) from None
    lines = hydration_lines.parse_lines(text, path)
    with _service() as service:
        output, exit_code = hydration_lines.hydrate_lines(service, lines)
    for document in output:
        sys.stdout.write(json.dumps(document, ensure_ascii=False) + "\n")
    if exit_code:
        raise typer.Exit(exit_code)


@app.command()
def mask(spec: FileArgument, config: FileArgument) -> None:
    """Print a config with every secret field replaced by the mask."""
    documents = _read_json_files(spec=spec, config=config)
    with _service() as service:
        masked = service.mask(documents["spec"], documents["config"])
    _print_json(masked)


@app.command()
def references(
    actor_id: Annotated[uuid.UUID | None, typer.Option()] = None,
    secret_config_id: Annotated[uuid.UUID | None, typer.Option()] = None,
) -> None:
    """List the references of an actor or of a secret config."""
    if (actor_id is None) == (secret_config_id is None):
        _usage_error("give exactly one of --actor-id and --secret-config-id")
    with _service() as service:
        if actor_id is not None:
            found = service.references_of_actor(ActorId(actor_id))
        else:
            assert secret_config_id is not None
            found = service.references_of_secret_config(
                SecretConfigId(secret_config_id)
            )
    _print_json([reference.to_json() for reference in found])


@app.command("delete-actor")
def delete_actor(actor_id: UuidOption) -> None:
    """Remove an actor's references and delete its managed secrets."""
    with _service() as service:
        removed = service.delete_actor(ActorId(actor_id))
    _print_json({"actor_id": str(actor_id), "deleted_references": removed})


@app.command()
def gc(
    dry_run: Annotated[
        bool, typer.Option(help="Count what would be deleted, delete nothing.")
    ] = False,
    grace: Annotated[
        str, typer.Option(help="Minimum age of unreferenced secrets and orphans.")
    ] = "1h",
    storage_id: Annotated[
        uuid.UUID | None, typer.Option(help="Collect only this storage.")
    ] = None,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Delete at most this many items.")
    ] = None,
) -> None:
    """Delete unreferenced, expired and orphaned managed secrets; print a summary."""
    options = GcOptions(
        dry_run=dry_run,
        grace=_duration(grace, "--grace", allow_zero=True),
        storage_id=SecretStorageId(storage_id) if storage_id else None,
        limit=limit,
    )
    with _service() as service, _progress("collecting garbage") as advance:
        report = service.collect_garbage(options, advance)
    _print_json(report.to_json())
    if report.failures:
        _message(f"{len(report.failures)} deletions failed; a later run retries them")
        raise typer.Exit(EXIT_BACKEND)


@storage_app.command("add")
def storage_add(
    type: Annotated[
        str,
        typer.Option(
            help="vault, aws_secrets_manager, google_secret_manager or azure_key_vault."
        ),
    ],
    scope: Annotated[str, typer.Option(help="organization or workspace.")],
    scope_id: UuidOption,
    descriptor: Annotated[
        str, typer.Option(help="A name for the storage, unique per scope.")
    ],
    config: FileArgument,
    organization_id: Annotated[
        uuid.UUID | None,
        typer.Option(
            help="Organization of a workspace scope; needed the first time a "
            "workspace is named."
        ),
    ] = None,
) -> None:
    """Add an organization- or workspace-owned storage after checking its connection."""
    scope_type: ScopeType
    if scope == "organization":
        scope_type = "organization"
    elif scope == "workspace":
        scope_type = "workspace"
    else:
        _usage_error(
            f"--scope {scope!r} is invalid: expected organization or workspace"
        )
    values = _read_json_files(config=config)["config"]
    with _service() as service:
        # Records which organization a workspace belongs to, as the HTTP API
        # does, so that no other organization can claim the workspace later.
        owner = tenancy.claim_storage_owner(
            service.session, scope_type, scope_id, organization_id, None
        )
        storage = service.add_storage(
            type, scope_type, scope_id, owner, descriptor, values
        )
    _print_json(storage.to_json())


@storage_app.command("migrate")
def storage_migrate(
    source: Annotated[uuid.UUID, typer.Option("--from", help="Storage to move from.")],
    target: Annotated[uuid.UUID, typer.Option("--to", help="Storage to move to.")],
    dry_run: Annotated[
        bool, typer.Option(help="List what would move, move nothing.")
    ] = False,
) -> None:
    """Move managed secrets to another storage of the same organization."""
    with _service() as service:
        report = service.migrate_storage(
            SecretStorageId(source), SecretStorageId(target), dry_run
        )
    _print_json(report.to_json())
    if report.failures:
        _message(f"{len(report.failures)} secrets failed to move; run it again")
        raise typer.Exit(EXIT_BACKEND)


@storage_app.command("list")
def storage_list(scope_id: Annotated[uuid.UUID | None, typer.Option()] = None) -> None:
    """List secret storages."""
    with _service() as service:
        found = service.list_storages(scope_id)
    _print_json([storage.to_json() for storage in found])


@storage_app.command("tombstone")
def storage_tombstone(storage_id: Annotated[uuid.UUID, typer.Argument()]) -> None:
    """Mark a storage as tombstoned so that no new secret goes to it."""
    with _service() as service:
        storage = service.tombstone_storage(SecretStorageId(storage_id))
    _print_json(storage.to_json())


register_api_commands(app)
register_rollout_commands(app)


# Plumbing ---------------------------------------------------------------------


def build_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigurationError(
            "settings are invalid: "
            + describe_validation_error(exc, env_prefix="KEYREFS_")
        ) from None


@contextmanager
def _service() -> Iterator[KeyrefsService]:
    service = KeyrefsService(build_settings())
    try:
        yield service
    finally:
        service.close()


def _duration(text: str, option: str, allow_zero: bool = False) -> timedelta:
    try:
        return parse_duration(text, allow_zero)
    except ValueError as exc:
        _usage_error(f"{option}: {exc}")


@contextmanager
def _progress(description: str) -> Iterator[Callable[[str], None]]:
    """Yield a callback that advances a progress bar on a terminal, else a no-op."""
    if not sys.stderr.isatty():
        yield lambda _kind: None
        return
    from rich.progress import Progress, SpinnerColumn, TextColumn

    columns = (SpinnerColumn(), TextColumn("{task.description}: {task.completed}"))
    with Progress(*columns, transient=True) as progress:
        task = progress.add_task(description, total=None)
        yield lambda _kind: progress.advance(task)


def _read_json_files(**paths: str | None) -> dict[str, Any]:
    if sum(path == "-" for path in paths.values()) > 1:
        _usage_error("only one option can read standard input (-)")
    return {
        name: _read_json(path, name) for name, path in paths.items() if path is not None
    }


def _read_json(path: str, name: str) -> Any:
    option = "--" + name.replace("_", "-")
    try:
        text = (
            sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
        )
    except FileNotFoundError:
        raise InvalidInput(f"{option} file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(
            f"{option} file {path} cannot be read: {type(exc).__name__}"
        ) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            f"{option} {path} is not valid JSON: line {exc.lineno}, column {exc.colno}"
        ) from None
    except RecursionError:
        raise InvalidInput(f"{option} {path} is nested too deeply") from None


def _print_json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")


def _message(text: str) -> None:
    sys.stderr.write(text + "\n")


def _usage_error(text: str) -> NoReturn:
    _message(f"error: {text}")
    raise typer.Exit(2)


def main() -> None:
    """Run the CLI, turning keyrefs errors into messages and exit codes."""
    try:
        # Standalone mode: Typer reports usage errors itself and exits with 2.
        app()
    except KeyrefsError as exc:
        _message(f"error: {exc}")
        sys.exit(exc.exit_code)
    except DBAPIError as exc:
        # The driver's text may quote statement parameters, so only its type is shown.
        _message(
            f"error: the database failed ({type(exc.orig).__name__}): run "
            "`keyrefs init` if the database is new, and check KEYREFS_DATABASE_URL"
        )
        _log_location(exc)
        sys.exit(EXIT_INTERNAL)
    except Exception as exc:
        # The exception's text may quote secret input, so only its type is shown.
        _message(f"error: unexpected {type(exc).__name__}; rerun with -v for details")
        _log_location(exc)
        sys.exit(EXIT_INTERNAL)


def _log_location(exc: BaseException) -> None:
    """Log where an unexpected exception was raised, without its message."""
    frames = traceback.extract_tb(exc.__traceback__)
    if frames:
        last = frames[-1]
        logger.info(
            "%s raised at %s:%d in %s",
            type(exc).__name__,
            last.filename,
            last.lineno,
            last.name,
        )


if __name__ == "__main__":
    main()
