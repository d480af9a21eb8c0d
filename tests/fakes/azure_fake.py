"""A wire-level fake of Azure Key Vault secrets and its token endpoint, over HTTPS.

The real `azure-keyvault-secrets` and `azure-identity` clients talk to it
unchanged. It serves, on one 127.0.0.1 port with a `trustme` certificate:

- the Microsoft identity platform paths that MSAL calls for a client-secret
  credential: `GET /{tenant}/v2.0/.well-known/openid-configuration` and
  `POST /{tenant}/oauth2/v2.0/token`;
- the Key Vault secret paths (each needs `api-version`): `PUT /secrets/{name}`,
  `GET /secrets/{name}[/{version}]`, `GET /secrets` (paged with `nextLink`),
  `DELETE /secrets/{name}`, `GET` and `DELETE /deletedsecrets/{name}`.

It enforces the service's rules: names `[0-9a-zA-Z-]{1,127}` compared without
case, values of at most `MAX_VALUE_BYTES`, and soft delete, where a deleted
name rejects re-creation with 409 until it is purged. A request without a
valid token gets 401 with a bearer challenge, as Key Vault sends it.
"""

from __future__ import annotations

import json
import re
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import trustme

NAME_PATTERN = re.compile(r"[0-9a-zA-Z-]{1,127}")
# Key Vault documents a maximum of "25k bytes"; the fake takes the lower reading.
MAX_VALUE_BYTES = 25_000
DEFAULT_PAGE_SIZE = 25
VAULT_RESOURCE = "https://vault.azure.net"
TENANT_ID = "00000000-0000-4000-8000-0000000000aa"
CLIENT_ID = "00000000-0000-4000-8000-0000000000bb"
CLIENT_SECRET = "fake-client-secret"


