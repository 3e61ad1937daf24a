"""The HTTP server against clients and backends that misbehave, over real sockets on
loopback: clients that never finish their request head, more connections than the
process has files for, and an embedder that is down or slow when `/health` asks.
A fake searcher stands in for the index; the embedder is a real `TEIEmbedder`
against the TEI stand-in (`ingest.rehearsal.tei`), stopped or slowed on purpose."""

from __future__ import annotations

import http.client
import json
import logging
import os
import socket
import subprocess
import sys
import time
import types
from collections import Counter
from pathlib import Path

import pytest

from ingest.embedders.tei import TEIEmbedder
from ingest.rehearsal.tei import Faults, TEIServer
from search.server import make_app
from tests.http_serving import serving

ROOT = Path(__file__).resolve().parents[1]
HEAD_SECONDS = 2.5  # the bound the tests serve with (the default is 10 s)
PARTIAL_HEAD = b"GET /search?q=HAL HTTP/1.1\r\nHost: x\r\nUser-Agent: slo"


class FakeSearcher:
    """Looks like a Searcher to the app: answers at once, or embeds the health
    check's query with `embedder` (a real TEIEmbedder) when one is given."""

    name, default_mode = "wiki", "dense"
    spec = types.SimpleNamespace(model=types.SimpleNamespace(name="fake/model"), dimension=3)

    def __init__(self, embedder=None):
        self.store = types.SimpleNamespace(collection="wiki_1", exists=lambda: True)
        self.embedder = embedder or types.SimpleNamespace(embed_queries=lambda texts: [[0.0, 0.0, 1.0]])

    def search(self, query, k=5, **options):
        return []


def health(address, timeout=10.0) -> tuple[int, dict, float]:
    """GET /health: its status, body and how long it took."""
    started = time.monotonic()
    connection = http.client.HTTPConnection(*address, timeout=timeout)
    try:
        connection.request("GET", "/health")
        response = connection.getresponse()
        body = json.loads(response.read())
    finally:
        connection.close()
    return response.status, body, time.monotonic() - started


def until_closed(sock: socket.socket) -> bytes:
    """What the server sends before it closes the connection (a timeout if it never
    does); b"reset" if it closed the connection with what the client sent unread."""
    answer = b""
    try:
        while chunk := sock.recv(65536):
            answer += chunk
    except ConnectionResetError:
        return b"reset"
    return answer


# -- clients that never finish their request head -----------------------------------------------
def test_stalled_request_heads_are_closed_in_time_while_the_server_keeps_answering(caplog):
    caplog.set_level(logging.INFO)
    server, stop = serving(make_app(FakeSearcher(), token=None), head_seconds=HEAD_SECONDS)
    address, sockets = server.server_address, []

    def connect() -> socket.socket:
        sockets.append(socket.create_connection(address, timeout=HEAD_SECONDS + 5))
        return sockets[-1]

    try:
        silent = [connect() for _ in range(10)]
        partial = [connect() for _ in range(30)]
        for sock in partial:
            sock.sendall(PARTIAL_HEAD)
        kept_alive = connect()  # one answer, then a stall
        kept_alive.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert kept_alive.recv(65536).startswith(b"HTTP/1.1 200 ")
        kept_alive.sendall(PARTIAL_HEAD)
        started = time.monotonic()
        slow = connect()  # slow, but within the bound
        for byte in b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n":
            slow.sendall(bytes([byte]))
            time.sleep(HEAD_SECONDS / 80)
        assert slow.recv(65536).startswith(b"HTTP/1.1 200 ")
        while time.monotonic() - started < HEAD_SECONDS * 0.7:  # meanwhile a normal client is answered
            assert health(address)[0] == 200
            time.sleep(0.05)
        answers = [until_closed(sock) for sock in silent + partial + [kept_alive]]
        took = time.monotonic() - started
        assert health(address)[0] == 200
    finally:
        for sock in sockets:
            sock.close()
        stop()
    assert HEAD_SECONDS - 0.5 < took < HEAD_SECONDS + 2, f"the stalled connections were closed after {took:.1f} s"
    assert answers[:10] == [b""] * 10  # nothing was asked: nothing is answered
    assert all(
        a.startswith(b"HTTP/1.1 408 ") and b"the request head did not arrive within 2.5 s" in a for a in answers[10:-1]
    ), answers[10:-1]
    assert b"HTTP/1.1 408 " in answers[-1]  # (after the rest of its /health answer, if the first recv missed it)
    said = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(said) <= 2, [r.getMessage() for r in said]  # one line for them all, not one each
    assert "Traceback" not in caplog.text


