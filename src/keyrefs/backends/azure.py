"""The Azure Key Vault backend, through `azure-keyvault-secrets` and `azure-identity`.

Key Vault secret names match `[0-9a-zA-Z-]{1,127}` and are compared without
case, so a managed coordinate cannot be used as a name as it is. `azure_name`
maps it to a lowercase name built from its parsed fields:

    <prefix, "_" as "-"><scope>-<scope id, 32 hex>-<secret id, 32 hex>-v<version>

A managed prefix contains no "-" and a UUID has one hex form, so
`parse_azure_name` recovers the coordinate from the name, which makes the
mapping injective. With the maximum prefix of 32 characters, a name is
112 characters plus the version's digits.

External coordinates are `NAME` or `NAME/VERSION`. The SDK's own retries are
off because `call_with_retry` is the one retry policy. Vault requests and the
client-secret credential's token requests have connection and read timeouts;
DefaultAzureCredential keeps the SDK's defaults.
"""

from __future__ import annotations

import functools
import logging
import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar, TypeVar, cast

from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.paging import PageIterator
from azure.identity import (
    ClientSecretCredential,
    CredentialUnavailableError,
    DefaultAzureCredential,
)
from azure.keyvault.secrets import SecretClient, SecretProperties
from pydantic import BaseModel

from keyrefs.backends.base import (
    Absent,
    BackendContext,
    Capabilities,
    Found,
    ListedSecret,
    ReadResult,
    SecretBackend,
    SecretWrite,
    read_each,
)
from keyrefs.backends.configs import AzureConfig
from keyrefs.backends.retry import DEFAULT_RETRY, RetryPolicy, call_with_retry
from keyrefs.domain.coordinates import (
    Coordinate,
    ExternalCoordinate,
    ManagedCoordinate,
    parse_managed,
)
from keyrefs.errors import (
    AccessDenied,
    BackendError,
    BackendInvalidRequest,
    BackendUnavailable,
    ConfigurationError,
    InvalidCoordinate,
    KeyrefsError,
    LimitExceeded,
    Throttled,
)
from keyrefs.secret_value import SecretValue

logger = logging.getLogger(__name__)

T = TypeVar("T")

NAME_RULE = "[0-9a-zA-Z-]{1,127}"
MAX_NAME_LENGTH = 127
# NOTE: Key Vault documents a maximum of "25k bytes" per value without saying
# whether that is 25,000 or 25,600. This takes the lower reading.
MAX_VALUE_BYTES = 25_000
ORGANIZATION_TAG = "keyrefs-organization-id"
CONNECTION_TIMEOUT_SECONDS = 5.0
READ_TIMEOUT_SECONDS = 15.0
# Upper bound for the deleted secret to appear in the deleted collection.
DELETE_WAIT_SECONDS = 30.0

_NAME = re.compile(NAME_RULE)
_VERSION = re.compile(r"[0-9a-fA-F]{32}")
_MANAGED_NAME = re.compile(
    r"(?P<prefix>[a-z][a-z0-9-]{0,31}?)(?P<scope>organization|workspace)"
    r"-(?P<scope_id>[0-9a-f]{32})-(?P<secret>[0-9a-f]{32})-v(?P<version>[1-9][0-9]*)"
)


# Names -------------------------------------------------------------------


def azure_name(coordinate: ManagedCoordinate) -> str:
    """Map a managed coordinate to its Key Vault secret name."""
    name = (
        f"{coordinate.prefix.replace('_', '-')}{coordinate.scope}"
        f"-{coordinate.scope_id.hex}-{coordinate.secret_id.hex}-v{coordinate.version}"
    )
    if len(name) > MAX_NAME_LENGTH:
        raise LimitExceeded(
            f"managed coordinate {coordinate} maps to a Key Vault name of "
            f"{len(name)} characters: Key Vault allows at most {MAX_NAME_LENGTH} "
            "characters per secret name; use a shorter managed prefix"
        )
    return name


