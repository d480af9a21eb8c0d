"""The write path: split the secrets out of an actor's config.

Steps, each leaving the previously stored config hydratable if it fails:

1. validate the config against the spec (no value in any message);
2. find the secret fields and decide what each one will reference;
3. write new values to the backends, concurrently;
4. in one transaction, insert secret configs, point the actor's references at
   them and delete the references the config no longer uses;
5. after the commit, delete managed secrets that nothing references any more.

A failure between 3 and 4 leaves the new backend objects as orphans without a
row, which garbage collection finds by listing the managed prefix.
"""

from __future__ import annotations

import copy
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import insert, select, text, update
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from keyrefs.backends.base import SecretWrite
from keyrefs.domain.coordinates import (
    ExternalCoordinate,
    ManagedCoordinate,
    OpaqueManagedCoordinate,
    coordinate_from_row,
)
from keyrefs.domain.jsonpath import JsonPath
from keyrefs.domain.markers import (
    CoordinateString,
    IncomingSecret,
    Marker,
    MaskValue,
    RawValue,
    classify,
    find_markers,
)
from keyrefs.domain.spec import Spec
from keyrefs.errors import (
    ConcurrentUpdate,
    ConfigurationError,
    ExternalSecretNotAllowed,
    ForeignReference,
    InvalidInput,
    InvalidSpec,
    MaskWithoutStoredSecret,
    ReferenceNotFound,
    StorageNotFound,
)
from keyrefs.ids import (
    DEFAULT_STORAGE_ID,
    SecretConfigId,
    SecretReferenceId,
    SecretStorageId,
)
from keyrefs.service.types import ActorScope, JsonObject
from keyrefs.store import repositories as repo
from keyrefs.store.models import SecretConfig, SecretReference, SecretStorage
from keyrefs.store.types import utc_now

logger = logging.getLogger(__name__)

# A bound of keyrefs' own, so that one request cannot write an unbounded
# number of secrets; real connector configs hold a handful.
MAX_SECRET_FIELDS = 1000


@dataclass
class PlannedSecret:
    """The secret that one field of the new config will reference."""

    path: JsonPath
    config_id: SecretConfigId
    storage_id: SecretStorageId
    coordinate: str
    # A secret config row to insert, when the field does not reuse one.
    new_row: SecretConfig | None = None
    # A backend write, when the field contains a new raw value.
    write: SecretWrite | None = None
    reference_id: uuid.UUID | None = field(default=None)


def choose_storage(session: Session, scope: ActorScope) -> SecretStorage:
    """Return the workspace's storage, else the organization's, else the default."""
    owned = repo.storages_owned_by(session, scope.organization_id, scope.workspace_id)
    if owned:
        return owned[0]
    default = repo.get_storage(session, DEFAULT_STORAGE_ID)
    if default is None:
        raise ConfigurationError(
            "the default secret storage does not exist: run `keyrefs init` first"
        )
    return default


