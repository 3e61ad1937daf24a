"""Serving an ASGI application (`search.server.make_app`) with uvicorn on a socket
bound here, and stopping it on SIGINT or SIGTERM.

The socket is bound and listening before uvicorn starts, so a port already taken
is an `OSError` the caller reports, port 0 has its real number at once
(`server_url`), and a client that connects meanwhile waits in the listen queue. uvicorn
runs with its pure-Python h11 parser (a request line it cannot parse gets its
plain-text 400), without its access log (the app writes its own, without the
query string) and without a lifespan (the searcher is opened and closed by the
caller).

uvicorn bounds only the wait between requests on a kept-alive connection, so
`GuardedH11Protocol` adds two limits a client cannot wear down: a request head
(line and headers) must arrive within HEAD_SECONDS of the connection, or of the
previous answer (else a 408, or nothing if nothing was sent, and the connection
is closed), and connections beyond `max_connections` (`connection_cap()`: about
half the open-file limit) get a 503 and are closed at once, so stalled clients
cannot take every file the process has (asyncio then fails every accept and logs
a traceback each time). Each kind of event is logged at most once every
NOTICE_SECONDS, with its count.

>>> server = make_server(app, "127.0.0.1", 0)    # doctest: +SKIP
>>> server_url(server)                           # doctest: +SKIP
'http://127.0.0.1:53411'
>>> serve_until_stopped(server)                  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import ipaddress
import json
import logging
import signal
import socket
import threading
import time
from collections import Counter
from typing import Any, Iterable

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

try:
    import resource
except ImportError:  # Windows: no open-file limit to read
    resource = None  # type: ignore[assignment]

log = logging.getLogger("search.serving")

LISTEN_QUEUE = 128  # connections waiting to be accepted
KEEP_ALIVE_SECONDS = 5  # an idle connection is closed after this
HEAD_SECONDS = 10  # from a connection, or an answer, to a complete request head
MAX_CONNECTIONS = 1000  # open at once, at most; fewer when the open-file limit is low
REFUSED_SECONDS = 1  # a connection over the limit has this long to read its 503
NOTICE_SECONDS = 60  # each kind of client trouble is logged at most this often
GRACE_SECONDS = 10  # searches under way may finish within this once the server is told to stop
LOOPBACK_NAMES = ("localhost",)


def is_loopback(host: str) -> bool:
    """Whether `host` is reachable from this machine only (127.0.0.0/8, ::1, localhost)."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def connection_cap() -> int:
    """Half the open-file limit left once asyncio has accepted a whole listen queue
    at once (it accepts up to LISTEN_QUEUE before the first is counted here), at
    most MAX_CONNECTIONS: the other half is for the store, the model and the
    embedder's connections."""
    files = resource.getrlimit(resource.RLIMIT_NOFILE)[0] if resource else -1
    return MAX_CONNECTIONS if files < 0 else max(1, min(MAX_CONNECTIONS, (files - LISTEN_QUEUE) // 2))


class Notices:
    """Log lines about client trouble, at most one of a kind per NOTICE_SECONDS,
    each with the count since the last (a flood of clients is not a flood of lines)."""

    def __init__(self) -> None:
        self._said: dict[str, float] = {}
        self._counts: Counter[str] = Counter()

    def note(self, kind: str, message: str) -> None:
        """`message`: with a %d for the count."""
        self._counts[kind] += 1
        now = time.monotonic()
        if now - self._said.get(kind, -NOTICE_SECONDS) >= NOTICE_SECONDS:
            self._said[kind] = now
            log.warning(f"{message} (one line every {NOTICE_SECONDS} s at most)", self._counts.pop(kind))


def _answer(status: int, reason: str, message: str) -> bytes:
    """A whole HTTP/1.1 answer, written before any request was read: `{"error": message}`, then close."""
    body = json.dumps({"error": message}).encode()
    return (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json; charset=utf-8\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode() + body


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, with a deadline for each request head and a cap on
    connections. uvicorn (0.55, protocols/http/h11_impl.py) arms its keep-alive
    timer only once an answer is complete (:322) and cancels it on any data (:172):
    a client that sends nothing, or part of a head, is kept for ever."""

    def __init__(self, *args: Any, head_seconds: float, max_connections: int, notices: Notices, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.head_seconds, self.max_connections, self.notices = head_seconds, max_connections, notices
        self.timer: Any = None  # the head's deadline; for a refused connection, its end
        self.refused = False

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        open_now = len(self.connections)
        self.refused = open_now >= self.max_connections
        super().connection_made(transport)
        if not self.refused:
            self._await_head()
            return
        self.notices.note("full", f"refused %d connection(s) over the limit of {self.max_connections:,} open")
        transport.write(
            _answer(
                503,
                "Service Unavailable",
                f"the server has {self.max_connections:,} connections open, its limit: try again later",
            )
        )
        if open_now >= self.max_connections * 5 // 4:  # a flood: the file goes back at once (the 503 may be lost)
            transport.close()
            return
        # The answer, then our end; what the client sends meanwhile is read away (a socket
        # closed with unread data is reset, and the 503 lost), for REFUSED_SECONDS at most.
        transport.write_eof()
        self.timer = self.loop.call_later(REFUSED_SECONDS, transport.close)

    def data_received(self, data: bytes) -> None:
        if not self.refused:
            super().data_received(data)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._await_head()  # the next request's head, if the connection is kept

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        super().connection_lost(exc)

    def _await_head(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if not self.transport.is_closing():
            self.timer = self.loop.call_later(self.head_seconds, self._head_overdue)

    def _head_overdue(self) -> None:
        self.timer = None
        if self.conn.their_state is not h11.IDLE or self.transport.is_closing():
            return  # the head came: its request is under way
        if self.conn.trailing_data[0]:  # part of a head: say why the connection closes
            self.transport.write(
                _answer(
                    408,
                    "Request Timeout",
                    f"the request head did not arrive within "
                    f"{self.head_seconds:g} s: send the request line and headers at once",
                )
            )
        self.notices.note(
            "head", f"closed %d connection(s) that sent no whole request head within {self.head_seconds:g} s"
        )
        self.timeout_keep_alive_handler()  # uvicorn's own way to close an idle connection


class HTTPServer:
    """A uvicorn server for `app` and the socket it listens on; see the module
    docstring for `head_seconds` and `max_connections` (None: `connection_cap()`)."""

    def __init__(
        self, app: Any, sock: socket.socket, *, head_seconds: float = HEAD_SECONDS, max_connections: int | None = None
    ) -> None:
        if head_seconds <= 0 or (max_connections is not None and max_connections < 1):
            raise ValueError(
                "head_seconds must be positive and max_connections at least 1 (None: from the open-file limit)"
            )
        self.socket = sock
        protocol = functools.partial(
            GuardedH11Protocol,
            head_seconds=head_seconds,
            notices=Notices(),
            max_connections=max_connections or connection_cap(),
        )
        self.uvicorn = uvicorn.Server(
            uvicorn.Config(
                app,
                http=protocol,  # type: ignore[arg-type] - a factory, called as uvicorn calls a class (server.py:125)
                lifespan="off",
                log_config=None,
                access_log=False,
                server_header=False,
                backlog=LISTEN_QUEUE,
                timeout_keep_alive=KEEP_ALIVE_SECONDS,
                timeout_graceful_shutdown=GRACE_SECONDS,
                proxy_headers=False,
            )
        )

    @property
    def server_address(self) -> tuple[str, int]:
        host, port = self.socket.getsockname()[:2]
        return host, port

    @property
    def started(self) -> bool:
        return self.uvicorn.started

    def run(self) -> None:
        """Serve until `stop()` (on a thread other than the main one, uvicorn leaves the signals alone)."""
        self.uvicorn.run(sockets=[self.socket])

    def stop(self) -> None:
        """Stop accepting; searches under way finish (up to GRACE_SECONDS), then `run` returns."""
        self.uvicorn.should_exit = True

    def close(self) -> None:
        self.socket.close()


def make_server(
    app: Any,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    head_seconds: float = HEAD_SECONDS,
    max_connections: int | None = None,
) -> HTTPServer:
    """A server for `app` on a socket bound to `host` and `port` (0: any free port);
    the limits are `HTTPServer`'s."""
    host = host.strip("[]")
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(LISTEN_QUEUE)  # connections wait in the queue until uvicorn has started
        return HTTPServer(app, sock, head_seconds=head_seconds, max_connections=max_connections)
    except (OSError, ValueError):
        sock.close()
        raise


def server_url(server: HTTPServer) -> str:
    host, port = server.server_address
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve_until_stopped(
    server: HTTPServer, *, stop: threading.Event | None = None, signals: Iterable[int] = (signal.SIGINT, signal.SIGTERM)
) -> None:
    """Serve on a thread until one of `signals` arrives (or `stop` is set), then let
    the searches under way finish, close the socket and return. Call it from the
    main thread. (uvicorn's own signal handling re-raises the signal once it has
    stopped, which would turn a clean SIGTERM into a kill.)"""
    stop = stop or threading.Event()
    previous = {sig: signal.signal(sig, lambda number, frame: stop.set()) for sig in signals}
    thread = threading.Thread(target=server.run, name="search-server", daemon=True)
    thread.start()
    try:
        while not stop.wait(0.5) and thread.is_alive():
            pass
    finally:
        server.stop()
        thread.join()
        server.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not stop.is_set():
        raise RuntimeError("the HTTP server stopped on its own (its log above says why)")
