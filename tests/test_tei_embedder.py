"""TEIEmbedder against a real TEI-protocol server on loopback (ingest/rehearsal/tei.py).

No mocks of the client: every test goes through httpx, a socket and the server's
HTTP handling, with faults injected server-side. Retry waits are shrunk through
the constructor so the suite runs in seconds.
"""

from __future__ import annotations

import asyncio
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import httpx
import numpy as np
import pytest

from ingest.embedders import make_embedder
from ingest.embedders.base import Embedder, Rejection
from ingest.embedders.fake import deterministic_vector, deterministic_vectors
from ingest.embedders.tei import TEIEmbedder, parse_retry_after
from ingest.errors import BackendFailure, EmbedderError
from ingest.rehearsal import standin_router
from ingest.rehearsal.tei import Faults, TEIServer
from ingest.settings import EmbedderSettings
from ingest.sharded.tei_process import Router, RouterConfig
from schemas.models import BGE_QUERY_INSTRUCTION

FAST = {"retry_initial_wait": 0.001, "retry_max_wait": 0.01, "timeout": 5.0}
TEXTS = [
    f"Passage {i} about the history of {topic}."
    for i, topic in enumerate(["Paris", "the Nile", "jazz", "Kepler", "tea", "Rome", "volcanoes", "Bach"] * 5)
]


@pytest.fixture(scope="module")
def local_model(local_embedder):
    return local_embedder


@pytest.fixture
def server():
    with TEIServer() as running:
        yield running


@pytest.fixture
def connect():
    """Factory for embedders with fast retries, closed at teardown."""
    made: list[TEIEmbedder] = []

    def make(target: TEIServer | str, **kwargs) -> TEIEmbedder:
        url = target if isinstance(target, str) else target.url
        embedder = TEIEmbedder(url, **{**FAST, **kwargs})
        made.append(embedder)
        return embedder

    yield make
    for embedder in made:
        embedder.close()


def expected(texts: list[str], dimension: int = 384) -> np.ndarray:
    return deterministic_vectors(texts, dimension)


# -- reading the server ---------------------------------------------------------------
def test_reads_info_and_learns_dimension(connect):
    shape = {"max_client_batch_size": 16, "max_input_length": 300, "max_batch_tokens": 1000}
    with TEIServer(dimension=96, **shape) as server:
        embedder = connect(server)
        assert isinstance(embedder, Embedder)
        spec = embedder.spec
        assert (spec.name, spec.dimension, spec.max_tokens) == ("test/deterministic", 96, 300)
        assert embedder.spec.query_instruction == ""
        assert embedder.batch_size == 16 and embedder.max_batch_chars == 4000
        assert embedder.count_tokens(["a b c"]) is None
        assert server.received.paths["GET /info"] == 1 and server.received.embed_requests == 1  # the probe
        assert server.received.bodies[0] == {"normalize": True, "truncate": True}
        assert connect(server, batch_size=4).batch_size == 4
        assert connect(server, batch_size=100).batch_size == 16
        result = embedder.embed_passages(TEXTS[:3])
        assert result.vectors.dtype == np.float32
        np.testing.assert_array_equal(result.vectors, expected(TEXTS[:3], 96))


@pytest.mark.parametrize("wire", ["json", "base64"])
def test_vectors_match_the_local_model(connect, local_model, wire):
    with TEIServer(local_model) as server:
        embedder = connect(server, wire=wire)
        assert embedder.spec.name == "sentence-transformers/all-MiniLM-L6-v2"
        assert (embedder.spec.dimension, embedder.spec.max_tokens) == (384, local_model.spec.max_tokens)
        result = embedder.embed_passages(TEXTS)
        assert result.rejected == []
        np.testing.assert_allclose(result.vectors, local_model.embed_passages(TEXTS).vectors, atol=1e-4)
        queries = ["who composed the Goldberg Variations", "longest river"]
        np.testing.assert_allclose(embedder.embed_queries(queries), local_model.embed_queries(queries), atol=1e-4)


def test_base64_wire_uses_the_openai_route(server, connect):
    embedder = connect(server, wire="base64", model_name="BAAI/bge-small-en-v1.5")
    server.reset()
    result = embedder.embed_passages(TEXTS)
    np.testing.assert_array_equal(result.vectors, expected(TEXTS))
    assert server.received.paths == {"POST /v1/embeddings": 2}  # TEXTS is 40 inputs, 32 a batch
    assert server.received.bodies[0] == {"model": "test/deterministic", "encoding_format": "base64"}
    query = embedder.embed_queries(["who wrote Hamlet"])
    np.testing.assert_array_equal(query[0], deterministic_vector(BGE_QUERY_INSTRUCTION + "who wrote Hamlet"))
    with pytest.raises(EmbedderError, match="unknown wire"):
        connect(server, wire="msgpack")