class Planner:
    """Decides, inside one read session, what each secret field references."""

    def __init__(
        self,
        session: Session,
        scope: ActorScope,
        storage: SecretStorage,
        managed_prefix: str,
        previous_config: JsonObject | None,
        expires_at: datetime | None = None,
    ) -> None:
        self._session = session
        self._expires_at = expires_at
        self._scope = scope
        self._storage = storage
        self._prefix = managed_prefix
        self._current = {
            ref.hydration_path: ref
            for ref in repo.references_of_actor(session, scope.actor_id)
        }
        self._referenced_config_ids = {
            ref.secret_config_id for ref in self._current.values()
        }
        self._previous = dict(find_markers(previous_config)) if previous_config else {}

    @property
    def current_references(self) -> dict[str | None, SecretReference]:
        return self._current

    def plan(self, path: JsonPath, incoming: IncomingSecret) -> PlannedSecret:
        match incoming:
            case RawValue():
                return self._plan_raw(path, incoming)
            case MaskValue():
                return self._plan_mask(path)
            case CoordinateString(name=name):
                return self._plan_external(path, name, None)
            case Marker():
                return self._plan_marker(path, incoming)

    def _plan_raw(self, path: JsonPath, raw: RawValue) -> PlannedSecret:
        coordinate = self._next_coordinate(path)
        name = coordinate.render()
        row = SecretConfig(
            id=uuid.uuid4(),
            secret_storage_id=self._storage.id,
            descriptor=name,
            external_coordinate=name,
            managed=True,
            value_format=raw.value.value_format,
            expires_at=self._expires_at,
            tombstone=False,
        )
        write = SecretWrite(
            coordinate=coordinate,
            value=raw.value,
            organization_id=self._scope.organization_id,
            expires_at=self._expires_at,
        )
        return PlannedSecret(
            path,
            SecretConfigId(row.id),
            SecretStorageId(self._storage.id),
            name,
            row,
            write,
        )

    def _next_coordinate(self, path: JsonPath) -> ManagedCoordinate:
        """The next version of the managed secret at `path`, or a new secret."""
        current = self._current.get(path.render())
        if self._expires_at is not None:
            current = None  # a short-lived value never becomes a version of a saved one
        if current is not None and current.secret_config.managed:
            previous = coordinate_from_row(
                current.secret_config.external_coordinate, managed=True
            )
            assert isinstance(previous, ManagedCoordinate)
            if not isinstance(previous, OpaqueManagedCoordinate):
                return previous.next_version()
        return ManagedCoordinate(
            scope="workspace",
            scope_id=self._scope.workspace_id,
            secret_id=uuid.uuid4(),
            prefix=self._prefix,
        )

    def finalize(self, plans: list[PlannedSecret]) -> list[PlannedSecret]:
        """Give a new secret to every write whose next version is taken.

        A coordinate is taken when an earlier plan of this config or any row
        already uses it, as when one marker was copied to two paths and both
        get new values. Writing it would overwrite a live secret.
        """
        writes = [plan for plan in plans if plan.write is not None]
        names = [plan.coordinate for plan in writes]
        taken = set(
            self._session.scalars(
                select(SecretConfig.external_coordinate).where(
                    SecretConfig.external_coordinate.in_(names)
                )
            )
        )
        planned: set[str] = set()
        for index, plan in enumerate(plans):
            if plan.write is None:
                continue
            if plan.coordinate in taken or plan.coordinate in planned:
                plan = self._fresh(plan)
                plans[index] = plan
            planned.add(plan.coordinate)
        return plans

    def _fresh(self, plan: PlannedSecret) -> PlannedSecret:
        assert plan.write is not None and plan.new_row is not None
        coordinate = ManagedCoordinate(
            scope="workspace",
            scope_id=self._scope.workspace_id,
            secret_id=uuid.uuid4(),
            prefix=self._prefix,
        )
        name = coordinate.render()
        plan.new_row.descriptor = name
        plan.new_row.external_coordinate = name
        write = SecretWrite(
            coordinate=coordinate,
            value=plan.write.value,
            organization_id=plan.write.organization_id,
            expires_at=plan.write.expires_at,
        )
        return PlannedSecret(
            plan.path, plan.config_id, plan.storage_id, name, plan.new_row, write
        )

    def _plan_mask(self, path: JsonPath) -> PlannedSecret:
        current = self._current.get(path.render())
        if current is not None:
            return _reuse(path, current.secret_config)
        previous = self._previous.get(path)
        if previous is not None:
            return self._plan_marker(path, previous)
        raise MaskWithoutStoredSecret(
            f"secret field at {path} contains the mask, but actor "
            f"{self._scope.actor_id} has no secret stored at that path: send the "
            "value itself"
        )

    def _plan_marker(self, path: JsonPath, marker: Marker) -> PlannedSecret:
        if marker.reference_id is None:
            assert marker.coordinate is not None
            return self._plan_external(path, marker.coordinate, marker.storage_id)
        reference = self._session.get(SecretReference, marker.reference_id)
        if reference is None:
            raise ReferenceNotFound(
                f"secret field at {path} names reference {marker.reference_id}, "
                "which does not exist"
            )
        if (
            reference.scope_type != repo.ACTOR_SCOPE
            or reference.scope_id != self._scope.actor_id
        ):
            raise ForeignReference(
                f"secret field at {path} names reference {marker.reference_id}, "
                f"which does not belong to actor {self._scope.actor_id}"
            )
        return _reuse(path, reference.secret_config)

    def _plan_external(
        self, path: JsonPath, name: str, storage_id: SecretStorageId | None
    ) -> PlannedSecret:
        coordinate = ExternalCoordinate(name).render()
        if self._expires_at is not None:
            # TODO: hydration binds external secrets to an actor through its
            # references, which short-lived configs do not have.
            raise InvalidInput(
                f"secret field at {path} names an external secret: short-lived "
                "configs support raw values and masks only"
            )
        storage = self._storage
        if storage_id is not None and storage_id != storage.id:
            found = repo.get_storage(self._session, storage_id)
            if found is None:
                raise StorageNotFound(
                    f"secret field at {path} names secret storage {storage_id}, "
                    "which does not exist"
                )
            storage = found
        existing = repo.find_config(
            self._session, SecretStorageId(storage.id), coordinate
        )
        if existing is not None and existing.id in self._referenced_config_ids:
            # The actor already uses this secret: a legacy marker sent back.
            return _reuse(path, existing)
        if existing is not None and existing.managed:
            raise ForeignReference(
                f"secret field at {path} names coordinate {coordinate}, a managed "
                f"secret that actor {self._scope.actor_id} does not use"
            )
        self._check_external_allowed(path, storage)
        if existing is not None:
            return _reuse(path, existing)
        row = SecretConfig(
            id=uuid.uuid4(),
            secret_storage_id=storage.id,
            descriptor=coordinate,
            external_coordinate=coordinate,
            managed=False,
            value_format="text",
            tombstone=False,
        )
        return PlannedSecret(
            path, SecretConfigId(row.id), SecretStorageId(storage.id), coordinate, row
        )

    def _check_external_allowed(self, path: JsonPath, storage: SecretStorage) -> None:
        owners = {
            ("organization", self._scope.organization_id),
            ("workspace", self._scope.workspace_id),
        }
        if (
            storage.id == DEFAULT_STORAGE_ID
            or (storage.scope_type, storage.scope_id) not in owners
        ):
            raise ExternalSecretNotAllowed(
                f"secret field at {path} names an external secret in storage "
                f"{storage.id}, which is not owned by organization "
                f"{self._scope.organization_id} or workspace "
                f"{self._scope.workspace_id}: "
                "external secrets can only be read from a storage the organization "
                "or workspace added (`keyrefs storage add`)"
            )
        if storage.tombstone:
            raise ExternalSecretNotAllowed(
                f"secret field at {path} names a secret in storage {storage.id}, "
                "which is tombstoned"
            )


