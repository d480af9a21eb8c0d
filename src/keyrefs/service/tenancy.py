"""Tenant isolation: which organization owns each workspace, actor and storage.

keyrefs records the organization of a workspace and the workspace of an actor
the first time a request names them, and checks every later request against
that record. A caller limited to one organization gets `NotFound` for anything
of another organization, with the same message as for an id that does not
exist, so it cannot learn which ids exist elsewhere. A caller with no
organization limit that names a different owner than the recorded one gets
`Conflict`, because for it the mismatch is a bug worth reporting.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from keyrefs.errors import (
    Conflict,
    ForeignReference,
    InvalidInput,
    NotFound,
    ReferenceNotFound,
    StorageNotFound,
)
from keyrefs.ids import ActorId, OrganizationId, SecretConfigId
from keyrefs.service.audit import SessionSource
from keyrefs.service.types import ActorScope, StorageView
from keyrefs.store import repositories as repo
from keyrefs.store.api_models import ActorOwner, WorkspaceOwner
from keyrefs.store.models import SecretConfig, SecretReference, SecretStorage
from keyrefs.store.types import utc_now

# Each of the two claims (workspace, then actor) can lose its insert race once,
# and a lost race means the winner's row is committed. So the workspace can fail
# the first attempt and the actor the second, and three attempts always suffice.
CLAIM_ATTEMPTS = 3


class ActorNotFound(NotFound):
    """No actor with the id is visible to the caller."""

    code = "actor_not_found"


class SecretConfigNotFound(NotFound):
    """No secret config with the id is visible to the caller."""

    code = "secret_config_not_found"


# Actors and workspaces ----------------------------------------------------


def claim_actor(
    sessions: SessionSource, scope: ActorScope, caller: OrganizationId | None
) -> None:
    """Record the actor's workspace and organization, or check the record."""
    if caller is not None and scope.organization_id != caller:
        raise ActorNotFound(_actor_missing(scope.actor_id))
    for attempt in range(CLAIM_ATTEMPTS):
        try:
            with sessions() as session, session.begin():
                _claim_workspace(
                    session, scope.workspace_id, scope.organization_id, caller
                )
                _claim_actor(session, scope, caller)
            return
        except IntegrityError:
            if attempt + 1 == CLAIM_ATTEMPTS:
                raise


def _claim_workspace(
    session: Session,
    workspace_id: uuid.UUID,
    organization_id: uuid.UUID,
    caller: OrganizationId | None,
) -> None:
    owner = session.get(WorkspaceOwner, workspace_id)
    if owner is None:
        session.add(
            WorkspaceOwner(
                workspace_id=workspace_id,
                organization_id=organization_id,
                created_at=utc_now(),
            )
        )
        session.flush()
        return
    if owner.organization_id == organization_id:
        return
    if caller is not None:
        raise NotFound(f"workspace {workspace_id} not found")
    raise Conflict(
        f"workspace {workspace_id} belongs to organization {owner.organization_id}, "
        f"not {organization_id}: send the organization it was first used with"
    )


def _claim_actor(
    session: Session, scope: ActorScope, caller: OrganizationId | None
) -> None:
    owner = session.get(ActorOwner, scope.actor_id)
    if owner is None:
        session.add(
            ActorOwner(
                actor_id=scope.actor_id,
                workspace_id=scope.workspace_id,
                organization_id=scope.organization_id,
                created_at=utc_now(),
            )
        )
        session.flush()
        return
    if owner.organization_id != scope.organization_id and caller is not None:
        raise ActorNotFound(_actor_missing(scope.actor_id))
    if (
        owner.organization_id != scope.organization_id
        or owner.workspace_id != scope.workspace_id
    ):
        raise Conflict(
            f"actor {scope.actor_id} belongs to workspace {owner.workspace_id} of "
            f"organization {owner.organization_id}: send the workspace and "
            "organization it was first used with"
        )


def require_actor(
    sessions: SessionSource, actor_id: ActorId, caller: OrganizationId | None
) -> None:
    """Raise ActorNotFound unless a limited caller's organization owns the actor."""
    if caller is None:
        return
    with sessions() as session:
        owner = session.get(ActorOwner, actor_id)
    if owner is None or owner.organization_id != caller:
        raise ActorNotFound(_actor_missing(actor_id))


@contextmanager
def hiding_foreign_references(
    actor_id: ActorId, caller: OrganizationId | None
) -> Iterator[None]:
    """Report a foreign reference as not found to a limited caller.

    The service tells "does not exist" from "belongs to another actor", which
    would let a limited caller probe reference ids of other organizations.
    """
    try:
        yield
    except (ForeignReference, ReferenceNotFound):
        if caller is None:
            raise
        raise ReferenceNotFound(
            f"a marker names a reference or coordinate that actor {actor_id} "
            "does not have"
        ) from None