def test_empty_input_sends_nothing(server, connect):
    embedder = connect(server)
    server.reset()
    result = embedder.embed_passages([])
    assert result.vectors.shape == (0, 384) and result.rejected == []
    assert server.received.embed_requests == 0


# -- batching -----------------------------------------------------------------------
@pytest.mark.parametrize(("batch_size", "largest", "requests"), [(None, 8, 5), (3, 3, 14)])
def test_batches_respect_max_client_batch_size(connect, batch_size, largest, requests):
    with TEIServer(max_client_batch_size=8) as server:
        embedder = connect(server, batch_size=batch_size)
        server.reset()
        result = embedder.embed_passages(TEXTS)
        np.testing.assert_array_equal(result.vectors, expected(TEXTS))
        assert max(server.received.batch_sizes) == largest
        assert server.received.inputs == len(TEXTS) and server.received.embed_requests == requests
        assert server.received.statuses[422] == 0


def test_batches_respect_the_character_budget(server, connect):
    embedder = connect(server, max_batch_chars=350)
    texts = [f"{i:03d}" + "x" * 97 for i in range(20)]
    server.reset()
    np.testing.assert_array_equal(embedder.embed_passages(texts).vectors, expected(texts))
    assert sorted(server.received.batch_sizes) == [2] + [3] * 6  # arrival order varies
    assert embedder.plan_batches(["x" * 1000, "a", "b", "y" * 349]) == [(0, 1), (1, 3), (3, 4)]


def test_concurrency_fits_the_servers_admission_limit(connect):
    with TEIServer(max_client_batch_size=32, max_concurrent_requests=100) as server:
        assert connect(server, max_concurrency=8).max_concurrency == 3
        assert connect(server, max_concurrency=8, batch_size=4).max_concurrency == 8


# -- instructions ---------------------------------------------------------------------
def test_queries_get_the_instruction_and_passages_do_not(server, connect):
    embedder = connect(server, model_name="BAAI/bge-small-en-v1.5")
    assert embedder.spec.query_instruction == BGE_QUERY_INSTRUCTION
    server.reset()
    query = embedder.embed_queries(["who wrote Hamlet"])
    assert server.received.texts == [BGE_QUERY_INSTRUCTION + "who wrote Hamlet"]
    np.testing.assert_array_equal(query[0], deterministic_vector(BGE_QUERY_INSTRUCTION + "who wrote Hamlet"))
    server.reset()
    text = "Hamlet is a tragedy by Shakespeare."
    passage = embedder.embed_passages([text])
    assert server.received.texts == [text]
    np.testing.assert_array_equal(passage.vectors[0], deterministic_vector(text))


def test_query_instruction_override(server, connect):
    embedder = connect(server, model_name="BAAI/bge-small-en-v1.5", query_instruction="")
    server.reset()
    embedder.embed_queries(["plain"])
    assert server.received.texts == ["plain"]


# -- transient failures -----------------------------------------------------------------
def test_429_burst_waits_for_retry_after(server, connect):
    embedder = connect(server, max_concurrency=1)
    server.set_faults(Faults(burst_429=3, retry_after="0.2"))
    server.reset()
    started = time.perf_counter()
    result = embedder.embed_passages(TEXTS[:10])
    elapsed = time.perf_counter() - started
    np.testing.assert_array_equal(result.vectors, expected(TEXTS[:10]))
    assert server.received.statuses[429] == 3 and server.received.statuses[200] == 1
    assert elapsed >= 0.6  # three Retry-After waits; the backoff alone is ~0.01s


@pytest.mark.parametrize("status", [503, 502, 504])
def test_transient_statuses_are_retried(server, connect, status):
    embedder = connect(server)
    server.set_faults(Faults(script=[status, status]))
    server.reset()
    np.testing.assert_array_equal(embedder.embed_passages(TEXTS[:5]).vectors, expected(TEXTS[:5]))
    assert server.received.statuses[status] == 2 and server.received.embed_requests == 3


def test_dropped_connections_are_retried(server, connect):
    embedder = connect(server)
    server.set_faults(Faults(script=["drop", "drop"]))
    server.reset()
    np.testing.assert_array_equal(embedder.embed_passages(TEXTS).vectors, expected(TEXTS))
    assert server.received.statuses["drop"] == 2


