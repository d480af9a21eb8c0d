"""A wire-level fake of the Google Secret Manager REST v1 API, on 127.0.0.1.

It serves the paths that `SecretManagerServiceClient(transport="rest")` calls,
global (`/v1/projects/P/...`) and regional (`/v1/projects/P/locations/L/...`).
It enforces the service's rules: ids `[A-Za-z0-9_-]{1,255}`, payloads of at
most 64 KiB with a matching CRC32C, and 409 on a duplicate create. Global
secrets need a replication and regional ones reject it. Labels must be legal,
expire times in the future, and disabled or destroyed versions cannot be
accessed.
Errors have the service's JSON shape `{"error": {"code", "message", "status"}}`.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

MAX_PAYLOAD_BYTES = 64 * 1024
SECRET_ID = re.compile(r"[A-Za-z0-9_-]{1,255}")
LABEL_KEY = re.compile(r"[a-z][a-z0-9_-]{0,62}")
LABEL_VALUE = re.compile(r"[a-z0-9_-]{0,63}")
MAX_LABELS = 64

STATUS_CODES = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "RESOURCE_EXHAUSTED": 429,
    "INTERNAL": 500,
    "UNIMPLEMENTED": 501,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}
# SecretVersion.State values as the REST API encodes them with enum-encoding=int.
STATE_NUMBERS = {"ENABLED": 1, "DISABLED": 2, "DESTROYED": 3}

_PARENT = r"projects/(?P<project>[^/:]+)(?:/locations/(?P<location>[^/:]+))?"
_ROUTES = [
    ("GET", re.compile(rf"{_PARENT}/secrets"), "list_secrets"),
    ("POST", re.compile(rf"{_PARENT}/secrets"), "create_secret"),
    ("GET", re.compile(rf"{_PARENT}/secrets/(?P<secret>[^/:]+)"), "get_secret"),
    ("DELETE", re.compile(rf"{_PARENT}/secrets/(?P<secret>[^/:]+)"), "delete_secret"),
    ("POST", re.compile(rf"{_PARENT}/secrets/(?P<secret>[^/:]+):addVersion"), "add"),
    (
        "GET",
        re.compile(rf"{_PARENT}/secrets/(?P<secret>[^/:]+)/versions"),
        "list_versions",
    ),
    (
        "GET",
        re.compile(
            rf"{_PARENT}/secrets/(?P<secret>[^/:]+)/versions/(?P<version>[^/:]+)"
        ),
        "get_version",
    ),
    (
        "GET",
        re.compile(
            rf"{_PARENT}/secrets/(?P<secret>[^/:]+)/versions/(?P<version>[^/:]+):access"
        ),
        "access",
    ),
    (
        "POST",
        re.compile(
            rf"{_PARENT}/secrets/(?P<secret>[^/:]+)/versions/(?P<version>[^/:]+)"
            r":(?P<action>enable|disable|destroy)"
        ),
        "change_state",
    ),
]


class ApiError(Exception):
    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class FakeVersion:
    number: int
    data: bytes
    created: datetime
    state: str = "ENABLED"


@dataclass
class FakeSecret:
    name: str
    labels: dict[str, str]
    replication: dict[str, Any] | None
    created: datetime
    expire_time: datetime | None = None
    versions: list[FakeVersion] = field(default_factory=list)


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    body: dict[str, Any] | None
    authorization: str | None
    status: int


def crc32c_bitwise(data: bytes) -> int:
    """CRC32C, computed bit by bit (independent of the backend's table version)."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 * (crc & 1))
    return crc ^ 0xFFFFFFFF


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class FakeSecretManager:
    """State and HTTP server of the fake; start() binds a free port on 127.0.0.1."""

    def __init__(self) -> None:
        self.secrets: dict[str, FakeSecret] = {}
        self.requests: list[RecordedRequest] = []
        self.max_page_size = 25
        self.required_token: str | None = None
        self.delay_seconds = 0.0
        # Number of coming access responses whose dataCrc32c is wrong.
        self.corrupt_accesses = 0
        self._failures: deque[str] = deque()
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # Control ------------------------------------------------------------

    def start(self) -> None:
        fake = self

        class Handler(_Handler):
            owner = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def endpoint(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def fail_next(self, count: int, status: str) -> None:
        """Fail the next `count` requests with the error `status`."""
        with self._lock:
            self._failures.extend([status] * count)

    def reset(self) -> None:
        """Clear injected failures, the token rule, delays and the request log."""
        with self._lock:
            self._failures.clear()
            self.required_token = None
            self.delay_seconds = 0.0
            self.corrupt_accesses = 0
            self.max_page_size = 25
            self.requests.clear()

    def secret(self, name: str) -> FakeSecret | None:
        with self._lock:
            return self._live_secret(name)

    def requests_to(self, method: str, suffix: str) -> list[RecordedRequest]:
        with self._lock:
            return [
                r
                for r in self.requests
                if r.method == method and r.path.endswith(suffix)
            ]

    # Request handling ---------------------------------------------------

    def handle(
        self, method: str, raw_path: str, body: bytes, authorization: str | None
    ) -> tuple[int, dict[str, Any]]:
        url = urlsplit(raw_path)
        query = {key: values[0] for key, values in parse_qs(url.query).items()}
        parsed_body = json.loads(body) if body else None
        with self._lock:
            failure = self._failures.popleft() if self._failures else None
        if self.delay_seconds:
            time.sleep(self.delay_seconds)
        status, payload = self._answer(
            failure, method, url.path, query, parsed_body, authorization
        )
        with self._lock:
            self.requests.append(
                RecordedRequest(
                    method, url.path, query, parsed_body, authorization, status
                )
            )
        return status, payload

    def _answer(
        self,
        failure: str | None,
        method: str,
        path: str,
        query: dict[str, str],
        body: Any,
        authorization: str | None,
    ) -> tuple[int, dict[str, Any]]:
        try:
            if failure is not None:
                raise ApiError(failure, f"injected {failure}")
            self._check_token(authorization)
            return 200, self._route(method, path, query, body)
        except ApiError as error:
            return STATUS_CODES[error.status], {
                "error": {
                    "code": STATUS_CODES[error.status],
                    "message": error.message,
                    "status": error.status,
                }
            }

    def _check_token(self, authorization: str | None) -> None:
        if self.required_token is None:
            return
        if not authorization:
            raise ApiError("UNAUTHENTICATED", "Request is missing required credentials")
        if authorization != f"Bearer {self.required_token}":
            raise ApiError("PERMISSION_DENIED", "Permission denied on resource")

    def _route(
        self, method: str, path: str, query: dict[str, str], body: Any
    ) -> dict[str, Any]:
        if not path.startswith("/v1/"):
            raise ApiError("NOT_FOUND", f"no such path {path}")
        resource = path[len("/v1/") :]
        for route_method, pattern, handler_name in _ROUTES:
            match = pattern.fullmatch(resource)
            if route_method == method and match is not None:
                with self._lock:
                    handler = getattr(self, f"_{handler_name}")
                    result: dict[str, Any] = handler(match, query, body)
                    return result
        raise ApiError("NOT_FOUND", f"no such method {method} {path}")

    # Secrets ------------------------------------------------------------

    @staticmethod
    def _parent(match: re.Match[str]) -> str:
        parent = f"projects/{match['project']}"
        if match["location"]:
            parent += f"/locations/{match['location']}"
        return parent

    def _name(self, match: re.Match[str]) -> str:
        return f"{self._parent(match)}/secrets/{match['secret']}"

    def _live_secret(self, name: str) -> FakeSecret | None:
        secret = self.secrets.get(name)
        if secret is None:
            return None
        if secret.expire_time is not None and secret.expire_time <= datetime.now(UTC):
            # The service deletes a secret at its expire time.
            del self.secrets[name]
            return None
        return secret

    def _existing(self, name: str) -> FakeSecret:
        secret = self._live_secret(name)
        if secret is None:
            raise ApiError("NOT_FOUND", f"Secret [{name}] not found.")
        return secret

    def _create_secret(
        self, match: re.Match[str], query: dict[str, str], body: Any
    ) -> dict[str, Any]:
        secret_id = query.get("secretId", "")
        if not SECRET_ID.fullmatch(secret_id):
            raise ApiError(
                "INVALID_ARGUMENT",
                "The secret id must be 1-255 characters from [a-zA-Z0-9_-].",
            )
        body = body or {}
        name = f"{self._parent(match)}/secrets/{secret_id}"
        replication = body.get("replication")
        if match["location"] and replication is not None:
            raise ApiError(
                "INVALID_ARGUMENT", "Regional secrets do not accept a replication."
            )
        if not match["location"] and not replication:
            raise ApiError("INVALID_ARGUMENT", "Secret.replication is required.")
        labels = body.get("labels", {})
        _check_labels(labels)
        expire_time = None
        if "expireTime" in body:
            expire_time = datetime.fromisoformat(body["expireTime"])
            if expire_time <= datetime.now(UTC):
                raise ApiError("INVALID_ARGUMENT", "expire_time must be in the future.")
        if self._live_secret(name) is not None:
            raise ApiError("ALREADY_EXISTS", f"Secret [{name}] already exists.")
        secret = FakeSecret(name, labels, replication, datetime.now(UTC), expire_time)
        self.secrets[name] = secret
        return self._secret_json(secret)

    def _get_secret(
        self, match: re.Match[str], query: dict[str, str], body: Any
    ) -> dict[str, Any]:
        return self._secret_json(self._existing(self._name(match)))

    def _delete_secret(
        self, match: re.Match[str], query: dict[str, str], body: Any
    ) -> dict[str, Any]:
        name = self._name(match)
        self._existing(name)
        del self.secrets[name]
        return {}

    def _list_secrets(
        self, match: re.Match[str], query: dict[str, str], body: Any
    ) -> dict[str, Any]:
        prefix = f"{self._parent(match)}/secrets/"
        names = sorted(
            name
            for name in list(self.secrets)
            if name.startswith(prefix) and self._live_secret(name) is not None
        )
        page, next_token = self._page(names, query)
        result: dict[str, Any] = {
            "secrets": [self._secret_json(self.secrets[name]) for name in page],
            "totalSize": len(names),
        }
        if next_token:
            result["nextPageToken"] = next_token
        return result

    def _page(self, items: list[str], query: dict[str, str]) -> tuple[list[str], str]:
        size = int(query.get("pageSize") or self.max_page_size)
        size = min(size, self.max_page_size)
        token = query.get("pageToken", "")
        try:
            start = int(base64.urlsafe_b64decode(token).decode()) if token else 0
        except (binascii.Error, ValueError):
            raise ApiError("INVALID_ARGUMENT", "Invalid page token.") from None
        end = start + size
        next_token = ""
        if end < len(items):
            next_token = base64.urlsafe_b64encode(str(end).encode()).decode()
        return items[start:end], next_token

    def _secret_json(self, secret: FakeSecret) -> dict[str, Any]:
        result: dict[str, Any] = {
            "name": secret.name,
            "createTime": _timestamp(secret.created),
            "labels": secret.labels,
            "etag": f'"{len(secret.versions)}"',
        }
        if secret.replication is not None:
            result["replication"] = secret.replication
        if secret.expire_time is not None:
            result["expireTime"] = _timestamp(secret.expire_time)
        return result

    # Versions -----------------------------------------------------------

    def _add(
        self, match: re.Match[str], query: dict[str, str], body: Any
    ) -> dict[str, Any]:
        secret = self._existing(self._name(match))
        payload = (body or {}).get("payload", {})
        try:
            data = base64.b64decode(payload.get("data", ""), validate=True)
        except binascii.Error:
            raise ApiError("INVALID_ARGUMENT", "payload.data is not base64.") from None
        if len(data) > MAX_PAYLOAD_BYTES:
            raise ApiError(
                "INVALID_ARGUMENT",
                f"Secret Payload cannot exceed {MAX_PAYLOAD_BYTES} bytes.",
            )
        if "dataCrc32c" in payload and int(payload["dataCrc32c"]) != crc32c_bitwise(
            data
        ):
            raise ApiError("INVALID_ARGUMENT", "Checksum mismatch of payload.data.")
        version = FakeVersion(len(secret.versions) + 1, data, datetime.now(UTC))
        secret.versions.append(version)
        return self._version_json(secret, version, query)

    def _version(self, match: re.Match[str]) -> tuple[FakeSecret, FakeVersion]:
        secret = self._existing(self._name(match))
        requested = match["version"]
        if requested == "latest":
            if not secret.versions:
                raise ApiError("NOT_FOUND", f"Secret [{secret.name}] has no versions.")
            # `latest` is the most recently created version, in any state.
            return secret, secret.versions[-1]
        if requested.isdigit() and 1 <= int(requested) <= len(secret.versions):
            return secret, secret.versions[int(requested) - 1]
        raise ApiError(
            "NOT_FOUND",
            f"Secret Version [{secret.name}/versions/{requested}] not found.",
        )

    def _get_version(
        self, match: re.Match[str], query: dict[str, str], body: Any
    ) -> dict[str, Any]:
        secret, version = self._version(match)
        return self._version_json(secret, version, query)

    def _list_versions(
        self, match: re.Match[str], query: dict[str, str], body: Any
    ) -> dict[str, Any]:
        secret = self._existing(self._name(match))
        newest_first = list(reversed(secret.versions))
        return {
            "versions": [self._version_json(secret, v, query) for v in newest_first],
            "totalSize": len(newest_first),
        }

    def _access(
        self, match: re.Match[str], query: dict[str, str], body: Any
    ) -> dict[str, Any]:
        secret, version = self._version(match)
        version_name = f"{secret.name}/versions/{version.number}"
        if version.state != "ENABLED":
            raise ApiError(
                "FAILED_PRECONDITION",
                f"Secret Version [{version_name}] is in {version.state} state.",
            )
        checksum = crc32c_bitwise(version.data)
        if self.corrupt_accesses:
            self.corrupt_accesses -= 1
            checksum ^= 1
        return {
            "name": version_name,
            "payload": {
                "data": base64.b64encode(version.data).decode(),
                "dataCrc32c": str(checksum),
            },
        }

    def _change_state(
        self, match: re.Match[str], query: dict[str, str], body: Any
    ) -> dict[str, Any]:
        secret, version = self._version(match)
        if version.state == "DESTROYED":
            raise ApiError("FAILED_PRECONDITION", "The version is destroyed.")
        action = match["action"]
        version.state = {"enable": "ENABLED", "disable": "DISABLED"}.get(
            action, "DESTROYED"
        )
        if action == "destroy":
            version.data = b""
        return self._version_json(secret, version, query)

    @staticmethod
    def _version_json(
        secret: FakeSecret, version: FakeVersion, query: dict[str, str]
    ) -> dict[str, Any]:
        state: int | str = version.state
        if "enum-encoding=int" in query.get("$alt", ""):
            state = STATE_NUMBERS[version.state]
        return {
            "name": f"{secret.name}/versions/{version.number}",
            "createTime": _timestamp(version.created),
            "state": state,
        }


def _check_labels(labels: dict[str, str]) -> None:
    if len(labels) > MAX_LABELS:
        raise ApiError("INVALID_ARGUMENT", f"A secret has at most {MAX_LABELS} labels.")
    for key, value in labels.items():
        if not LABEL_KEY.fullmatch(key) or not LABEL_VALUE.fullmatch(value):
            raise ApiError("INVALID_ARGUMENT", f"Invalid label {key!r}.")


class _Handler(BaseHTTPRequestHandler):
    owner: FakeSecretManager
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        status, payload = self.owner.handle(
            self.command, self.path, body, self.headers.get("Authorization")
        )
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass
