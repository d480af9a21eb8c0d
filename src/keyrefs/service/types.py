"""Requests and results of the service's public methods."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from keyrefs.ids import ActorId, OrganizationId, WorkspaceId

JsonObject = dict[str, Any]


@dataclass(frozen=True)
class ActorScope:
    """The actor a config belongs to, and its workspace and organization."""

    actor_id: ActorId
    workspace_id: WorkspaceId
    organization_id: OrganizationId


@dataclass(frozen=True)
class ReferenceView:
    """A secret reference as listed by `references`; holds no secret value."""

    id: uuid.UUID
    secret_config_id: uuid.UUID
    secret_storage_id: uuid.UUID
    scope_type: str
    scope_id: uuid.UUID
    hydration_path: str | None
    external_coordinate: str
    managed: bool

    def to_json(self) -> JsonObject:
        return {
            "id": str(self.id),
            "secret_config_id": str(self.secret_config_id),
            "secret_storage_id": str(self.secret_storage_id),
            "scope_type": self.scope_type,
            "scope_id": str(self.scope_id),
            "hydration_path": self.hydration_path,
            "external_coordinate": self.external_coordinate,
            "managed": self.managed,
        }


@dataclass(frozen=True)
class StorageView:
    """A secret storage as listed by `storage list`; contains no credentials."""

    id: uuid.UUID
    scope_type: str
    scope_id: uuid.UUID
    descriptor: str
    storage_type: str
    configured_from_environment: bool
    tombstone: bool

    def to_json(self) -> JsonObject:
        return {
            "id": str(self.id),
            "scope_type": self.scope_type,
            "scope_id": str(self.scope_id),
            "descriptor": self.descriptor,
            "storage_type": self.storage_type,
            "configured_from_environment": self.configured_from_environment,
            "tombstone": self.tombstone,
        }
