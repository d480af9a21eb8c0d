"""Secret storages: the default one from the environment, and customer-owned ones."""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, SecretStr, ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from keyrefs.backends.base import SecretWrite
from keyrefs.backends.registry import load_factory
from keyrefs.domain.coordinates import ManagedCoordinate
from keyrefs.errors import Conflict, InvalidInput, StorageNotFound
from keyrefs.ids import (
    DEFAULT_STORAGE_ID,
    PLATFORM_ORGANIZATION_ID,
    OrganizationId,
    SecretStorageId,
)
from keyrefs.secret_value import SecretValue
from keyrefs.service.environment import describe_validation_error
from keyrefs.service.types import StorageView
from keyrefs.store import repositories as repo
from keyrefs.store.models import SecretConfig, SecretReference, SecretStorage

logger = logging.getLogger(__name__)

ScopeType = Literal["organization", "workspace"]
DEFAULT_DESCRIPTOR = "default"
MAX_DESCRIPTOR_LENGTH = 256


@dataclass(frozen=True)
class BootstrapResult:
    storage: StorageView
    created: bool
    previous_type: str | None


def view(storage: SecretStorage) -> StorageView:
    return StorageView(
        id=storage.id,
        scope_type=storage.scope_type,
        scope_id=storage.scope_id,
        descriptor=storage.descriptor,
        storage_type=storage.storage_type,
        configured_from_environment=storage.configured_from_environment,
        tombstone=storage.tombstone,
    )


def upsert_default_storage(session: Session, storage_type: str) -> BootstrapResult:
    """Create the default storage, or switch its type; returns what changed."""
    storage = repo.get_storage(session, DEFAULT_STORAGE_ID)
    if storage is None:
        storage = SecretStorage(
            id=DEFAULT_STORAGE_ID,
            scope_type="organization",
            scope_id=PLATFORM_ORGANIZATION_ID,
            descriptor=DEFAULT_DESCRIPTOR,
            storage_type=storage_type,
            configured_from_environment=True,
            tombstone=False,
        )
        session.add(storage)
        session.flush()
        return BootstrapResult(view(storage), created=True, previous_type=None)
    previous = storage.storage_type
    if previous != storage_type:
        storage.storage_type = storage_type
        session.flush()
        return BootstrapResult(view(storage), created=False, previous_type=previous)
    return BootstrapResult(view(storage), created=False, previous_type=None)


def validate_backend_config(storage_type: str, values: Any) -> BaseModel:
    factory = load_factory(storage_type)
    if not isinstance(values, dict):
        raise InvalidInput(f"config of a {storage_type} storage must be a JSON object")
    try:
        return factory.config_model.model_validate(values)
    except ValidationError as exc:
        raise InvalidInput(
            f"config of a {storage_type} storage is invalid: "
            + describe_validation_error(exc)
        ) from None


@dataclass(frozen=True)
class NewStorage:
    """A storage to add, with the secret write of its connection config."""

    row: SecretStorage
    credential_row: SecretConfig
    credential_reference: SecretReference
    credential_write: SecretWrite


def plan_new_storage(
    storage_type: str,
    scope_type: ScopeType,
    scope_id: uuid.UUID,
    organization_id: OrganizationId,
    descriptor: str,
    config: BaseModel,
    prefix: str,
) -> NewStorage:
    if not descriptor or len(descriptor) > MAX_DESCRIPTOR_LENGTH:
        raise InvalidInput(
            f"storage descriptor must be 1 to {MAX_DESCRIPTOR_LENGTH} characters long"
        )
    storage_id = uuid.uuid4()
    coordinate = ManagedCoordinate(
        scope=scope_type, scope_id=scope_id, secret_id=uuid.uuid4(), prefix=prefix
    )
    name = coordinate.render()
    credential_row = SecretConfig(
        id=uuid.uuid4(),
        secret_storage_id=DEFAULT_STORAGE_ID,
        descriptor=name,
        external_coordinate=name,
        managed=True,
        value_format="json",
        tombstone=False,
    )
    payload = json.dumps(_revealed(config), separators=(",", ":"))
    return NewStorage(
        row=SecretStorage(
            id=storage_id,
            scope_type=scope_type,
            scope_id=scope_id,
            descriptor=descriptor,
            storage_type=storage_type,
            configured_from_environment=False,
            tombstone=False,
        ),
        credential_row=credential_row,
        credential_reference=SecretReference(
            id=uuid.uuid4(),
            secret_config_id=credential_row.id,
            scope_type=repo.STORAGE_SCOPE,
            scope_id=storage_id,
            hydration_path=None,
        ),
        credential_write=SecretWrite(
            coordinate=coordinate,
            value=SecretValue(payload, "json"),
            organization_id=organization_id,
        ),
    )


def insert_new_storage(session: Session, new: NewStorage) -> None:
    try:
        with session.begin_nested():
            session.add(new.row)
            session.flush()
    except IntegrityError:
        raise Conflict(
            f"a {new.row.storage_type} storage named {new.row.descriptor!r} already "
            f"exists for {new.row.scope_type} {new.row.scope_id}"
        ) from None
    session.add(new.credential_row)
    session.flush()
    session.add(new.credential_reference)
    session.flush()


def namespace_key(storage_type: str, config: BaseModel) -> tuple[object, ...] | None:
    """Return what decides where a storage's managed secrets live, or None.

    Two storages with the same key write managed secrets into one namespace,
    so garbage collection or a migration in one could delete the other's
    secrets. The local backend keys its rows by storage id and never overlaps.
    """
    values = config.model_dump()
    if storage_type == "vault":
        prefix = "/".join(part for part in str(values["prefix"]).split("/") if part)
        return (
            storage_type,
            str(values["address"]).rstrip("/").lower(),
            values["namespace"],
            str(values["mount"]).strip("/"),
            prefix,
        )
    if storage_type == "aws_secrets_manager":
        # NOTE: two sets of credentials may reach one AWS account; keyrefs cannot
        # tell that without a call, so only identical settings count as overlap.
        return (
            storage_type,
            values["region"],
            values["endpoint_url"],
            values["role_arn"],
            values["access_key_id"],
        )
    if storage_type == "google_secret_manager":
        return (storage_type, values["project"], values["location"], values["endpoint"])
    if storage_type == "azure_key_vault":
        return (storage_type, str(values["vault_url"]).rstrip("/").lower())
    return None


def tombstone_storage(session: Session, storage_id: SecretStorageId) -> StorageView:
    if storage_id == DEFAULT_STORAGE_ID:
        raise InvalidInput(
            "the default storage cannot be tombstoned: change KEYREFS_SECRET_STORAGE "
            "and run `keyrefs init` instead"
        )
    storage = repo.get_storage(session, storage_id)
    if storage is None:
        raise StorageNotFound(f"secret storage {storage_id} does not exist")
    storage.tombstone = True
    session.flush()
    return view(storage)


def _revealed(config: BaseModel) -> Any:
    """Return the config as JSON, SecretStr fields revealed, to store as a secret."""
    values = config.model_dump(mode="python")
    return _reveal(values)


def _reveal(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, dict):
        return {key: _reveal(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_reveal(item) for item in value]
    return value
