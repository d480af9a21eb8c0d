"""An HTTP server on 127.0.0.1 that answers every request with one fixed status.

It stands in for a Vault server in the states that a real dev server cannot
be put into from a test: 401, 500, 502, 503, unexpected statuses, replies
that are not JSON, and replies slower than the client's timeout.
"""

from __future__ import annotations

import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType


class StatusServer:
    """Answers every request with `status` and `body` after `delay` seconds.

    With `tls` it serves HTTPS with that server context.
    """

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.status = 200
        self.body = b'{"errors": []}'
        self.delay = 0.0
        self.request_paths: list[str] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._scheme = "http"
        if tls is not None:
            self._scheme = "https"
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def address(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{self._scheme}://{host!s}:{port}"

    def respond(self, status: int, body: bytes = b'{"errors": []}') -> None:
        self.status = status
        self.body = body

    def __enter__(self) -> StatusServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _record(self, method: str, path: str) -> None:
        with self._lock:
            self.request_paths.append(f"{method} {path}")

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                fake._record(self.command, self.path)
                if fake.delay:
                    time.sleep(fake.delay)
                try:
                    self.send_response(fake.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(fake.body)))
                    self.end_headers()
                    self.wfile.write(fake.body)
                except (BrokenPipeError, ConnectionResetError):
                    # The client gave up first, as the timeout test intends.
                    pass

            do_GET = do_POST = do_PUT = do_DELETE = do_LIST = _answer

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler
