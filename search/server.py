"""Search over HTTP: a plain WSGI application around a `Searcher`.

The same application runs locally on the standard library's `wsgiref` (`python -m
search serve`) and on Modal (`@modal.wsgi_app()` in `ingest.modal_app`); there is no
web framework to install.

    GET  /health                      200 {"status": "ok", "collection": ..., "model": ...}, no token
    GET  /openapi.json                the OpenAPI 3.1 description, no token
    GET  /search?q=...&k=5&title=A    ranked hits (repeat article_id, title, url for several)
    POST /search {"query": ..., "k": 5, "context_chars": 4000, ...}

A search answers `{"query", "k", "mode", "took_ms", "hits": [...]}`, plus `"context"`
(a numbered RAG context block) when `context_chars` is given. Every error is
`{"error": message}`: 400 a bad query (malformed JSON of any kind, lone surrogates
included), 401 a missing or wrong bearer token (with `WWW-Authenticate: Bearer`),
404, 405 (with `Allow`), 411, 413 a query over `max_query_chars` or a body over
`max_body_bytes`, 503 the embedder or the store failed (which one, never its
address: the server's log has the details). `/health` checks both and answers 503
when either fails.

>>> app = make_app(searcher, token=os.environ["SEARCH_API_TOKEN"])   # doctest: +SKIP
>>> server = make_server(app, "127.0.0.1", 8000)                     # doctest: +SKIP
>>> serve_until_stopped(server)                                      # doctest: +SKIP

Up to `max_concurrent` searches run at once (the embedded store and a TEI or Modal
embedder take concurrent calls; an in-process model runs one forward pass at a
time itself); the server's threads are a bounded pool, and connections beyond it
wait in the listen queue.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import signal
import socket
import socketserver
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from typing import Any, Callable, Iterable
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer
from wsgiref.simple_server import make_server as _wsgiref_server

from ingest.errors import EmbedderError, IngestError
from search.api import Searcher, SearchError
from search.context import build_context
from search.openapi import openapi_document
from search.request import (  # noqa: F401 - FIELDS and parse_search are part of this module's face
    DEFAULT_MAX_QUERY_CHARS,
    FIELDS,
    HTTPError,
    SearchRequest,
    _kind,
    _show,
    parse_query_string,
    parse_search,
)

log = logging.getLogger("search.server")
access_log = logging.getLogger("search.access")

DEFAULT_MAX_BODY_BYTES = 64 * 1024
DEFAULT_MAX_CONCURRENT = 4  # searches at once
HEALTH_SECONDS = 10.0  # how long a health check's answer is reused
SERVER_THREADS = 32  # connections handled at once; more wait in the listen queue
LISTEN_QUEUE = 128
DRAIN_LIMIT = 1024 * 1024  # an oversized body up to this size is read away, so the client gets the 413
TOKEN_ENV = "SEARCH_API_TOKEN"
BODY_READ = "search.body_read"  # environ key: the request body was consumed
LOOPBACK_NAMES = ("localhost",)


# -- the application -----------------------------------------------------------------
class SearchApp:
    """The WSGI application; build it with `make_app`."""

    def __init__(self, searcher: Searcher, *, token: str | None, max_query_chars: int = DEFAULT_MAX_QUERY_CHARS,
                 max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, max_concurrent: int = DEFAULT_MAX_CONCURRENT) -> None:
        if token is not None and not token.strip():
            raise ValueError("the token is empty: give a real one, or None for a server without authentication")
        if max_query_chars < 1 or max_body_bytes < 1 or max_concurrent < 1:
            raise ValueError("max_query_chars, max_body_bytes and max_concurrent must be at least 1")
        self.searcher = searcher
        self._token = token.strip().encode() if token is not None else None
        self.max_query_chars, self.max_body_bytes = max_query_chars, max_body_bytes
        self._slots = threading.BoundedSemaphore(max_concurrent)  # searches at once: see the module docstring
        self._health_lock = threading.Lock()
        self._health_checked: tuple[float, dict] | None = None
        self._routes: dict[str, dict[str, Callable[[dict], dict]]] = {
            "/health": {"GET": self._health},
            "/openapi.json": {"GET": self._openapi},
            "/search": {"GET": self._search_get, "POST": self._search_post},
        }

    def __repr__(self) -> str:  # never the token
        return f"SearchApp({self.searcher.name!r}, auth={self._token is not None})"

    def __call__(self, environ: dict, start_response: Callable) -> list[bytes]:
        method, path = environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO") or "/"
        headers: list[tuple[str, str]] = []
        try:
            route = self._routes.get(path)
            if route is None:
                raise HTTPError(404, f"no such path {_show(path)}: the paths are {', '.join(self._routes)}")
            handler = route.get(method)
            if handler is None:
                allowed = ", ".join(route)
                raise HTTPError(405, f"{path} answers {allowed}, not {_show(method)}", [("Allow", allowed)])
            status, payload = handler(environ)
        except HTTPError as exc:
            status, payload, headers = exc.status, {"error": exc.message}, exc.headers
        except Exception:
            log.exception("%s %s failed", method, path)
            status, payload = 500, {"error": "internal server error (the server's log says more)"}
        if not environ.get(BODY_READ):
            _discard_body(environ)
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        start_response(f"{status} {HTTPStatus(status).phrase}", [
            ("Content-Type", "application/json; charset=utf-8"),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            ("X-Content-Type-Options", "nosniff"),
            *headers,
        ])
        return [body]

    # -- routes --------------------------------------------------------------------------
    def _health(self, environ: dict) -> tuple[int, dict]:
        """Whether the store and the embedder answer (checked at most every
        HEALTH_SECONDS, not on every probe); 503 when either does not."""
        now = time.monotonic()
        with self._health_lock:
            if self._health_checked is None or now - self._health_checked[0] >= HEALTH_SECONDS:
                self._health_checked = (now, self._check_backends())
            checks = self._health_checked[1]
        searcher = self.searcher
        healthy = all(value == "ok" for value in checks.values())
        return (200 if healthy else 503), {
            "status": "ok" if healthy else "unavailable", **checks, "collection": searcher.name,
            "physical_collection": searcher.store.collection, "model": searcher.spec.model.name,
            "dimension": searcher.spec.dimension, "auth": self._token is not None}

    def _check_backends(self) -> dict[str, str]:
        checks = {}
        for part, probe in (("store", lambda: self.searcher.store.exists()),
                            ("embedder", lambda: self.searcher.embedder.embed_queries(["health check"]))):
            try:
                checks[part] = "ok" if probe() is not False else "unavailable"
            except Exception as exc:  # noqa: BLE001 - reported as unavailable, logged with its details
                log.error("health check: the %s failed: %s", part, exc)
                checks[part] = "unavailable"
        return checks

    def _openapi(self, environ: dict) -> tuple[int, dict]:
        return 200, openapi_document(max_query_chars=self.max_query_chars, max_body_bytes=self.max_body_bytes,
                                     auth=self._token is not None)

    def _search_get(self, environ: dict) -> tuple[int, dict]:
        self._authorise(environ)
        return 200, self._search(parse_query_string(environ.get("QUERY_STRING", ""),
                                                    max_query_chars=self.max_query_chars))

    def _search_post(self, environ: dict) -> tuple[int, dict]:
        self._authorise(environ)
        body = self._read_json(environ)
        if not isinstance(body, dict):
            raise HTTPError(400, 'the body must be a JSON object such as {"query": "...", "k": 5}, '
                                 f"got {_kind(body)}")
        return 200, self._search(parse_search(body, max_query_chars=self.max_query_chars))

    def _search(self, request: SearchRequest) -> dict:
        started = time.perf_counter()
        try:
            with self._slots:
                hits = self.searcher.search(request.query, k=request.k, **request.search_options())
            context = self._context(hits, request.context_chars) if request.context_chars else None
        except SearchError as exc:  # the searcher refused the arguments
            raise HTTPError(400, str(exc)) from exc
        except IngestError as exc:  # Qdrant or the embedder failed: which one, never where it lives
            part = "the embedder" if isinstance(exc, EmbedderError) else "the store"
            log.error("search failed: %s: %s", part, exc)
            raise HTTPError(503, f"the search backend is unavailable ({part} failed; the server's log says "
                                 "more): try again later") from exc
        answer = {"query": request.query, "k": request.k, "mode": self._mode(request),
                  "took_ms": round((time.perf_counter() - started) * 1000, 1),
                  "hits": [hit.to_dict() for hit in hits]}
        if context is not None:
            answer["context"] = context
        return answer

    def _context(self, hits: list, max_chars: int) -> dict:
        return build_context(hits, max_chars=max_chars).to_dict()

    def _mode(self, request: SearchRequest) -> str:
        """The mode searched with: the one asked for, or the collection's default."""
        return request.mode or self.searcher.default_mode

    # -- plumbing --------------------------------------------------------------------------
    def _authorise(self, environ: dict) -> None:
        if self._token is None:
            return
        scheme, _, given = environ.get("HTTP_AUTHORIZATION", "").strip().partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise HTTPError(401, "a bearer token is required: send the header 'Authorization: Bearer <token>'",
                            [("WWW-Authenticate", 'Bearer realm="search"')])
        # WSGI headers are the raw bytes decoded as latin-1: encoding back gives what was sent
        if not hmac.compare_digest(given.strip().encode("latin-1", "replace"), self._token):
            raise HTTPError(401, "the bearer token is wrong",
                            [("WWW-Authenticate", 'Bearer realm="search", error="invalid_token"')])

    def _read_json(self, environ: dict) -> Any:
        raw_length = (environ.get("CONTENT_LENGTH") or "").strip()
        if not raw_length:
            raise HTTPError(411, "POST /search needs a JSON body with a Content-Length header")
        try:
            length = int(raw_length)
        except ValueError:
            raise HTTPError(400, f"Content-Length {_show(raw_length)} is not a number") from None
        if length < 0:
            raise HTTPError(400, f"Content-Length {length} is negative")
        stream = environ["wsgi.input"]
        if length > self.max_body_bytes:
            raise HTTPError(413, f"the body is {length:,} bytes; the limit is {self.max_body_bytes:,}")
        try:
            raw = stream.read(length) if length else b""
        except OSError as exc:  # the client stalled past the handler's timeout, or went away
            raise HTTPError(400, f"the body did not arrive ({type(exc).__name__})") from None
        environ[BODY_READ] = True
        try:
            return json.loads(raw)
        except json.JSONDecodeError as exc:
            raise HTTPError(400, f"the body is not valid JSON: {exc.msg} at line {exc.lineno}, "
                                 f"column {exc.colno}") from None
        except (ValueError, RecursionError) as exc:  # not UTF-8, an integer too long, nesting too deep
            raise HTTPError(400, f"the body is not valid JSON: {type(exc).__name__}: {_show(str(exc), 120)}") from None


