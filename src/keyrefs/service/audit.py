"""The audit log: one `audit_event` row per write, hydration, deletion,
storage change and token change.

An event names the token, the action, the actor or storage, the hydration
paths and coordinates touched and the result. It never holds a secret value:
coordinates are names inside a backend and come only from stored configs
(markers), never from an incoming config, which may hold raw values.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from keyrefs.domain.markers import REFERENCE_KEY, SECRET_KEY, looks_like_marker
from keyrefs.errors import KeyrefsError
from keyrefs.store.api_models import AuditEvent
from keyrefs.store.types import utc_now

SessionSource = Callable[[], Session]
RESULT_OK = "ok"


@dataclass(frozen=True)
class Event:
    """An audit event to record; `coordinates` lists path and coordinate pairs."""

    action: str
    token_id: uuid.UUID | None = None
    actor_id: uuid.UUID | None = None
    storage_id: uuid.UUID | None = None
    organization_id: uuid.UUID | None = None
    coordinates: list[dict[str, str]] = field(default_factory=list)
    result: str = RESULT_OK


def add_event(session: Session, event: Event) -> None:
    """Add an event to the caller's transaction."""
    session.add(
        AuditEvent(
            id=uuid.uuid4(),
            occurred_at=utc_now(),
            token_id=event.token_id,
            action=event.action,
            actor_id=event.actor_id,
            storage_id=event.storage_id,
            organization_id=event.organization_id,
            coordinates=json.dumps(event.coordinates, separators=(",", ":")),
            result=event.result,
        )
    )


def record(sessions: SessionSource, event: Event) -> None:
    """Record an event in a transaction of its own."""
    with sessions() as session, session.begin():
        add_event(session, event)


@dataclass
class Outcome:
    """What an audited block touched, filled in by the block as it runs."""

    actor_id: uuid.UUID | None = None
    storage_id: uuid.UUID | None = None
    coordinates: list[dict[str, str]] = field(default_factory=list)


@contextmanager
def audited(sessions: SessionSource, event: Event) -> Iterator[Outcome]:
    """Record `event` after the block: `ok`, or the code of the error it raised."""
    outcome = Outcome(actor_id=event.actor_id, storage_id=event.storage_id)
    result = RESULT_OK
    try:
        yield outcome
    except KeyrefsError as exc:
        result = exc.code
        raise
    except Exception:
        result = KeyrefsError.code
        raise
    finally:
        record(
            sessions,
            replace(
                event,
                actor_id=outcome.actor_id,
                storage_id=outcome.storage_id,
                # Coordinates set inside the block win; else those known up front.
                coordinates=outcome.coordinates or event.coordinates,
                result=result,
            ),
        )


def marker_coordinates(config: object) -> list[dict[str, str]]:
    """List the path, coordinate and reference id of each marker in a config.

    Only the marker keys are read, so a raw value next to a marker is never
    copied. Malformed markers are listed by path only.
    """
    found: list[dict[str, str]] = []
    for path, node in _walk(config, "$"):
        entry = {"path": path}
        coordinate = node.get(SECRET_KEY)
        reference = node.get(REFERENCE_KEY)
        if isinstance(coordinate, str):
            entry["coordinate"] = coordinate
        if isinstance(reference, str):
            entry["reference_id"] = reference
        found.append(entry)
    return found


def _walk(node: object, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    if looks_like_marker(node):
        assert isinstance(node, dict)
        yield path, node
        return
    if isinstance(node, dict):
        for key, child in node.items():
            yield from _walk(child, f"{path}[{json.dumps(str(key))}]")
    elif isinstance(node, list):
        for index, child in enumerate(node):
            yield from _walk(child, f"{path}[{index}]")


@dataclass(frozen=True)
class EventView:
    """An audit event as `keyrefs audit` prints it."""

    id: uuid.UUID
    occurred_at: datetime
    token_id: uuid.UUID | None
    action: str
    actor_id: uuid.UUID | None
    storage_id: uuid.UUID | None
    organization_id: uuid.UUID | None
    coordinates: list[dict[str, str]]
    result: str

    def to_json(self) -> dict[str, object]:
        return {
            "id": str(self.id),
            "occurred_at": self.occurred_at.isoformat(),
            "token_id": _optional(self.token_id),
            "action": self.action,
            "actor_id": _optional(self.actor_id),
            "storage_id": _optional(self.storage_id),
            "organization_id": _optional(self.organization_id),
            "coordinates": self.coordinates,
            "result": self.result,
        }


def list_events(
    sessions: SessionSource,
    actor_id: uuid.UUID | None = None,
    since: datetime | None = None,
) -> list[EventView]:
    """Return events oldest first, optionally of one actor or from a time on."""
    query = select(AuditEvent).order_by(AuditEvent.occurred_at, AuditEvent.id)
    if actor_id is not None:
        query = query.where(AuditEvent.actor_id == actor_id)
    if since is not None:
        query = query.where(AuditEvent.occurred_at >= since)
    with sessions() as session:
        return [_view(row) for row in session.scalars(query)]


def _view(row: AuditEvent) -> EventView:
    return EventView(
        id=row.id,
        occurred_at=row.occurred_at,
        token_id=row.token_id,
        action=row.action,
        actor_id=row.actor_id,
        storage_id=row.storage_id,
        organization_id=row.organization_id,
        coordinates=json.loads(row.coordinates),
        result=row.result,
    )


def _optional(value: uuid.UUID | None) -> str | None:
    return None if value is None else str(value)
