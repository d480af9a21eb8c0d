"""Record failed deletions, so garbage collection tries the others first.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from keyrefs.store.types import UtcDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gc_attempt",
        sa.Column("secret_storage_id", sa.Uuid(), nullable=False),
        sa.Column("coordinate", sa.String(256), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(64), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint(
            "secret_storage_id", "coordinate", name="pk_gc_attempt"
        ),
    )


def downgrade() -> None:
    op.drop_table("gc_attempt")
