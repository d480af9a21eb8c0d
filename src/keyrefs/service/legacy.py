"""The legacy mode: `{"_secret": COORD}` markers without secret_config rows.

While `keyrefs.persist-references` is off, processing writes new values to
the default storage under `KEYREFS_LEGACY_PREFIX` and returns configs whose
markers carry only the coordinate, as platforms did before keyrefs. While
`keyrefs.read-by-reference-id` is off, hydration reads each marker's
coordinate straight from its storage.

Reading by coordinate cannot check which actor owns a coordinate: a stored
config that names another actor's coordinate gets that secret. That is why
this mode is the legacy one, to be left once a backfill has created the rows.
"""

from __future__ import annotations

import copy
import logging
import uuid
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from keyrefs.backends.base import SecretWrite
from keyrefs.domain.coordinates import (
    ManagedCoordinate,
    coordinate_from_row,
    managed_coordinate_from_name,
    parse_managed,
)
from keyrefs.domain.jsonpath import JsonPath
from keyrefs.domain.markers import (
    CoordinateString,
    IncomingSecret,
    Marker,
    MaskValue,
    RawValue,
    find_markers,
)
from keyrefs.errors import (
    ForeignReference,
    InvalidCoordinate,
    InvalidInput,
    MaskWithoutStoredSecret,
    ReferenceNotFound,
)
from keyrefs.ids import DEFAULT_STORAGE_ID, ActorId, SecretStorageId
from keyrefs.service import hydration
from keyrefs.service.backend_pool import BackendPool
from keyrefs.service.hydration import HydrationTarget
from keyrefs.service.reader import SecretReader
from keyrefs.service.types import ActorScope, JsonObject
from keyrefs.store import repositories as repo
from keyrefs.store.models import SecretReference

logger = logging.getLogger(__name__)


# Write path ------------------------------------------------------------------


@dataclass(frozen=True)
class LegacyField:
    """The marker one secret field gets, and the value to write for it, if any."""

    path: JsonPath
    marker: Marker
    write: SecretWrite | None = None


class LegacyPlanner:
    """Plans a config in legacy mode: no rows, masks restored from `previous`."""

    def __init__(
        self,
        session: Session,
        scope: ActorScope,
        legacy_prefix: str,
        previous_config: JsonObject | None,
        expires_at: datetime | None,
    ) -> None:
        self._session = session
        self._scope = scope
        self._prefix = legacy_prefix
        self._has_previous = previous_config is not None
        self._previous = dict(find_markers(previous_config or {}))
        self._expires_at = expires_at

    def plan(self, path: JsonPath, incoming: IncomingSecret) -> LegacyField:
        match incoming:
            case RawValue():
                coordinate = self._next_coordinate(path)
                write = SecretWrite(
                    coordinate=coordinate,
                    value=incoming.value,
                    organization_id=self._scope.organization_id,
                    expires_at=self._expires_at,
                )
                return LegacyField(path, Marker(coordinate.render()), write)
            case MaskValue():
                return LegacyField(path, self._previous_marker(path))
            case CoordinateString():
                raise InvalidInput(
                    f"secret field at {path} names an external secret, which needs "
                    "secret_config rows: turn keyrefs.persist-references on for "
                    f"organization {self._scope.organization_id}"
                )
            case Marker():
                return LegacyField(path, self._same_marker(path, incoming))

    def _next_coordinate(self, path: JsonPath) -> ManagedCoordinate:
        previous = self._previous.get(path)
        if previous is not None and previous.coordinate is not None:
            try:
                return parse_managed(previous.coordinate, self._prefix).next_version()
            except InvalidCoordinate:
                pass  # not a legacy-mode name: the value gets a new secret
        return ManagedCoordinate(
            scope="workspace",
            scope_id=self._scope.workspace_id,
            secret_id=uuid.uuid4(),
            prefix=self._prefix,
        )

    def _previous_marker(self, path: JsonPath) -> Marker:
        if not self._has_previous:
            raise MaskWithoutStoredSecret(
                f"secret field at {path} holds the mask, and "
                "keyrefs.persist-references is off for organization "
                f"{self._scope.organization_id}, so masks are restored from the "
                "previous stored config: pass it as previous_config (CLI --previous)"
            )
        previous = self._previous.get(path)
        if previous is None:
            raise MaskWithoutStoredSecret(
                f"secret field at {path} holds the mask, but the previous stored "
                "config has no secret at that path: send the value itself"
            )
        return self._coordinate_marker(path, previous)

    def _same_marker(self, path: JsonPath, incoming: Marker) -> Marker:
        # Without rows, the previous stored config is the only record of what
        # the actor uses, so a marker must repeat the one stored at its path.
        previous = self._previous.get(path)
        expected = self._coordinate_marker(path, incoming)
        if previous is None or self._coordinate_marker(path, previous) != expected:
            raise ForeignReference(
                f"secret field at {path} holds a marker that differs from the "
                "previous stored config at that path: in legacy mode a marker is "
                "accepted only when it repeats the stored one"
            )
        return expected

    def _coordinate_marker(self, path: JsonPath, marker: Marker) -> Marker:
        """Return the legacy form of a marker, resolving a reference-only one."""
        storage_id = marker.storage_id
        coordinate = marker.coordinate
        if coordinate is None:
            assert marker.reference_id is not None
            reference = self._session.get(SecretReference, marker.reference_id)
            if reference is None:
                raise ReferenceNotFound(
                    f"marker at {path} names reference {marker.reference_id}, "
                    "which does not exist"
                )
            if (
                reference.scope_type != repo.ACTOR_SCOPE
                or reference.scope_id != self._scope.actor_id
            ):
                raise ForeignReference(
                    f"marker at {path} names reference {marker.reference_id}, "
                    f"which does not belong to actor {self._scope.actor_id}"
                )
            coordinate = reference.secret_config.external_coordinate
            storage_id = SecretStorageId(reference.secret_config.secret_storage_id)
        if storage_id == DEFAULT_STORAGE_ID:
            storage_id = None
        return Marker(coordinate=coordinate, storage_id=storage_id)


