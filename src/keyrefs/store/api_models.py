"""Tables of the HTTP service: API tokens, tenant ownership and the audit log.

They share `Base` with `keyrefs.store.models`, so one metadata describes the
whole schema. Revision 0002 creates them.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Index, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from keyrefs.store.models import Base
from keyrefs.store.types import UtcDateTime, utc_now


class ApiToken(Base):
    """A bearer token of the HTTP API, stored as the SHA-256 hex digest only."""

    __tablename__ = "api_token"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(32))
    # NULL means the token may act on every organization.
    organization_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    description: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class WorkspaceOwner(Base):
    """The organization a workspace was first seen with."""

    __tablename__ = "workspace_owner"

    workspace_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    organization_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)


class ActorOwner(Base):
    """The workspace and organization an actor was first seen with."""

    __tablename__ = "actor_owner"

    actor_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    workspace_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    organization_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)


class AuditEvent(Base):
    """One write, hydration, deletion, storage change or token change.

    `coordinates` is a JSON list of hydration paths and coordinates, never a
    secret value. `result` is `ok` or the error code of the failure.
    """

    __tablename__ = "audit_event"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)
    token_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    action: Mapped[str] = mapped_column(String(64))
    actor_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    storage_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    organization_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    coordinates: Mapped[str] = mapped_column(Text)
    result: Mapped[str] = mapped_column(String(64))


Index(
    "ix_audit_event_actor_id_occurred_at", AuditEvent.actor_id, AuditEvent.occurred_at
)
Index("ix_audit_event_occurred_at", AuditEvent.occurred_at)
