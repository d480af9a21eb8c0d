"""The read path: put secret values back into a stored config, and masking."""

from __future__ import annotations

import copy
import logging
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from keyrefs.backends.base import Found, ReadResult, SecretBackend
from keyrefs.domain.coordinates import Coordinate, coordinate_from_row
from keyrefs.domain.jsonpath import JsonPath, iter_nodes
from keyrefs.domain.markers import Marker, find_markers, looks_like_marker
from keyrefs.domain.spec import Spec
from keyrefs.errors import (
    ForeignReference,
    ReferenceNotFound,
    SecretExpired,
    SecretNotFound,
)
from keyrefs.ids import DEFAULT_STORAGE_ID, ActorId, SecretStorageId
from keyrefs.secret_value import MASK, SecretValue
from keyrefs.service.backend_pool import BackendPool
from keyrefs.service.types import JsonObject
from keyrefs.store import repositories as repo
from keyrefs.store.models import SecretConfig
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


def resolve_markers(
    session: Session, actor_id: ActorId, markers: Sequence[tuple[JsonPath, Marker]]
) -> list[HydrationTarget]:
    """Resolve every marker with one query (two when legacy markers are present)."""
    reference_ids = [m.reference_id for _, m in markers if m.reference_id is not None]
    references = repo.references_by_ids(session, reference_ids)
    legacy = [(path, m) for path, m in markers if m.reference_id is None]
    legacy_configs = _legacy_configs(session, actor_id, legacy)

    targets = []
    for path, marker in markers:
        if marker.reference_id is None:
            config = legacy_configs[path]
        else:
            reference = references.get(marker.reference_id)
            if reference is None:
                raise ReferenceNotFound(
                    f"marker at {path} names reference {marker.reference_id}, "
                    "which does not exist"
                )
            if (
                reference.scope_type != repo.ACTOR_SCOPE
                or reference.scope_id != actor_id
            ):
                raise ForeignReference(
                    f"marker at {path} names reference {marker.reference_id}, "
                    f"which does not belong to actor {actor_id}"
                )
            config = reference.secret_config
        targets.append(_target(path, config))
    return targets


def _legacy_configs(
    session: Session, actor_id: ActorId, legacy: list[tuple[JsonPath, Marker]]
) -> dict[JsonPath, SecretConfig]:
    """Resolve `{"_secret": COORD}` markers; the actor must reference each secret.

    Short-lived secrets have no references: their coordinate, which holds a
    random UUID, is the capability to read them until they expire.
    """
    if not legacy:
        return {}
    keys = {
        path: (marker.storage_id or DEFAULT_STORAGE_ID, marker.coordinate or "")
        for path, marker in legacy
    }
    configs = repo.find_configs(session, keys.values())
    used = {ref.secret_config_id for ref in repo.references_of_actor(session, actor_id)}
    resolved = {}
    for path, key in keys.items():
        config = configs.get(key)
        if config is None:
            raise ReferenceNotFound(
                f"marker at {path} names coordinate {key[1]} in storage {key[0]}, "
                "which keyrefs has no record of"
            )
        short_lived = config.managed and config.expires_at is not None
        if config.id not in used and not short_lived:
            raise ForeignReference(
                f"marker at {path} names coordinate {key[1]}, which actor "
                f"{actor_id} does not reference"
            )
        resolved[path] = config
    return resolved


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


def fetch_values(
    pool: BackendPool, executor: Executor, targets: Sequence[HydrationTarget]
) -> dict[tuple[SecretStorageId, Coordinate], SecretValue]:
    """Read every target's value, one concurrent batch per storage.

    Identical coordinates are read once. Any missing secret or backend error
    fails the whole call, so no partial config is returned.
    """
    by_storage: dict[SecretStorageId, set[Coordinate]] = defaultdict(set)
    for target in targets:
        by_storage[target.storage_id].add(target.coordinate)

    futures: list[tuple[SecretStorageId, Future[dict[Coordinate, ReadResult]]]] = []
    for storage_id, coordinates in by_storage.items():
        backend = pool.get(storage_id)
        for chunk in _read_chunks(backend, sorted(coordinates, key=str)):
            futures.append((storage_id, executor.submit(backend.read_many, chunk)))

    results: dict[tuple[SecretStorageId, Coordinate], ReadResult] = {}
    for storage_id, future in futures:
        for coordinate, result in future.result().items():
            results[(storage_id, coordinate)] = result

    values = {}
    for target in targets:
        result = results[(target.storage_id, target.coordinate)]
        if not isinstance(result, Found):
            raise SecretNotFound(
                f"secret {target.coordinate} for {target.path} is missing from "
                f"storage {target.storage_id}"
            )
        values[(target.storage_id, target.coordinate)] = SecretValue(
            result.value.reveal(), "json" if target.value_format == "json" else "text"
        )
    return values


def _read_chunks(
    backend: SecretBackend, coordinates: list[Coordinate]
) -> list[list[Coordinate]]:
    """Split into one chunk for a batch-reading backend, else one per coordinate."""
    if backend.capabilities.batch_read:
        return [coordinates]
    return [[coordinate] for coordinate in coordinates]


def fill_values(
    config: JsonObject,
    targets: Sequence[HydrationTarget],
    values: dict[tuple[SecretStorageId, Coordinate], SecretValue],
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

    A spec that describes no fields cannot say which are secret, so then
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
