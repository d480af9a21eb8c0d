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

from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from keyrefs.backends.base import SecretWrite
from keyrefs.domain.coordinates import (
    ExternalCoordinate,
    ManagedCoordinate,
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

logger = logging.getLogger(__name__)


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
            return previous.next_version()
        return ManagedCoordinate(
            scope="workspace",
            scope_id=self._scope.workspace_id,
            secret_id=uuid.uuid4(),
            prefix=self._prefix,
        )

    def _plan_mask(self, path: JsonPath) -> PlannedSecret:
        current = self._current.get(path.render())
        if current is not None:
            return _reuse(path, current.secret_config)
        previous = self._previous.get(path)
        if previous is not None:
            return self._plan_marker(path, previous)
        raise MaskWithoutStoredSecret(
            f"secret field at {path} holds the mask, but actor {self._scope.actor_id} "
            "has no secret stored at that path: send the value itself"
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
    for secret in spec.secret_fields(config):
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
    longer does, for deletion after the commit.
    """
    for plan in plans:
        if plan.new_row is not None:
            _insert_config(session, plan)
    _lock_reused_configs(session, plans)

    current = {
        ref.hydration_path: ref
        for ref in repo.references_of_actor(session, scope.actor_id)
    }
    previously_used = {ref.secret_config_id for ref in current.values()}
    wanted_paths = {plan.path.render() for plan in plans}
    for plan in plans:
        existing = current.get(plan.path.render())
        if existing is not None:
            existing.secret_config_id = plan.config_id
            plan.reference_id = existing.id
            continue
        reference = SecretReference(
            id=uuid.uuid4(),
            secret_config_id=plan.config_id,
            scope_type=repo.ACTOR_SCOPE,
            scope_id=scope.actor_id,
            hydration_path=plan.path.render(),
        )
        session.add(reference)
        plan.reference_id = reference.id

    stale = [ref for path, ref in current.items() if path not in wanted_paths]
    repo.delete_references(session, [ref.id for ref in stale])
    session.flush()
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


def _insert_config(session: Session, plan: PlannedSecret) -> None:
    row = plan.new_row
    assert row is not None
    if row.managed:
        session.add(row)
        return
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        # Another writer created the same external secret config meanwhile.
        existing = repo.find_config(
            session, SecretStorageId(row.secret_storage_id), row.external_coordinate
        )
        if existing is None:
            raise
        plan.config_id = SecretConfigId(existing.id)


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
