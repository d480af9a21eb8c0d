"""The Google Secret Manager backend, over the SDK's REST transport.

A managed coordinate is used unchanged as the secret id. Rendered coordinates
consist of lowercase letters, digits, `_` and `-` and are at most 136
characters long, so each is a legal id (`[A-Za-z0-9_-]{1,255}`), the mapping
is collision-free, and `parse_managed` reads a listed id back. Each write adds
a version to the secret and reads take `versions/latest`.

External coordinates are full resource names:
`projects/P/secrets/S`, `projects/P/locations/L/secrets/S`, each optionally
followed by `/versions/V` (a number, `latest` or an alias; `latest` when left
out). A destroyed version reads as `Absent` because its payload no longer
exists. A disabled version raises `BackendError`, because the owner can
enable it again and a silent "not found" would hide that.

Every call passes `retry=None` and a timeout. That turns off the SDK's own
retry (in google-cloud-secret-manager 2.32, up to 60 s on 429 and 503), so
`call_with_retry` alone retries and bounds the total time.

Without `endpoint`, a regional storage talks to the regional endpoint
`secretmanager.LOCATION.rep.googleapis.com`, as Google's regional samples do,
because that endpoint serves only the secrets of its location.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar, TypeVar

import requests
from google.api_core import exceptions as google_exceptions
from google.api_core.client_options import ClientOptions
from google.auth import exceptions as auth_exceptions
from google.auth.credentials import AnonymousCredentials, Credentials
from google.cloud import secretmanager
from google.oauth2 import service_account
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
from keyrefs.backends.configs import GoogleConfig
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

MAX_PAYLOAD_BYTES = 64 * 1024
MAX_SECRET_ID_LENGTH = 255
MAX_LABELS = 64
ORGANIZATION_LABEL = "keyrefs-organization-id"
REQUEST_TIMEOUT_SECONDS = 10.0
LIST_PAGE_SIZE = 250
# The SDK's default scope, requested for service account credentials.
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
# Maximum length of a server message quoted in an exception text.
MAX_SERVER_MESSAGE = 300

SECRET_ID = re.compile(r"[A-Za-z0-9_-]{1,255}")
_VERSION = re.compile(r"latest|[1-9][0-9]{0,18}|[A-Za-z][A-Za-z0-9_-]{0,62}")
_EXTERNAL = re.compile(
    r"projects/(?P<project>[^/]+)"
    r"(?:/locations/(?P<location>[^/]+))?"
    r"/secrets/(?P<secret>[^/]+)"
    r"(?:/versions/(?P<version>[^/]+))?"
)
# Label rules of Google Cloud, restricted to ASCII (the service also accepts
# international lowercase letters).
_LABEL_KEY = re.compile(r"[a-z][a-z0-9_-]{0,62}")
_LABEL_VALUE = re.compile(r"[a-z0-9_-]{0,63}")

_TRANSPORT_ERRORS = (
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    auth_exceptions.TransportError,
)
_SDK_ERRORS = (
    google_exceptions.GoogleAPIError,
    requests.exceptions.RequestException,
    auth_exceptions.GoogleAuthError,
)


class _SecretMissing(BackendError):
    """The service returned 404. Reads turn it into Absent and deletes ignore it."""

    code = "backend_not_found"


class _SecretExists(BackendError):
    """The service returned 409 on create, so the write adds a version instead."""

    code = "backend_conflict"


@dataclass(frozen=True)
class SecretName:
    """The resource name of one secret, global or regional."""

    project: str
    location: str | None
    secret_id: str

    @property
    def parent(self) -> str:
        if self.location is None:
            return f"projects/{self.project}"
        return f"projects/{self.project}/locations/{self.location}"

    @property
    def name(self) -> str:
        return f"{self.parent}/secrets/{self.secret_id}"

    def version(self, version: str) -> str:
        return f"{self.name}/versions/{version}"


def crc32c(data: bytes) -> int:
    """Compute the CRC32C (Castagnoli) checksum that Secret Manager verifies."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _crc32c_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC32C_TABLE = _crc32c_table()


