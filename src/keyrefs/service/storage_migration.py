"""Moving managed secrets from one storage to another.

Each managed secret is copied to the target backend, then its secret_config
row is re-pointed at the target in a transaction, and only after that commit
is the source copy deleted. A run interrupted at any point is finished by
running it again: rows still in the source are copied again, and source
objects whose row already moved are deleted.

References do not change: they point at secret configs, whose storage moves.
Markers that name the source in `_secret_storage_id` still hydrate, because
hydration follows the reference id.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from keyrefs.backends.base import Found, SecretWrite
from keyrefs.domain.coordinates import ManagedCoordinate, coordinate_from_row
from keyrefs.errors import InvalidInput, KeyrefsError, StorageNotFound
from keyrefs.ids import OrganizationId, SecretStorageId
from keyrefs.service.backend_pool import BackendPool
from keyrefs.service.storages import namespace_key
from keyrefs.store import repositories as repo
from keyrefs.store.api_models import WorkspaceOwner
from keyrefs.store.models import SecretConfig, SecretReference, SecretStorage

logger = logging.getLogger(__name__)


@dataclass
class StorageMigrationReport:
    source: SecretStorageId
    target: SecretStorageId
    dry_run: bool
    moved: list[str] = field(default_factory=list)
    leftovers_deleted: list[str] = field(default_factory=list)
    actors_with_external_secrets: list[str] = field(default_factory=list)
    storage_credentials_kept: list[str] = field(default_factory=list)
    failures: list[dict[str, str]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "source": str(self.source),
            "target": str(self.target),
            "dry_run": self.dry_run,
            "moved": len(self.moved),
            "leftovers_deleted": len(self.leftovers_deleted),
            "actors_with_external_secrets": self.actors_with_external_secrets,
            "storage_credentials_kept": self.storage_credentials_kept,
            "failures": self.failures,
        }


@dataclass(frozen=True)
class _Candidate:
    id: uuid.UUID
    coordinate: ManagedCoordinate


class StorageMigration:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        pool: BackendPool,
        managed_prefix: str,
    ) -> None:
        self._sessions = sessions
        self._pool = pool
        self._prefix = managed_prefix

    def run(
        self, source: SecretStorageId, target: SecretStorageId, dry_run: bool
    ) -> StorageMigrationReport:
        report = StorageMigrationReport(source, target, dry_run)
        organization = self._check_storages(source, target)
        candidates = self._inspect(source, report)
        if dry_run:
            report.moved = [c.coordinate.render() for c in candidates]
            return report
        self._delete_leftovers(source, target, report)
        for candidate in candidates:
            self._move(candidate, source, target, organization, report)
        return report

    # Checks -------------------------------------------------------------

    def _check_storages(
        self, source: SecretStorageId, target: SecretStorageId
    ) -> OrganizationId:
        if source == target:
            raise InvalidInput("--from and --to name the same storage")
        with self._sessions() as session:
            rows = {
                storage_id: repo.get_storage(session, storage_id)
                for storage_id in (source, target)
            }
            owners = {}
            for storage_id, storage in rows.items():
                if storage is None:
                    raise StorageNotFound(f"secret storage {storage_id} does not exist")
                owners[storage_id] = _owning_organization(session, storage)
        target_row = rows[target]
        assert target_row is not None
        if target_row.tombstone:
            raise InvalidInput(f"target storage {target} is tombstoned")
        if None in owners.values() or owners[source] != owners[target]:
            raise InvalidInput(
                f"storages {source} and {target} do not belong to the same "
                "organization: moving secrets across organizations is not allowed"
            )
        source_key = namespace_key(*self._pool.config_of(source))
        if source_key is not None and source_key == namespace_key(
            *self._pool.config_of(target)
        ):
            raise InvalidInput(
                f"storages {source} and {target} write to the same backend "
                "location: deleting the source copies would delete the moved secrets"
            )
        organization = owners[source]
        assert organization is not None
        return OrganizationId(organization)

    def _inspect(
        self, source: SecretStorageId, report: StorageMigrationReport
    ) -> list[_Candidate]:
        with self._sessions() as session:
            configs = list(
                session.scalars(
                    select(SecretConfig).where(
                        SecretConfig.secret_storage_id == source,
                        SecretConfig.tombstone.is_(False),
                    )
                )
            )
            references = list(
                session.scalars(
                    select(SecretReference).where(
                        SecretReference.secret_config_id.in_([c.id for c in configs])
                    )
                )
            )
        by_config: dict[uuid.UUID, list[SecretReference]] = {}
        for reference in references:
            by_config.setdefault(reference.secret_config_id, []).append(reference)

        candidates = []
        external_actors: set[str] = set()
        for config in configs:
            users = by_config.get(config.id, [])
            if not config.managed:
                external_actors.update(
                    str(r.scope_id) for r in users if r.scope_type == repo.ACTOR_SCOPE
                )
                continue
            if any(r.scope_type == repo.STORAGE_SCOPE for r in users):
                # The pool reads storage credentials from the default storage.
                report.storage_credentials_kept.append(config.external_coordinate)
                continue
            coordinate = coordinate_from_row(config.external_coordinate, managed=True)
            assert isinstance(coordinate, ManagedCoordinate)
            candidates.append(_Candidate(config.id, coordinate))
        report.actors_with_external_secrets = sorted(external_actors)
        return candidates

    # Moving -------------------------------------------------------------

    def _move(
        self,
        candidate: _Candidate,
        source: SecretStorageId,
        target: SecretStorageId,
        organization: OrganizationId,
        report: StorageMigrationReport,
    ) -> None:
        name = candidate.coordinate.render()
        try:
            result = self._pool.get(source).read(candidate.coordinate)
            if not isinstance(result, Found):
                report.failures.append(
                    {"coordinate": name, "error": "secret_not_found"}
                )
                return
            write = SecretWrite(candidate.coordinate, result.value, organization)
            self._pool.get(target).write(write)
        except KeyrefsError as exc:
            report.failures.append({"coordinate": name, "error": exc.code})
            logger.warning(
                "could not copy secret %s to storage %s: %s", name, target, exc
            )
            return

        with self._sessions.begin() as session:
            row = session.scalar(
                select(SecretConfig)
                .where(SecretConfig.id == candidate.id)
                .with_for_update(of=SecretConfig)
            )
            if row is None or row.secret_storage_id != source or row.tombstone:
                # Deleted or moved meanwhile: the copy in the target is an
                # orphan that garbage collection removes.
                return
            row.secret_storage_id = target
        report.moved.append(name)
        logger.info("moved secret %s from storage %s to %s", name, source, target)
        self._delete_source_copy(source, candidate.coordinate, report)

    def _delete_leftovers(
        self,
        source: SecretStorageId,
        target: SecretStorageId,
        report: StorageMigrationReport,
    ) -> None:
        """Delete source objects whose rows an interrupted run already moved."""
        try:
            listed = list(self._pool.get(source).list_managed(self._prefix))
        except KeyrefsError as exc:
            report.failures.append(
                {"coordinate": self._prefix + "*", "error": exc.code}
            )
            return
        names = [item.coordinate.render() for item in listed]
        with self._sessions() as session:
            moved = set(
                session.scalars(
                    select(SecretConfig.external_coordinate).where(
                        SecretConfig.secret_storage_id == target,
                        SecretConfig.external_coordinate.in_(names),
                    )
                )
            )
        for item in listed:
            if item.coordinate.render() in moved:
                before = len(report.failures)
                self._delete_source_copy(source, item.coordinate, report)
                if len(report.failures) == before:
                    report.leftovers_deleted.append(item.coordinate.render())

    def _delete_source_copy(
        self,
        source: SecretStorageId,
        coordinate: ManagedCoordinate,
        report: StorageMigrationReport,
    ) -> None:
        try:
            self._pool.get(source).delete(coordinate)
        except KeyrefsError as exc:
            report.failures.append(
                {"coordinate": coordinate.render(), "error": exc.code}
            )
            logger.warning(
                "could not delete the source copy of %s in storage %s, a rerun "
                "deletes it: %s",
                coordinate,
                source,
                exc,
            )


def _owning_organization(session: Session, storage: SecretStorage) -> uuid.UUID | None:
    if storage.scope_type == "organization":
        return storage.scope_id
    owner = session.get(WorkspaceOwner, storage.scope_id)
    return owner.organization_id if owner is not None else None
