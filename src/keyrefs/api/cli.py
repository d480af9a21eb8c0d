"""The `serve`, `token ...` and `audit` commands of the `keyrefs` CLI."""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated

import typer

from keyrefs.errors import InvalidInput
from keyrefs.ids import OrganizationId
from keyrefs.service import KeyrefsService, audit, tokens

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8420

token_app = typer.Typer(
    help="Manage API tokens of the HTTP service.", no_args_is_help=True
)


def register_api_commands(app: typer.Typer) -> None:
    """Add `serve`, `token` and `audit` to the main CLI app."""
    app.command()(serve)
    app.add_typer(token_app, name="token")
    app.command("audit")(audit_command)


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = DEFAULT_HOST,
    port: Annotated[int, typer.Option(help="TCP port to listen on.")] = DEFAULT_PORT,
) -> None:
    """Apply migrations, then serve the HTTP API with uvicorn."""
    import uvicorn

    from keyrefs.api.app import create_app

    with _service() as service:
        service.init()
        # log_config=None keeps the logging that the CLI callback configured.
        uvicorn.run(create_app(service), host=host, port=port, log_config=None)


@token_app.command("create")
def token_create(
    role: Annotated[
        tokens.Role, typer.Option(help="admin, control-plane or data-plane.")
    ],
    organization_id: Annotated[
        uuid.UUID | None,
        typer.Option(help="Limit the token to this organization's data."),
    ] = None,
    description: Annotated[
        str, typer.Option(help="A note on who uses the token, up to 256 characters.")
    ] = "",
) -> None:
    """Create a token and print it once: only its SHA-256 digest is stored."""
    organization = OrganizationId(organization_id) if organization_id else None
    with _service() as service:
        created = tokens.create_token(service.session, role, organization, description)
    _print_json({**created.view.to_json(), "token": created.secret})
    sys.stderr.write("store the token now: keyrefs cannot show it again\n")


@token_app.command("list")
def token_list() -> None:
    """List tokens without their digests."""
    with _service() as service:
        found = tokens.list_tokens(service.session)
    _print_json([view.to_json() for view in found])


@token_app.command("revoke")
def token_revoke(token_id: Annotated[uuid.UUID, typer.Argument()]) -> None:
    """Revoke a token; requests with it get 401 from then on."""
    with _service() as service:
        view = tokens.revoke_token(service.session, token_id)
    _print_json(view.to_json())


def audit_command(
    actor_id: Annotated[uuid.UUID | None, typer.Option()] = None,
    since: Annotated[
        str | None,
        typer.Option(help="ISO 8601 time; a time without zone is taken as UTC."),
    ] = None,
) -> None:
    """Print audit events as JSON Lines, oldest first."""
    start = _parse_time(since) if since is not None else None
    with _service() as service:
        events = audit.list_events(service.session, actor_id, start)
    for event in events:
        sys.stdout.write(json.dumps(event.to_json(), ensure_ascii=False) + "\n")


def _parse_time(text: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(
            f"--since {text!r} is not an ISO 8601 time: expected for example "
            "2026-12-01T00:00:00Z"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


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


def _print_json(document: object) -> None:
    sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
