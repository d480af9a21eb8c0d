"""The read path: put secret values back into a stored config, and masking."""

from __future__ import annotations

import copy
import logging
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from keyrefs.backends.base import Found
from keyrefs.domain.coordinates import Coordinate, coordinate_from_row
from keyrefs.domain.jsonpath import JsonPath, iter_nodes
from keyrefs.domain.markers import Marker, find_markers, looks_like_marker
from keyrefs.domain.spec import Spec
from keyrefs.errors import (
    ForeignReference,
    KeyrefsError,
    ReferenceNotFound,
    SecretExpired,
    SecretNotFound,
)
from keyrefs.ids import DEFAULT_STORAGE_ID, ActorId, SecretStorageId
from keyrefs.secret_value import MASK, SecretValue
from keyrefs.service.processing import require_object
from keyrefs.service.reader import ReadKey, ReadOutcome, SecretReader
from keyrefs.service.types import JsonObject
from keyrefs.store import repositories as repo
from keyrefs.store.models import SecretConfig, SecretReference
from keyrefs.store.types import utc_now

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class HydrationTarget:
    """One marker of a config, resolved to the secret it stands for."""

    path: JsonPath
    storage_id: SecretStorageId
    coordinate: Coordinate
    value_format: str
    expires_at: datetime | None


@dataclass(frozen=True)
class HydrationResult:
    """The outcome for one config of a batch: the full config or the error."""

    config: JsonObject | None = None
    error: KeyrefsError | None = None


MarkerList = Sequence[tuple[JsonPath, Marker]]


def hydrate_batch(
    sessions: sessionmaker[Session],
    reader: SecretReader,
    items: Sequence[tuple[object, ActorId]],
) -> list[HydrationResult]:
    """Hydrate every (config, actor id) pair; one pair's error fails only that pair.

    All markers are resolved in one query (two more when legacy markers are
    present), and the values of all configs are read in one `SecretReader.read`.
    """
    results: dict[int, HydrationResult] = {}
    pending: list[tuple[int, JsonObject, ActorId, MarkerList]] = []
    for index, (document, actor_id) in enumerate(items):
        try:
            config = require_object(document, "config")
        except KeyrefsError as exc:
            results[index] = HydrationResult(error=exc)
            continue
        markers = markers_of(config)
        if markers:
            pending.append((index, config, actor_id, markers))
        else:
            results[index] = HydrationResult(config=dict(config))
    if pending:
        results.update(_hydrate_pending(sessions, reader, pending))
    return [results[index] for index in range(len(items))]


def _hydrate_pending(
    sessions: sessionmaker[Session],
    reader: SecretReader,
    pending: list[tuple[int, JsonObject, ActorId, MarkerList]],
) -> dict[int, HydrationResult]:
    with sessions() as session:
        resolved = resolve_many(
            session, [(actor_id, markers) for _, _, actor_id, markers in pending]
        )
    results: dict[int, HydrationResult] = {}
    ready: list[tuple[int, JsonObject, list[HydrationTarget]]] = []
    for (index, config, _, _), targets in zip(pending, resolved, strict=True):
        if isinstance(targets, KeyrefsError):
            results[index] = HydrationResult(error=targets)
            continue
        try:
            check_expiry(targets)
        except SecretExpired as exc:
            results[index] = HydrationResult(error=exc)
            continue
        ready.append((index, config, targets))

    keys = {
        (target.storage_id, target.coordinate)
        for _, _, targets in ready
        for target in targets
    }
    outcomes = reader.read(keys)
    for index, config, targets in ready:
        try:
            values = collect_values(targets, outcomes)
        except KeyrefsError as exc:
            results[index] = HydrationResult(error=exc)
        else:
            results[index] = HydrationResult(
                config=fill_values(config, targets, values)
            )
    return results


def resolve_markers(
    session: Session, actor_id: ActorId, markers: MarkerList
) -> list[HydrationTarget]:
    """Resolve every marker of one config, raising its first error."""
    resolved = resolve_many(session, [(actor_id, markers)])[0]
    if isinstance(resolved, KeyrefsError):
        raise resolved
    return resolved


def resolve_many(
    session: Session, requests: Sequence[tuple[ActorId, MarkerList]]
) -> list[list[HydrationTarget] | KeyrefsError]:
    """Resolve the markers of many configs with one query for all of them.

    Legacy `{"_secret": COORD}` markers cost two more queries, for all configs
    together. A config whose marker names a missing or foreign reference gets
    the error instead of its targets.
    """
    reference_ids = [
        marker.reference_id
        for _, markers in requests
        for _, marker in markers
        if marker.reference_id is not None
    ]
    references = repo.references_by_ids(session, reference_ids)
    legacy = _LegacyConfigs(session, requests)

    resolved: list[list[HydrationTarget] | KeyrefsError] = []
    for actor_id, markers in requests:
        try:
            targets = [
                _target(path, _config_of(references, legacy, actor_id, path, marker))
                for path, marker in markers
            ]
        except (ReferenceNotFound, ForeignReference) as exc:
            resolved.append(exc)
        else:
            resolved.append(targets)
    return resolved