def _reuse(path: JsonPath, config: SecretConfig) -> PlannedSecret:
    return PlannedSecret(
        path,
        SecretConfigId(config.id),
        SecretStorageId(config.secret_storage_id),
        config.external_coordinate,
    )


def classify_fields(
    spec: Spec, config: JsonObject
) -> list[tuple[JsonPath, IncomingSecret]]:
    """Validate `config` and classify the value of each of its secret fields."""
    spec.validate(config)
    classified: list[tuple[JsonPath, IncomingSecret]] = []
    secrets = spec.secret_fields(config)
    if len(secrets) > MAX_SECRET_FIELDS:
        raise InvalidInput(
            f"config has {len(secrets)} secret fields: keyrefs processes at most "
            f"{MAX_SECRET_FIELDS} per config; split the connector config"
        )
    for secret in secrets:
        if not secret.path.segments:
            raise InvalidSpec(
                "spec marks the whole config as secret: mark its fields instead"
            )
        node = secret.path.get(config)
        incoming = classify(node, secret.path)
        if isinstance(incoming, RawValue):
            spec.validate_secret_value(secret, node)
        classified.append((secret.path, incoming))
    return classified


def apply_plans(
    session: Session, scope: ActorScope, plans: list[PlannedSecret]
) -> set[uuid.UUID]:
    """Point the actor's references at the planned configs, in the open transaction.

    Returns the ids of secret configs the actor referenced before and no
    longer does, for deletion after the commit. The number of statements does
    not grow with the number of plans: rows are inserted, updated and deleted
    in bulk (executemany, which SQLAlchemy sends as multi-row statements).
    """
    _insert_configs(session, plans)
    _lock_reused_configs(session, plans)

    current = {
        ref.hydration_path: ref
        for ref in repo.references_of_actor(session, scope.actor_id)
    }
    previously_used = {ref.secret_config_id for ref in current.values()}
    wanted_paths = {plan.path.render() for plan in plans}
    now = utc_now()
    updates: list[dict[str, object]] = []
    inserts: list[dict[str, object]] = []
    for plan in plans:
        existing = current.get(plan.path.render())
        if existing is not None:
            plan.reference_id = existing.id
            if existing.secret_config_id != plan.config_id:
                updates.append(
                    {
                        "id": existing.id,
                        "secret_config_id": plan.config_id,
                        "updated_at": now,
                    }
                )
            continue
        plan.reference_id = uuid.uuid4()
        inserts.append(
            {
                "id": plan.reference_id,
                "secret_config_id": plan.config_id,
                "scope_type": repo.ACTOR_SCOPE,
                "scope_id": scope.actor_id,
                "hydration_path": plan.path.render(),
                "created_at": now,
                "updated_at": now,
            }
        )
    if updates:
        session.execute(update(SecretReference), updates)
    if inserts:
        session.execute(insert(SecretReference), inserts)

    stale = [ref for path, ref in current.items() if path not in wanted_paths]
    repo.delete_references(session, [ref.id for ref in stale])
    return previously_used - {plan.config_id for plan in plans}


