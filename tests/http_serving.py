"""The HTTP search server (`search.serving`) started in a thread on a free loopback
port, for the tests that talk to it over real sockets."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from search.serving import HTTPServer, make_server


def serving(app: Any, **limits: Any) -> tuple[HTTPServer, Callable[[], None]]:
    """A started server for `app` (`limits`: `make_server`'s), and how to stop it."""
    server = make_server(app, "127.0.0.1", 0, **limits)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.started

    def stop() -> None:
        server.stop()
        thread.join(30)
        server.close()

    return server, stop