def _config_of(
    references: dict[uuid.UUID, SecretReference],
    legacy: _LegacyConfigs,
    actor_id: ActorId,
    path: JsonPath,
    marker: Marker,
) -> SecretConfig:
    if marker.reference_id is None:
        return legacy.config_for(actor_id, path, marker)
    reference = references.get(marker.reference_id)
    if reference is None:
        raise ReferenceNotFound(
            f"marker at {path} names reference {marker.reference_id}, "
            "which does not exist"
        )
    if reference.scope_type != repo.ACTOR_SCOPE or reference.scope_id != actor_id:
        raise ForeignReference(
            f"marker at {path} names reference {marker.reference_id}, "
            f"which does not belong to actor {actor_id}"
        )
    return reference.secret_config


class _LegacyConfigs:
    """The secret configs that `{"_secret": COORD}` markers name, for many actors.

    The actor must reference each secret. Short-lived secrets have no
    references: their coordinate, which contains a random UUID, is the
    capability to read them until they expire.
    """

    def __init__(
        self, session: Session, requests: Sequence[tuple[ActorId, MarkerList]]
    ) -> None:
        keys = {
            _legacy_key(marker)
            for _, markers in requests
            for _, marker in markers
            if marker.reference_id is None
        }
        actors = {
            actor_id
            for actor_id, markers in requests
            if any(marker.reference_id is None for _, marker in markers)
        }
        self._configs = repo.find_configs(session, keys) if keys else {}
        self._used: dict[uuid.UUID, set[uuid.UUID]] = defaultdict(set)
        if actors:
            rows = session.execute(
                select(
                    SecretReference.scope_id, SecretReference.secret_config_id
                ).where(
                    SecretReference.scope_type == repo.ACTOR_SCOPE,
                    SecretReference.scope_id.in_(list(actors)),
                )
            )
            for scope_id, config_id in rows:
                self._used[scope_id].add(config_id)

    def config_for(
        self, actor_id: ActorId, path: JsonPath, marker: Marker
    ) -> SecretConfig:
        key = _legacy_key(marker)
        config = self._configs.get(key)
        if config is None:
            raise ReferenceNotFound(
                f"marker at {path} names coordinate {key[1]} in storage {key[0]}, "
                "which keyrefs has no record of"
            )
        short_lived = config.managed and config.expires_at is not None
        if config.id not in self._used[actor_id] and not short_lived:
            raise ForeignReference(
                f"marker at {path} names coordinate {key[1]}, which actor "
                f"{actor_id} does not reference"
            )
        return config


def _legacy_key(marker: Marker) -> tuple[SecretStorageId, str]:
    return marker.storage_id or DEFAULT_STORAGE_ID, marker.coordinate or ""


def _target(path: JsonPath, config: SecretConfig) -> HydrationTarget:
    return HydrationTarget(
        path=path,
        storage_id=SecretStorageId(config.secret_storage_id),
        coordinate=coordinate_from_row(
            config.external_coordinate, managed=config.managed
        ),
        value_format=config.value_format,
        expires_at=config.expires_at,
    )


def check_expiry(targets: Sequence[HydrationTarget]) -> None:
    now = utc_now()
    for target in targets:
        if target.expires_at is not None and target.expires_at <= now:
            raise SecretExpired(
                f"secret {target.coordinate} at {target.path} expired at "
                f"{target.expires_at.isoformat()}: process the config again"
            )


def collect_values(
    targets: Sequence[HydrationTarget], outcomes: dict[ReadKey, ReadOutcome]
) -> dict[ReadKey, SecretValue]:
    """Pick one config's values from the read outcomes; raise its first error."""
    values = {}
    for target in targets:
        key = (target.storage_id, target.coordinate)
        outcome = outcomes[key]
        if isinstance(outcome, KeyrefsError):
            raise outcome
        if not isinstance(outcome, Found):
            raise SecretNotFound(
                f"secret {target.coordinate} for {target.path} is missing from "
                f"storage {target.storage_id}"
            )
        values[key] = SecretValue(
            outcome.value.reveal(), "json" if target.value_format == "json" else "text"
        )
    return values


def fill_values(
    config: JsonObject,
    targets: Sequence[HydrationTarget],
    values: dict[ReadKey, SecretValue],
) -> JsonObject:
    full = copy.deepcopy(config)
    for target in targets:
        value = values[(target.storage_id, target.coordinate)]
        target.path.set(full, value.to_json())
    return full


def markers_of(config: JsonObject) -> list[tuple[JsonPath, Marker]]:
    return list(find_markers(config))


def mask_config(spec: Spec, config: JsonObject) -> JsonObject:
    """Return a copy of `config` with every secret field and marker masked.

    A spec that describes no fields cannot mark any as secret, so then
    every scalar value is masked rather than returned as it is.
    """
    masked = copy.deepcopy(config)
    if not spec.has_properties:
        paths = [
            path
            for path, node in iter_nodes(config)
            if _is_leaf(node) and path.segments
        ]
    else:
        paths = [field.path for field in spec.secret_fields(config, all_branches=True)]
    paths += [path for path, node in iter_nodes(config) if looks_like_marker(node)]
    done: set[JsonPath] = set()
    for path in sorted(set(paths), key=lambda p: len(p.segments)):
        inside_masked = any(
            JsonPath(path.segments[:length]) in done
            for length in range(len(path.segments))
        )
        if path.segments and not inside_masked:
            path.set(masked, MASK)
            done.add(path)
    return masked


def _is_leaf(node: object) -> bool:
    return not isinstance(node, (dict, list))
