"""Garbage collection of secrets that no config can reach any more.

Per storage, three kinds: managed secret configs without references (older
than the grace period, or tombstoned by an earlier failed delete), expired
short-lived secrets, and backend objects under the managed prefix that no
secret_config row records (left by a crash between the backend write and the
commit; older than the grace period). External secrets are never touched.

Items whose deletion failed before are tried last, so that they do not block
the rest when `limit` is set.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, or_, select
from sqlalchemy.orm import Session, sessionmaker

from keyrefs.backends.base import ListedSecret
from keyrefs.errors import KeyrefsError, StorageNotFound
from keyrefs.ids import SecretStorageId
from keyrefs.service import cleanup
from keyrefs.service.backend_pool import BackendPool
from keyrefs.store.models import GcAttempt, SecretConfig, SecretReference, SecretStorage
from keyrefs.store.types import utc_now

logger = logging.getLogger(__name__)

DEFAULT_GRACE = timedelta(hours=1)
KINDS = ("unreferenced", "expired", "orphaned")

ProgressCallback = Callable[[str], None]


@dataclass(frozen=True)
class GcOptions:
    dry_run: bool = False
    grace: timedelta = DEFAULT_GRACE
    storage_id: SecretStorageId | None = None
    limit: int | None = None


@dataclass
class GcReport:
    """Counts per storage and kind, and the deletions that failed."""

    dry_run: bool
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    failures: list[dict[str, str]] = field(default_factory=list)

    def count(self, storage_id: SecretStorageId, kind: str, amount: int = 1) -> None:
        per_storage = self.counts.setdefault(str(storage_id), dict.fromkeys(KINDS, 0))
        per_storage[kind] += amount

    def fail(
        self, storage_id: SecretStorageId, coordinate: str, kind: str, error: str
    ) -> None:
        self.failures.append(
            {
                "storage_id": str(storage_id),
                "coordinate": coordinate,
                "kind": kind,
                "error": error,
            }
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "storages": self.counts,
            "failures": self.failures,
        }


class GarbageCollector:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        pool: BackendPool,
        managed_prefix: str,
        progress: ProgressCallback | None = None,
    ) -> None:
        self._sessions = sessions
        self._pool = pool
        self._prefix = managed_prefix
        self._progress = progress or (lambda _kind: None)

    def run(self, options: GcOptions) -> GcReport:
        report = GcReport(dry_run=options.dry_run)
        budget = [options.limit if options.limit is not None else -1]
        for storage_id in self._storage_ids(options):
            report.counts.setdefault(str(storage_id), dict.fromkeys(KINDS, 0))
            self._collect_rows(storage_id, options, report, budget)
            self._collect_orphans(storage_id, options, report, budget)
        return report

    def _storage_ids(self, options: GcOptions) -> list[SecretStorageId]:
        with self._sessions() as session:
            query = select(SecretStorage.id).order_by(SecretStorage.created_at)
            if options.storage_id is not None:
                query = query.where(SecretStorage.id == options.storage_id)
            found = [SecretStorageId(value) for value in session.scalars(query)]
        if options.storage_id is not None and not found:
            raise StorageNotFound(f"secret storage {options.storage_id} does not exist")
        return found

    # Rows ---------------------------------------------------------------

    def _collect_rows(
        self,
        storage_id: SecretStorageId,
        options: GcOptions,
        report: GcReport,
        budget: list[int],
    ) -> None:
        now = utc_now()
        candidates = self._row_candidates(
            storage_id, now, now - options.grace, budget[0]
        )
        if options.dry_run:
            for _config_id, _name, kind in candidates:
                report.count(storage_id, kind)
            return
        kinds = {config_id: kind for config_id, _name, kind in candidates}
        with self._sessions.begin() as session:
            claimed = cleanup.claim_unreferenced(session, list(kinds))
        deleted, failures = cleanup.delete_objects(self._pool, claimed)
        with self._sessions.begin() as session:
            cleanup.forget_rows(session, deleted, failures)
        for item in deleted:
            report.count(storage_id, kinds[item.id])
            self._progress(kinds[item.id])
        for failure in failures:
            kind = next(k for i, n, k in candidates if n == failure.coordinate)
            report.fail(storage_id, failure.coordinate, kind, failure.error)
        _spend(budget, len(candidates))

    def _row_candidates(
        self, storage_id: SecretStorageId, now: datetime, cutoff: datetime, limit: int
    ) -> list[tuple[Any, str, str]]:
        if limit == 0:
            return []
        query = (
            select(
                SecretConfig.id,
                SecretConfig.external_coordinate,
                SecretConfig.expires_at,
            )
            .outerjoin(
                GcAttempt,
                and_(
                    GcAttempt.secret_storage_id == SecretConfig.secret_storage_id,
                    GcAttempt.coordinate == SecretConfig.external_coordinate,
                ),
            )
            .where(
                SecretConfig.secret_storage_id == storage_id,
                SecretConfig.managed.is_(True),
                ~exists().where(SecretReference.secret_config_id == SecretConfig.id),
                or_(
                    SecretConfig.tombstone.is_(True),
                    SecretConfig.expires_at <= now,
                    and_(
                        SecretConfig.expires_at.is_(None),
                        SecretConfig.created_at < cutoff,
                    ),
                ),
            )
            .order_by(
                GcAttempt.attempts.is_not(None), GcAttempt.attempts, SecretConfig.id
            )
        )
        if limit > 0:
            query = query.limit(limit)
        with self._sessions() as session:
            rows = session.execute(query).all()
        return [
            (
                row.id,
                row.external_coordinate,
                "expired"
                if row.expires_at is not None and row.expires_at <= now
                else "unreferenced",
            )
            for row in rows
        ]

    # Orphans ------------------------------------------------------------

    def _collect_orphans(
        self,
        storage_id: SecretStorageId,
        options: GcOptions,
        report: GcReport,
        budget: list[int],
    ) -> None:
        if budget[0] == 0:
            return
        try:
            listed = list(self._pool.get(storage_id).list_managed(self._prefix))
        except KeyrefsError as exc:
            report.fail(storage_id, self._prefix + "*", "orphaned", exc.code)
            logger.warning("could not list storage %s: %s", storage_id, exc)
            return
        # The rows are read after the listing: an object whose row commits later
        # is younger than the grace period, so it is not taken for an orphan.
        orphans = self._unknown(storage_id, listed, utc_now() - options.grace)
        if budget[0] > 0:
            orphans = orphans[: budget[0]]
        _spend(budget, len(orphans))
        if options.dry_run:
            report.count(storage_id, "orphaned", len(orphans))
            return
        succeeded: list[tuple[SecretStorageId, str]] = []
        failures: list[cleanup.DeleteFailure] = []
        backend = self._pool.get(storage_id)
        for item in orphans:
            name = item.coordinate.render()
            try:
                backend.delete(item.coordinate)
            except KeyrefsError as exc:
                failures.append(cleanup.DeleteFailure(storage_id, name, exc.code))
                report.fail(storage_id, name, "orphaned", exc.code)
                logger.warning(
                    "could not delete orphan %s in storage %s: %s",
                    name,
                    storage_id,
                    exc,
                )
                continue
            succeeded.append((storage_id, name))
            report.count(storage_id, "orphaned")
            self._progress("orphaned")
            logger.info("deleted orphan %s from storage %s", name, storage_id)
        with self._sessions.begin() as session:
            cleanup.record_outcomes(session, succeeded, failures)

    def _unknown(
        self, storage_id: SecretStorageId, listed: list[ListedSecret], cutoff: datetime
    ) -> list[ListedSecret]:
        names = [item.coordinate.render() for item in listed]
        with self._sessions() as session:
            # Rows of every storage count: two storages may reach the same
            # backend namespace, and an object one of them records is no orphan.
            known = set(
                session.scalars(
                    select(SecretConfig.external_coordinate).where(
                        SecretConfig.external_coordinate.in_(names),
                    )
                )
            )
            attempts = {
                row.coordinate: row.attempts
                for row in session.scalars(
                    select(GcAttempt).where(GcAttempt.secret_storage_id == storage_id)
                )
            }
        # NOTE: an object whose backend reports no creation time is kept, since
        # its age cannot be checked against the grace period.
        orphans = [
            item
            for item in listed
            if item.coordinate.render() not in known
            and item.created_at is not None
            and item.created_at < cutoff
        ]
        return sorted(
            orphans, key=lambda item: attempts.get(item.coordinate.render(), 0)
        )


def _spend(budget: list[int], amount: int) -> None:
    if budget[0] > 0:
        budget[0] = max(budget[0] - amount, 0)
