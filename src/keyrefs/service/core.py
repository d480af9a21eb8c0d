"""`KeyrefsService`: the one object the CLI, the HTTP API and libraries use."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from openfeature.provider import FeatureProvider
from pydantic import BaseModel
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from keyrefs.backends.local import MasterKey
from keyrefs.backends.registry import load_factory
from keyrefs.domain.jsonpath import JsonPath
from keyrefs.domain.markers import IncomingSecret
from keyrefs.domain.spec import Spec
from keyrefs.errors import (
    ConcurrentUpdate,
    ConfigurationError,
    Conflict,
    InvalidInput,
    NotFound,
)
from keyrefs.ids import (
    DEFAULT_STORAGE_ID,
    ActorId,
    OrganizationId,
    SecretConfigId,
    SecretStorageId,
    WorkspaceId,
)
from keyrefs.service import cleanup, hydration, legacy, processing, storages
from keyrefs.service.backend_pool import BackendPool
from keyrefs.service.cache import cache_from_settings
from keyrefs.service.environment import environment_config
from keyrefs.service.flags import FeatureFlags, FlagContext, hydration_context
from keyrefs.service.gc import GarbageCollector, GcOptions, GcReport, ProgressCallback
from keyrefs.service.limiter import limits_from_settings
from keyrefs.service.metrics import ServiceMetrics
from keyrefs.service.reader import SecretReader
from keyrefs.service.storage_migration import StorageMigration, StorageMigrationReport
from keyrefs.service.storages import ScopeType
from keyrefs.service.types import ActorScope, JsonObject, ReferenceView, StorageView
from keyrefs.settings import Settings
from keyrefs.store import repositories as repo
from keyrefs.store.database import (
    create_database_engine,
    session_factory,
    upgrade_to_head,
)
from keyrefs.store.models import LocalDataKey, SecretReference
from keyrefs.store.types import utc_now

logger = logging.getLogger(__name__)

MAX_CONCURRENT_READS = 32
MAX_PROCESS_ATTEMPTS = 3


@dataclass(frozen=True)
class InitResult:
    storage: StorageView
    created_storage: bool
    previous_storage_type: str | None
    created_master_key_file: Path | None


class KeyrefsService:
    """Process, hydrate and mask configs; manage actors' references and storages."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine | None = None,
        flag_provider: FeatureProvider | None = None,
    ) -> None:
        """Build the service; `flag_provider` replaces the KEYREFS_FLAGS_FILE one.

        The caller keeps ownership of `flag_provider`: `close` does not shut it
        down.
        """
        self.settings = settings
        if flag_provider is not None:
            self.flags = FeatureFlags(flag_provider, owns_provider=False)
        else:
            self.flags = FeatureFlags.from_file(settings.flags_file)
        self.engine = engine or create_database_engine(settings.resolved_database_url)
        self._sessions: sessionmaker[Session] = session_factory(self.engine)
        self._master_key: MasterKey | None = None
        self._executor = ThreadPoolExecutor(
            max_workers=MAX_CONCURRENT_READS, thread_name_prefix="keyrefs-read"
        )
        self.metrics = ServiceMetrics()
        self.cache = cache_from_settings(settings)
        self.backends = BackendPool(
            self._sessions,
            default_config=self._default_backend_config,
            default_storage_type=settings.default_storage_type,
            resources=_LazyResources(self),
            metrics=self.metrics,
            limits=limits_from_settings(settings),
            cache=self.cache,
        )
        self._reader = SecretReader(self.backends, self._executor, self.cache)

    def close(self) -> None:
        self.flags.close()
        self.backends.close()
        self._executor.shutdown(wait=False)
        self.engine.dispose()

    def __enter__(self) -> KeyrefsService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Start-up -------------------------------------------------------------

    def init(self) -> InitResult:
        """Apply migrations, ensure a master key exists, upsert the default storage."""
        upgrade_to_head(self.engine)
        created_key = self._ensure_master_key_file()
        config = self._default_backend_config()
        backend = self.backends.build(
            self.settings.default_storage_type, config, DEFAULT_STORAGE_ID
        )
        try:
            backend.check_connection()
        finally:
            backend.close()
        with self._sessions.begin() as session:
            result = storages.upsert_default_storage(
                session, self.settings.default_storage_type
            )
        self.backends.forget(DEFAULT_STORAGE_ID)
        if result.previous_type is not None:
            logger.warning(
                "default storage changed from %s to %s: existing secrets not moved",
                result.previous_type,
                self.settings.default_storage_type,
            )
        return InitResult(
            result.storage, result.created, result.previous_type, created_key
        )

    def _ensure_master_key_file(self) -> Path | None:
        if self.settings.master_key is not None:
            return None
        path = self.settings.default_master_key_path
        if path.exists():
            return None
        if self.settings.master_key_file is not None:
            raise ConfigurationError(
                f"KEYREFS_MASTER_KEY_FILE={path} does not exist: create it or unset "
                "the variable so that `keyrefs init` creates a key file"
            )
        with self._sessions() as session:
            wrapped_keys = session.scalar(
                select(func.count()).select_from(LocalDataKey)
            )
        if wrapped_keys:
            # A new key could not decrypt the existing data keys, so every
            # local secret would be lost.
            raise ConfigurationError(
                f"master key file {path} is missing, but the database holds "
                f"{wrapped_keys} data keys wrapped by a master key: restore the "
                "key file (or set KEYREFS_MASTER_KEY) instead of creating a new one"
            )
        MasterKey.create_file(path)
        logger.info("created master key file %s", path)
        return path

    def master_key(self) -> MasterKey:
        if self._master_key is None:
            if self.settings.master_key is not None:
                self._master_key = MasterKey.from_base64(
                    self.settings.master_key.get_secret_value(), "KEYREFS_MASTER_KEY"
                )
            else:
                self._master_key = MasterKey.from_file(
                    self.settings.default_master_key_path
                )
        return self._master_key

    def _default_backend_config(self) -> BaseModel:
        factory = load_factory(self.settings.default_storage_type)
        return environment_config(self.settings, factory)

    # Write path -----------------------------------------------------------

    def process(
        self,
        scope: ActorScope,
        spec: object,
        config: object,
        previous_config: object | None = None,
        ttl: timedelta | None = None,
    ) -> JsonObject:
        """Split the secrets out of an actor's config; return the stored config.

        With `ttl` the config is short-lived (for "check connection" and
        "discover schema"): its new values expire after `ttl`, and the actor's
        references are left as they are.
        """
        config = processing.require_object(config, "config")
        if previous_config is not None:
            previous_config = processing.require_object(
                previous_config, "previous config"
            )
        if ttl is not None and ttl <= timedelta(0):
            raise InvalidInput("ttl must be positive")
        classified = processing.classify_fields(Spec(spec), config)
        context = FlagContext(scope.organization_id, scope.workspace_id, scope.actor_id)
        if not self.flags.persist_references(context):
            return self._process_legacy(scope, config, previous_config, classified, ttl)
        for attempt in range(1, MAX_PROCESS_ATTEMPTS + 1):
            try:
                return self._process_once(
                    scope, config, previous_config, classified, ttl
                )
            except ConcurrentUpdate:
                if attempt == MAX_PROCESS_ATTEMPTS:
                    raise
                logger.warning(
                    "retrying config of actor %s after a concurrent delete, attempt %d",
                    scope.actor_id,
                    attempt,
                )
        raise AssertionError("unreachable")

    def _process_once(
        self,
        scope: ActorScope,
        config: JsonObject,
        previous_config: JsonObject | None,
        classified: list[tuple[JsonPath, IncomingSecret]],
        ttl: timedelta | None,
    ) -> JsonObject:
        expires_at = utc_now() + ttl if ttl is not None else None
        with self._sessions() as session:
            storage = processing.choose_storage(session, scope)
            planner = processing.Planner(
                session,
                scope,
                storage,
                self.settings.managed_prefix,
                previous_config,
                expires_at,
            )
            plans = [planner.plan(path, incoming) for path, incoming in classified]
            plans = planner.finalize(plans)

        self._write_values(plans)

        if expires_at is not None:
            with self._sessions.begin() as session:
                processing.apply_short_lived(session, plans)
            return processing.render_stored_config(config, plans)

        try:
            with self._sessions.begin() as session:
                processing.lock_actor(session, scope)
                unused = processing.apply_plans(session, scope, plans)
        except IntegrityError as exc:
            # A concurrent writer of the same actor inserted the same row first;
            # planning again from the committed state resolves it.
            raise ConcurrentUpdate(
                f"config of actor {scope.actor_id} changed concurrently: retry"
            ) from exc
        logger.info(
            "processed config of actor %s: %d secret fields, %d new values",
            scope.actor_id,
            len(plans),
            sum(plan.write is not None for plan in plans),
        )
        with self._sessions() as session:
            context = FlagContext(
                scope.organization_id, scope.workspace_id, scope.actor_id
            )
            unused = self.flags.configs_to_clean(session, context, unused)
        cleanup.delete_unreferenced(self._sessions, self.backends, unused)
        return processing.render_stored_config(config, plans)

    def _process_legacy(
        self,
        scope: ActorScope,
        config: JsonObject,
        previous_config: JsonObject | None,
        classified: list[tuple[JsonPath, IncomingSecret]],
        ttl: timedelta | None,
    ) -> JsonObject:
        """Process with keyrefs.persist-references off: values only, no rows.

        NOTE: the versions that an update replaces stay in the backend, since
        without rows nothing shows that no other config uses them.
        """
        expires_at = utc_now() + ttl if ttl is not None else None
        with self._sessions() as session:
            planner = legacy.LegacyPlanner(
                session,
                scope,
                self.settings.legacy_prefix,
                previous_config,
                expires_at,
            )
            fields = [planner.plan(path, incoming) for path, incoming in classified]
        legacy.write_values(self.backends, self._executor, fields)
        logger.info(
            "processed config of actor %s in legacy mode: %d secret fields, "
            "%d new values",
            scope.actor_id,
            len(fields),
            sum(item.write is not None for item in fields),
        )
        return legacy.render_legacy_config(config, fields)

    def _write_values(self, plans: list[processing.PlannedSecret]) -> None:
        writes = [plan for plan in plans if plan.write is not None]
        futures = []
        for plan in writes:
            assert plan.write is not None
            backend = self.backends.get(plan.storage_id)
            futures.append(self._executor.submit(backend.write, plan.write))
        for future in futures:
            future.result()

    # Read path ------------------------------------------------------------

    def hydrate(
        self,
        config: object,
        actor_id: ActorId,
        organization_id: OrganizationId | None = None,
        workspace_id: WorkspaceId | None = None,
    ) -> JsonObject:
        """Return the full config, every secret value back in its JSON type.

        The organization and workspace select the feature flags; without them
        the actor's recorded owner is used.
        """
        config = processing.require_object(config, "config")
        with self._sessions() as session:
            context = hydration_context(
                session, actor_id, organization_id, workspace_id
            )
        if not self.flags.read_by_reference_id(context):
            return legacy.hydrate_by_coordinate(
                self._sessions, self._reader, config, actor_id
            )
        result = self.hydrate_many([(config, actor_id)])[0]
        if result.error is not None:
            raise result.error
        assert result.config is not None
        return result.config

    def hydrate_many(
        self, items: Sequence[tuple[object, ActorId]]
    ) -> list[hydration.HydrationResult]:
        """Hydrate many (config, actor id) pairs; return one result per pair, in order.

        Each result holds the full config or the keyrefs error of that pair
        alone. One query resolves the markers of all configs, and their values
        are read together, grouped by storage.
        """
        return hydration.hydrate_batch(self._sessions, self._reader, items)

    def mask(self, spec: object, config: object) -> JsonObject:
        """Return the config for display, every secret field showing the mask."""
        config = processing.require_object(config, "config")
        return hydration.mask_config(Spec(spec), config)

    def collect_garbage(
        self, options: GcOptions, progress: ProgressCallback | None = None
    ) -> GcReport:
        """Delete unreferenced, expired and orphaned managed secrets."""
        collector = GarbageCollector(
            self._sessions, self.backends, self.settings.managed_prefix, progress
        )
        return collector.run(options)

    def migrate_storage(
        self, source: SecretStorageId, target: SecretStorageId, dry_run: bool = False
    ) -> StorageMigrationReport:
        """Move the managed secrets of a storage to another of the same organization."""
        migration = StorageMigration(
            self._sessions, self.backends, self.settings.managed_prefix
        )
        return migration.run(source, target, dry_run)

    # Actors and references -------------------------------------------------

    def delete_actor(self, actor_id: ActorId) -> int:
        """Remove the actor's references and the managed secrets no one uses now."""
        with self._sessions.begin() as session:
            references = repo.references_of_actor(session, actor_id)
            config_ids = {ref.secret_config_id for ref in references}
            repo.delete_references(session, [ref.id for ref in references])
        cleanup.delete_unreferenced(self._sessions, self.backends, config_ids)
        logger.info("deleted actor %s: %d references", actor_id, len(references))
        return len(references)

    def references_of_actor(self, actor_id: ActorId) -> list[ReferenceView]:
        with self._sessions() as session:
            return [
                _reference_view(ref)
                for ref in repo.references_of_actor(session, actor_id)
            ]

    def references_of_secret_config(
        self, config_id: SecretConfigId
    ) -> list[ReferenceView]:
        with self._sessions() as session:
            return [
                _reference_view(ref)
                for ref in repo.references_of_config(session, config_id)
            ]

    # Storages ---------------------------------------------------------------

    def add_storage(
        self,
        storage_type: str,
        scope_type: ScopeType,
        scope_id: uuid.UUID,
        organization_id: OrganizationId,
        descriptor: str,
        config_values: Any,
    ) -> StorageView:
        """Check a customer-owned storage's connection and record it."""
        config = storages.validate_backend_config(storage_type, config_values)
        new = storages.plan_new_storage(
            storage_type,
            scope_type,
            scope_id,
            organization_id,
            descriptor,
            config,
            self.settings.managed_prefix,
        )
        self._reject_overlapping_namespace(storage_type, config)
        backend = self.backends.build(storage_type, config, SecretStorageId(new.row.id))
        backend.check_connection()
        self.backends.get(DEFAULT_STORAGE_ID).write(new.credential_write)
        with self._sessions.begin() as session:
            storages.insert_new_storage(session, new)
        self.backends.put(SecretStorageId(new.row.id), backend)
        logger.info(
            "added %s storage %s for %s %s",
            storage_type,
            new.row.id,
            scope_type,
            scope_id,
        )
        return storages.view(new.row)

    def _reject_overlapping_namespace(
        self, storage_type: str, config: BaseModel
    ) -> None:
        key = storages.namespace_key(storage_type, config)
        if key is None:
            return
        for existing in self.list_storages():
            if existing.storage_type != storage_type or existing.tombstone:
                continue
            _, existing_config = self.backends.config_of(SecretStorageId(existing.id))
            if storages.namespace_key(storage_type, existing_config) == key:
                raise Conflict(
                    f"secret storage {existing.id} already writes to this "
                    f"{storage_type} location: give this storage another prefix, "
                    "mount, project or vault, so that garbage collection of one "
                    "cannot delete the other's secrets"
                )

    def list_storages(self, scope_id: uuid.UUID | None = None) -> list[StorageView]:
        with self._sessions() as session:
            return [storages.view(s) for s in repo.list_storages(session, scope_id)]

    def get_storage(self, storage_id: SecretStorageId) -> StorageView:
        with self._sessions() as session:
            storage = repo.get_storage(session, storage_id)
            if storage is None:
                raise NotFound(f"secret storage {storage_id} does not exist")
            return storages.view(storage)

    def tombstone_storage(self, storage_id: SecretStorageId) -> StorageView:
        with self._sessions.begin() as session:
            return storages.tombstone_storage(session, storage_id)

    def session(self) -> Session:
        """Open a new session, for callers that inspect the tables (tests, tools)."""
        return self._sessions()


def _reference_view(reference: SecretReference) -> ReferenceView:
    config = reference.secret_config
    return ReferenceView(
        id=reference.id,
        secret_config_id=reference.secret_config_id,
        secret_storage_id=config.secret_storage_id,
        scope_type=reference.scope_type,
        scope_id=reference.scope_id,
        hydration_path=reference.hydration_path,
        external_coordinate=config.external_coordinate,
        managed=config.managed,
    )


class _LazyResources(dict[str, Any]):
    """Resources for backend factories; the master key is loaded on first use."""

    def __init__(self, service: KeyrefsService) -> None:
        super().__init__()
        self._service = service

    def get(self, key: str, default: Any = None) -> Any:
        if key == "engine":
            return self._service.engine
        if key == "master_key":
            return self._service.master_key()
        return super().get(key, default)