def parse_azure_name(name: str, prefix: str | None = None) -> ManagedCoordinate:
    """Parse a name that `azure_name` made back into its managed coordinate.

    With `prefix`, the coordinate must have that managed prefix, as for
    `parse_managed`. Raise InvalidCoordinate for any other name.
    """
    match = _MANAGED_NAME.fullmatch(name)
    if match is None:
        raise InvalidCoordinate(
            f"Key Vault name {name!r} is not a keyrefs managed name: expected "
            "<prefix><scope>-<scope-id hex>-<secret-id hex>-v<version>"
        )
    rendered = (
        f"{match['prefix'].replace('-', '_')}{match['scope']}"
        f"_{uuid.UUID(match['scope_id'])}_secret_{uuid.UUID(match['secret'])}"
        f"_v{match['version']}"
    )
    coordinate = parse_managed(rendered, prefix)
    if azure_name(coordinate) != name:
        raise InvalidCoordinate(
            f"Key Vault name {name!r} is not in the canonical form that keyrefs writes"
        )
    return coordinate


def split_external(coordinate: ExternalCoordinate) -> tuple[str, str | None]:
    """Split `NAME` or `NAME/VERSION` and check both parts against Key Vault's rules."""
    name, slash, version = coordinate.name.partition("/")
    if not _NAME.fullmatch(name) or (slash and not _VERSION.fullmatch(version)):
        raise InvalidCoordinate(
            f"external coordinate {coordinate.name!r} is not a Key Vault secret: "
            f"expected NAME or NAME/VERSION, where NAME matches {NAME_RULE} and "
            "VERSION is the 32-character hexadecimal version id"
        )
    return name, version or None


# Errors ------------------------------------------------------------------


def _describe(exc: AzureError) -> str:
    if isinstance(exc, HttpResponseError) and exc.error is not None:
        return f"{exc.status_code} {exc.error.code}: {exc.error.message}"
    if isinstance(exc, HttpResponseError) and exc.status_code is not None:
        return f"{exc.status_code} {exc.reason}"
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        # Connection failures carry no payload, so their message is safe to show.
        return f"{type(exc).__name__}: {exc.message}"
    if isinstance(exc, ClientAuthenticationError):
        # The identity platform's error description, such as "AADSTS7000215".
        return f"{type(exc).__name__}: {exc.message}"
    return type(exc).__name__


def _connection_failure(exc: BaseException) -> AzureError | None:
    """Return the connection failure behind `exc`, following its cause chain.

    A credential that cannot reach its token endpoint raises
    ClientAuthenticationError caused by the transport's ServiceRequestError.
    """
    current: BaseException | None = exc
    while current is not None:
        if isinstance(current, ServiceRequestError | ServiceResponseError):
            return current
        current = current.__cause__ or current.__context__
    return None


def translate_error(
    exc: AzureError, operation: str, target: str, vault_url: str
) -> KeyrefsError:
    """Return the keyrefs error for an Azure SDK exception raised by `operation`."""
    where = f"{operation} of {target} in {vault_url}"
    if isinstance(exc, CredentialUnavailableError):
        return AccessDenied(
            f"{where} failed: no Azure credential is available ({exc.message}); "
            "set tenant_id, client_id and client_secret in the storage config, or "
            "configure the environment for DefaultAzureCredential"
        )
    unreachable = _connection_failure(exc)
    if unreachable is not None:
        return BackendUnavailable(
            f"{where} failed: Key Vault or the token endpoint could not be reached "
            f"({_describe(unreachable)}); check vault_url, authority_host, the "
            "network and connection_verify"
        )
    if isinstance(exc, ClientAuthenticationError):
        return AccessDenied(
            f"{where} failed: Azure rejected the credential ({_describe(exc)}); "
            "check tenant_id, client_id, client_secret and authority_host"
        )
    if not isinstance(exc, HttpResponseError):
        return BackendError(f"{where} failed: {_describe(exc)}")
    return _translate_status(exc, operation, where)