def lock_actor(session: Session, scope: ActorScope) -> None:
    """Serialize writers of one actor until the transaction ends.

    PostgreSQL takes a transaction-scoped advisory lock on the actor id; SQLite
    needs none, because every write transaction there starts with BEGIN
    IMMEDIATE and so holds the database's write lock.
    """
    if session.get_bind().dialect.name == "postgresql":
        key = int.from_bytes(scope.actor_id.bytes[:8], "big", signed=True)
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def apply_short_lived(session: Session, plans: list[PlannedSecret]) -> None:
    """Insert the rows of a short-lived config; it gets no actor references."""
    for plan in plans:
        if plan.new_row is not None:
            session.add(plan.new_row)
    session.flush()
    _lock_reused_configs(session, plans)


def _lock_reused_configs(session: Session, plans: list[PlannedSecret]) -> None:
    """Share-lock every reused secret config and check that none is being deleted."""
    reused = {plan.config_id for plan in plans if plan.new_row is None}
    if not reused:
        return
    live = set(
        session.scalars(
            select(SecretConfig.id)
            .where(SecretConfig.id.in_(reused), SecretConfig.tombstone.is_(False))
            .with_for_update(read=True)
        )
    )
    gone = reused - live
    if gone:
        paths = sorted(plan.path.render() for plan in plans if plan.config_id in gone)
        raise ConcurrentUpdate(
            f"the secrets at {', '.join(paths)} were deleted while this config was "
            "processed: retry the request"
        )


def _insert_configs(session: Session, plans: list[PlannedSecret]) -> None:
    """Insert the planned secret config rows, managed and external, in bulk.

    Another writer may create the same external secret config meanwhile. Its
    insert is skipped on the conflict, and the plan then points at that row.
    """
    managed = [plan for plan in plans if plan.new_row and plan.new_row.managed]
    external = [plan for plan in plans if plan.new_row and not plan.new_row.managed]
    if managed:
        session.execute(insert(SecretConfig), [_row_values(p) for p in managed])
    if not external:
        return
    dialect = session.get_bind().dialect.name
    upsert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    session.execute(
        upsert(SecretConfig).on_conflict_do_nothing(),
        [_row_values(plan) for plan in external],
    )
    found = repo.find_configs(
        session, [(plan.storage_id, plan.coordinate) for plan in external]
    )
    for plan in external:
        row = found.get((plan.storage_id, plan.coordinate))
        if row is None:
            raise ConcurrentUpdate(
                f"secret config for {plan.coordinate} at {plan.path} could not be "
                "inserted, because a row with the same descriptor exists: retry"
            )
        plan.config_id = SecretConfigId(row.id)


def _row_values(plan: PlannedSecret) -> dict[str, object]:
    """Return the column values the planner set on the plan's new row."""
    row = plan.new_row
    assert row is not None
    state = vars(row)
    return {
        column.key: state[column.key]
        for column in sa_inspect(SecretConfig).column_attrs
        if column.key in state
    }


def render_stored_config(config: JsonObject, plans: list[PlannedSecret]) -> JsonObject:
    stored = copy.deepcopy(config)
    for plan in plans:
        marker = Marker(
            coordinate=plan.coordinate,
            storage_id=plan.storage_id,
            reference_id=(
                None
                if plan.reference_id is None
                else SecretReferenceId(plan.reference_id)
            ),
        )
        plan.path.set(stored, marker.to_json())
    return stored


def require_object(document: object, what: str) -> JsonObject:
    if not isinstance(document, dict):
        raise InvalidInput(
            f"{what} must be a JSON object, got {type(document).__name__}"
        )
    return document
