"""The keyrefs tables as SQLAlchemy 2 typed models.

Alembic owns the schema: these classes describe it for queries, and a test
checks that the migrations produce exactly these tables.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from keyrefs.store.types import UtcDateTime, utc_now

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Timestamped:
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(
        UtcDateTime, default=utc_now, onupdate=utc_now
    )


class SecretStorage(Timestamped, Base):
    """One configured backend plus the organization or workspace that owns it."""

    __tablename__ = "secret_storage"
    __table_args__ = (
        UniqueConstraint("scope_id", "scope_type", "storage_type", "descriptor"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    scope_type: Mapped[str] = mapped_column(String(32))
    scope_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    descriptor: Mapped[str] = mapped_column(String(256))
    storage_type: Mapped[str] = mapped_column(String(64))
    configured_from_environment: Mapped[bool] = mapped_column(Boolean)
    tombstone: Mapped[bool] = mapped_column(Boolean, default=False)


class SecretConfig(Timestamped, Base):
    """One secret living in one storage, managed by keyrefs or external."""

    __tablename__ = "secret_config"
    __table_args__ = (
        UniqueConstraint("secret_storage_id", "descriptor"),
        UniqueConstraint("secret_storage_id", "external_coordinate"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    secret_storage_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("secret_storage.id")
    )
    descriptor: Mapped[str] = mapped_column(String(256))
    external_coordinate: Mapped[str] = mapped_column(String(256))
    # No default: every writer states whether keyrefs owns the secret.
    managed: Mapped[bool] = mapped_column(Boolean)
    value_format: Mapped[str] = mapped_column(String(8))
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    tombstone: Mapped[bool] = mapped_column(Boolean, default=False)

    storage: Mapped[SecretStorage] = relationship(lazy="joined")


class SecretReference(Timestamped, Base):
    """Scope S uses secret config C at hydration path P."""

    __tablename__ = "secret_reference"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    secret_config_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("secret_config.id"), index=True
    )
    scope_type: Mapped[str] = mapped_column(String(32))
    scope_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    # NULL means the whole object, as for a storage's own credentials.
    hydration_path: Mapped[str | None] = mapped_column(Text, nullable=True)

    secret_config: Mapped[SecretConfig] = relationship(lazy="joined")


# One reference per scope and path; COALESCE makes NULL paths collide too.
Index(
    "uq_secret_reference_scope_path",
    SecretReference.scope_type,
    SecretReference.scope_id,
    func.coalesce(SecretReference.hydration_path, ""),
    unique=True,
)


class LocalDataKey(Base):
    """A data key of the local backend, wrapped by the master key."""

    __tablename__ = "local_data_key"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    organization_id: Mapped[uuid.UUID] = mapped_column(Uuid, unique=True)
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)


class LocalSecret(Base):
    """A ciphertext of the local backend: AES-256-GCM under an organization's key."""

    __tablename__ = "local_secret"

    secret_storage_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    coordinate: Mapped[str] = mapped_column(String(256), primary_key=True)
    data_key_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("local_data_key.id"))
    nonce: Mapped[bytes] = mapped_column(LargeBinary)
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utc_now)


class GcAttempt(Base):
    """A backend object whose deletion failed, with how often it failed so far."""

    __tablename__ = "gc_attempt"

    secret_storage_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    coordinate: Mapped[str] = mapped_column(String(256), primary_key=True)
    attempts: Mapped[int] = mapped_column(Integer)
    last_error: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(
        UtcDateTime, default=utc_now, onupdate=utc_now
    )
