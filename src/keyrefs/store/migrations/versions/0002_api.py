"""Create the API token, tenant ownership and audit event tables.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-18
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# Imported for its side effect: Alembic loads every revision before an upgrade
# or a head check, so the API tables join `Base.metadata` wherever the schema is
# compared with the models, even when no API module was imported.
import keyrefs.store.api_models  # noqa: F401
from keyrefs.store.types import UtcDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_token",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=True),
        sa.Column("description", sa.String(256), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("revoked_at", UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_token"),
        sa.UniqueConstraint("token_hash", name="uq_api_token_token_hash"),
    )
    op.create_table(
        "workspace_owner",
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("workspace_id", name="pk_workspace_owner"),
    )
    op.create_table(
        "actor_owner",
        sa.Column("actor_id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("actor_id", name="pk_actor_owner"),
    )
    op.create_index(
        "ix_actor_owner_organization_id", "actor_owner", ["organization_id"]
    )
    op.create_table(
        "audit_event",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("occurred_at", UtcDateTime(), nullable=False),
        sa.Column("token_id", sa.Uuid(), nullable=True),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("actor_id", sa.Uuid(), nullable=True),
        sa.Column("storage_id", sa.Uuid(), nullable=True),
        sa.Column("organization_id", sa.Uuid(), nullable=True),
        sa.Column("coordinates", sa.Text(), nullable=False),
        sa.Column("result", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_event"),
    )
    op.create_index(
        "ix_audit_event_actor_id_occurred_at",
        "audit_event",
        ["actor_id", "occurred_at"],
    )
    op.create_index("ix_audit_event_occurred_at", "audit_event", ["occurred_at"])


def downgrade() -> None:
    op.drop_index("ix_audit_event_occurred_at", table_name="audit_event")
    op.drop_index("ix_audit_event_actor_id_occurred_at", table_name="audit_event")
    op.drop_table("audit_event")
    op.drop_index("ix_actor_owner_organization_id", table_name="actor_owner")
    op.drop_table("actor_owner")
    op.drop_table("workspace_owner")
    op.drop_table("api_token")