def test_timeouts_are_retried(server, connect):
    embedder = connect(server, timeout=0.25)
    server.set_faults(Faults(script=["slow"], delay=1.0))
    server.reset()
    np.testing.assert_array_equal(embedder.embed_passages(TEXTS[:4]).vectors, expected(TEXTS[:4]))
    assert server.received.embed_requests == 2


def test_the_tokenization_workers_reach_tei_as_its_flag():
    """RouterConfig.tokenization_workers becomes --tokenization-workers, which TEI reports
    in /info (the stand-in takes TEI's flags and reports it as TEI does)."""
    port = standin_router.free_port()
    config = RouterConfig("test/deterministic", port=port, executable=standin_router.runner(), tokenization_workers=3)
    with Router.from_config(config, startup_timeout=30) as server:
        assert httpx.get(f"{server.url}/info", timeout=5).json()["tokenization_workers"] == 3


def test_the_tei_timeout_setting_reaches_the_client(server):
    """TEI_TIMEOUT (--tei-timeout): a request slower than it is abandoned and retried."""
    settings = EmbedderSettings.from_env({"EMBEDDER": "tei", "TEI_URL": server.url, "TEI_TIMEOUT": "1"})
    with make_embedder(settings) as embedder:
        server.set_faults(Faults(script=["slow"], delay=2.5))
        server.reset()
        np.testing.assert_array_equal(embedder.embed_passages(TEXTS[:4]).vectors, expected(TEXTS[:4]))
    assert server.received.embed_requests == 2  # the first, slower than 1 s, was given up and sent again


@pytest.mark.parametrize("wire", ["json", "base64"])
def test_fault_mix_keeps_every_row_right_and_in_order(server, connect, wire):
    texts = [f"chunk {i}: " + "lorem ipsum " * (i % 7) for i in range(300)]
    embedder = connect(server, batch_size=8, max_concurrency=4, wire=wire)
    server.set_faults(Faults(rate_429=0.1, rate_503=0.1, drop_rate=0.01, seed=7))
    server.reset()
    result = embedder.embed_passages(texts)
    assert result.rejected == []
    np.testing.assert_array_equal(result.vectors, expected(texts))
    assert server.received.statuses[429] > 0 and server.received.statuses[503] > 0


def test_gives_up_after_its_time_budget_not_a_count(server, connect):
    embedder = connect(server, retry_budget=0.3, retry_initial_wait=0.05, retry_max_wait=0.05)
    server.set_faults(Faults(rate_503=1.0, retry_after="0"))
    server.reset()
    started = time.monotonic()
    with pytest.raises(EmbedderError, match=r"503 to POST /embed after retrying for 0 s") as caught:
        embedder.embed_passages(TEXTS[:3])
    assert 0.3 <= time.monotonic() - started < 5
    assert server.url in str(caught.value)
    # Retry-After: 0 still waits the floor: about 0.3 s / 0.05 s attempts, not hundreds
    assert 4 <= server.received.statuses[503] <= 9
    assert embedder.retry_counts()["503"] == server.received.statuses[503] - 1


def test_a_storm_of_429s_lowers_the_requests_in_flight_and_every_input_lands(server, connect):
    """60% of requests refused with Retry-After: 0: the client backs off with a floor,
    halves its concurrency and grows it back, and finishes with nothing lost."""
    embedder = connect(server, max_concurrency=8, batch_size=4, retry_initial_wait=0.002, retry_max_wait=0.05)
    texts = [f"passage number {i} about rivers" for i in range(160)]
    server.set_faults(Faults(rate_429=0.6, retry_after="0", seed=3))
    server.reset()
    result = embedder.embed_passages(texts)
    assert result.rejected == []
    np.testing.assert_array_equal(result.vectors, expected(texts))
    assert server.received.statuses[429] > 40 and embedder.retry_counts()["429"] == server.received.statuses[429]
    assert embedder._limit.lowest < 8  # it slowed down


