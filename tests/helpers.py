"""Small helpers shared by the service tests."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select

from keyrefs.ids import DEFAULT_STORAGE_ID
from keyrefs.service import KeyrefsService
from keyrefs.store.models import LocalSecret, SecretConfig, SecretReference

SECRET = {"type": "string", "airbyte_secret": True}


def local_coordinates(service: KeyrefsService) -> set[str]:
    """Coordinates the local backend of the default storage holds."""
    with service.session() as session:
        rows = session.scalars(
            select(LocalSecret.coordinate).where(
                LocalSecret.secret_storage_id == DEFAULT_STORAGE_ID
            )
        )
        return set(rows)


def config_coordinates(service: KeyrefsService) -> set[str]:
    with service.session() as session:
        return set(session.scalars(select(SecretConfig.external_coordinate)))


def reference_count(service: KeyrefsService) -> int:
    with service.session() as session:
        return len(list(session.scalars(select(SecretReference.id))))


def marker(stored: dict[str, Any], *path: str | int) -> dict[str, Any]:
    node: Any = stored
    for segment in path:
        node = node[segment]
    assert isinstance(node, dict), (
        f"expected a marker at {path}, found {type(node).__name__}"
    )
    return node


def random_id() -> uuid.UUID:
    return uuid.uuid4()