def render_legacy_config(
    config: JsonObject, fields: Sequence[LegacyField]
) -> JsonObject:
    stored = copy.deepcopy(config)
    for item in fields:
        item.path.set(stored, item.marker.to_json())
    return stored


def write_values(
    pool: BackendPool, executor: Executor, fields: Sequence[LegacyField]
) -> None:
    """Write the new values to the default storage, concurrently."""
    backend = pool.get(DEFAULT_STORAGE_ID)
    futures = [
        executor.submit(backend.write, item.write)
        for item in fields
        if item.write is not None
    ]
    for future in futures:
        future.result()


# Read path -------------------------------------------------------------------


def resolve_by_coordinate(
    session: Session, markers: Sequence[tuple[JsonPath, Marker]]
) -> list[HydrationTarget]:
    """Resolve markers by `_secret` and `_secret_storage_id`, without ownership.

    A coordinate with a secret_config row reads as that row says (managed or
    external, text or JSON). A coordinate without one was written by a legacy
    writer into the storage's managed namespace, so it reads as a managed
    name whose value is text.
    """
    keys = {
        path: (marker.storage_id or DEFAULT_STORAGE_ID, marker.coordinate or "")
        for path, marker in markers
    }
    rows = repo.find_configs(session, keys.values())
    targets = []
    for path, (storage_id, name) in keys.items():
        row = rows.get((storage_id, name))
        if row is None:
            targets.append(
                HydrationTarget(
                    path=path,
                    storage_id=storage_id,
                    coordinate=managed_coordinate_from_name(name),
                    value_format="text",
                    expires_at=None,
                )
            )
            continue
        targets.append(
            HydrationTarget(
                path=path,
                storage_id=storage_id,
                coordinate=coordinate_from_row(name, managed=row.managed),
                value_format=row.value_format,
                expires_at=row.expires_at,
            )
        )
    return targets


def split_markers(
    markers: Sequence[tuple[JsonPath, Marker]],
) -> tuple[list[tuple[JsonPath, Marker]], list[tuple[JsonPath, Marker]]]:
    """Split into markers with a coordinate and contracted, reference-only ones."""
    with_coordinate = [(p, m) for p, m in markers if m.coordinate is not None]
    reference_only = [(p, m) for p, m in markers if m.coordinate is None]
    return with_coordinate, reference_only


def hydrate_by_coordinate(
    sessions: sessionmaker[Session],
    reader: SecretReader,
    config: JsonObject,
    actor_id: ActorId,
) -> JsonObject:
    """Hydrate with keyrefs.read-by-reference-id off; see the module docstring.

    Contracted markers, which carry only a reference id, still resolve
    through their reference and its ownership check.
    """
    markers = hydration.markers_of(config)
    if not markers:
        return dict(config)
    with_coordinate, reference_only = split_markers(markers)
    with sessions() as session:
        targets = resolve_by_coordinate(session, with_coordinate)
        if reference_only:
            targets += hydration.resolve_markers(session, actor_id, reference_only)
    hydration.check_expiry(targets)
    outcomes = reader.read({(t.storage_id, t.coordinate) for t in targets})
    values = hydration.collect_values(targets, outcomes)
    return hydration.fill_values(config, targets, values)