def check_secret_id(secret_id: str) -> str:
    if not SECRET_ID.fullmatch(secret_id):
        raise InvalidCoordinate(
            f"secret id {secret_id!r} is invalid for Google Secret Manager: expected "
            f"1 to {MAX_SECRET_ID_LENGTH} characters from A-Z, a-z, 0-9, '_' and '-'"
        )
    return secret_id


def parse_external(coordinate: ExternalCoordinate) -> tuple[SecretName, str]:
    """Split an external coordinate into its secret name and version."""
    match = _EXTERNAL.fullmatch(coordinate.name)
    if match is None:
        raise InvalidCoordinate(
            f"external coordinate {coordinate.name!r} is not a Secret Manager "
            "resource name: expected projects/P/secrets/S or "
            "projects/P/locations/L/secrets/S, optionally followed by /versions/V"
        )
    version = match["version"] or "latest"
    if not _VERSION.fullmatch(version):
        raise InvalidCoordinate(
            f"version {version!r} in {coordinate.name!r} is invalid: expected a "
            "version number, 'latest' or a version alias"
        )
    secret_id = check_secret_id(match["secret"])
    return SecretName(match["project"], match["location"], secret_id), version


def check_labels(labels: dict[str, str]) -> None:
    """Raise ConfigurationError unless `labels` are legal Google Cloud labels."""
    if ORGANIZATION_LABEL in labels:
        raise ConfigurationError(
            f"label {ORGANIZATION_LABEL!r} is set by keyrefs on every secret: "
            "remove it from the storage's labels"
        )
    if len(labels) >= MAX_LABELS:
        raise ConfigurationError(
            f"the storage sets {len(labels)} labels: Google Secret Manager allows "
            f"{MAX_LABELS} per secret and keyrefs adds one, so give at most "
            f"{MAX_LABELS - 1}"
        )
    for key, value in labels.items():
        if not _LABEL_KEY.fullmatch(key):
            raise ConfigurationError(
                f"label key {key!r} is invalid: expected 1 to 63 lowercase letters, "
                "digits, '_' or '-', starting with a letter"
            )
        if not _LABEL_VALUE.fullmatch(value):
            raise ConfigurationError(
                f"value of label {key!r} is invalid: expected at most 63 lowercase "
                "letters, digits, '_' or '-'"
            )


def build_credentials(config: GoogleConfig) -> Credentials | None:
    """Return the configured credentials, or None for the default chain."""
    sources = [
        name
        for name, present in (
            ("credentials_file", config.credentials_file is not None),
            ("credentials_json", config.credentials_json is not None),
            ("anonymous", config.anonymous),
        )
        if present
    ]
    if len(sources) > 1:
        raise ConfigurationError(
            f"the Google storage sets {' and '.join(sources)}: give at most one of "
            "credentials_file, credentials_json and anonymous"
        )
    if config.anonymous:
        return AnonymousCredentials()  # type: ignore[no-untyped-call]
    try:
        if config.credentials_file is not None:
            return service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call, no-any-return]
                config.credentials_file, scopes=[CLOUD_PLATFORM_SCOPE]
            )
        if config.credentials_json is not None:
            info = json.loads(config.credentials_json.get_secret_value())
            return service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call, no-any-return]
                info, scopes=[CLOUD_PLATFORM_SCOPE]
            )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        source = config.credentials_file or "credentials_json"
        # The exception text may quote the key, so only its type is shown.
        raise ConfigurationError(
            f"service account credentials from {source} cannot be loaded "
            f"({type(exc).__name__}): expected a service account key file in JSON"
        ) from None
    return None


