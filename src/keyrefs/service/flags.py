"""Feature flags of the gradual rollout, evaluated through OpenFeature.

Every flag is evaluated with a context whose targeting key is the
organization id, with `organization_id`, `workspace_id` and, where known,
`actor_id` and `storage_id` as attributes. A flag that the provider does not
know, or that fails to evaluate, takes its default:

- `keyrefs.persist-references` (default on): write secret_config and
  secret_reference rows and `_secret_reference_id` markers. Off is the legacy
  mode, which writes only `{"_secret": COORD}` markers and no rows.
- `keyrefs.read-by-reference-id` (default on): hydrate markers through their
  reference ids. Off reads by coordinate, without an ownership check.
- `keyrefs.cleanup-orphans` (default on, evaluated per storage): delete the
  managed secrets that an update left unreferenced.

The default provider is flagd in file mode (`KEYREFS_FLAGS_FILE`), evaluated
in-process. Each service binds its provider to an OpenFeature domain of its
own, so two services in one process do not share flags.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from openfeature import api
from openfeature.client import OpenFeatureClient
from openfeature.evaluation_context import EvaluationContext
from openfeature.provider import FeatureProvider
from sqlalchemy import select
from sqlalchemy.orm import Session

from keyrefs.errors import ConfigurationError
from keyrefs.ids import ActorId, OrganizationId, SecretStorageId, WorkspaceId
from keyrefs.store.api_models import ActorOwner
from keyrefs.store.models import SecretConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Flag:
    """A boolean flag and the value it takes when the provider has none."""

    key: str
    default: bool


PERSIST_REFERENCES = Flag("keyrefs.persist-references", default=True)
READ_BY_REFERENCE_ID = Flag("keyrefs.read-by-reference-id", default=True)
CLEANUP_ORPHANS = Flag("keyrefs.cleanup-orphans", default=True)
ALL_FLAGS = (PERSIST_REFERENCES, READ_BY_REFERENCE_ID, CLEANUP_ORPHANS)


@dataclass(frozen=True)
class FlagContext:
    """The ids a flag is evaluated for; without an organization, no targeting key."""

    organization_id: OrganizationId | None = None
    workspace_id: WorkspaceId | None = None
    actor_id: ActorId | None = None

    def evaluation_context(
        self, storage_id: SecretStorageId | None = None
    ) -> EvaluationContext:
        attributes: dict[str, str] = {}
        if self.organization_id is not None:
            attributes["organization_id"] = str(self.organization_id)
        if self.workspace_id is not None:
            attributes["workspace_id"] = str(self.workspace_id)
        if self.actor_id is not None:
            attributes["actor_id"] = str(self.actor_id)
        if storage_id is not None:
            attributes["storage_id"] = str(storage_id)
        targeting_key = (
            str(self.organization_id) if self.organization_id is not None else None
        )
        return EvaluationContext(targeting_key=targeting_key, attributes=attributes)


def flagd_file_provider(path: Path) -> FeatureProvider:
    """Build the flagd provider that evaluates a local flag file in-process."""
    from openfeature.contrib.provider.flagd import FlagdProvider
    from openfeature.contrib.provider.flagd.config import ResolverType

    if not path.is_file():
        raise ConfigurationError(
            f"KEYREFS_FLAGS_FILE={path} does not exist: create the flagd flag "
            "file or unset the variable to use the flag defaults"
        )
    return FlagdProvider(
        resolver_type=ResolverType.FILE, offline_flag_source_path=str(path)
    )


class FeatureFlags:
    """The rollout flags of one service, bound to its own OpenFeature domain."""

    def __init__(
        self, provider: FeatureProvider | None, *, owns_provider: bool
    ) -> None:
        self._provider = provider
        self._owns_provider = owns_provider
        self._domain = f"keyrefs-{uuid.uuid4().hex}"
        self._client: OpenFeatureClient | None = None
        if provider is not None:
            try:
                api.set_provider_and_wait(provider, self._domain)
            except Exception as exc:
                # The provider's own text may quote its configuration.
                raise ConfigurationError(
                    f"the feature flag provider failed to start "
                    f"({type(exc).__name__}): check KEYREFS_FLAGS_FILE or the "
                    "provider's configuration"
                ) from exc
            self._client = api.get_client(self._domain)

    @classmethod
    def from_file(cls, path: Path | None) -> FeatureFlags:
        if path is None:
            return cls(None, owns_provider=False)
        return cls(flagd_file_provider(path.expanduser()), owns_provider=True)

    def close(self) -> None:
        if self._provider is not None and self._owns_provider:
            self._provider.shutdown()

    def is_enabled(
        self,
        flag: Flag,
        context: FlagContext,
        storage_id: SecretStorageId | None = None,
    ) -> bool:
        if self._client is None:
            return flag.default
        return self._client.get_boolean_value(
            flag.key, flag.default, context.evaluation_context(storage_id)
        )

    def persist_references(self, context: FlagContext) -> bool:
        return self.is_enabled(PERSIST_REFERENCES, context)

    def read_by_reference_id(self, context: FlagContext) -> bool:
        return self.is_enabled(READ_BY_REFERENCE_ID, context)

    def cleanup_orphans(
        self, context: FlagContext, storage_id: SecretStorageId
    ) -> bool:
        return self.is_enabled(CLEANUP_ORPHANS, context, storage_id)

    def configs_to_clean(
        self,
        session: Session,
        context: FlagContext,
        config_ids: Collection[uuid.UUID],
    ) -> set[uuid.UUID]:
        """Keep the configs whose storage has `keyrefs.cleanup-orphans` on."""
        if not config_ids:
            return set()
        rows = session.execute(
            select(SecretConfig.id, SecretConfig.secret_storage_id).where(
                SecretConfig.id.in_(list(config_ids))
            )
        )
        by_storage: dict[uuid.UUID, set[uuid.UUID]] = {}
        for config_id, storage_id in rows:
            by_storage.setdefault(storage_id, set()).add(config_id)
        kept: set[uuid.UUID] = set()
        for storage_id, ids in by_storage.items():
            if self.cleanup_orphans(context, SecretStorageId(storage_id)):
                kept |= ids
            else:
                logger.info(
                    "keeping %d unreferenced secrets in storage %s: "
                    "keyrefs.cleanup-orphans is off",
                    len(ids),
                    storage_id,
                )
        return kept


def hydration_context(
    session: Session,
    actor_id: ActorId,
    organization_id: OrganizationId | None,
    workspace_id: WorkspaceId | None,
) -> FlagContext:
    """Build the context of a hydration, from the caller or the actor's owner.

    Without ids from the caller, the owner that the HTTP service recorded for
    the actor is used. An actor without a recorded owner is evaluated by its
    id alone, so targeting by organization gives it the defaults.
    """
    if organization_id is None:
        owner = session.get(ActorOwner, actor_id)
        if owner is not None:
            organization_id = OrganizationId(owner.organization_id)
            if workspace_id is None:
                workspace_id = WorkspaceId(owner.workspace_id)
    return FlagContext(organization_id, workspace_id, actor_id)
