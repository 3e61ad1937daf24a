"""An HTTP server on loopback for the stand-ins of the servers the project talks to
(TEI, `ingest.rehearsal.tei`; Qdrant, in the tests): real sockets, keep-alive, one
thread a connection. A stand-in subclasses `LoopbackServer` and answers each request
in `handle(request)` with `request.reply(...)`.

    class Echo(LoopbackServer):
        def handle(self, request):
            request.reply(200, b"{}")

    with Echo() as server:
        httpx.get(server.url)
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class LoopbackServer:
    """A context manager serving `handle` on `host`:`port` (0: a free port), with `.url`."""

    host: str = "127.0.0.1"
    port: int = 0
    _httpd: _Server | None = None

    def handle(self, request: Handler) -> None:
        raise NotImplementedError

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError(f"{type(self).__name__} is not running; use it as a context manager")
        return f"http://{self.host}:{self._httpd.server_address[1]}"

    def __enter__(self):
        self._httpd = _Server((self.host, self.port), Handler)
        self._httpd.owner = self
        # a short poll interval: shutdown() waits for it
        threading.Thread(target=self._httpd.serve_forever, args=(0.05,), name=type(self).__name__, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default 5 drops SYNs when many clients connect at once
    owner: LoopbackServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the servers stood in for (hyper, actix) do
    disable_nagle_algorithm = True  # else headers and body in two writes meet delayed ACKs: 40 ms a request
    server: _Server

    def do_GET(self) -> None:
        self.server.owner.handle(self)

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def reply(
        self, status: int, body: bytes, content_type: str = "application/json", headers: dict[str, str] | None = None
    ) -> None:
        try:
            self.send_response(status)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (e.g. timed out): nothing to do

    def log_message(self, format: str, *args: Any) -> None:
        pass