def _discard_body(environ: dict) -> None:
    """Read away a body the answer did not need (a 401, a 413): a connection closed
    with unread data is reset, and the client could lose the answer. Bodies over
    DRAIN_LIMIT are left unread; their client may see the reset instead."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return
    if not 0 < length <= DRAIN_LIMIT:
        return
    try:
        while length > 0:
            chunk = environ["wsgi.input"].read(min(length, 64 * 1024))
            if not chunk:
                return
            length -= len(chunk)
    except OSError:  # the client went away, or stalled past the handler's timeout
        pass


def make_app(searcher: Searcher, *, token: str | None, max_query_chars: int = DEFAULT_MAX_QUERY_CHARS,
             max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, max_concurrent: int = DEFAULT_MAX_CONCURRENT) -> SearchApp:
    """The WSGI application for `searcher`. `token`: the bearer token `/search` asks
    for; None serves it without authentication (for loopback use only: the command
    line refuses anything else)."""
    return SearchApp(searcher, token=token, max_query_chars=max_query_chars, max_body_bytes=max_body_bytes,
                     max_concurrent=max_concurrent)


# -- serving with the standard library -------------------------------------------------
def is_loopback(host: str) -> bool:
    """Whether `host` is reachable from this machine only (127.0.0.0/8, ::1, localhost)."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class ThreadingWSGIServer(WSGIServer):
    """wsgiref's server with a bounded pool of SERVER_THREADS threads: 300 idle
    connections do not make 300 threads; those beyond the pool wait their turn."""

    request_queue_size = LISTEN_QUEUE  # the listen backlog (socketserver's default is 5)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._pool = ThreadPoolExecutor(max_workers=SERVER_THREADS, thread_name_prefix="search-http")
        self._open: set[Any] = set()  # connections accepted and not yet closed
        self._open_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        self._pool.submit(self._handle, request, client_address)

    def _handle(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:  # noqa: BLE001 - socketserver's own reporting, as ThreadingMixIn does
            self.handle_error(request, client_address)
        finally:
            self._close(request)

    def _close(self, request: Any) -> None:
        with self._open_lock:
            if request not in self._open:
                return
            self._open.discard(request)
        self.shutdown_request(request)

    @property
    def pool_threads(self) -> int:
        return len(self._pool._threads)

    def server_close(self) -> None:
        super().server_close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._open_lock:
            waiting = list(self._open)
        for request in waiting:  # those still queued for a thread, or idle in one
            self._close(request)

    def server_bind(self) -> None:
        # As WSGIServer.server_bind, without HTTPServer's reverse DNS lookup of the
        # host (socket.getfqdn), which can hang on a machine without DNS.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]
        self.setup_environ()


class ThreadingWSGIServerV6(ThreadingWSGIServer):
    address_family = socket.AF_INET6


class QuietHandler(WSGIRequestHandler):
    """One access-log line per request, through `logging` (the path only: the query
    string holds the user's query; the token is in a header, never logged)."""

    timeout = 15  # seconds a client may take to send its request: a stalled one frees its pool thread

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # A malformed or oversized request line is answered (400, 414) before it has a command or a path.
        path = (getattr(self, "path", None) or "-").split("?", 1)[0]
        access_log.info('%s "%s %s" %s %s', self.client_address[0], getattr(self, "command", None) or "-",
                        "".join(c if c.isprintable() else "?" for c in path[:200]), code, size)

    def log_message(self, format: str, *args: Any) -> None:  # http.server's own errors (bad request lines)
        access_log.warning("%s %s", self.client_address[0], format % args)


def make_server(app: Callable, host: str = "127.0.0.1", port: int = 8000) -> WSGIServer:
    """A threading wsgiref server for `app`, bound (port 0: any free port)."""
    server_class = ThreadingWSGIServerV6 if ":" in host else ThreadingWSGIServer
    return _wsgiref_server(host.strip("[]"), port, app, server_class=server_class, handler_class=QuietHandler)


def server_url(server: WSGIServer) -> str:
    host, port = server.server_address[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve_until_stopped(server: WSGIServer, *, stop: threading.Event | None = None,
                        signals: Iterable[int] = (signal.SIGINT, signal.SIGTERM)) -> None:
    """Serve on a thread until one of `signals` arrives (or `stop` is set), then stop
    accepting, close the socket and return. Call it from the main thread."""
    stop = stop or threading.Event()
    previous = {sig: signal.signal(sig, lambda number, frame: stop.set()) for sig in signals}
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                              name="search-server", daemon=True)
    thread.start()
    try:
        while not stop.wait(1.0) and thread.is_alive():
            pass
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
