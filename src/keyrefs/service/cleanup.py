"""Deleting secrets that nothing references any more.

A managed secret is deleted in three steps, so that neither a crash nor a
concurrent writer leaves a reference to a deleted secret:

1. in one transaction, lock the candidate rows, check in a new statement
   that no reference uses them, and mark them tombstoned. A writer that is
   adding a reference holds a key-share lock on the row through the foreign
   key until it commits, so the check sees its reference. Writers refuse to
   reuse a tombstoned row.
2. delete the backend objects;
3. delete the rows whose objects are gone. A failed backend delete leaves
   its row tombstoned, with an attempt count, for garbage collection.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import delete, exists, select, tuple_, update
from sqlalchemy.orm import Session, sessionmaker

from keyrefs.domain.coordinates import ManagedCoordinate, coordinate_from_row
from keyrefs.errors import InvalidCoordinate, KeyrefsError
from keyrefs.ids import SecretStorageId
from keyrefs.service.backend_pool import BackendPool
from keyrefs.store.models import GcAttempt, SecretConfig, SecretReference

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClaimedConfig:
    """A secret config row tombstoned for deletion."""

    id: uuid.UUID
    storage_id: SecretStorageId
    coordinate: str
    managed: bool


@dataclass(frozen=True)
class DeleteFailure:
    storage_id: SecretStorageId
    coordinate: str
    error: str


def claim_unreferenced(
    session: Session, config_ids: Collection[uuid.UUID]
) -> list[ClaimedConfig]:
    """Tombstone the rows among `config_ids` that no reference uses; open transaction.

    External rows are deleted at once, since keyrefs never deletes their secrets.
    """
    ids = list(config_ids)
    if not ids:
        return []
    session.execute(
        select(SecretConfig.id).where(SecretConfig.id.in_(ids)).with_for_update()
    )
    unreferenced = select(
        SecretConfig.id,
        SecretConfig.secret_storage_id,
        SecretConfig.external_coordinate,
        SecretConfig.managed,
    ).where(
        SecretConfig.id.in_(ids),
        ~exists().where(SecretReference.secret_config_id == SecretConfig.id),
    )
    claimed = [
        ClaimedConfig(
            row.id, SecretStorageId(row.secret_storage_id), row[2], row.managed
        )
        for row in session.execute(unreferenced)
    ]
    external = [item.id for item in claimed if not item.managed]
    managed = [item.id for item in claimed if item.managed]
    if external:
        session.execute(delete(SecretConfig).where(SecretConfig.id.in_(external)))
    if managed:
        session.execute(
            update(SecretConfig)
            .where(SecretConfig.id.in_(managed))
            .values(tombstone=True)
        )
    return [item for item in claimed if item.managed]


def delete_objects(
    pool: BackendPool, claimed: list[ClaimedConfig]
) -> tuple[list[ClaimedConfig], list[DeleteFailure]]:
    """Delete the backend objects of claimed rows; return deletions and failures."""
    deleted, failures = [], []
    for item in claimed:
        try:
            coordinate = coordinate_from_row(item.coordinate, managed=True)
            assert isinstance(coordinate, ManagedCoordinate)
            pool.get(item.storage_id).delete(coordinate)
        except (KeyrefsError, InvalidCoordinate) as exc:
            failures.append(DeleteFailure(item.storage_id, item.coordinate, exc.code))
            logger.warning(
                "could not delete secret %s from storage %s, left for garbage "
                "collection: %s",
                item.coordinate,
                item.storage_id,
                exc,
            )
        else:
            deleted.append(item)
            logger.info(
                "deleted secret %s from storage %s", item.coordinate, item.storage_id
            )
    return deleted, failures


def forget_rows(
    session: Session, deleted: list[ClaimedConfig], failures: list[DeleteFailure]
) -> None:
    """Delete the rows of deleted objects and count the failures; open transaction."""
    if deleted:
        session.execute(
            delete(SecretConfig).where(
                SecretConfig.id.in_([item.id for item in deleted]),
                SecretConfig.tombstone.is_(True),
            )
        )
    record_outcomes(
        session,
        succeeded=[(item.storage_id, item.coordinate) for item in deleted],
        failures=failures,
    )


def record_outcomes(
    session: Session,
    succeeded: list[tuple[SecretStorageId, str]],
    failures: list[DeleteFailure],
) -> None:
    if succeeded:
        # One statement for all deletions, so a config's cost stays constant.
        session.execute(
            delete(GcAttempt).where(
                tuple_(GcAttempt.secret_storage_id, GcAttempt.coordinate).in_(
                    list(set(succeeded))
                )
            )
        )
    for failure in failures:
        attempt = session.get(GcAttempt, (failure.storage_id, failure.coordinate))
        if attempt is None:
            session.add(
                GcAttempt(
                    secret_storage_id=failure.storage_id,
                    coordinate=failure.coordinate,
                    attempts=1,
                    last_error=failure.error,
                )
            )
        else:
            attempt.attempts += 1
            attempt.last_error = failure.error


def delete_unreferenced(
    sessions: sessionmaker[Session],
    pool: BackendPool,
    config_ids: Collection[uuid.UUID],
) -> list[DeleteFailure]:
    """Run the three steps for `config_ids`; return the deletions that failed."""
    if not config_ids:
        return []
    with sessions.begin() as session:
        claimed = claim_unreferenced(session, config_ids)
    if not claimed:
        return []
    deleted, failures = delete_objects(pool, claimed)
    with sessions.begin() as session:
        forget_rows(session, deleted, failures)
    return failures