def _translate_status(
    exc: HttpResponseError, operation: str, where: str
) -> KeyrefsError:
    status = exc.status_code or 0
    detail = _describe(exc)
    if status == 403 and operation == "purge":
        return AccessDenied(
            f"{where} was denied ({detail}): the identity needs the secrets purge "
            "permission, and a vault with purge protection rejects every purge, "
            "so set purge to false for such a vault"
        )
    if status in (401, 403):
        return AccessDenied(
            f"{where} was denied ({detail}); grant the identity the secret "
            "permissions get, set, list, delete and purge"
        )
    if status == 429:
        return Throttled(f"{where} was throttled by Key Vault ({detail})")
    if isinstance(exc, ResourceExistsError) or status == 409:
        return BackendError(
            f"{where} failed ({detail}): the name is soft-deleted and cannot be "
            "reused until it is purged or recovered. Purge it, or set purge to "
            "true so that keyrefs purges after each delete"
        )
    if status == 400:
        return BackendInvalidRequest(f"{where} was rejected as invalid ({detail})")
    if status >= 500:
        return BackendUnavailable(f"{where} failed on the Key Vault side ({detail})")
    return BackendError(f"{where} failed ({detail})")


# Backend -----------------------------------------------------------------


class AzureBackend:
    """Secrets in one Azure Key Vault; managed names come from `azure_name`."""

    capabilities = Capabilities(
        batch_read=False,
        native_expiry=True,
        versions=True,
        soft_delete=True,
        max_value_bytes=MAX_VALUE_BYTES,
    )

    def __init__(
        self,
        config: AzureConfig,
        credential: TokenCredential,
        retry_policy: RetryPolicy = DEFAULT_RETRY,
    ) -> None:
        self._vault_url = config.vault_url.rstrip("/")
        self._tags = dict(config.tags)
        self._purge = config.purge
        self._credential = credential
        self._retry_policy = retry_policy
        self._client = SecretClient(
            self._vault_url,
            credential,
            verify_challenge_resource=config.verify_challenge_resource,
            **_transport_options(config),
        )

    def __repr__(self) -> str:
        return f"AzureBackend(vault_url={self._vault_url!r})"

    def write(self, request: SecretWrite) -> None:
        name = azure_name(request.coordinate)
        size = request.value.encoded_size()
        if size > MAX_VALUE_BYTES:
            raise LimitExceeded(
                f"secret {request.coordinate} is {size} bytes: Key Vault stores at "
                f"most {MAX_VALUE_BYTES} bytes per secret value"
            )
        tags = {**self._tags, ORGANIZATION_TAG: str(request.organization_id)}

        def set_secret() -> None:
            self._client.set_secret(
                name,
                request.value.reveal(),
                tags=tags,
                expires_on=request.expires_at,
            )

        self._call("write", str(request.coordinate), set_secret)

    def read(self, coordinate: Coordinate) -> ReadResult:
        if isinstance(coordinate, ManagedCoordinate):
            name, version = azure_name(coordinate), None
        else:
            name, version = split_external(coordinate)

        def get_secret() -> ReadResult:
            try:
                secret = self._client.get_secret(name, version)
            except ResourceNotFoundError:
                return Absent()
            return Found(SecretValue(secret.value or ""))

        return self._call("read", str(coordinate), get_secret)

    def read_many(
        self, coordinates: Sequence[Coordinate]
    ) -> dict[Coordinate, ReadResult]:
        return read_each(self, coordinates)

    def delete(self, coordinate: ManagedCoordinate) -> None:
        name = azure_name(coordinate)
        target = str(coordinate)
        soft_deleted = self._call("delete", target, lambda: self._delete(name))
        if self._purge and soft_deleted:
            self._call("purge", target, lambda: self._purge_deleted(name))

    def list_managed(self, prefix: str) -> Iterator[ListedSecret]:
        token: str | None = None
        while True:
            page, token = self._call(
                "list", f"prefix {prefix!r}", functools.partial(self._page, token)
            )
            for properties in page:
                listed = _listed(properties, prefix)
                if listed is not None:
                    yield listed
            if token is None:
                return

    def check_connection(self) -> None:
        self._call(
            "check", "the secret list", functools.partial(self._page, None, size=1)
        )

    def close(self) -> None:
        self._client.close()
        close = getattr(self._credential, "close", None)
        if callable(close):
            close()

    # SDK calls ------------------------------------------------------------

    def _call(self, operation: str, target: str, call: Callable[[], T]) -> T:
        def attempt() -> T:
            try:
                return call()
            except AzureError as exc:
                raise translate_error(exc, operation, target, self._vault_url) from exc

        logger.debug("azure key vault %s of %s", operation, target)
        return call_with_retry(operation, target, attempt, self._retry_policy)

    def _delete(self, name: str) -> bool:
        """Delete `name` and return whether a soft-deleted copy may need a purge."""
        try:
            poller = self._client.begin_delete_secret(name)
        except ResourceNotFoundError:
            # Absent or deleted earlier, so a soft-deleted copy may still need a purge.
            return True
        if poller.result().recovery_id is None:
            return False
        poller.wait(timeout=DELETE_WAIT_SECONDS)
        if not poller.done():
            raise BackendUnavailable(
                f"deletion of Key Vault secret {name} in {self._vault_url} did not "
                f"complete within {DELETE_WAIT_SECONDS:.0f} s; run the delete again"
            )
        return True

    def _purge_deleted(self, name: str) -> None:
        try:
            self._client.purge_deleted_secret(name)
        except ResourceNotFoundError:
            return

    def _page(
        self, token: str | None, size: int | None = None
    ) -> tuple[list[SecretProperties], str | None]:
        paged = self._client.list_properties_of_secrets(max_page_size=size)
        pages = cast(PageIterator[SecretProperties], paged.by_page(token))
        page = list(next(pages))
        next_token: str | None = pages.continuation_token
        return page, next_token


