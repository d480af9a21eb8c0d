"""Queries on the keyrefs tables. Functions take a session and never commit."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence

from sqlalchemy import and_, delete, or_, select, tuple_
from sqlalchemy.orm import Session

from keyrefs.ids import (
    ActorId,
    OrganizationId,
    SecretConfigId,
    SecretReferenceId,
    SecretStorageId,
    WorkspaceId,
)
from keyrefs.store.models import SecretConfig, SecretReference, SecretStorage

ACTOR_SCOPE = "actor"
STORAGE_SCOPE = "secret_storage"


# Storages ------------------------------------------------------------------


def get_storage(session: Session, storage_id: SecretStorageId) -> SecretStorage | None:
    return session.get(SecretStorage, storage_id)


def list_storages(
    session: Session, scope_id: uuid.UUID | None = None
) -> list[SecretStorage]:
    query = select(SecretStorage).order_by(SecretStorage.created_at, SecretStorage.id)
    if scope_id is not None:
        query = query.where(SecretStorage.scope_id == scope_id)
    return list(session.scalars(query))


def storages_owned_by(
    session: Session, organization_id: OrganizationId, workspace_id: WorkspaceId
) -> list[SecretStorage]:
    """Live storages of the workspace first, then of the organization, oldest first."""
    query = select(SecretStorage).where(
        SecretStorage.tombstone.is_(False),
        or_(
            and_(
                SecretStorage.scope_type == "workspace",
                SecretStorage.scope_id == workspace_id,
            ),
            and_(
                SecretStorage.scope_type == "organization",
                SecretStorage.scope_id == organization_id,
            ),
        ),
    )
    storages = list(session.scalars(query))
    return sorted(
        storages,
        key=lambda s: (s.scope_type != "workspace", s.created_at, str(s.id)),
    )


# Secret configs ----------------------------------------------------------


def find_config(
    session: Session, storage_id: SecretStorageId, coordinate: str
) -> SecretConfig | None:
    return session.scalar(
        select(SecretConfig).where(
            SecretConfig.secret_storage_id == storage_id,
            SecretConfig.external_coordinate == coordinate,
        )
    )


def find_configs(
    session: Session, keys: Iterable[tuple[SecretStorageId, str]]
) -> dict[tuple[uuid.UUID, str], SecretConfig]:
    wanted = list(set(keys))
    if not wanted:
        return {}
    rows = session.scalars(
        select(SecretConfig).where(
            tuple_(
                SecretConfig.secret_storage_id, SecretConfig.external_coordinate
            ).in_(wanted)
        )
    )
    return {(row.secret_storage_id, row.external_coordinate): row for row in rows}


# References --------------------------------------------------------------


def references_of_scope(
    session: Session, scope_type: str, scope_id: uuid.UUID
) -> list[SecretReference]:
    query = (
        select(SecretReference)
        .where(
            SecretReference.scope_type == scope_type,
            SecretReference.scope_id == scope_id,
        )
        .order_by(SecretReference.hydration_path)
    )
    return list(session.scalars(query))


def references_of_actor(session: Session, actor_id: ActorId) -> list[SecretReference]:
    return references_of_scope(session, ACTOR_SCOPE, actor_id)


def references_by_ids(
    session: Session, reference_ids: Sequence[SecretReferenceId]
) -> dict[uuid.UUID, SecretReference]:
    if not reference_ids:
        return {}
    rows = session.scalars(
        select(SecretReference).where(SecretReference.id.in_(list(set(reference_ids))))
    )
    return {row.id: row for row in rows}


def references_of_config(
    session: Session, config_id: SecretConfigId
) -> list[SecretReference]:
    query = (
        select(SecretReference)
        .where(SecretReference.secret_config_id == config_id)
        .order_by(SecretReference.scope_id, SecretReference.hydration_path)
    )
    return list(session.scalars(query))


def delete_references(session: Session, reference_ids: Sequence[uuid.UUID]) -> None:
    if reference_ids:
        session.execute(
            delete(SecretReference).where(SecretReference.id.in_(list(reference_ids)))
        )
