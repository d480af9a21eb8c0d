"""Create the secret storage, config and reference tables and the local store.

Revision ID: 0001
Revises:
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from keyrefs.store.types import UtcDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _timestamps() -> list[sa.Column[object]]:
    return [
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "secret_storage",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("scope_type", sa.String(32), nullable=False),
        sa.Column("scope_id", sa.Uuid(), nullable=False),
        sa.Column("descriptor", sa.String(256), nullable=False),
        sa.Column("storage_type", sa.String(64), nullable=False),
        sa.Column("configured_from_environment", sa.Boolean(), nullable=False),
        sa.Column("tombstone", sa.Boolean(), nullable=False),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name="pk_secret_storage"),
        sa.UniqueConstraint(
            "scope_id",
            "scope_type",
            "storage_type",
            "descriptor",
            name="uq_secret_storage_scope_id_scope_type_storage_type_descriptor",
        ),
    )
    op.create_table(
        "secret_config",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("secret_storage_id", sa.Uuid(), nullable=False),
        sa.Column("descriptor", sa.String(256), nullable=False),
        sa.Column("external_coordinate", sa.String(256), nullable=False),
        sa.Column("managed", sa.Boolean(), nullable=False),
        sa.Column("value_format", sa.String(8), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=True),
        sa.Column("tombstone", sa.Boolean(), nullable=False),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name="pk_secret_config"),
        sa.ForeignKeyConstraint(
            ["secret_storage_id"],
            ["secret_storage.id"],
            name="fk_secret_config_secret_storage_id_secret_storage",
        ),
        sa.UniqueConstraint(
            "secret_storage_id",
            "descriptor",
            name="uq_secret_config_secret_storage_id_descriptor",
        ),
        sa.UniqueConstraint(
            "secret_storage_id",
            "external_coordinate",
            name="uq_secret_config_secret_storage_id_external_coordinate",
        ),
    )
    op.create_table(
        "secret_reference",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("secret_config_id", sa.Uuid(), nullable=False),
        sa.Column("scope_type", sa.String(32), nullable=False),
        sa.Column("scope_id", sa.Uuid(), nullable=False),
        sa.Column("hydration_path", sa.Text(), nullable=True),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name="pk_secret_reference"),
        sa.ForeignKeyConstraint(
            ["secret_config_id"],
            ["secret_config.id"],
            name="fk_secret_reference_secret_config_id_secret_config",
        ),
    )
    op.create_index(
        "ix_secret_reference_secret_config_id",
        "secret_reference",
        ["secret_config_id"],
    )
    op.create_index(
        "uq_secret_reference_scope_path",
        "secret_reference",
        ["scope_type", "scope_id", sa.text("COALESCE(hydration_path, '')")],
        unique=True,
    )
    op.create_table(
        "local_data_key",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_local_data_key"),
        sa.UniqueConstraint(
            "organization_id", name="uq_local_data_key_organization_id"
        ),
    )
    op.create_table(
        "local_secret",
        sa.Column("secret_storage_id", sa.Uuid(), nullable=False),
        sa.Column("coordinate", sa.String(256), nullable=False),
        sa.Column("data_key_id", sa.Uuid(), nullable=False),
        sa.Column("nonce", sa.LargeBinary(), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint(
            "secret_storage_id", "coordinate", name="pk_local_secret"
        ),
        sa.ForeignKeyConstraint(
            ["data_key_id"],
            ["local_data_key.id"],
            name="fk_local_secret_data_key_id_local_data_key",
        ),
    )


def downgrade() -> None:
    op.drop_table("local_secret")
    op.drop_table("local_data_key")
    op.drop_index("uq_secret_reference_scope_path", table_name="secret_reference")
    op.drop_index("ix_secret_reference_secret_config_id", table_name="secret_reference")
    op.drop_table("secret_reference")
    op.drop_table("secret_config")
    op.drop_table("secret_storage")