# -- refused inputs -------------------------------------------------------------------------
@pytest.mark.parametrize(("validation_status", "wire"), [(422, "json"), (413, "json"), (422, "base64"), (424, "json")])
def test_poison_input_is_isolated(connect, validation_status, wire):
    """413/422 (too long), and 424: TEI's backend failing on one input, deterministically,
    is narrowed to that input instead of failing the whole window after nine retries."""
    texts = list(TEXTS) + [f"extra passage {i}" for i in range(60)]
    bad = [37, 38, 90]
    for i in bad:
        texts[i] = f"this one carries POISON number {i}"
    with TEIServer(validation_status=validation_status, faults=Faults(poison="POISON")) as server:
        embedder = connect(server, batch_size=32, wire=wire)
        result = embedder.embed_passages(texts)
        message = server.poison_message
    assert result.rejected == [Rejection(i, validation_status, message) for i in bad]
    good = [i for i in range(len(texts)) if i not in bad]
    np.testing.assert_array_equal(result.vectors[good], expected([texts[i] for i in good]))
    assert not result.vectors[bad].any()


# -- a broken GPU is not a bad input ---------------------------------------------------------
@pytest.mark.parametrize("wire", ["json", "base64"])
def test_a_sick_backend_fails_the_call_at_once_instead_of_dead_lettering_every_input(connect, wire):
    """TEI answers 424 for every input of a failed backend batch, and its /health 503
    once the backend stays broken: one failed request and one health check, then a
    BackendFailure, not a split into single inputs each recorded as a rejection."""
    with TEIServer(max_client_batch_size=32, faults=Faults(sick_after=1)) as server:
        embedder = connect(server, wire=wire)  # the probe was request 0
        with pytest.raises(BackendFailure, match="health check answers 503: its GPU is broken"):
            embedder.embed_passages(TEXTS)
        assert server.received.statuses[424] <= 2 and server.received.paths["GET /health"] >= 1


def test_a_request_every_input_of_which_the_backend_failed_is_a_backend_failure(connect):
    """Even where the health check answers 200 (the stand-in's 424s below are scripted,
    its backend healthy), a request all of whose inputs come back 424 is not N bad inputs."""
    with TEIServer(max_client_batch_size=4, faults=Faults(script=[None] + [424] * 7)) as server:
        embedder = connect(server, batch_size=4)
        with pytest.raises(BackendFailure, match="failed every one of the 4 inputs"):
            embedder.embed_passages(TEXTS[:4])


def test_one_input_the_backend_fails_on_is_still_a_rejection(connect):
    # the probe; 424 for the four; one half lands, the other 424s; of its two, one lands
    with TEIServer(max_client_batch_size=4, faults=Faults(script=[None, 424, None, 424, 424, None])) as server:
        embedder = connect(server, batch_size=4)
        result = embedder.embed_passages(TEXTS[:4])
    assert [r.status for r in result.rejected] == [424] and len(result.rejected) == 1


def test_a_dead_server_is_not_retried_when_its_process_is_known_gone(connect):
    server = TEIServer()
    server.__enter__()
    gone = []
    embedder = connect(server, retry_budget=60.0, alive=lambda: not gone)
    server.dead.set()  # nothing answers any more, on open connections either
    server.__exit__()
    gone.append(True)
    started = time.perf_counter()
    with pytest.raises(BackendFailure, match="is gone"):
        embedder.embed_passages(TEXTS[:3])
    assert time.perf_counter() - started < 5  # not the 60 s retry budget


def test_refused_query_raises(connect):
    with TEIServer(faults=Faults(poison="POISON")) as server:
        with pytest.raises(EmbedderError, match="refused query 1"):
            connect(server).embed_queries(["fine", "POISON"])


# -- connecting -----------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_server_names_the_url_but_not_the_secrets(connect):
    url = f"http://127.0.0.1:{free_port()}"
    started = time.perf_counter()
    with pytest.raises(EmbedderError) as caught:
        connect(url.replace("http://", "http://user:hunter2@"), api_key="sk-secret")
    message = str(caught.value)
    assert url in message and "hunter2" not in message and "sk-secret" not in message
    assert time.perf_counter() - started < 5


def test_a_server_gone_for_good_fails_a_request_within_the_short_budget_a_busy_one_gets_the_long_one(connect):
    """Issue 19: a TEI that was gone for good was retried for the whole 600 s budget per
    request; connections refused now have their own, minutes shorter (60 s by default)."""
    assert (
        TEIEmbedder.__init__.__kwdefaults__["retry_budget"] - TEIEmbedder.__init__.__kwdefaults__["refused_budget"]
        >= 120
    )
    with Router(
        [*standin_router.runner(), "--port", str(port := standin_router.free_port())],
        url=f"http://127.0.0.1:{port}",
        startup_timeout=30,
    ) as server:
        url = server.url
        embedder = connect(url, retry_budget=600.0, refused_budget=1.5, retry_max_wait=0.2)
    # the server has gone away after the run started
    started = time.perf_counter()
    with pytest.raises(EmbedderError, match=f"TEI server {url} failed POST /embed after retrying for"):
        embedder.embed_passages(["a passage"])
    assert 1.5 <= time.perf_counter() - started < 10
    with TEIServer(faults=Faults(script=[429] * 40, retry_after="0")) as busy:  # busy for longer than 1.5 s
        started = time.perf_counter()  # (the connection's probe meets the 429s)
        patient = connect(busy, retry_budget=600.0, refused_budget=1.5, retry_initial_wait=0.1, retry_max_wait=0.1)
        assert patient.embed_passages(["a passage"]).vectors.shape == (1, busy.dimension)
        assert time.perf_counter() - started > 1.5 and patient.retry_counts()["429"] >= 15