def _listed(properties: SecretProperties, prefix: str) -> ListedSecret | None:
    if properties.name is None:
        return None
    try:
        coordinate = parse_azure_name(properties.name, prefix)
    except InvalidCoordinate:
        return None
    return ListedSecret(coordinate, properties.created_on)


def _transport_options(config: AzureConfig) -> dict[str, Any]:
    return {
        "connection_verify": config.connection_verify,
        "retry_total": 0,
        "connection_timeout": CONNECTION_TIMEOUT_SECONDS,
        "read_timeout": READ_TIMEOUT_SECONDS,
    }


def build_credential(config: AzureConfig) -> TokenCredential:
    """Build a client-secret credential when configured, else the default chain."""
    authority: dict[str, Any] = {}
    if config.authority_host is not None:
        authority = {"authority": config.authority_host}
    if config.client_secret is None:
        return DefaultAzureCredential(**authority)
    assert config.tenant_id is not None and config.client_id is not None
    if authority:
        authority["disable_instance_discovery"] = True
    return ClientSecretCredential(
        config.tenant_id,
        config.client_id,
        config.client_secret.get_secret_value(),
        **authority,
        **_transport_options(config),
    )


class AzureBackendFactory:
    """Builds Azure Key Vault backends from `AzureConfig`."""

    storage_type: ClassVar[str] = "azure_key_vault"
    config_model: ClassVar[type[BaseModel]] = AzureConfig

    def create(self, config: BaseModel, context: BackendContext) -> SecretBackend:
        if not isinstance(config, AzureConfig):
            raise ConfigurationError(
                f"storage {context.storage_id} of type azure_key_vault needs an "
                f"AzureConfig, got {type(config).__name__}"
            )
        if not config.vault_url.startswith("https://"):
            raise ConfigurationError(
                f"vault_url {config.vault_url!r} of storage {context.storage_id} is "
                "invalid: Key Vault is served over HTTPS, so it must start with "
                "https://"
            )
        try:
            credential = build_credential(config)
        except ValueError as exc:
            raise ConfigurationError(
                f"Azure credential settings of storage {context.storage_id} are "
                f"invalid: {exc}"
            ) from exc
        return AzureBackend(config, credential)