@dataclass(frozen=True)
class RecordedRequest:
    """One request the fake received, as sent on the wire."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class SecretVersion:
    version: str
    value: str
    tags: dict[str, str]
    content_type: str | None
    expires: int | None
    created: int


@dataclass
class StoredSecret:
    name: str
    versions: list[SecretVersion] = field(default_factory=list)
    deleted_date: int | None = None


# An injected failure with this status closes the connection without a response.
DROP_CONNECTION = 0


@dataclass(frozen=True)
class InjectedFailure:
    status: int
    code: str
    retry_after: int | None
    method: str | None
    path_prefix: str | None

    def matches(self, request: RecordedRequest) -> bool:
        if self.method is not None and request.method != self.method:
            return False
        return self.path_prefix is None or request.path.startswith(self.path_prefix)


class AzureKeyVaultFake:
    """The fake's state and HTTPS server; `start()` binds a free 127.0.0.1 port."""

    def __init__(self, directory: Path, page_size: int = DEFAULT_PAGE_SIZE) -> None:
        self.tenant_id = TENANT_ID
        self.client_id = CLIENT_ID
        self.client_secret = CLIENT_SECRET
        self.page_size = page_size
        self.requests: list[RecordedRequest] = []
        self._directory = directory
        self._secrets: dict[str, StoredSecret] = {}
        self._tokens: set[str] = set()
        self._failures: list[InjectedFailure] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.ca_path = directory / "azure-fake-ca.pem"

    # Lifecycle ------------------------------------------------------------

    def start(self) -> None:
        authority = trustme.CA()
        certificate = authority.issue_cert("127.0.0.1")
        authority.cert_pem.write_to_path(str(self.ca_path))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        certificate.configure_cert(context)

        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_class(self))
        server.daemon_threads = True
        server.socket = context.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, name="azure-key-vault-fake", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the fake first"
        return f"https://127.0.0.1:{self._server.server_address[1]}"

    # Test controls --------------------------------------------------------

    def fail_next(
        self,
        count: int,
        status: int,
        code: str = "InjectedFailure",
        retry_after: int | None = None,
        method: str | None = None,
        path_prefix: str | None = None,
    ) -> None:
        """Make the next `count` vault requests fail with `status` and an error body.

        `DROP_CONNECTION` as `status` closes the connection without a response.
        With `method` or `path_prefix`, only matching requests fail.
        """
        failure = InjectedFailure(status, code, retry_after, method, path_prefix)
        with self._lock:
            self._failures.extend([failure] * count)

    def reset(self) -> None:
        with self._lock:
            self._secrets.clear()
            self._failures.clear()
            self.requests.clear()

    def revoke_tokens(self) -> None:
        with self._lock:
            self._tokens.clear()

    def secret_exists(self, name: str) -> bool:
        with self._lock:
            stored = self._secrets.get(name.lower())
            return stored is not None and stored.deleted_date is None

    def is_soft_deleted(self, name: str) -> bool:
        with self._lock:
            stored = self._secrets.get(name.lower())
            return stored is not None and stored.deleted_date is not None

    def latest(self, name: str) -> SecretVersion:
        with self._lock:
            return self._secrets[name.lower()].versions[-1]

    def put_secret(self, name: str, value: str) -> str:
        """Create a version directly, as another tool would, and return its id."""
        with self._lock:
            stored = self._secrets.setdefault(name.lower(), StoredSecret(name))
            version = SecretVersion(uuid.uuid4().hex, value, {}, None, None, _now())
            stored.versions.append(version)
            return version.version

    def vault_requests(self) -> Iterator[RecordedRequest]:
        for request in list(self.requests):
            if request.path.startswith(("/secrets", "/deletedsecrets")):
                yield request

    # Request handling -----------------------------------------------------

    def handle(self, request: RecordedRequest) -> tuple[int, dict[str, str], Any]:
        with self._lock:
            self.requests.append(request)
            if request.path.startswith(f"/{self.tenant_id}/"):
                return self._identity(request)
            failure = self._take_failure(request)
            if failure is not None:
                headers = {}
                if failure.retry_after is not None:
                    headers["Retry-After"] = str(failure.retry_after)
                return failure.status, headers, _error(failure.code, "injected failure")
            if not self._authorized(request):
                return (
                    401,
                    {"WWW-Authenticate": self._challenge()},
                    _error(
                        "Unauthorized", "AKV10000: Request is missing a Bearer token."
                    ),
                )
            if "api-version" not in request.query:
                return 400, {}, _error("BadParameter", "api-version is missing")
            return self._vault(request)

    def _take_failure(self, request: RecordedRequest) -> InjectedFailure | None:
        for index, failure in enumerate(self._failures):
            if failure.matches(request):
                return self._failures.pop(index)
        return None

    def _challenge(self) -> str:
        return (
            'Bearer authorization="https://login.microsoftonline.com/'
            f'{self.tenant_id}", resource="{VAULT_RESOURCE}"'
        )

    def _authorized(self, request: RecordedRequest) -> bool:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        return scheme.lower() == "bearer" and token in self._tokens

    def _identity(self, request: RecordedRequest) -> tuple[int, dict[str, str], Any]:
        base = f"{self.url}/{self.tenant_id}"
        if request.path.endswith("/v2.0/.well-known/openid-configuration"):
            return (
                200,
                {},
                {
                    "issuer": f"{base}/v2.0",
                    "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                    "token_endpoint": f"{base}/oauth2/v2.0/token",
                    "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                },
            )
        if request.method == "POST" and request.path.endswith("/oauth2/v2.0/token"):
            return self._token(request)
        return 404, {}, {"error": "not_found", "error_description": request.path}

    def _token(self, request: RecordedRequest) -> tuple[int, dict[str, str], Any]:
        form = {
            key: values[0] for key, values in parse_qs(request.body.decode()).items()
        }
        if (
            form.get("client_id") != self.client_id
            or form.get("client_secret") != self.client_secret
        ):
            return (
                401,
                {},
                {
                    "error": "invalid_client",
                    "error_description": "AADSTS7000215: Invalid client secret.",
                },
            )
        if form.get("scope") != f"{VAULT_RESOURCE}/.default":
            return (
                400,
                {},
                {
                    "error": "invalid_scope",
                    "error_description": f"AADSTS70011: scope {form.get('scope')}",
                },
            )
        token = f"fake-token-{uuid.uuid4().hex}"
        self._tokens.add(token)
        return (
            200,
            {},
            {
                "token_type": "Bearer",
                "expires_in": 3600,
                "ext_expires_in": 3600,
                "access_token": token,
            },
        )

    def _vault(self, request: RecordedRequest) -> tuple[int, dict[str, str], Any]:
        parts = [part for part in request.path.split("/") if part]
        collection, rest = parts[0], parts[1:]
        if collection == "secrets" and not rest and request.method == "GET":
            return self._list(request)
        if not rest or len(rest) > 2:
            return 404, {}, _error("NotFound", f"no route for {request.path}")
        name = rest[0]
        if not NAME_PATTERN.fullmatch(name):
            return (
                400,
                {},
                _error(
                    "BadParameter", f"The request URI contains an invalid name: {name}"
                ),
            )
        route = (collection, request.method, len(rest))
        if route == ("secrets", "PUT", 1):
            return self._set(name, request.json())
        if route in {("secrets", "GET", 1), ("secrets", "GET", 2)}:
            return self._get(name, rest[1] if len(rest) == 2 else None)
        if route == ("secrets", "DELETE", 1):
            return self._delete(name)
        if route == ("deletedsecrets", "GET", 1):
            return self._get_deleted(name)
        if route == ("deletedsecrets", "DELETE", 1):
            return self._purge(name)
        return 405, {}, _error("MethodNotAllowed", f"{request.method} {request.path}")

    def _set(self, name: str, body: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
        value = body.get("value")
        if not isinstance(value, str):
            return 400, {}, _error("BadParameter", "Property value is required")
        if len(value.encode("utf-8")) > MAX_VALUE_BYTES:
            return (
                400,
                {},
                _error("BadParameter", f"secret value exceeds {MAX_VALUE_BYTES} bytes"),
            )
        stored = self._secrets.get(name.lower())
        if stored is not None and stored.deleted_date is not None:
            return (
                409,
                {},
                _error(
                    "Conflict",
                    f"Secret {name} is currently in a deleted but recoverable state, "
                    "and its name cannot be reused; in this state, the secret can only "
                    "be recovered or purged.",
                ),
            )
        if stored is None:
            stored = self._secrets[name.lower()] = StoredSecret(name)
        attributes = body.get("attributes") or {}
        version = SecretVersion(
            version=uuid.uuid4().hex,
            value=value,
            tags=dict(body.get("tags") or {}),
            content_type=body.get("contentType"),
            expires=attributes.get("exp"),
            created=_now(),
        )
        stored.versions.append(version)
        return 200, {}, self._bundle(stored, version, with_value=True)

    def _get(
        self, name: str, version_id: str | None
    ) -> tuple[int, dict[str, str], Any]:
        stored = self._secrets.get(name.lower())
        if stored is None or stored.deleted_date is not None:
            return _not_found(name)
        if not version_id:
            return 200, {}, self._bundle(stored, stored.versions[-1], with_value=True)
        for version in stored.versions:
            if version.version == version_id.lower():
                return 200, {}, self._bundle(stored, version, with_value=True)
        return _not_found(f"{name}/{version_id}")

    def _list(self, request: RecordedRequest) -> tuple[int, dict[str, str], Any]:
        page_size = min(int(request.query.get("maxresults", ["25"])[0]), 25)
        page_size = min(page_size, self.page_size)
        start = int(request.query.get("$skiptoken", ["0"])[0])
        live = [
            stored
            for _, stored in sorted(self._secrets.items())
            if stored.deleted_date is None
        ]
        page = live[start : start + page_size]
        items = [self._item(stored, stored.versions[-1]) for stored in page]
        body: dict[str, Any] = {"value": items, "nextLink": None}
        if start + page_size < len(live):
            query = urlencode(
                {
                    "api-version": request.query["api-version"][0],
                    "$skiptoken": start + page_size,
                    "maxresults": page_size,
                }
            )
            body["nextLink"] = f"{self.url}/secrets?{query}"
        return 200, {}, body

    def _delete(self, name: str) -> tuple[int, dict[str, str], Any]:
        stored = self._secrets.get(name.lower())
        if stored is None or stored.deleted_date is not None:
            return _not_found(name)
        stored.deleted_date = _now()
        return 200, {}, self._deleted_bundle(stored)

    def _get_deleted(self, name: str) -> tuple[int, dict[str, str], Any]:
        stored = self._secrets.get(name.lower())
        if stored is None or stored.deleted_date is None:
            return _not_found(name)
        return 200, {}, self._deleted_bundle(stored)

    def _purge(self, name: str) -> tuple[int, dict[str, str], Any]:
        stored = self._secrets.get(name.lower())
        if stored is None or stored.deleted_date is None:
            return _not_found(name)
        del self._secrets[name.lower()]
        return 204, {}, None

    # Response bodies ------------------------------------------------------

    def _attributes(self, version: SecretVersion) -> dict[str, Any]:
        attributes: dict[str, Any] = {
            "enabled": True,
            "created": version.created,
            "updated": version.created,
            "recoveryLevel": "Recoverable+Purgeable",
            "recoverableDays": 90,
        }
        if version.expires is not None:
            attributes["exp"] = version.expires
        return attributes

    def _item(self, stored: StoredSecret, version: SecretVersion) -> dict[str, Any]:
        item: dict[str, Any] = {
            "id": f"{self.url}/secrets/{stored.name}",
            "attributes": self._attributes(version),
            "tags": version.tags,
        }
        if version.content_type is not None:
            item["contentType"] = version.content_type
        return item

    def _bundle(
        self, stored: StoredSecret, version: SecretVersion, *, with_value: bool
    ) -> dict[str, Any]:
        bundle = self._item(stored, version)
        bundle["id"] = f"{self.url}/secrets/{stored.name}/{version.version}"
        if with_value:
            bundle["value"] = version.value
        return bundle

    def _deleted_bundle(self, stored: StoredSecret) -> dict[str, Any]:
        bundle = self._bundle(stored, stored.versions[-1], with_value=False)
        assert stored.deleted_date is not None
        bundle["recoveryId"] = f"{self.url}/deletedsecrets/{stored.name}"
        bundle["deletedDate"] = stored.deleted_date
        bundle["scheduledPurgeDate"] = stored.deleted_date + 90 * 86400
        return bundle


def _now() -> int:
    return int(time.time())


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def _not_found(name: str) -> tuple[int, dict[str, str], Any]:
    return (
        404,
        {},
        _error(
            "SecretNotFound",
            f"A secret with (name/id) {name} was not found in this key vault.",
        ),
    )


def _handler_class(fake: AzureKeyVaultFake) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            target = urlsplit(self.path)
            request = RecordedRequest(
                method=self.command,
                path=target.path,
                query=parse_qs(target.query),
                headers={key.lower(): value for key, value in self.headers.items()},
                body=body,
            )
            status, headers, payload = fake.handle(request)
            if status == DROP_CONNECTION:
                self.close_connection = True
                return
            data = b"" if payload is None else json.dumps(payload).encode()
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            if data:
                self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = _serve

        def log_message(self, format: str, *args: Any) -> None:
            # Request lines would repeat secret names into the test output.
            return

    return Handler
