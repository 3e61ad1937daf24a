"""TEIEmbedder's retries and backpressure through `httpx.MockTransport`: no socket, no
thread per request, so every case runs in milliseconds (`tests/test_tei_embedder.py`
runs the client against the TEI stand-in on loopback).

The mock answers as TEI 1.9 does (`ingest.rehearsal.tei`, the project's stand-in, cites
TEI's router for each): `GET /info`'s fields, `/embed` as a JSON list of float lists,
errors as `{"error": ..., "error_type": ...}` with TEI's error types (429 Overloaded,
503 Unhealthy, 413/422 Validation), and no `Retry-After` unless a test adds one, as a
proxy in front of TEI might. Retry waits are shrunk through the constructor."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Sequence

import httpx
import numpy as np
import orjson
import pytest

from ingest.embedders.fake import deterministic_vectors
from ingest.embedders.tei import PROBE_TEXT, TEIEmbedder
from ingest.errors import EmbedderError, InputRejected
from ingest.rehearsal import tei as stand_in

pytestmark = pytest.mark.unit

FAST = {"retry_initial_wait": 0.001, "retry_max_wait": 0.005, "timeout": 5.0}
TEXTS = [f"Passage {i} about rivers." for i in range(4)]
POISON_MESSAGE = "Input validation error: `inputs` must have less than 512 tokens. Given: 1024"


class FakeTEI:
    """TEI 1.9 as a MockTransport handler. `script`: what each `/embed` request after the
    dimension probe gets, in order: a status, "timeout", "refused" or None (answered);
    after the script, every request is answered. A batch holding "poison" gets
    `validation_status`. `delay`: seconds each answer takes (requests then overlap)."""

    def __init__(
        self,
        script: Sequence[int | str | None] = (),
        *,
        validation_status: int = 422,
        retry_after: str | None = None,
        delay: float = 0.0,
    ) -> None:
        self.script, self.validation_status = list(script), validation_status
        self.retry_after, self.delay = retry_after, delay
        self.info = {
            "model_id": "test/deterministic",
            "model_sha": None,
            "model_dtype": "float32",
            "model_type": {"embedding": {"pooling": "mean"}},
            "max_input_length": 512,
            "max_concurrent_requests": 512,
            "max_batch_tokens": 16384,
            "max_client_batch_size": 32,
            "auto_truncate": True,
            "tokenization_workers": 1,
            "version": "1.9.0",
        }
        self.statuses: Counter = Counter()
        self.requests = 0  # /embed requests after the probe
        self.in_flight = 0
        self.arrivals: list[int] = []  # requests in flight as each /embed request arrived (itself included)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    async def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/info":
            return httpx.Response(200, content=orjson.dumps(self.info))
        if request.url.path == "/health":
            return httpx.Response(200)
        texts = orjson.loads(request.content)["inputs"]
        if texts == [PROBE_TEXT]:
            return self._vectors(texts)
        self.in_flight += 1
        self.arrivals.append(self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            fault = self.script[self.requests] if self.requests < len(self.script) else None
            self.requests += 1
            if fault == "timeout":
                raise httpx.ReadTimeout("timed out", request=request)
            if fault == "refused":
                raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
            if isinstance(fault, int):
                return self._error(fault, stand_in.FAULT_MESSAGES.get(fault, "fault"))
            if any("poison" in t for t in texts):
                return self._error(self.validation_status, POISON_MESSAGE)
            return self._vectors(texts)
        finally:
            self.in_flight -= 1

    def _vectors(self, texts: list[str]) -> httpx.Response:
        self.statuses[200] += 1
        body = orjson.dumps(deterministic_vectors(texts), option=orjson.OPT_SERIALIZE_NUMPY)  # as TEI writes floats
        return httpx.Response(200, content=body)

    def _error(self, status: int, message: str) -> httpx.Response:
        self.statuses[status] += 1
        headers = {"retry-after": self.retry_after} if self.retry_after is not None and status in (429, 503) else {}
        body = {"error": message, "error_type": stand_in.ERROR_TYPES.get(status, "Backend")}
        return httpx.Response(status, content=orjson.dumps(body), headers=headers)


@pytest.fixture
def connect():
    made: list[TEIEmbedder] = []

    def make(server: FakeTEI, **kwargs) -> TEIEmbedder:
        embedder = TEIEmbedder("http://tei.test", transport=server.transport(), **{**FAST, **kwargs})
        made.append(embedder)
        return embedder

    yield make
    for embedder in made:
        embedder.close()


@pytest.mark.parametrize("statuses", [(429, 503, 429), (502, 504)])
def test_overloaded_and_unhealthy_answers_are_retried_after_a_backoff_then_succeed(connect, statuses):
    server = FakeTEI(statuses)
    embedder = connect(server, retry_initial_wait=0.01, retry_max_wait=0.02)
    started = time.monotonic()
    result = embedder.embed_passages(TEXTS)
    assert time.monotonic() - started >= 0.01 * len(statuses)  # at least the floor before each retry
    np.testing.assert_array_equal(result.vectors, deterministic_vectors(TEXTS))
    assert result.rejected == [] and server.requests == len(statuses) + 1
    assert embedder.retry_counts() == {str(s): n for s, n in Counter(statuses).items()}


def test_timeouts_and_dropped_connections_are_retried_and_counted_by_cause(connect):
    server = FakeTEI(["timeout", "refused", None])
    embedder = connect(server)
    np.testing.assert_array_equal(embedder.embed_passages(TEXTS).vectors, deterministic_vectors(TEXTS))
    assert embedder.retry_counts() == {"timeout": 1, "connection": 1}


def test_a_429_halves_the_requests_in_flight_and_answers_grow_them_back(connect):
    """Eight requests in flight all get 429: the limit falls 8 -> 4 -> 2 -> 1, so the
    requests that follow go out few at a time, then more as answers come back, up to 8."""
    server = FakeTEI([429] * 8, delay=0.004)
    embedder = connect(server, max_concurrency=8, batch_size=1)
    texts = [f"passage {i}" for i in range(120)]
    result = embedder.embed_passages(texts)
    np.testing.assert_array_equal(result.vectors, deterministic_vectors(texts))
    first, after = server.arrivals[:8], server.arrivals[16:]  # between them, the eight retries
    assert max(first) == 8 and server.statuses[429] == 8 and embedder.retry_counts() == {"429": 8}
    assert max(after[:8]) <= 5  # 1 after the storm, then one more per round of answers: few at a time
    assert max(after[-30:]) == 8  # grown back to the ceiling


def test_retry_after_is_honoured_above_the_backoff(connect):
    server = FakeTEI([429], retry_after="0.3")
    embedder = connect(server)
    started = time.monotonic()
    embedder.embed_passages(TEXTS)
    assert 0.3 <= time.monotonic() - started < 5 and embedder.retry_counts() == {"429": 1}


@pytest.mark.parametrize("status", [413, 422])
def test_an_input_the_server_refuses_is_isolated_and_named(connect, status):
    server = FakeTEI(validation_status=status)
    embedder = connect(server)
    texts = ["fine one", "fine two", "a poison input", "fine three"]
    result = embedder.embed_passages(texts)
    assert [(r.index, r.status, r.message) for r in result.rejected] == [(2, status, POISON_MESSAGE)]
    np.testing.assert_array_equal(result.vectors[[0, 1, 3]], deterministic_vectors([texts[i] for i in (0, 1, 3)]))
    assert not result.vectors[2].any() and server.statuses[status] >= 2  # the batch, then halves of it
    with pytest.raises(InputRejected) as refused:
        embedder.embed_queries(texts)
    assert (refused.value.index, refused.value.status) == (2, status) and "query 2" in str(refused.value)


def test_a_server_that_stays_unhealthy_fails_the_call_once_the_retry_budget_is_spent(connect):
    server = FakeTEI([503] * 10_000)
    embedder = connect(server, retry_budget=0.2)
    started = time.monotonic()
    with pytest.raises(EmbedderError, match=r"still answered 503 to POST /embed after retrying for \d+ s") as failed:
        embedder.embed_passages(TEXTS)
    assert 0.2 <= time.monotonic() - started < 5 and "http://tei.test" in str(failed.value)
    assert server.requests >= 3 and embedder.retry_counts()["503"] == server.requests - 1


def test_a_server_gone_away_fails_within_the_short_refused_budget(connect):
    server = FakeTEI(["refused"] * 10_000)
    embedder = connect(server, retry_budget=60, refused_budget=0.1)
    started = time.monotonic()
    with pytest.raises(EmbedderError, match="check the URL and that the server is up") as failed:
        embedder.embed_passages(TEXTS)
    assert time.monotonic() - started < 5 and isinstance(failed.value.__cause__, httpx.ConnectError)
    assert embedder.retry_counts()["connection"] == server.requests - 1 >= 2
