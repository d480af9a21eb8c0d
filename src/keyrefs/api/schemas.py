"""Request and response bodies of the HTTP API, separate from the ORM tables."""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from keyrefs.service.types import ReferenceView, StorageView


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProcessRequest(_Body):
    workspace_id: uuid.UUID
    organization_id: uuid.UUID
    spec: dict[str, Any]
    config: dict[str, Any]
    previous_config: dict[str, Any] | None = None


class HydrateRequest(_Body):
    config: dict[str, Any]


class MaskRequest(_Body):
    spec: dict[str, Any]
    config: dict[str, Any]


class ConfigResponse(BaseModel):
    config: dict[str, Any]


class StorageRequest(_Body):
    type: str = Field(min_length=1, max_length=64)
    scope: Literal["organization", "workspace"]
    scope_id: uuid.UUID
    descriptor: str = Field(min_length=1, max_length=256)
    config: dict[str, Any]
    organization_id: uuid.UUID | None = Field(
        default=None,
        description=(
            "Owning organization of a workspace storage; defaults to the token's "
            "organization or to the organization the workspace was first used with."
        ),
    )


class StorageResponse(BaseModel):
    id: uuid.UUID
    scope_type: str
    scope_id: uuid.UUID
    descriptor: str
    storage_type: str
    configured_from_environment: bool
    tombstone: bool

    @classmethod
    def of(cls, view: StorageView) -> StorageResponse:
        return cls(
            id=view.id,
            scope_type=view.scope_type,
            scope_id=view.scope_id,
            descriptor=view.descriptor,
            storage_type=view.storage_type,
            configured_from_environment=view.configured_from_environment,
            tombstone=view.tombstone,
        )


class ReferenceResponse(BaseModel):
    id: uuid.UUID
    secret_config_id: uuid.UUID
    secret_storage_id: uuid.UUID
    scope_type: str
    scope_id: uuid.UUID
    hydration_path: str | None
    external_coordinate: str
    managed: bool

    @classmethod
    def of(cls, view: ReferenceView) -> ReferenceResponse:
        return cls(
            id=view.id,
            secret_config_id=view.secret_config_id,
            secret_storage_id=view.secret_storage_id,
            scope_type=view.scope_type,
            scope_id=view.scope_id,
            hydration_path=view.hydration_path,
            external_coordinate=view.external_coordinate,
            managed=view.managed,
        )


class ReferencesResponse(BaseModel):
    references: list[ReferenceResponse]


class StoragesResponse(BaseModel):
    storages: list[StorageResponse]


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorDetail


class HealthResponse(BaseModel):
    status: Literal["ok"]