def translate(exc: Exception, operation: str, target: str) -> KeyrefsError:
    """Map an SDK, auth or transport exception to a keyrefs exception."""
    where = f"Google Secret Manager {operation} of {target} failed"
    detail = _describe(exc)

    if isinstance(exc, google_exceptions.NotFound):
        return _SecretMissing(f"{where}: not found ({detail})")

    if isinstance(exc, google_exceptions.Conflict):
        return _SecretExists(f"{where}: it exists already ({detail})")

    if isinstance(
        exc,
        (
            google_exceptions.Forbidden,
            google_exceptions.Unauthorized,
            auth_exceptions.RefreshError,
        ),
    ):
        return AccessDenied(
            f"{where}: access denied ({detail}). Check that the credentials hold "
            "a Secret Manager role on the secret or project."
        )

    if isinstance(exc, auth_exceptions.InvalidOperation):
        # Raised when the service returns 401 and the credentials are anonymous.
        return AccessDenied(
            f"{where}: the service rejected anonymous access. Set "
            "credentials_file or credentials_json in the storage config."
        )

    if isinstance(exc, google_exceptions.TooManyRequests):
        return Throttled(f"{where}: rate limit or quota exceeded ({detail})")

    if isinstance(
        exc,
        (
            google_exceptions.ServiceUnavailable,
            google_exceptions.InternalServerError,
            google_exceptions.GatewayTimeout,
            google_exceptions.RetryError,
            *_TRANSPORT_ERRORS,
        ),
    ):
        return BackendUnavailable(
            f"{where}: service unavailable ({detail}). Check the endpoint and "
            "the network, or try again later."
        )

    if isinstance(exc, google_exceptions.BadRequest):
        return BackendInvalidRequest(f"{where}: request rejected ({detail})")

    if isinstance(exc, auth_exceptions.DefaultCredentialsError):
        return ConfigurationError(
            f"{where}: no default credentials were found. Set credentials_file "
            "or credentials_json in the storage config."
        )

    return BackendError(f"{where} ({detail})")


def _describe(exc: Exception) -> str:
    if isinstance(exc, google_exceptions.GoogleAPICallError):
        message = str(exc.message)
        if len(message) > MAX_SERVER_MESSAGE:
            message = message[:MAX_SERVER_MESSAGE] + "..."
        return f"{type(exc).__name__}: {message}"
    return type(exc).__name__