SERVER_SCRIPT = """
import resource, sys, types
resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[1]), resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
from ingest.logs import setup_logging
from search.server import make_app
from search.serving import make_server, serve_until_stopped, server_url
setup_logging(0)
fake = types.SimpleNamespace(
    name="wiki", default_mode="dense", search=lambda query, k=5, **options: [],
    spec=types.SimpleNamespace(model=types.SimpleNamespace(name="fake/model"), dimension=3),
    store=types.SimpleNamespace(collection="wiki_1", exists=lambda: True),
    embedder=types.SimpleNamespace(embed_queries=lambda texts: [[0.0, 0.0, 1.0]]))
server = make_server(make_app(fake, token=None), "127.0.0.1", 0, **eval(sys.argv[2]))
print(server_url(server), flush=True)
serve_until_stopped(server)
"""


def test_more_connections_than_files_are_refused_at_once_and_the_server_recovers(tmp_path):
    """A server with 256 files (so at most (256 - 128) / 2 = 64 connections): 300 stalled clients.
    Those over the limit are refused at once (a 503, or for a flood a reset); the
    server keeps files in hand, so it never fails to accept (uvicorn, before: 9 MB
    of asyncio's "Too many open files" tracebacks in 10 s, and no answer), logs a
    line or two, refuses a normal client quickly meanwhile with a 503 that says
    why, and answers it again once the stalled ones are closed."""
    stderr = tmp_path / "stderr.txt"
    with stderr.open("w") as errors:  # the child has its own copy
        process = subprocess.Popen(
            [sys.executable, "-c", SERVER_SCRIPT, "256", f"dict(head_seconds={HEAD_SECONDS})"],
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )
    stalled = []
    try:
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), f"no URL; exit {process.poll()}"
        address = ("127.0.0.1", int(url.rsplit(":", 1)[1]))
        assert health(address)[0] == 200
        for _ in range(300):
            sock = socket.create_connection(address, timeout=HEAD_SECONDS + 5)
            sock.sendall(PARTIAL_HEAD)
            stalled.append(sock)
        started = time.monotonic()
        time.sleep(1.2)  # the refused have had their REFUSED_SECONDS to read their 503
        status, body, took = health(address, timeout=HEAD_SECONDS + 5)
        assert (status, took < 1) == (503, True), (status, body, took)
        assert body["error"] == "the server has 64 connections open, its limit: try again later"
        answers = [until_closed(sock) for sock in stalled]
        assert time.monotonic() - started < HEAD_SECONDS + 2
        assert health(address)[0] == 200  # the stalled ones are gone: answering again
    finally:
        for sock in stalled:
            sock.close()
        process.terminate()
        process.wait(30)
        process.stdout.close()
    kinds = Counter(
        "408"
        if a.startswith(b"HTTP/1.1 408 ")
        else "503"
        if a.startswith(b"HTTP/1.1 503 ")
        else "reset"
        if a == b"reset"
        else a[:40]
        for a in answers
    )
    assert kinds["408"] == 64 and kinds["503"] + kinds["reset"] == 236 and kinds["503"] >= 16, kinds
    log = stderr.read_text(encoding="utf-8")
    assert "Traceback" not in log and "out of system resource" not in log, log[-3000:]
    assert len([line for line in log.splitlines() if " WARNING " in line or " ERROR " in line]) <= 2, log[-3000:]


# -- /health when the embedder is down or slow ----------------------------------------------------
def test_health_is_200_while_tei_answers():
    with TEIServer() as tei, TEIEmbedder(tei.url, retry_budget=10.0) as embedder:
        server, stop = serving(make_app(FakeSearcher(embedder), token=None))
        try:
            status, body, took = health(server.server_address)
        finally:
            stop()
    assert (status, body["embedder"], body["store"]) == (200, "ok", "ok") and took < 3


@pytest.mark.parametrize("outage", ["stopped", "slow"])
def test_health_is_a_503_within_3_s_when_tei_is_down_or_slow(outage):
    """The health check waits about 2 s for its probes, whatever TEI does: a stopped
    server would be retried for the search's 10 s budget, a slow one waited for up
    to the 60 s timeout. The probe under way is not started again."""
    tei = TEIServer().__enter__()
    embedder = TEIEmbedder(tei.url, retry_budget=10.0)
    probes = []
    searcher = FakeSearcher(
        types.SimpleNamespace(embed_queries=lambda texts: probes.append(texts) or embedder.embed_queries(texts))
    )
    server, stop = serving(make_app(searcher, token=None))
    try:
        if outage == "stopped":
            tei.dead.set()  # kept-alive connections answer nothing either
            tei.__exit__(None, None, None)
        else:
            tei.set_faults(Faults(slow_rate=1.0, delay=20.0))
        first = health(server.server_address)
        again = health(server.server_address)
    finally:
        stop()
        embedder.close()
        tei.__exit__(None, None, None)
    for status, body, took in (first, again):
        assert took < 3, f"/health took {took:.1f} s"
        assert (status, body["status"], body["embedder"], body["store"]) == (503, "unavailable", "unavailable", "ok")
        assert body["error"] == "the embedder did not answer the health check within 2 s (the server's log says more)"
    assert len(probes) == 1  # the second check waited for the same probe
