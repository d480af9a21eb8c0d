"""The Vault backend: HashiCorp Vault or OpenBao, KV secrets engine version 2.

Paths. The mount and the prefix of the config are split at `/` and joined
again without empty segments, so `keyrefs`, `keyrefs/` and `/keyrefs/` name
the same folder and an empty prefix means the root of the mount. A managed
secret lives at `<mount>/<prefix>/<coordinate>` and stores one field,
`{"value": <text>}`.

External coordinates have the form `PATH` or `PATH#KEY`. PATH is relative to
the configured mount: with mount `secret`, the coordinate `team/db#password`
reads the field `password` of the secret `secret/team/db`. Without `#KEY` the
field `value` is read. A secret that exists but has no such field reads as
`Absent`, like a missing secret, and a warning names the path, the key and
the field names the secret has. A field that is not a string (KV v2 stores
any JSON value) is returned as its compact JSON text.

Authentication. With `role_id` and `secret_id` the backend logs in through
AppRole at `auth/approle` on first use, and again shortly before the token's
TTL runs out. It also logs in again when Vault rejects a request with 403 and
a token self-lookup shows that the token itself is invalid, for example
revoked. Without AppRole credentials it sends the configured token.
Environment variables such as VAULT_TOKEN are not read.

Deletion calls `delete_metadata_and_all_versions`, so nothing can be
recovered afterwards. The backend therefore declares `soft_delete=False`,
although KV v2 offers soft deletion of single versions.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any, ClassVar, TypeVar

import hvac
import requests
from hvac import exceptions as vault_errors
from pydantic import BaseModel
from requests.adapters import HTTPAdapter

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
from keyrefs.backends.configs import VaultConfig
from keyrefs.backends.retry import DEFAULT_RETRY, RetryPolicy, call_with_retry
from keyrefs.domain.coordinates import Coordinate, ManagedCoordinate, parse_managed
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

# Vault's integrated storage (raft) rejects storage entries over 1 MiB by
# default (`max_entry_size`), and Consul storage entries over 512 KiB, as the
# page "Vault limits and maximums" of the Vault documentation states.
# NOTE: the check covers the value's UTF-8 bytes only. A value close to 1 MiB
# may still be rejected by a raft-backed server because the stored entry also
# contains the field name and version metadata.
MAX_VALUE_BYTES = 1024 * 1024
VALUE_FIELD = "value"
APPROLE_MOUNT = "approle"
# Fraction of the token's TTL after which the backend logs in again.
TOKEN_RENEW_FRACTION = 0.9

# Each hvac error class and the keyrefs error it becomes, with what to do next.
VAULT_ERROR_MAP: dict[type[Exception], tuple[type[BackendError], str]] = {
    vault_errors.Forbidden: (
        AccessDenied,
        "permission denied: grant the token a policy with this capability on "
        "the path, or use another token",
    ),
    vault_errors.Unauthorized: (
        AccessDenied,
        "the credentials were rejected: check the token or AppRole credentials",
    ),
    vault_errors.InvalidPath: (
        BackendError,
        "the path was not found: check the mount and the prefix",
    ),
    vault_errors.RateLimitExceeded: (
        Throttled,
        "a rate limit quota was exceeded: retry later or raise the quota",
    ),
    vault_errors.InternalServerError: (
        BackendUnavailable,
        "the server failed: retry later and check the server log",
    ),
    vault_errors.VaultDown: (
        BackendUnavailable,
        "the server is sealed or in maintenance: unseal it or retry later",
    ),
    vault_errors.BadGateway: (
        BackendUnavailable,
        "a proxy in front of the server failed: retry later",
    ),
    vault_errors.VaultNotInitialized: (
        BackendError,
        "the server is not initialized: initialize and unseal it",
    ),
    vault_errors.InvalidRequest: (
        BackendInvalidRequest,
        "the server rejected the request as invalid",
    ),
    vault_errors.PreconditionFailed: (
        BackendError,
        "the server's state is behind the request: retry against the active node",
    ),
    vault_errors.UnsupportedOperation: (
        BackendError,
        "the operation is not supported by this server",
    ),
    vault_errors.ParamValidationError: (
        BackendError,
        "the client rejected the request parameters",
    ),
    vault_errors.UnexpectedError: (
        BackendError,
        "the server returned an unexpected status",
    ),
    vault_errors.VaultError: (BackendError, "the request failed"),
}


def normalise_path(text: str, what: str) -> str:
    """Split `text` at `/` and join it again without empty segments."""
    segments = [segment for segment in text.split("/") if segment]
    if any(segment in (".", "..") for segment in segments):
        raise ConfigurationError(
            f"Vault {what} {text!r} contains '.' or '..': give a plain path"
        )
    return "/".join(segments)


def join_path(*parts: str) -> str:
    return "/".join(part for part in parts if part)


def parse_external(name: str) -> tuple[str, str]:
    """Split an external coordinate `PATH[#KEY]` into a mount-relative path and key."""
    path_text, separator, key = name.partition("#")
    if separator and not key:
        raise InvalidCoordinate(
            f"external Vault coordinate {name!r} ends with '#': name a key after "
            "it, or leave out '#' to read the key 'value'"
        )
    try:
        path = normalise_path(path_text, "path")
    except ConfigurationError as exc:
        raise InvalidCoordinate(str(exc)) from None
    if not path:
        raise InvalidCoordinate(
            f"external Vault coordinate {name!r} has no path: expected PATH or "
            "PATH#KEY, with PATH relative to the configured mount"
        )
    return path, key or VALUE_FIELD


class VaultBackend:
    capabilities = Capabilities(versions=True, max_value_bytes=MAX_VALUE_BYTES)

    def __init__(
        self, config: VaultConfig, retry_policy: RetryPolicy = DEFAULT_RETRY
    ) -> None:
        if not config.address.startswith(("http://", "https://")):
            raise ConfigurationError(
                f"Vault address {config.address!r} is invalid: expected a URL "
                "such as https://vault.example.com:8200"
            )
        self._mount = normalise_path(config.mount, "mount")
        if not self._mount:
            raise ConfigurationError("Vault mount is empty: name the KV v2 mount")
        self._prefix = normalise_path(config.prefix, "prefix")
        self._retry_policy = retry_policy
        self._approle: tuple[str, str] | None = None
        if config.role_id is not None and config.secret_id is not None:
            self._approle = (config.role_id, config.secret_id.get_secret_value())
        token = config.token.get_secret_value() if config.token else ""
        self._token_renew_at: float | None = None
        self._logged_in = self._approle is None
        self._lock = threading.Lock()
        self._client = _make_client(config, "" if self._approle else token)

    def __repr__(self) -> str:
        return f"VaultBackend(address={self._client.url!r}, mount={self._mount!r})"

    def write(self, request: SecretWrite) -> None:
        path = self._managed_path(request.coordinate)
        location = self._location(path)
        size = request.value.encoded_size()
        if size > MAX_VALUE_BYTES:
            raise LimitExceeded(
                f"secret {location} is {size} bytes: Vault stores at most "
                f"{MAX_VALUE_BYTES} bytes (1 MiB) per value"
            )
        text = request.value.reveal()

        def create_version(client: hvac.Client) -> None:
            client.secrets.kv.v2.create_or_update_secret(
                path, {VALUE_FIELD: text}, mount_point=self._mount
            )

        self._call("write", location, create_version, redact=text)

    def read(self, coordinate: Coordinate) -> ReadResult:
        if isinstance(coordinate, ManagedCoordinate):
            path, key = self._managed_path(coordinate), VALUE_FIELD
        else:
            path, key = parse_external(coordinate.name)
        location = self._location(path)
        data = self._call(
            "read", location, lambda client: _read_latest(client, self._mount, path)
        )
        if data is None:
            return Absent()
        if key not in data:
            return self._missing_key(coordinate, location, key, data)
        field = data[key]
        if isinstance(field, str):
            return Found(SecretValue(field))
        if isinstance(coordinate, ManagedCoordinate):
            raise BackendError(
                f"managed secret {location} has a field {key!r} that is not a "
                "string: it was changed outside keyrefs"
            )
        text = json.dumps(field, separators=(",", ":"), ensure_ascii=False)
        return Found(SecretValue(text))

    def read_many(
        self, coordinates: Sequence[Coordinate]
    ) -> dict[Coordinate, ReadResult]:
        return read_each(self, coordinates)

    def delete(self, coordinate: ManagedCoordinate) -> None:
        path = self._managed_path(coordinate)

        def destroy(client: hvac.Client) -> None:
            # Vault returns 204 for a path without metadata, so 404 is not expected.
            with contextlib.suppress(vault_errors.InvalidPath):
                client.secrets.kv.v2.delete_metadata_and_all_versions(
                    path, mount_point=self._mount
                )

        self._call("delete", self._location(path), destroy)

    def list_managed(self, prefix: str) -> Iterator[ListedSecret]:
        """Yield managed secrets in the prefix folder, dated by `created_time`.

        `created_at` costs one metadata read per listed secret, because a
        KV v2 list returns key names only.
        """
        folder = self._location(self._prefix) + "/"
        keys = self._call(
            "list", folder, lambda client: _list_keys(client, self._mount, self._prefix)
        )
        for key in keys:
            if key.endswith("/") or not key.startswith(prefix):
                continue
            try:
                coordinate = parse_managed(key, prefix)
            except InvalidCoordinate:
                continue
            metadata = self._read_metadata(join_path(self._prefix, key))
            # None: the secret was deleted between the list and this read.
            if metadata is not None:
                yield ListedSecret(coordinate, _created_at(metadata))

    def check_connection(self) -> None:
        """Check the credentials, then that the mount is a KV version 2 mount."""
        try:
            self._call("token lookup", "auth/token/lookup-self", _lookup_own_token)
        except AccessDenied as exc:
            raise AccessDenied(
                "Vault rejected the token: it is invalid, expired or revoked, or "
                "its policies lack the `default` policy's lookup-self; use a valid "
                "token or AppRole credentials"
            ) from exc
        try:
            mount = self._call(
                "mount lookup",
                f"mount {self._mount}",
                lambda client: _read_mount(client, self._mount),
            )
        except AccessDenied as exc:
            raise AccessDenied(
                f"Vault mount {self._mount!r} does not exist, or the token has no "
                "capability on any path under it: check the mount name and the "
                "token's policies"
            ) from exc
        _require_kv_version_2(self._mount, mount)

    def close(self) -> None:
        self._client.adapter.close()

    # Paths ----------------------------------------------------------------

    def _managed_path(self, coordinate: ManagedCoordinate) -> str:
        return join_path(self._prefix, coordinate.render())

    def _location(self, path: str) -> str:
        return join_path(self._mount, path)

    def _missing_key(
        self, coordinate: Coordinate, location: str, key: str, data: dict[str, Any]
    ) -> ReadResult:
        if isinstance(coordinate, ManagedCoordinate):
            raise BackendError(
                f"managed secret {location} has no field {key!r}: it was changed "
                "outside keyrefs"
            )
        logger.warning(
            "Vault secret %s has no key %r (it has %s): reading it as absent",
            location,
            key,
            ", ".join(repr(name) for name in sorted(data)) or "no keys",
        )
        return Absent()

    def _read_metadata(self, path: str) -> dict[str, Any] | None:
        return self._call(
            "metadata read",
            self._location(path),
            lambda client: _read_metadata(client, self._mount, path),
        )

    # Calls ----------------------------------------------------------------

    def _call(
        self,
        operation: str,
        location: str,
        call: Callable[[hvac.Client], T],
        *,
        redact: str | None = None,
    ) -> T:
        """Run `call` with a logged-in client, translating and retrying errors."""

        def attempt() -> T:
            logger.debug("Vault %s of %s", operation, location)
            try:
                return self._authenticated(call)
            except KeyrefsError:
                raise
            except (vault_errors.VaultError, requests.RequestException) as exc:
                raise translate_error(exc, operation, location, redact) from exc

        return call_with_retry(operation, location, attempt, self._retry_policy)

    def _authenticated(self, call: Callable[[hvac.Client], T]) -> T:
        client = self._client
        self._ensure_logged_in()
        stale_token = client.token
        try:
            return call(client)
        except vault_errors.Forbidden:
            if self._approle is None or not _token_rejected(client):
                raise
        logger.info("Vault rejected the AppRole token as invalid: logging in again")
        self._login(stale_token)
        return call(client)

    def _ensure_logged_in(self) -> None:
        if self._approle is None:
            return
        renew_at = self._token_renew_at
        if self._logged_in and (renew_at is None or time.monotonic() < renew_at):
            return
        self._login(self._client.token)

    def _login(self, stale_token: str) -> None:
        """Log in through AppRole, unless another thread replaced `stale_token`."""
        assert self._approle is not None
        role_id, secret_id = self._approle
        with self._lock:
            if self._logged_in and self._client.token != stale_token:
                return
            try:
                response = self._client.auth.approle.login(
                    role_id, secret_id, mount_point=APPROLE_MOUNT
                )
            except (
                vault_errors.InvalidRequest,
                vault_errors.Unauthorized,
                vault_errors.Forbidden,
            ) as exc:
                raise AccessDenied(
                    f"Vault AppRole login at auth/{APPROLE_MOUNT} failed "
                    f"({type(exc).__name__}): the role_id or secret_id is invalid "
                    "or expired; issue a new secret_id for the role"
                ) from exc
            lease = _lease_seconds(response)
            self._token_renew_at = None
            if lease > 0:
                self._token_renew_at = time.monotonic() + lease * TOKEN_RENEW_FRACTION
            self._logged_in = True
        logger.info("Vault AppRole login succeeded; token TTL %d s", lease)


def translate_error(
    exc: Exception, operation: str, location: str, redact: str | None = None
) -> BackendError:
    """Build the keyrefs error for an hvac or requests exception."""
    if isinstance(exc, requests.exceptions.SSLError):
        return BackendError(
            f"Vault {operation} of {location} failed: the TLS handshake failed "
            "(SSLError); check `verify` and the server's certificate"
        )
    if isinstance(exc, requests.ConnectionError | requests.Timeout):
        return BackendUnavailable(
            f"Vault {operation} of {location} failed: the server could not be "
            f"reached ({type(exc).__name__}); check the address and retry later"
        )
    if isinstance(exc, requests.RequestException):
        return BackendError(
            f"Vault {operation} of {location} failed: the HTTP request failed "
            f"({type(exc).__name__})"
        )
    error_class, advice = BackendError, "the request failed"
    for exc_class in type(exc).__mro__:
        if exc_class in VAULT_ERROR_MAP:
            error_class, advice = VAULT_ERROR_MAP[exc_class]
            break
    return error_class(
        f"Vault {operation} of {location} failed: {advice}"
        f"{_server_message(exc, redact)}"
    )


def _server_message(exc: Exception, redact: str | None) -> str:
    errors = getattr(exc, "errors", None)
    if not errors:
        return ""
    text = "; ".join(str(error) for error in errors)[:300]
    if redact and redact in text:
        return " (the server's message is withheld: it contains the value)"
    return f" (server message: {text})"


def _require_kv_version_2(mount: str, description: dict[str, Any]) -> None:
    engine = description.get("type")
    options = description.get("options") or {}
    if engine == "kv" and options.get("version") == "2":
        return
    if engine == "kv":
        found = f"KV version {options.get('version') or '1'}"
    else:
        found = f"{engine!r}"
    raise BackendError(
        f"Vault mount {mount!r} is a {found} mount: keyrefs needs KV version 2; "
        f"enable one with `bao secrets enable -path={mount} kv-v2`, or upgrade "
        f"a KV version 1 mount with `bao kv enable-versioning {mount}`"
    )


def _make_client(config: VaultConfig, token: str) -> hvac.Client:
    session = requests.Session()
    # No retries below keyrefs: `call_with_retry` bounds the total time.
    # 32 pooled connections, as many as the service's concurrent reads; with
    # the default of 10, concurrent reads beyond 10 opened new connections.
    session.mount("http://", HTTPAdapter(max_retries=0, pool_maxsize=32))
    session.mount("https://", HTTPAdapter(max_retries=0, pool_maxsize=32))
    # hvac copies `verify` from a session that it is given, so set it there.
    session.verify = config.verify
    return hvac.Client(
        url=config.address.rstrip("/"),
        token=token,
        verify=config.verify,
        timeout=config.timeout_seconds,
        namespace=config.namespace,
        session=session,
    )


def _read_latest(client: hvac.Client, mount: str, path: str) -> dict[str, Any] | None:
    """Return the fields of the latest version, or None when none is readable."""
    try:
        response = client.secrets.kv.v2.read_secret_version(
            path, mount_point=mount, raise_on_deleted_version=True
        )
    except vault_errors.InvalidPath:
        return None
    data = _response_data(response, f"{mount}/{path}").get("data")
    if data is None:
        return None
    if not isinstance(data, dict):
        raise BackendError(
            f"Vault returned a secret {mount}/{path} whose data is not an object"
        )
    return data


def _read_metadata(client: hvac.Client, mount: str, path: str) -> dict[str, Any] | None:
    try:
        response = client.secrets.kv.v2.read_secret_metadata(path, mount_point=mount)
    except vault_errors.InvalidPath:
        return None
    return _response_data(response, f"{mount}/{path}")


def _list_keys(client: hvac.Client, mount: str, folder: str) -> list[str]:
    try:
        response = client.secrets.kv.v2.list_secrets(folder, mount_point=mount)
    except vault_errors.InvalidPath:
        return []
    keys = _response_data(response, f"{mount}/{folder}/").get("keys", [])
    return [key for key in keys if isinstance(key, str)]


def _read_mount(client: hvac.Client, mount: str) -> dict[str, Any]:
    response = client.adapter.get(f"/v1/sys/internal/ui/mounts/{mount}")
    return _response_data(response, f"mount {mount}")


def _lookup_own_token(client: hvac.Client) -> None:
    client.auth.token.lookup_self()


def _token_rejected(client: hvac.Client) -> bool:
    """Tell whether Vault rejects the client's token itself, not one path."""
    try:
        client.auth.token.lookup_self()
    except vault_errors.Forbidden:
        return True
    return False


def _response_data(response: object, location: str) -> dict[str, Any]:
    data = response.get("data") if isinstance(response, dict) else None
    if not isinstance(data, dict):
        raise BackendError(
            f"Vault returned a response for {location} without a JSON `data` "
            f"object ({type(response).__name__}): check that the address points "
            "at a Vault or OpenBao server"
        )
    return data


def _lease_seconds(response: object) -> int:
    auth = response.get("auth") if isinstance(response, dict) else None
    lease = auth.get("lease_duration") if isinstance(auth, dict) else None
    return lease if isinstance(lease, int) else 0


def _created_at(metadata: dict[str, Any]) -> datetime | None:
    text = metadata.get("created_time")
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


class VaultBackendFactory:
    storage_type: ClassVar[str] = "vault"
    config_model: ClassVar[type[BaseModel]] = VaultConfig

    def create(self, config: BaseModel, context: BackendContext) -> SecretBackend:
        if not isinstance(config, VaultConfig):
            raise ConfigurationError(
                f"the vault backend needs a VaultConfig, not {type(config).__name__}"
            )
        return VaultBackend(config)