class GoogleBackend:
    """Secrets in one Google Cloud project, global or in one location."""

    capabilities = Capabilities(
        batch_read=False,
        native_expiry=True,
        versions=True,
        max_value_bytes=MAX_PAYLOAD_BYTES,
    )

    def __init__(
        self,
        config: GoogleConfig,
        *,
        retry_policy: RetryPolicy = DEFAULT_RETRY,
        request_timeout: float = REQUEST_TIMEOUT_SECONDS,
    ) -> None:
        check_labels(config.labels)
        self._config = config
        self._credentials = build_credentials(config)
        self._retry_policy = retry_policy
        self._timeout = request_timeout
        self._clients: dict[str | None, secretmanager.SecretManagerServiceClient] = {}
        self._lock = threading.Lock()
        self._client(config.location)

    def __repr__(self) -> str:
        return (
            f"GoogleBackend(project={self._config.project!r}, "
            f"location={self._config.location!r})"
        )

    def write(self, request: SecretWrite) -> None:
        secret = self._managed_name(request.coordinate)
        data = request.value.reveal().encode("utf-8")
        if len(data) > MAX_PAYLOAD_BYTES:
            raise LimitExceeded(
                f"secret {secret.name} is {len(data)} bytes: Google Secret Manager "
                f"stores at most {MAX_PAYLOAD_BYTES} bytes (64 KiB) per version"
            )
        client = self._client(secret.location)
        create = secretmanager.CreateSecretRequest(
            parent=secret.parent,
            secret_id=secret.secret_id,
            secret=self._new_secret(request, secret.location),
        )
        try:
            self._call(
                "create",
                secret.name,
                lambda: client.create_secret(
                    request=create, retry=None, timeout=self._timeout
                ),
            )
        except _SecretExists:
            logger.debug("secret %s exists already: adding a version", secret.name)
        add = secretmanager.AddSecretVersionRequest(
            parent=secret.name,
            payload=secretmanager.SecretPayload(data=data, data_crc32c=crc32c(data)),
        )
        # NOTE: when this call fails after the create succeeded, the secret
        # stays without a version. It reads as Absent and list_managed lists it.
        self._call(
            "add version",
            secret.name,
            lambda: client.add_secret_version(
                request=add, retry=None, timeout=self._timeout
            ),
        )

    def read(self, coordinate: Coordinate) -> ReadResult:
        if isinstance(coordinate, ManagedCoordinate):
            secret, version = self._managed_name(coordinate), "latest"
        else:
            secret, version = parse_external(coordinate)
        name = secret.version(version)
        client = self._client(secret.location)
        try:
            response = self._call(
                "read",
                name,
                lambda: self._access(client, name),
            )
        except _SecretMissing:
            return Absent()
        except BackendInvalidRequest as rejected:
            # A disabled or destroyed version is rejected as FAILED_PRECONDITION,
            # which the REST transport raises as BadRequest: look at its state.
            state = self._version_state(client, name)
            if state == _DESTROYED:
                return Absent()
            if state == _DISABLED:
                raise BackendError(
                    f"secret version {name} is disabled: enable it in Secret "
                    "Manager or reference an enabled version"
                ) from rejected
            raise
        return Found(SecretValue(self._decode(name, response)))

    def read_many(
        self, coordinates: Sequence[Coordinate]
    ) -> dict[Coordinate, ReadResult]:
        return read_each(self, coordinates)

    def delete(self, coordinate: ManagedCoordinate) -> None:
        secret = self._managed_name(coordinate)
        client = self._client(secret.location)
        try:
            self._call(
                "delete",
                secret.name,
                lambda: client.delete_secret(
                    name=secret.name, retry=None, timeout=self._timeout
                ),
            )
        except _SecretMissing:
            logger.debug("secret %s is absent: nothing to delete", secret.name)

    def list_managed(self, prefix: str) -> Iterator[ListedSecret]:
        parent = SecretName(self._config.project, self._config.location, "-").parent
        page_token = ""
        while True:
            secrets, page_token = self._list_page(parent, page_token, LIST_PAGE_SIZE)
            for secret in secrets:
                listed = _listed(secret, prefix)
                if listed is not None:
                    yield listed
            if not page_token:
                return

    def check_connection(self) -> None:
        parent = SecretName(self._config.project, self._config.location, "-").parent
        try:
            self._list_page(parent, "", 1)
        except _SecretMissing as exc:
            raise BackendError(
                f"Google Secret Manager has no {parent}: check the storage's "
                "project and location"
            ) from exc

    def close(self) -> None:
        with self._lock:
            clients = list(self._clients.values())
            self._clients.clear()
        for client in clients:
            client.transport.close()  # type: ignore[no-untyped-call]

    # Calls ----------------------------------------------------------------

    def _call(self, operation: str, target: str, call: Callable[[], T]) -> T:
        """Run one SDK call with translated errors and the bounded retry."""

        def attempt() -> T:
            logger.debug("google secret manager: %s %s", operation, target)
            try:
                return call()
            except _SDK_ERRORS as exc:
                raise translate(exc, operation, target) from exc

        return call_with_retry(operation, target, attempt, self._retry_policy)

    def _access(
        self, client: secretmanager.SecretManagerServiceClient, name: str
    ) -> secretmanager.AccessSecretVersionResponse:
        response = client.access_secret_version(
            name=name, retry=None, timeout=self._timeout
        )
        payload = response.payload
        if "data_crc32c" in payload and payload.data_crc32c != crc32c(payload.data):
            # Raised inside the retried call because a corrupted transfer may
            # succeed on the next attempt.
            raise BackendUnavailable(
                f"payload of {name} failed its CRC32C check: it was corrupted "
                "in transfer"
            )
        return response

    def _version_state(
        self, client: secretmanager.SecretManagerServiceClient, name: str
    ) -> int | None:
        """Return the state of version `name`, or None when it cannot be read."""
        try:
            version = self._call(
                "read state",
                name,
                lambda: client.get_secret_version(
                    name=name, retry=None, timeout=self._timeout
                ),
            )
        except KeyrefsError as exc:
            logger.debug("state of %s is unknown: %s", name, type(exc).__name__)
            return None
        return int(version.state)

    def _list_page(
        self, parent: str, page_token: str, page_size: int
    ) -> tuple[list[secretmanager.Secret], str]:
        """Fetch one page of secrets and the token of the next, empty at the end."""
        client = self._client(self._config.location)
        request = secretmanager.ListSecretsRequest(
            parent=parent, page_size=page_size, page_token=page_token
        )
        pager = self._call(
            "list",
            parent,
            lambda: client.list_secrets(
                request=request, retry=None, timeout=self._timeout
            ),
        )
        # A pager's attributes are those of the one response fetched so far.
        # Iterating it would fetch later pages outside the retry and translation.
        secrets: list[secretmanager.Secret] = list(pager.secrets)
        next_token: str = pager.next_page_token
        return secrets, next_token

    # Names and clients ----------------------------------------------------

    def _managed_name(self, coordinate: ManagedCoordinate) -> SecretName:
        secret_id = check_secret_id(coordinate.render())
        return SecretName(self._config.project, self._config.location, secret_id)

    def _new_secret(
        self, request: SecretWrite, location: str | None
    ) -> secretmanager.Secret:
        labels = dict(self._config.labels)
        labels[ORGANIZATION_LABEL] = str(request.organization_id)
        secret = secretmanager.Secret(labels=labels)
        if location is None:
            # Regional secrets live in their location and take no replication.
            secret.replication = secretmanager.Replication(
                automatic=secretmanager.Replication.Automatic()
            )
        if request.expires_at is not None:
            expires_at = request.expires_at
            if expires_at.tzinfo is None:
                expires_at = expires_at.replace(tzinfo=UTC)
            secret.expire_time = expires_at
        return secret

    def _decode(
        self, name: str, response: secretmanager.AccessSecretVersionResponse
    ) -> str:
        try:
            return bytes(response.payload.data).decode("utf-8")
        except UnicodeDecodeError:
            raise BackendError(
                f"payload of {name} is not UTF-8 text: keyrefs reads secrets as text"
            ) from None

    def _client(self, location: str | None) -> secretmanager.SecretManagerServiceClient:
        """Return the client for `location`, which sets the default endpoint."""
        key = None if self._config.endpoint is not None else location
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = self._new_client(key)
                self._clients[key] = client
        return client

    def _new_client(
        self, location: str | None
    ) -> secretmanager.SecretManagerServiceClient:
        endpoint = self._config.endpoint
        if endpoint is None and location is not None:
            endpoint = f"secretmanager.{location}.rep.googleapis.com"
        options = ClientOptions(api_endpoint=endpoint)
        try:
            return secretmanager.SecretManagerServiceClient(
                credentials=self._credentials,
                transport="rest",
                client_options=options,
            )
        except _SDK_ERRORS as exc:
            raise translate(exc, "client setup", self._config.project) from exc


_DISABLED = int(secretmanager.SecretVersion.State.DISABLED)
_DESTROYED = int(secretmanager.SecretVersion.State.DESTROYED)


def _listed(secret: secretmanager.Secret, prefix: str) -> ListedSecret | None:
    secret_id = secret.name.rsplit("/", 1)[-1]
    if not secret_id.startswith(prefix):
        return None
    try:
        coordinate = parse_managed(secret_id, prefix)
    except InvalidCoordinate:
        return None
    created_at: datetime | None = None
    if "create_time" in secret:
        created_at = datetime.fromtimestamp(secret.create_time.timestamp(), tz=UTC)
    return ListedSecret(coordinate, created_at)


class GoogleBackendFactory:
    storage_type: ClassVar[str] = "google_secret_manager"
    config_model: ClassVar[type[BaseModel]] = GoogleConfig

    def create(self, config: BaseModel, context: BackendContext) -> SecretBackend:
        if not isinstance(config, GoogleConfig):
            raise ConfigurationError(
                f"storage {context.storage_id} needs a GoogleConfig, "
                f"got {type(config).__name__}"
            )
        return GoogleBackend(config)