def _actor_missing(actor_id: uuid.UUID) -> str:
    return f"actor {actor_id} not found"


# Storages -------------------------------------------------------------------


def claim_storage_owner(
    sessions: SessionSource,
    scope_type: str,
    scope_id: uuid.UUID,
    organization_id: uuid.UUID | None,
    caller: OrganizationId | None,
) -> OrganizationId:
    """Return the organization that will own a new storage, recording a workspace."""
    if scope_type == "organization":
        if organization_id is not None and organization_id != scope_id:
            raise InvalidInput(
                f"organization_id {organization_id} differs from the scope_id "
                f"{scope_id} of an organization storage: omit it or send the same id"
            )
        owner = scope_id
    else:
        owner = organization_id or caller or _recorded_owner(sessions, scope_id)
    if caller is not None and owner != caller:
        raise NotFound(f"{scope_type} {scope_id} not found")
    for attempt in range(CLAIM_ATTEMPTS):
        try:
            if scope_type == "workspace":
                with sessions() as session, session.begin():
                    _claim_workspace(session, scope_id, owner, caller)
            break
        except IntegrityError:
            if attempt + 1 == CLAIM_ATTEMPTS:
                raise
    return OrganizationId(owner)


def _recorded_owner(sessions: SessionSource, workspace_id: uuid.UUID) -> uuid.UUID:
    with sessions() as session:
        recorded = session.get(WorkspaceOwner, workspace_id)
    if recorded is None:
        raise InvalidInput(
            f"workspace {workspace_id} is not known yet: send organization_id"
        )
    return recorded.organization_id


def storage_organization(
    session: Session, scope_type: str, scope_id: uuid.UUID
) -> uuid.UUID | None:
    """Return the organization owning a storage scope; None if none is recorded."""
    if scope_type == "organization":
        return scope_id
    owner = session.get(WorkspaceOwner, scope_id)
    return None if owner is None else owner.organization_id


def visible_storages(
    sessions: SessionSource,
    storages: list[StorageView],
    caller: OrganizationId | None,
) -> list[StorageView]:
    """Keep the storages a caller may see: all, or those of its organization."""
    if caller is None:
        return storages
    with sessions() as session:
        return [
            storage
            for storage in storages
            if storage_organization(session, storage.scope_type, storage.scope_id)
            == caller
        ]


def require_storage(
    sessions: SessionSource, storage_id: uuid.UUID, caller: OrganizationId | None
) -> None:
    """Raise StorageNotFound unless the storage exists and the caller may see it."""
    with sessions() as session:
        storage = session.get(SecretStorage, storage_id)
        visible = storage is not None and (
            caller is None
            or storage_organization(session, storage.scope_type, storage.scope_id)
            == caller
        )
    if not visible:
        raise StorageNotFound(f"secret storage {storage_id} does not exist")


# Secret configs -------------------------------------------------------------


def require_secret_config(
    sessions: SessionSource, config_id: SecretConfigId, caller: OrganizationId | None
) -> None:
    """Raise SecretConfigNotFound unless the config exists and the caller may see it.

    A config in a storage of one organization belongs to it. A config in the
    shared default storage belongs to the organization of its references, and
    a limited caller sees it only when every reference is of its organization.
    """
    missing = SecretConfigNotFound(f"secret config {config_id} does not exist")
    with sessions() as session:
        config = session.get(SecretConfig, config_id)
        if config is None:
            raise missing
        if caller is None:
            return
        storage = config.storage
        owner = storage_organization(session, storage.scope_type, storage.scope_id)
        if owner == caller:
            return
        if not storage.configured_from_environment:
            raise missing
        owners = _reference_organizations(session, config_id)
    if not owners or owners != {caller}:
        raise missing


def _reference_organizations(
    session: Session, config_id: SecretConfigId
) -> set[uuid.UUID | None]:
    owners: set[uuid.UUID | None] = set()
    references = session.scalars(
        select(SecretReference).where(SecretReference.secret_config_id == config_id)
    )
    for reference in references:
        if reference.scope_type == repo.ACTOR_SCOPE:
            actor = session.get(ActorOwner, reference.scope_id)
            owners.add(None if actor is None else actor.organization_id)
        else:
            storage = session.get(SecretStorage, reference.scope_id)
            owners.add(
                None
                if storage is None
                else storage_organization(session, storage.scope_type, storage.scope_id)
            )
    return owners
