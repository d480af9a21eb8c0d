"""Typed identifiers, so that one kind of UUID is not passed for another."""

from __future__ import annotations

import uuid
from typing import NewType

OrganizationId = NewType("OrganizationId", uuid.UUID)
WorkspaceId = NewType("WorkspaceId", uuid.UUID)
ActorId = NewType("ActorId", uuid.UUID)
SecretStorageId = NewType("SecretStorageId", uuid.UUID)
SecretConfigId = NewType("SecretConfigId", uuid.UUID)
SecretReferenceId = NewType("SecretReferenceId", uuid.UUID)

# The storage that `keyrefs init` creates from the environment always has this id.
DEFAULT_STORAGE_ID = SecretStorageId(uuid.UUID("00000000-0000-0000-0000-000000000001"))

# Scope id of the default storage: it belongs to no single organization.
PLATFORM_ORGANIZATION_ID = OrganizationId(uuid.UUID(int=0))


def new_uuid() -> uuid.UUID:
    return uuid.uuid4()
