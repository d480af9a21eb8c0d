"""Deleting secrets that nothing references any more."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import delete, exists, select
from sqlalchemy.orm import Session, sessionmaker

from keyrefs.domain.coordinates import ManagedCoordinate, coordinate_from_row
from keyrefs.errors import InvalidCoordinate, KeyrefsError
from keyrefs.ids import SecretStorageId
from keyrefs.service.backend_pool import BackendPool
from keyrefs.store.models import SecretConfig, SecretReference

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeletedConfig:
    id: uuid.UUID
    storage_id: SecretStorageId
    coordinate: str
    managed: bool


def delete_unreferenced_rows(
    session: Session, config_ids: Collection[uuid.UUID]
) -> list[DeletedConfig]:
    """Delete the rows among `config_ids` that no reference uses (open transaction)."""
    if not config_ids:
        return []
    unreferenced = (
        select(
            SecretConfig.id,
            SecretConfig.secret_storage_id,
            SecretConfig.external_coordinate,
            SecretConfig.managed,
        )
        .where(
            SecretConfig.id.in_(list(config_ids)),
            ~exists().where(SecretReference.secret_config_id == SecretConfig.id),
        )
        .with_for_update()
    )
    rows = list(session.execute(unreferenced))
    if rows:
        session.execute(
            delete(SecretConfig).where(SecretConfig.id.in_([r.id for r in rows]))
        )
    return [
        DeletedConfig(
            row.id,
            SecretStorageId(row.secret_storage_id),
            row.external_coordinate,
            row.managed,
        )
        for row in rows
    ]


def delete_from_backends(pool: BackendPool, deleted: list[DeletedConfig]) -> list[str]:
    """Delete the managed secrets of deleted rows; return the coordinates that failed.

    External secrets are never deleted. A failure is logged and left for
    garbage collection, which finds managed objects that no row knows.
    """
    failed = []
    for item in deleted:
        if not item.managed:
            continue
        try:
            coordinate = coordinate_from_row(item.coordinate, managed=True)
            assert isinstance(coordinate, ManagedCoordinate)
            pool.get(item.storage_id).delete(coordinate)
        except (KeyrefsError, InvalidCoordinate) as exc:
            failed.append(item.coordinate)
            logger.warning(
                "could not delete secret %s from storage %s, left for garbage "
                "collection: %s",
                item.coordinate,
                item.storage_id,
                exc,
            )
        else:
            logger.info(
                "deleted secret %s from storage %s", item.coordinate, item.storage_id
            )
    return failed


def delete_unreferenced(
    sessions: sessionmaker[Session],
    pool: BackendPool,
    config_ids: Collection[uuid.UUID],
) -> list[str]:
    """Delete unreferenced rows in one transaction, then their backend objects."""
    if not config_ids:
        return []
    with sessions.begin() as session:
        deleted = delete_unreferenced_rows(session, config_ids)
    return delete_from_backends(pool, deleted)