def test_closing_the_embedder_ends_a_call_in_flight_with_an_error_not_a_wait_for_ever(connect):
    with TEIServer() as slow:
        embedder = TEIEmbedder(slow.url, **FAST)  # a quick probe at connection, then every answer after 30 s
        slow.set_faults(Faults(slow_rate=1.0, delay=30.0))
        with ThreadPoolExecutor(1) as pool:
            call = pool.submit(embedder.embed_passages, ["a passage"])
            time.sleep(0.5)
            started = time.perf_counter()
            embedder.close()
            with pytest.raises(EmbedderError, match="the embedder was closed while this call was waiting"):
                call.result(timeout=10)
            assert time.perf_counter() - started < 5


def test_a_url_that_is_not_tei_is_reported(server, connect):
    with pytest.raises(EmbedderError, match="404") as caught:
        connect(server.url + "/not-tei")
    assert server.url + "/not-tei" in str(caught.value)


def test_a_server_that_refuses_the_probe_is_reported(connect):
    with TEIServer(faults=Faults(poison="probe")) as server:
        with pytest.raises(EmbedderError, match="refused a one-word /embed request"):
            connect(server)


def test_instant_mode_serves_precomputed_rows(connect):
    with TEIServer(instant=True) as server:
        result = connect(server).embed_passages(TEXTS[:5])
        np.testing.assert_array_equal(result.vectors, server.instant_vectors(5))


def test_api_key_is_sent(connect):
    with TEIServer(api_key="sk-secret") as server:
        with pytest.raises(EmbedderError, match="401"):
            connect(server)
        embedder = connect(server, api_key="sk-secret")
        embedder.embed_passages(TEXTS[:2])
        assert set(server.received.authorization) == {"Bearer sk-secret"}
        assert "sk-secret" not in repr(embedder)


# -- callers ------------------------------------------------------------------------------------
def test_async_callers_and_threads(server, connect):
    embedder = connect(server, batch_size=4)
    result = asyncio.run(embedder.aembed_passages(TEXTS))
    np.testing.assert_array_equal(result.vectors, expected(TEXTS))
    parts = [TEXTS[i : i + 10] for i in range(0, len(TEXTS), 10)]
    with ThreadPoolExecutor(4) as pool:
        for part, got in zip(parts, pool.map(embedder.embed_passages, parts)):
            np.testing.assert_array_equal(got.vectors, expected(part))


def test_a_custom_transport_carries_the_requests(server, connect):
    import httpx

    class Counting(httpx.AsyncHTTPTransport):
        calls = 0

        async def handle_async_request(self, request):
            Counting.calls += 1
            return await super().handle_async_request(request)

    embedder = connect(server, transport=Counting())
    embedder.embed_passages(TEXTS[:3])
    assert Counting.calls == 3  # /info, the probe, the batch


def test_parse_retry_after():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    future = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    assert 25 < parse_retry_after(future) <= 30


def test_counts_tokens_with_the_served_models_tokenizer(server, connect, local_model):
    from pathlib import Path

    from ingest.embedders.local import resolve_model

    assert connect(server).count_tokens(["anything"]) is None  # no tokenizer: characters only
    tokenizer = str(Path(resolve_model("all-MiniLM-L6-v2")[1]) / "tokenizer.json")
    texts = ["Hello world", "Kubrick's 2001: A Space Odyssey (1968)"]
    assert connect(server, tokenizer=tokenizer).count_tokens(texts) == local_model.count_tokens(texts)


def test_an_unreadable_tokenizer_is_named(server, connect, tmp_path):
    with pytest.raises(EmbedderError, match="cannot load the tokenizer .*nope.json"):
        connect(server, tokenizer=str(tmp_path / "nope.json"))
