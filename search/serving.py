"""Serving an ASGI application (`search.server.make_app`) with uvicorn on a socket
bound here, and stopping it on SIGINT or SIGTERM.

The socket is bound and listening before uvicorn starts, so a port already taken
is an `OSError` the caller reports, port 0 has its real number at once
(`server_url`), and a client that connects meanwhile waits in the listen queue. uvicorn
runs with its pure-Python h11 parser (a request line it cannot parse gets its
plain-text 400), without its access log (the app writes its own, without the
query string) and without a lifespan (the searcher is opened and closed by the
caller).

>>> server = make_server(app, "127.0.0.1", 0)    # doctest: +SKIP
>>> server_url(server)                           # doctest: +SKIP
'http://127.0.0.1:53411'
>>> serve_until_stopped(server)                  # doctest: +SKIP
"""

from __future__ import annotations

import ipaddress
import signal
import socket
import threading
from typing import Any, Iterable

import uvicorn

LISTEN_QUEUE = 128  # connections waiting to be accepted
KEEP_ALIVE_SECONDS = 5  # an idle connection is closed after this
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


class HTTPServer:
    """A uvicorn server for `app` and the socket it listens on."""

    def __init__(self, app: Any, sock: socket.socket) -> None:
        self.socket = sock
        self.uvicorn = uvicorn.Server(uvicorn.Config(
            app, http="h11", lifespan="off", log_config=None, access_log=False, server_header=False,
            backlog=LISTEN_QUEUE, timeout_keep_alive=KEEP_ALIVE_SECONDS, timeout_graceful_shutdown=GRACE_SECONDS,
            proxy_headers=False))

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


def make_server(app: Any, host: str = "127.0.0.1", port: int = 8000) -> HTTPServer:
    """A server for `app` on a socket bound to `host` and `port` (0: any free port)."""
    host = host.strip("[]")
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(LISTEN_QUEUE)  # connections wait in the queue until uvicorn has started
    except OSError:
        sock.close()
        raise
    return HTTPServer(app, sock)


def server_url(server: HTTPServer) -> str:
    host, port = server.server_address
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve_until_stopped(server: HTTPServer, *, stop: threading.Event | None = None,
                        signals: Iterable[int] = (signal.SIGINT, signal.SIGTERM)) -> None:
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
