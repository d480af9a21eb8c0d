"""Backend instances per storage, built on first use and reused."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session, sessionmaker

from keyrefs.backends.base import BackendContext, Found, SecretBackend
from keyrefs.backends.registry import load_factory
from keyrefs.domain.coordinates import coordinate_from_row
from keyrefs.errors import ConfigurationError, StorageNotFound
from keyrefs.ids import DEFAULT_STORAGE_ID, SecretStorageId
from keyrefs.service.cache import SecretCache
from keyrefs.service.environment import describe_validation_error
from keyrefs.service.guarded_backend import GuardedBackend
from keyrefs.service.limiter import NO_LIMITS, RateLimits
from keyrefs.service.metrics import ServiceMetrics
from keyrefs.store import repositories as repo

logger = logging.getLogger(__name__)

DefaultConfigBuilder = Callable[[], BaseModel]


class BackendPool:
    """Builds the backend of each storage once.

    The default storage's backend comes from settings. Every other storage's
    connection config is a secret itself, read from the default storage through
    the storage's own reference (scope `secret_storage`, NULL path).

    Every backend the pool hands out is a `GuardedBackend`: rate-limited per
    storage, counted in `metrics`, and invalidating `cache` on writes and
    deletes.
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        default_config: DefaultConfigBuilder,
        default_storage_type: str,
        resources: Mapping[str, Any],
        metrics: ServiceMetrics | None = None,
        limits: RateLimits = NO_LIMITS,
        cache: SecretCache | None = None,
    ) -> None:
        self._sessions = sessions
        self._default_config = default_config
        self._default_storage_type = default_storage_type
        self._resources = resources
        self.metrics = metrics or ServiceMetrics()
        self._limits = limits
        self.cache = cache
        self._backends: dict[SecretStorageId, SecretBackend] = {}
        self._lock = threading.Lock()

    def get(self, storage_id: SecretStorageId) -> SecretBackend:
        with self._lock:
            backend = self._backends.get(storage_id)
        if backend is not None:
            return backend
        backend = self._build(storage_id)
        with self._lock:
            return self._backends.setdefault(storage_id, backend)

    def put(
        self,
        storage_id: SecretStorageId,
        backend: SecretBackend,
        storage_type: str = "unknown",
    ) -> None:
        """Install a backend for a storage, replacing any built before.

        A backend that is not guarded yet gets a guard without a rate limit,
        labelled `storage_type` in the metrics.
        """
        if not isinstance(backend, GuardedBackend):
            backend = self.guard(backend, storage_id, storage_type, limited=False)
        with self._lock:
            previous = self._backends.pop(storage_id, None)
            self._backends[storage_id] = backend
        if previous is not None and previous is not backend:
            previous.close()

    def forget(self, storage_id: SecretStorageId) -> None:
        with self._lock:
            backend = self._backends.pop(storage_id, None)
        if backend is not None:
            backend.close()

    def close(self) -> None:
        with self._lock:
            backends = list(self._backends.values())
            self._backends.clear()
        for backend in backends:
            backend.close()

    def build(
        self, storage_type: str, config: BaseModel, storage_id: SecretStorageId
    ) -> SecretBackend:
        factory = load_factory(storage_type)
        context = BackendContext(storage_id=storage_id, resources=self._resources)
        return self.guard(factory.create(config, context), storage_id, storage_type)

    def guard(
        self,
        backend: SecretBackend,
        storage_id: SecretStorageId,
        storage_type: str,
        limited: bool = True,
    ) -> GuardedBackend:
        """Wrap `backend` with the storage type's rate limit, metrics and cache."""
        return GuardedBackend(
            backend,
            storage_id,
            storage_type,
            self.metrics,
            bucket=self._limits.bucket_for(storage_type) if limited else None,
            batch_bucket=(
                self._limits.batch_bucket_for(storage_type) if limited else None
            ),
            cache=self.cache,
        )

    def _build(self, storage_id: SecretStorageId) -> SecretBackend:
        storage_type, config = self.config_of(storage_id)
        if storage_id != DEFAULT_STORAGE_ID:
            logger.info(
                "built %s backend for secret storage %s", storage_type, storage_id
            )
        return self.build(storage_type, config, storage_id)

    def config_of(self, storage_id: SecretStorageId) -> tuple[str, BaseModel]:
        """Return a storage's type and validated connection config."""
        if storage_id == DEFAULT_STORAGE_ID:
            return self._default_storage_type, self._default_config()
        with self._sessions() as session:
            storage = repo.get_storage(session, storage_id)
            if storage is None:
                raise StorageNotFound(f"secret storage {storage_id} does not exist")
            storage_type = storage.storage_type
            references = repo.references_of_scope(
                session, repo.STORAGE_SCOPE, storage_id
            )
            credential = references[0].secret_config if references else None
            if credential is None:
                raise ConfigurationError(
                    f"secret storage {storage_id} has no stored connection config"
                )
            coordinate = coordinate_from_row(
                credential.external_coordinate, managed=credential.managed
            )
        result = self.get(DEFAULT_STORAGE_ID).read(coordinate)
        if not isinstance(result, Found):
            raise ConfigurationError(
                f"connection config of secret storage {storage_id} is missing from "
                f"the default storage (coordinate {coordinate})"
            )
        factory = load_factory(storage_type)
        try:
            config = factory.config_model.model_validate(
                json.loads(result.value.reveal())
            )
        except (ValidationError, ValueError) as exc:
            detail = (
                describe_validation_error(exc)
                if isinstance(exc, ValidationError)
                else "not JSON"
            )
            raise ConfigurationError(
                f"stored connection config of secret storage {storage_id} is "
                f"invalid: {detail}"
            ) from None
        return storage_type, config
