"""A scripted AWS endpoint on 127.0.0.1, for responses moto cannot produce.

moto does not enforce IAM policies and never fails on its side, so the error
paths of the AWS backend run against this server instead. It speaks the two
wire protocols that the backend uses. In AWS JSON 1.1 (Secrets Manager) the
operation is in the `X-Amz-Target` header and errors are `{"__type",
"message"}` objects. In the AWS query protocol (STS) the operation is the
`Action` form field and errors are XML `ErrorResponse` documents.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class FakeResponse:
    status: int
    body: bytes
    content_type: str = "application/x-amz-json-1.1"
    delay_seconds: float = 0.0


def json_response(payload: dict[str, Any], status: int = 200) -> FakeResponse:
    return FakeResponse(status, json.dumps(payload).encode())


def json_error(code: str, message: str = "", status: int = 400) -> FakeResponse:
    return json_response({"__type": code, "message": message}, status)


def query_error(code: str, message: str = "", status: int = 403) -> FakeResponse:
    body = (
        "<ErrorResponse><Error><Type>Sender</Type>"
        f"<Code>{code}</Code><Message>{message}</Message></Error>"
        "<RequestId>fake</RequestId></ErrorResponse>"
    )
    return FakeResponse(status, body.encode(), content_type="text/xml")


@dataclass(frozen=True)
class ReceivedRequest:
    operation: str
    parameters: dict[str, Any]


Responder = Callable[[ReceivedRequest], FakeResponse]


class AwsFake:
    """An HTTP server whose `responder` builds the response to every request.

    `requests` records each request's operation and parameters in order.
    """

    def __init__(self) -> None:
        self.responder: Responder = lambda request: json_error(
            "InternalServiceError", f"no response scripted for {request.operation}"
        )
        self.requests: list[ReceivedRequest] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def operations(self) -> list[str]:
        with self._lock:
            return [request.operation for request in self.requests]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _respond(self, request: ReceivedRequest) -> FakeResponse:
        with self._lock:
            self.requests.append(request)
        return self.responder(request)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                request = _parse_request(
                    self.headers.get("X-Amz-Target"), self.rfile.read(length)
                )
                response = fake._respond(request)
                if response.delay_seconds:
                    time.sleep(response.delay_seconds)
                try:
                    self.send_response(response.status)
                    self.send_header("Content-Type", response.content_type)
                    self.send_header("Content-Length", str(len(response.body)))
                    self.send_header("x-amzn-RequestId", "fake")
                    self.end_headers()
                    self.wfile.write(response.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # The client gave up after its read timeout.

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


def _parse_request(target: str | None, body: bytes) -> ReceivedRequest:
    if target:
        parameters = json.loads(body or b"{}")
        return ReceivedRequest(target.rpartition(".")[2], parameters)
    form = dict(urllib.parse.parse_qsl(body.decode()))
    return ReceivedRequest(form.pop("Action", ""), form)


@contextmanager
def unresponsive_listener() -> Iterator[str]:
    """Yield the URL of a 127.0.0.1 port where new connections time out.

    The socket listens with a backlog of 0 and never accepts, and one client
    connection fills that backlog. Linux then drops the SYNs of further
    connections, so their connect times out instead of being refused.
    """
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        port = server.getsockname()[1]
        filler.connect(("127.0.0.1", port))
        yield f"http://127.0.0.1:{port}"
    finally:
        filler.close()
        server.close()


def closed_port_url() -> str:
    """Return the URL of a 127.0.0.1 port that nothing listens on."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return f"http://127.0.0.1:{port}"
