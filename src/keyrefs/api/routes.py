"""The /v1 routes: each checks the caller's organization, calls the service and
records an audit event for every write, hydration, deletion and storage change.
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request, Response

from keyrefs.api.auth import (
    AdminCaller,
    ControlPlaneCaller,
    DataPlaneCaller,
    ServiceDep,
)
from keyrefs.api.metrics import Metrics
from keyrefs.api.schemas import (
    ConfigResponse,
    ErrorResponse,
    HydrateRequest,
    MaskRequest,
    ProcessRequest,
    ReferenceResponse,
    ReferencesResponse,
    StorageRequest,
    StorageResponse,
    StoragesResponse,
)
from keyrefs.backends.registry import BUILTIN_FACTORIES, available_storage_types
from keyrefs.errors import InvalidInput, KeyrefsError
from keyrefs.ids import (
    ActorId,
    OrganizationId,
    SecretConfigId,
    SecretStorageId,
    WorkspaceId,
)
from keyrefs.service import audit, tenancy
from keyrefs.service.types import ActorScope

ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorResponse} for status in (401, 403, 404, 409, 422)
}

router = APIRouter(prefix="/v1", responses=ERROR_RESPONSES)


# Actors -----------------------------------------------------------------------


@router.put("/actors/{actor_id}/config")
def process_config(
    actor_id: uuid.UUID,
    body: ProcessRequest,
    caller: ControlPlaneCaller,
    service: ServiceDep,
) -> ConfigResponse:
    """Split the secrets out of an actor's config and return the stored config."""
    scope = ActorScope(
        ActorId(actor_id),
        WorkspaceId(body.workspace_id),
        OrganizationId(body.organization_id),
    )
    event = audit.Event(
        action="actor.process",
        token_id=caller.token_id,
        actor_id=actor_id,
        organization_id=body.organization_id,
    )
    with audit.audited(service.session, event) as outcome:
        tenancy.claim_actor(service.session, scope, caller.organization_id)
        with tenancy.hiding_foreign_references(scope.actor_id, caller.organization_id):
            stored = service.process(
                scope, body.spec, body.config, body.previous_config
            )
        outcome.coordinates = audit.marker_coordinates(stored)
    return ConfigResponse(config=stored)


@router.post("/actors/{actor_id}/config/hydrate")
def hydrate_config(
    actor_id: uuid.UUID,
    body: HydrateRequest,
    caller: DataPlaneCaller,
    service: ServiceDep,
    request: Request,
) -> ConfigResponse:
    """Return the full config, secret values included. Data-plane tokens only."""
    metrics: Metrics = request.app.state.metrics
    event = audit.Event(
        action="actor.hydrate",
        token_id=caller.token_id,
        actor_id=actor_id,
        organization_id=caller.organization_id,
        coordinates=audit.marker_coordinates(body.config),
    )
    try:
        with audit.audited(service.session, event):
            tenancy.require_actor(
                service.session, ActorId(actor_id), caller.organization_id
            )
            with tenancy.hiding_foreign_references(
                ActorId(actor_id), caller.organization_id
            ):
                full = service.hydrate(body.config, ActorId(actor_id))
    except KeyrefsError as exc:
        metrics.count_hydration(exc.code)
        raise
    metrics.count_hydration(audit.RESULT_OK)
    return ConfigResponse(config=full)


@router.post("/config/mask")
def mask_config(
    body: MaskRequest, caller: ControlPlaneCaller, service: ServiceDep
) -> ConfigResponse:
    """Return the config with every secret field replaced by the mask."""
    return ConfigResponse(config=service.mask(body.spec, body.config))


@router.delete("/actors/{actor_id}", status_code=204)
def delete_actor(
    actor_id: uuid.UUID, caller: ControlPlaneCaller, service: ServiceDep
) -> Response:
    """Remove an actor's references and the managed secrets no one else uses."""
    event = audit.Event(
        action="actor.delete",
        token_id=caller.token_id,
        actor_id=actor_id,
        organization_id=caller.organization_id,
    )
    with audit.audited(service.session, event) as outcome:
        tenancy.require_actor(
            service.session, ActorId(actor_id), caller.organization_id
        )
        references = service.references_of_actor(ActorId(actor_id))
        outcome.coordinates = [
            {
                "path": reference.hydration_path or "",
                "coordinate": reference.external_coordinate,
            }
            for reference in references
        ]
        service.delete_actor(ActorId(actor_id))
    return Response(status_code=204)


@router.get("/actors/{actor_id}/references")
def actor_references(
    actor_id: uuid.UUID, caller: ControlPlaneCaller, service: ServiceDep
) -> ReferencesResponse:
    tenancy.require_actor(service.session, ActorId(actor_id), caller.organization_id)
    found = service.references_of_actor(ActorId(actor_id))
    return ReferencesResponse(references=[ReferenceResponse.of(r) for r in found])


@router.get("/secret-configs/{secret_config_id}/references")
def secret_config_references(
    secret_config_id: uuid.UUID, caller: ControlPlaneCaller, service: ServiceDep
) -> ReferencesResponse:
    config_id = SecretConfigId(secret_config_id)
    tenancy.require_secret_config(service.session, config_id, caller.organization_id)
    found = service.references_of_secret_config(config_id)
    return ReferencesResponse(references=[ReferenceResponse.of(r) for r in found])


# Storages ---------------------------------------------------------------------


@router.post("/storages", status_code=201)
def add_storage(
    body: StorageRequest, caller: AdminCaller, service: ServiceDep
) -> StorageResponse:
    """Check a customer-owned storage's connection and record it."""
    known = set(BUILTIN_FACTORIES) | available_storage_types()
    if body.type not in known:
        raise InvalidInput(
            f"storage type {body.type!r} is unknown: expected one of "
            f"{', '.join(sorted(known))}"
        )
    event = audit.Event(
        action="storage.add",
        token_id=caller.token_id,
        organization_id=caller.organization_id,
    )
    with audit.audited(service.session, event) as outcome:
        owner = tenancy.claim_storage_owner(
            service.session,
            body.scope,
            body.scope_id,
            body.organization_id,
            caller.organization_id,
        )
        storage = service.add_storage(
            body.type, body.scope, body.scope_id, owner, body.descriptor, body.config
        )
        outcome.storage_id = storage.id
    return StorageResponse.of(storage)


@router.get("/storages")
def list_storages(caller: AdminCaller, service: ServiceDep) -> StoragesResponse:
    found = tenancy.visible_storages(
        service.session, service.list_storages(), caller.organization_id
    )
    return StoragesResponse(storages=[StorageResponse.of(s) for s in found])


@router.delete("/storages/{storage_id}")
def tombstone_storage(
    storage_id: uuid.UUID, caller: AdminCaller, service: ServiceDep
) -> StorageResponse:
    """Tombstone a storage: it keeps serving reads but takes no new secret."""
    event = audit.Event(
        action="storage.tombstone",
        token_id=caller.token_id,
        storage_id=storage_id,
        organization_id=caller.organization_id,
    )
    with audit.audited(service.session, event):
        tenancy.require_storage(service.session, storage_id, caller.organization_id)
        storage = service.tombstone_storage(SecretStorageId(storage_id))
    return StorageResponse.of(storage)
