"""search.server over real parts: the bundled model, the embedded store, a real
uvicorn server on loopback for what happens on the wire (malformed request lines,
oversized and chunked bodies, closed connections, concurrency), the FastAPI app in
process for the rest, schemathesis against the generated OpenAPI document, and
`python -m search serve` as a subprocess; fakes of the searcher only where a
failure or a race has to be provoked."""

from __future__ import annotations

import http.client
import json
import logging
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import types
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from ingest.chunking import ChunkingSettings
from ingest.errors import EmbedderError, StoreError
from ingest.jobs import run_ingest
from ingest.settings import IngestSettings, StoreSettings
from search import Searcher
from search.api import SearchError, SearchOptions, SearchUsageError
from search.cli import build_parser, check_exposure, main, search_options
from search.context import build_context
from search.request import FIELDS, PARAMETERS, HTTPError, SearchRequest, parse_search
from search.server import PAGE_POLICY, STATIC, make_app
from search.serving import is_loopback
from tests.http_serving import serving

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
HAL_QUERY = "the space film in which the computer HAL 9000 turns on its crew"
HAL_TITLE = "2001: A Space Odyssey"
ARTICLES = 12  # of the bundled sample, in 300-character chunks: about 25 chunks, a few seconds to embed


# -- fixtures ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def index(tmp_path_factory, local_embedder):
    """A small collection (dense and BM25 vectors), and a copy of its folder for a
    second process (an embedded store lets one process at a time open a folder)."""
    tmp_path = tmp_path_factory.mktemp("server")
    settings = IngestSettings(
        source="sample",
        limit=ARTICLES,
        progress=False,
        dead_letter=str(tmp_path / "dead_letter.jsonl"),
        chunking=ChunkingSettings(max_chars=300),
        store=StoreSettings(qdrant_path=str(tmp_path / "qdrant"), collection="wiki"),
    )
    summary = run_ingest(settings, embedder=local_embedder)
    assert summary.points_written > ARTICLES  # some articles span several chunks
    shutil.copytree(tmp_path / "qdrant", tmp_path / "qdrant-copy")
    return settings.store, replace(settings.store, qdrant_path=str(tmp_path / "qdrant-copy"))


@pytest.fixture(scope="module")
def searcher(index, local_embedder):
    with Searcher.open(index[0], embedder=local_embedder) as searcher:
        yield searcher


@pytest.fixture(scope="module")
def server(searcher):
    server, stop = serving(make_app(searcher, token=TOKEN))
    yield server
    stop()


class Answer(types.SimpleNamespace):
    status: int
    headers: dict
    json: dict


def call(server, method, path, *, body=None, token=TOKEN, headers=None) -> Answer:
    host, port = server.server_address[:2]
    headers = dict(headers or {})
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
    if body is not None:
        headers.setdefault("Content-Type", "application/json")
    connection = http.client.HTTPConnection(host, port, timeout=120)
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        raw = response.read()
    finally:
        connection.close()
    assert response.getheader("Content-Type") == "application/json; charset=utf-8"
    return Answer(
        status=response.status, headers={k.lower(): v for k, v in response.getheaders()}, json=json.loads(raw)
    )


def raw_exchange(server, data: bytes, *, close_after_send=False) -> bytes:
    """What the server answers to these bytes on a connection of their own."""
    with socket.create_connection(server.server_address[:2], timeout=10) as sock:
        sock.sendall(data)
        if close_after_send:
            sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def eventually(check, seconds=5.0):
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def get(server, query_string, **kwargs) -> Answer:
    return call(server, "GET", "/search?" + query_string, **kwargs)


def post(server, body, **kwargs) -> Answer:
    return call(server, "POST", "/search", body=body, **kwargs)


# -- searching ---------------------------------------------------------------------------
def test_get_search_finds_the_article(server, searcher):
    answer = get(server, "q=" + HAL_QUERY.replace(" ", "+") + "&k=3")
    assert answer.status == 200, answer.json
    assert (answer.json["query"], answer.json["k"], answer.json["mode"]) == (HAL_QUERY, 3, searcher.default_mode)
    assert set(answer.json) == {"query", "k", "mode", "took_ms", "hits"} and answer.json["took_ms"] > 0
    hits = answer.json["hits"]
    assert [h["rank"] for h in hits] == [1, 2, 3] and hits[0]["title"] == HAL_TITLE
    assert hits[0]["url"] == "https://en.wikipedia.org/wiki/2001:_A_Space_Odyssey"
    assert {"score", "text", "article_id", "chunk_index", "point_id"} <= set(hits[0])
    assert hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"]


def test_post_search_finds_the_article_and_matches_the_searcher(server, searcher):
    answer = post(server, {"query": HAL_QUERY, "k": 4})
    assert answer.status == 200, answer.json
    assert answer.json["hits"][0]["title"] == HAL_TITLE
    assert answer.json["hits"] == [hit.model_dump() for hit in searcher.search(HAL_QUERY, k=4)]
    default = post(server, {"query": HAL_QUERY})
    assert default.json["k"] == 5 and len(default.json["hits"]) == 5
    assert post(server, {"query": HAL_QUERY, "k": 2.0}).json["k"] == 2  # JSON's 2.0 is an integer


def test_filters_and_options_reach_the_searcher(server, searcher):
    body = {
        "query": HAL_QUERY,
        "k": 3,
        "titles": ["Accordion", "Acting"],
        "max_per_article": 1,
        "neighbours": 1,
        "mode": "dense",
        "score_threshold": -1.0,
    }
    answer = post(server, body)
    assert answer.status == 200, answer.json
    assert sorted(h["title"] for h in answer.json["hits"]) == ["Accordion", "Acting"]
    assert answer.json["mode"] == "dense"
    expected = searcher.search(
        HAL_QUERY,
        k=3,
        titles=["Accordion", "Acting"],
        max_per_article=1,
        neighbours=1,
        mode="dense",
        score_threshold=-1.0,
    )
    assert answer.json["hits"] == [hit.model_dump() for hit in expected]
    by_get = get(server, "q=HAL+9000&k=3&title=Accordion&title=Acting&max_per_article=1&neighbours=1&mode=dense")
    assert sorted(h["title"] for h in by_get.json["hits"]) == ["Accordion", "Acting"]
    article_id = answer.json["hits"][0]["article_id"]
    only = get(server, f"q=HAL+9000&article_id={article_id}")
    assert {h["article_id"] for h in only.json["hits"]} == {article_id}
    high = post(server, {"query": HAL_QUERY, "score_threshold": 0.99})
    assert high.status == 200 and high.json["hits"] == []
    (around,) = post(server, {"query": HAL_QUERY, "k": 1, "neighbours": 1}).json["hits"]
    assert around["title"] == HAL_TITLE and around["text"] in around["context"]
    assert len(around["context"]) > len(around["text"])  # the article spans two chunks of 300 characters
    assert post(server, {"query": HAL_QUERY, "mode": "hybrid"}).json["mode"] == "hybrid"


def test_context_chars_adds_the_rag_context_block(server, searcher):
    answer = post(server, {"query": HAL_QUERY, "k": 3, "context_chars": 600})
    assert answer.status == 200, answer.json
    context = answer.json["context"]
    assert context == build_context(searcher.search(HAL_QUERY, k=3), max_chars=600).model_dump()
    assert 0 < len(context["text"]) <= 600 and context["sources"]
    assert "context" in get(server, "q=HAL+9000&context_chars=300").json


# -- auth --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "token, headers, message",
    [
        (None, None, "bearer token is required"),
        ("wrong-token", None, "bearer token is wrong"),
        (TOKEN[:-1], None, "bearer token is wrong"),
        (TOKEN + "x", None, "bearer token is wrong"),
        (None, {"Authorization": f"Basic {TOKEN}"}, "bearer token is required"),
        (None, {"Authorization": "Bearer "}, "bearer token is required"),
        (None, {"Authorization": "Bearer t\xe9l\xe9"}, "bearer token is wrong"),  # latin-1 bytes on the wire
    ],
)
def test_searches_without_the_right_token_are_401(server, token, headers, message, caplog):
    caplog.set_level(logging.DEBUG)
    for answer in (
        get(server, "q=HAL", token=token, headers=headers),
        post(server, {"query": "HAL"}, token=token, headers=headers),
        post(server, {"query": ""}, token=token, headers=headers),
    ):  # before the body is judged
        assert answer.status == 401 and message in answer.json["error"]
        assert answer.headers["www-authenticate"].startswith("Bearer ")
        assert TOKEN not in json.dumps(answer.json) and TOKEN not in str(answer.headers)
    eventually(lambda: '"POST /search" 401' in caplog.text)  # the access log, path only, after the answer
    assert TOKEN not in caplog.text and (token is None or token not in caplog.text)


def test_the_page_health_and_openapi_need_no_token(server, searcher):
    health = call(server, "GET", "/health", token=None)
    assert health.status == 200
    assert health.json == {
        "status": "ok",
        "store": "ok",
        "embedder": "ok",
        "collection": "wiki",
        "physical_collection": searcher.store.collection,
        "model": "sentence-transformers/all-MiniLM-L6-v2",
        "dimension": 384,
        "auth": True,
    }
    assert call(server, "GET", "/openapi.json", token=None).status == 200
    connection = http.client.HTTPConnection(*server.server_address, timeout=30)
    connection.request("GET", "/")
    page = connection.getresponse()
    html = page.read().decode()
    connection.close()
    assert page.status == 200 and page.getheader("Content-Type") == "text/html; charset=utf-8"
    assert page.getheader("Content-Security-Policy") == PAGE_POLICY and TOKEN not in html


# -- bad requests ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "query_string, status, message",
    [
        ("q=", 422, "the query is empty"),
        ("q=+++", 422, "the query is empty"),
        ("q=%1C%EF%BB%BF", 422, "the query is empty"),  # blank to Python and to JSON Schema's ECMA-262 alike
        ("k=3", 422, "the query is missing"),
        ("q=HAL&k=0", 422, "k must be between 1 and 100, got 0"),
        ("q=HAL&k=101", 422, "k must be between 1 and 100, got 101"),
        ("q=HAL&k=three", 422, "k must be a whole number between 1 and 100, got 'three'"),
        ("q=HAL&k=1&k=2", 422, "k is given 2 times"),
        ("q=HAL&neighbours=-1", 422, "neighbours must be between 0 and 5"),
        ("q=HAL&score_threshold=2", 422, "score_threshold must be between -1 and 1, got 2"),
        ("q=HAL&mode=hybrid&mode=dense", 422, "mode is given 2 times"),
        ("q=HAL&mode=sideways", 422, "mode must be one of dense, hybrid, got 'sideways'"),
        ("q=HAL&score_threshold=high", 422, "score_threshold must be a number"),
        ("q=HAL&score_threshold=nan", 422, "score_threshold must be a number"),
        ("q=HAL&title=", 422, "title must hold at least one value, and no empty one"),
        ("q=HAL&limit=3", 422, "unknown parameter 'limit': the parameters are q, k, mode"),
        ("q=" + "x" * 2001, 413, "the query is 2,001 characters long; the limit is 2,000"),
    ],
)
def test_bad_get_queries_are_4xx_with_a_message(server, query_string, status, message):
    answer = get(server, query_string)
    assert (answer.status, answer.json.keys()) == (status, {"error"}), answer.json
    assert message in answer.json["error"]


@pytest.mark.parametrize(
    "body, status, message",
    [
        ('{"query": "HAL", ', 400, "the body is not valid JSON: Expecting"),
        (b"\xff\xfe{", 400, "the body is not valid JSON"),
        ("[" * 100_00 + "]" * 100_00, 400, "the body is not valid JSON"),
        ("", 422, "the body is missing"),
        ('"HAL"', 422, "the body must be a JSON object such as"),
        ({"query": ""}, 422, "the query is empty"),
        ({"query": "   \n"}, 422, "the query is empty"),
        ({"k": 3}, 422, "the query is missing"),
        ({"query": 9000}, 422, "query must be a string, got 9000 (a number)"),
        ({"query": "HAL", "k": "5"}, 422, "k must be a whole number between 1 and 100, got '5' (a string)"),
        ({"query": "HAL", "k": 2.5}, 422, "k must be a whole number"),
        ({"query": "HAL", "k": True}, 422, "k must be a whole number between 1 and 100, got True (a boolean)"),
        ({"query": "HAL", "k": 0}, 422, "k must be between 1 and 100, got 0"),
        ({"query": "HAL", "titles": "Accordion"}, 422, "titles must be a list of strings"),
        ({"query": "HAL", "titles": []}, 422, "titles must hold at least one value"),
        ({"query": "HAL", "urls": [1]}, 422, "urls[0] must be a string"),
        ({"query": "HAL", "mode": 1}, 422, "mode must be one of dense, hybrid, got 1"),
        ({"query": "HAL", "mode": "sideways"}, 422, "mode must be one of dense, hybrid, got 'sideways'"),
        ({"query": "HAL", "max_per_article": 0}, 422, "max_per_article must be at least 1, got 0"),
        ({"query": "HAL", "context_chars": 0}, 422, "context_chars must be between 1 and 100000"),
        ({"query": "HAL", "score_threshold": 1.5}, 422, "score_threshold must be between -1 and 1"),
        ({"query": "HAL", "q": "HAL"}, 422, "unknown field 'q': the fields are query, k, mode"),
        ({"query": "HAL", "limit": 1, "top": 2}, 422, "unknown fields 'limit', 'top'"),
        ({"query": "HAL", "k": 0, "neighbours": 9}, 422, "k must be between 1 and 100, got 0 (and 1 more problem)"),
        ({"query": "x" * 2001}, 413, "the query is 2,001 characters long; the limit is 2,000"),
        ({"query": "HAL", "titles": ["x" * 100] * 700}, 413, "the limit is 65,536"),
    ],
)
def test_bad_post_bodies_are_4xx_with_a_message(server, body, status, message):
    answer = post(server, body)
    assert (answer.status, answer.json.keys()) == (status, {"error"}), answer.json
    assert message in answer.json["error"]


def test_a_body_that_is_not_sent_as_json_is_422_with_the_header_to_send(server):
    answer = post(server, '{"query": "HAL"}', headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert answer.status == 422 and "Content-Type: application/json" in answer.json["error"]


def test_unknown_paths_are_404_and_wrong_methods_405_with_allow(server):
    missing = call(server, "GET", "/nowhere")
    assert missing.status == 404 and "/search" in missing.json["error"]
    assert call(server, "GET", "/search/", token=None).status == 404  # no redirect to /search
    assert call(server, "GET", "/static/secrets.txt", token=None).status == 404
    for docs in ("/docs", "/redoc"):  # off: they load Swagger and ReDoc from a CDN
        assert call(server, "GET", docs, token=None).status == 404
    wrong = call(server, "DELETE", "/search")
    assert (wrong.status, wrong.headers["allow"]) == (405, "GET, POST")
    assert "not 'DELETE'" in wrong.json["error"]
    health = call(server, "POST", "/health", body={"query": "x"})
    assert (health.status, health.headers["allow"]) == (405, "GET")


def test_every_answer_carries_the_safety_headers(server):
    for answer in (get(server, "q=HAL"), get(server, "q=HAL", token=None), call(server, "GET", "/nowhere")):
        assert answer.headers["cache-control"] == "no-store"
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert "server" not in answer.headers  # uvicorn does not name itself


# -- the OpenAPI document, generated by FastAPI ---------------------------------------------
def test_openapi_describes_every_route_its_errors_and_the_bearer_scheme(server):
    doc = call(server, "GET", "/openapi.json", token=None).json
    assert doc["openapi"].startswith("3.1.")
    assert set(doc["paths"]) == {"/health", "/search", "/openapi.json"}  # the page is not part of the API
    assert set(doc["paths"]["/search"]) == {"get", "post"}
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "The token the server was started with (SEARCH_API_TOKEN)",
    }
    for method in ("get", "post"):
        operation = doc["paths"]["/search"][method]
        assert operation["security"] == [{"bearerAuth": []}]
        assert set(operation["responses"]) == {"200", "400", "401", "413", "422", "503"}
        for status in ("400", "401", "413", "422", "503"):
            (content,) = operation["responses"][status]["content"].values()
            assert content["schema"] == {"$ref": "#/components/schemas/Error"}
        (ok,) = operation["responses"]["200"]["content"].values()
        assert ok["schema"] == {"$ref": "#/components/schemas/SearchResponse"}
        assert "WWW-Authenticate" in operation["responses"]["401"]["headers"]
    assert "security" not in doc["paths"]["/health"]["get"] and set(doc["paths"]["/health"]["get"]["responses"]) == {
        "200",
        "503",
    }
    schemas = doc["components"]["schemas"]
    assert {"SearchRequest", "SearchResponse", "Hit", "Context", "Citation", "Passage", "Health", "Error"} <= set(
        schemas
    )
    assert "HTTPValidationError" not in schemas  # FastAPI's {"detail": ...} is never answered, so not declared
    request = schemas["SearchRequest"]
    assert set(request["properties"]) == set(FIELDS) and request["additionalProperties"] is False
    assert request["required"] == ["query"]
    assert request["properties"]["query"]["maxLength"] == 2000 and request["properties"]["k"]["maximum"] == 100
    parameters = {p["name"]: p for p in doc["paths"]["/search"]["get"]["parameters"]}
    assert set(parameters) == set(PARAMETERS) and parameters["q"]["required"] is True
    assert parameters["title"]["schema"]["anyOf"][0]["type"] == "array"
    assert set(schemas["Hit"]["required"]) >= {"rank", "score", "title", "url", "text", "point_id"}
    refs = re.findall(r'"\$ref": "#/components/(\w+)/(\w+)"', json.dumps(doc))
    assert refs and all(name in doc["components"][kind] for kind, name in refs)  # no dangling reference


SCHEMATHESIS_EXAMPLES = 60  # per operation and mode: about 250 requests, 10-20 s on 2 cores
# 413 (a query over --max-query-chars, which the document declares as maxLength) is a
# rejection too: schemathesis's default list for invalid data leaves it out.
SCHEMATHESIS_CONFIG = """
[checks.negative_data_rejection]
expected-statuses = [400, 401, 413, 422]
"""
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    positive_data_acceptance,
    negative_data_rejection,
]


def test_the_api_holds_to_its_generated_openapi_document(searcher):
    """schemathesis, derandomized and bounded: valid requests (hits from the real
    index) and invalid ones for every operation, each answer checked against the
    document (status declared, schema, content type, headers), none a 5xx, valid
    data accepted and invalid data refused (with 400, 401, 413 or 422). In a
    query string every value is a string, so "a boolean where an array of strings
    belongs" arrives as a valid title: GET's negative cases skip only that one
    check. docs/manual.md's "Over HTTP" gives the same run from a shell, against a
    running server (`schemathesis --config-file ... run ...`)."""
    schema = schemathesis.openapi.from_asgi(
        "/openapi.json", make_app(searcher, token=TOKEN), config=schemathesis.Config.from_str(SCHEMATHESIS_CONFIG)
    )
    examples: Counter[tuple[str, str]] = Counter()

    def run(operation, mode):
        checks = [
            c
            for c in CHECKS
            if not (
                mode is GenerationMode.NEGATIVE and operation.method.upper() == "GET" and c is negative_data_rejection
            )
        ]

        @settings(
            max_examples=SCHEMATHESIS_EXAMPLES,
            derandomize=True,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def check(case):
            examples[operation.label, mode.value] += 1
            case.call_and_validate(headers=AUTH, checks=checks)

        check()

    for result in schema.get_all_operations():
        operation = result.ok()
        run(operation, GenerationMode.POSITIVE)
        if operation.path == "/search":  # the others take no input to get wrong
            run(operation, GenerationMode.NEGATIVE)
    assert examples[("POST /search", "positive")] >= SCHEMATHESIS_EXAMPLES // 2
    assert examples[("GET /search", "negative")] >= SCHEMATHESIS_EXAMPLES // 2
    assert {label for label, _ in examples} == {"GET /health", "GET /search", "POST /search"}  # (not the doc itself)


# -- on the wire: a real uvicorn server and a fake searcher ----------------------------------
class FakeSearcher:
    """Looks like a Searcher to the app; counts searches running at once."""

    name = "wiki"
    default_mode = "dense"
    spec = types.SimpleNamespace(model=types.SimpleNamespace(name="fake/model"), dimension=3)

    def __init__(self, error: Exception | None = None, seconds: float = 0.0):
        self.error, self.seconds = error, seconds
        self.store = types.SimpleNamespace(collection="wiki_1", exists=lambda: True)
        self.embedder = types.SimpleNamespace(embed_queries=lambda texts: self.search(texts[0]))
        self.running = self.most_at_once = 0
        self.guard = threading.Lock()

    def search(self, query, k=5, **options):
        with self.guard:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        try:
            time.sleep(self.seconds)
            if self.error is not None:
                raise self.error
            return []
        finally:
            with self.guard:
                self.running -= 1


@pytest.fixture()
def fake_server():
    """A real server over a FakeSearcher taking 0.2 s a search."""
    fake = FakeSearcher(seconds=0.2)
    server, stop = serving(make_app(fake, token=TOKEN, max_concurrent=3))
    server.fake = fake
    yield server
    stop()


def test_searches_run_concurrently_up_to_the_limit(fake_server):
    call(fake_server, "GET", "/health", token=None)  # checked once now, then reused for HEALTH_SECONDS
    answers = []
    threads = [threading.Thread(target=lambda: answers.append(get(fake_server, "q=HAL").status)) for _ in range(9)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    eventually(lambda: fake_server.fake.running == 3)
    health = call(fake_server, "GET", "/health", token=None)  # answered while searches queue
    for thread in threads:
        thread.join()
    took = time.monotonic() - started
    assert answers == [200] * 9 and health.status == 200
    assert fake_server.fake.most_at_once == 3 and took < 9 * 0.2  # three at a time, not one


def test_malformed_request_lines_get_their_answer_and_lone_surrogates_are_422(fake_server, caplog):
    for line in (b"GARBAGE\r\n\r\n", b"GET /" + b"x" * 70000 + b" HTTP/1.1\r\n\r\n", b"GET /\x00 HTTP/1.1\r\n\r\n"):
        assert raw_exchange(fake_server, line).startswith(b"HTTP/1.1 400 ")  # answered (by uvicorn), not dropped
    answer = post(fake_server, '{"query": "HAL \\ud800"}')
    assert answer.status == 422 and "query holds a lone surrogate" in answer.json["error"]
    answer = post(fake_server, '{"query": "HAL", "titles": ["\\udfff"]}')
    assert answer.status == 422 and "titles[0] holds a lone surrogate" in answer.json["error"]
    assert "Traceback" not in caplog.text


def test_oversized_bodies_are_413_whether_declared_or_chunked(fake_server):
    head = (
        b"POST /search HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + TOKEN.encode()
        + b"\r\nContent-Type: application/json\r\nConnection: close\r\n"
    )
    # declared far over the limit: the 413 comes before a byte of the body is sent
    answer = raw_exchange(fake_server, head + b"Content-Length: 50000000\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 413 ") and b'"the body is 50,000,000 bytes; the limit is 65,536"' in answer
    # chunked, no Content-Length: counted as it arrives
    chunk = b"x" * 10_000
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(10)) + b"0\r\n\r\n"
    answer = raw_exchange(fake_server, head + b"Transfer-Encoding: chunked\r\n\r\n" + chunks)
    assert answer.startswith(b"HTTP/1.1 413 ") and b"the body is over 65,536 bytes" in answer
    small = b'{"query": "HAL"}'
    answer = raw_exchange(
        fake_server, head + b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(small), small)
    )
    assert answer.startswith(b"HTTP/1.1 200 ")


def test_closed_connections_leave_the_server_answering(fake_server, caplog):
    caplog.set_level(logging.INFO)
    head = b"POST /search HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode()
    with socket.create_connection(fake_server.server_address, timeout=10) as sock:  # gone in mid-body
        sock.sendall(head + b'\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"query"')
    with socket.create_connection(fake_server.server_address, timeout=10) as sock:  # gone in mid-search
        sock.sendall(b"GET /search?q=HAL HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode() + b"\r\n\r\n")
        eventually(lambda: fake_server.fake.running == 1)
    eventually(lambda: '"GET /search" 200' in caplog.text)  # the search ran to its end
    assert get(fake_server, "q=HAL").status == 200
    assert "Traceback" not in caplog.text and "Exception in ASGI" not in caplog.text


def test_idle_connections_take_no_thread_each(fake_server):
    before = threading.active_count()
    idle = [socket.create_connection(fake_server.server_address, timeout=10) for _ in range(100)]
    try:
        time.sleep(0.3)
        assert threading.active_count() <= before + 2
        assert get(fake_server, "q=HAL").status == 200  # still answering
    finally:
        for sock in idle:
            sock.close()


# -- the application in process, with a fake searcher where a failure must be provoked -------
def test_an_outage_is_a_quick_503_that_names_the_part_not_its_address_and_health_says_so(caplog):
    down = FakeSearcher(EmbedderError("TEI server http://10.0.0.7:8080 still answered 503 to POST /embed"))
    with TestClient(make_app(down, token=TOKEN)) as client:
        answer = client.post("/search", json={"query": "HAL"}, headers=AUTH)
        assert answer.status_code == 503 and "the embedder failed" in answer.json()["error"]
        health = client.get("/health")
    assert "10.0.0.7" not in answer.text
    body = health.json()
    assert (health.status_code, body["status"], body["embedder"], body["store"]) == (
        503,
        "unavailable",
        "unavailable",
        "ok",
    )
    assert body["error"] == "the embedder failed the health check (the server's log says more)"
    assert "10.0.0.7" not in health.text and "10.0.0.7" in caplog.text  # the log has the details


def test_backend_failures_are_503_refusals_400_and_surprises_500_without_details(caplog):
    def answer(error, **request):
        with TestClient(make_app(FakeSearcher(error), token=TOKEN), raise_server_exceptions=False) as client:
            response = client.post("/search", headers=AUTH, **request)
        return response.status_code, response.json()

    assert answer(StoreError("Qdrant at http://q:6333 is down"), json={"query": "HAL"}) == (
        503,
        {"error": "the search backend is unavailable (the store failed; the server's log says more): try again later"},
    )
    assert answer(
        SearchUsageError("collection 'wiki' has no sparse vectors"), json={"query": "HAL", "mode": "hybrid"}
    ) == (400, {"error": "collection 'wiki' has no sparse vectors"})
    assert answer(SearchError("the collection is gone"), json={"query": "HAL"}) == (
        503,
        {  # not the caller's fault
            "error": "the search backend is unavailable (the store failed; the server's log says more): try again later"
        },
    )
    status, body = answer(RuntimeError("secret detail"), json={"query": "HAL"})
    assert (status, body) == (500, {"error": "internal server error (the server's log says more)"})
    assert "secret detail" in caplog.text


def test_an_open_app_asks_no_token_and_declares_none():
    with TestClient(make_app(FakeSearcher(), token=None)) as client:
        answer = client.post("/search", json={"query": "HAL"})
        assert (answer.status_code, answer.json()["hits"]) == (200, [])
        assert client.get("/health").json()["auth"] is False
        doc = client.get("/openapi.json").json()
    assert "bearerAuth" not in json.dumps(doc["paths"]) and "401" not in doc["paths"]["/search"]["post"]["responses"]
    with pytest.raises(ValueError, match="token is empty"):
        make_app(FakeSearcher(), token="  ")
    with pytest.raises(ValueError, match="at least 1"):
        make_app(FakeSearcher(), token=TOKEN, max_concurrent=0)
    assert TOKEN not in repr(make_app(FakeSearcher(), token=TOKEN).state.service)


def test_a_smaller_query_limit_is_enforced_and_documented():
    with TestClient(make_app(FakeSearcher(), token=None, max_query_chars=10)) as client:
        assert client.get("/search", params={"q": "x" * 11}).status_code == 413
        assert client.post("/search", json={"query": "x" * 10}).status_code == 200
        doc = client.get("/openapi.json").json()
    assert doc["components"]["schemas"]["SearchRequest"]["properties"]["query"]["maxLength"] == 10


def test_the_page_is_shipped_whole_and_loads_nothing_from_elsewhere():
    with TestClient(make_app(FakeSearcher(), token=TOKEN)) as client:
        page = client.get("/")
        files = {name: client.get(f"/static/{name}") for name in ("search.js", "search.css")}
    assert page.status_code == 200 and "Content-Security-Policy" in page.headers
    assert files["search.js"].headers["content-type"] == "text/javascript; charset=utf-8"
    assert files["search.css"].headers["content-type"] == "text/css; charset=utf-8"
    texts = [page.text, *(f.text for f in files.values())]
    assert all(f.status_code == 200 for f in files.values()) and TOKEN not in "".join(texts)
    assert not any(re.search(r"(src|href)=\"(https?:)?//|@import|url\(|fonts\.", text) for text in texts)
    assert "innerHTML" not in files["search.js"].text and "textContent" in files["search.js"].text
    assert {p.name for p in STATIC.iterdir()} == {"index.html", "search.js", "search.css"}


def test_parse_search_checks_what_the_mcp_tools_pass():
    request = parse_search({"query": "HAL", "titles": ["A"], "neighbours": 0, "mode": None})
    assert (
        isinstance(request, SearchRequest)
        and request.model_dump() == SearchRequest(query="HAL", titles=["A"]).model_dump()
    )
    assert SearchOptions.of(request) == SearchOptions(titles=["A"])  # a request is the options it carries
    assert SearchOptions.of(parse_search({"query": "HAL", "score_threshold": 1, "neighbours": 2})) == SearchOptions(
        score_threshold=1.0, neighbours=2
    )
    with pytest.raises(HTTPError, match="the limit is 10") as error:
        parse_search({"query": "x" * 11}, max_query_chars=10)
    assert error.value.status == 413
    with pytest.raises(HTTPError, match="k must be between 1 and 100") as error:
        parse_search({"query": "HAL", "k": 500})
    assert error.value.status == 422


# -- the command line ----------------------------------------------------------------------
def test_query_flags_map_to_the_search_options():
    args = build_parser().parse_args(
        [
            "--mode",
            "hybrid",
            "--threshold",
            "0.3",
            "--title",
            "A",
            "--title",
            "B",
            "--article-id",
            "7",
            "--url",
            "u",
            "--max-per-article",
            "2",
            "--neighbours",
            "1",
            "--context",
            "900",
            "HAL",
        ]
    )
    assert search_options(args) == SearchOptions(
        mode="hybrid",
        score_threshold=0.3,
        titles=["A", "B"],
        article_ids=["7"],
        urls=["u"],
        max_per_article=2,
        neighbours=1,
    )
    assert args.context == 900 and search_options(build_parser().parse_args(["HAL"])) == SearchOptions()
    for flag, value in (("-k", "101"), ("--neighbours", "6"), ("--threshold", "1.5")):  # the options' own limits
        with pytest.raises(SystemExit):
            build_parser().parse_args([flag, value, "HAL"])


def test_serving_without_a_token_is_refused_except_open_on_loopback():
    assert all(map(is_loopback, ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost", "LOCALHOST"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "192.168.1.2", "example.org", ""]))
    check_exposure("0.0.0.0", TOKEN, False)
    check_exposure("::1", None, True)
    with pytest.raises(Exception, match="SEARCH_API_TOKEN is not set"):
        check_exposure("127.0.0.1", None, False)
    with pytest.raises(Exception, match="only on a loopback host .* not '0.0.0.0'"):
        check_exposure("0.0.0.0", TOKEN, True)


def run_cli(*args, env=None, **kwargs):
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "search", *args], env=env, capture_output=True, text=True, timeout=120, **kwargs
    )


@pytest.mark.parametrize(
    "args, token, message",
    [
        (["serve"], None, "SEARCH_API_TOKEN is not set"),
        (["serve", "--host", "0.0.0.0", "--open"], None, "--open serves without a token, so only on a loopback host"),
        (["serve", "--host", "10.1.2.3", "--open"], TOKEN, "not '10.1.2.3'"),
    ],
)
def test_serve_refuses_to_start_unsafely_with_exit_2(args, token, message, monkeypatch, capsys):
    monkeypatch.delenv("SEARCH_API_TOKEN", raising=False)
    if token:
        monkeypatch.setenv("SEARCH_API_TOKEN", token)
    assert main(args) == 2
    out, err = capsys.readouterr()
    assert message in err and out == "" and TOKEN not in err


def test_the_serve_command_refuses_an_open_public_server_in_a_subprocess(tmp_path):
    done = run_cli("serve", "--open", "--host", "0.0.0.0", env={"SEARCH_API_TOKEN": ""}, cwd=tmp_path)
    assert done.returncode == 2 and "only on a loopback host" in done.stderr and done.stdout == ""
    assert not (tmp_path / "qdrant_data").exists()


def test_the_query_command_prints_a_context_block_with_the_new_flags(index, capsys):
    store = index[1]
    code = main(
        [
            "--qdrant-path",
            store.qdrant_path,
            "--collection",
            store.collection,
            "--device",
            "cpu",
            "--json",
            "--context",
            "600",
            "--mode",
            "dense",
            "--title",
            HAL_TITLE,
            "--neighbours",
            "1",
            "-k",
            "2",
            HAL_QUERY,
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    context = json.loads(out)
    assert [s["title"] for s in context["sources"]] == [HAL_TITLE] and context["text"].startswith("[1] 2001")
    assert len(context["text"]) <= 600


def test_serve_and_eval_have_help():
    for command in ("serve", "eval"):
        done = run_cli(command, "--help")
        assert done.returncode == 0 and f"usage: python -m search {command}" in done.stdout


@pytest.mark.slow
def test_python_m_search_serve_answers_and_stops_on_sigterm(index, tmp_path):
    store = index[1]
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "search",
            "serve",
            "--port",
            "0",
            "--qdrant-path",
            store.qdrant_path,
            "--collection",
            store.collection,
            "--device",
            "cpu",
        ],
        env={**os.environ, "PYTHONPATH": str(ROOT), "SEARCH_API_TOKEN": TOKEN},
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in process.stderr], daemon=True)
    reader.start()
    try:
        url, deadline = None, time.monotonic() + 180
        while url is None and time.monotonic() < deadline and process.poll() is None:
            try:
                found = re.search(r"at (http://127\.0\.0\.1:\d+)/search", lines.get(timeout=1))
            except queue.Empty:
                continue
            url = found and found.group(1)
        assert url, f"no URL logged; exit {process.poll()}"
        address = types.SimpleNamespace(server_address=("127.0.0.1", int(url.rsplit(":", 1)[1])))
        assert call(address, "GET", "/health", token=None).json["collection"] == "wiki"
        answer = post(address, {"query": HAL_QUERY, "k": 1})
        assert answer.status == 200 and answer.json["hits"][0]["title"] == HAL_TITLE
        assert get(address, "q=HAL", token="nope").status == 401
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        reader.join(timeout=5)
        process.stdout.close()
        process.stderr.close()
    log = "".join(lines.queue)
    assert '"POST /search" 200' in log and '"GET /search" 401' in log and "stopped" in log
    assert TOKEN not in log and "nope" not in log and "Traceback" not in log
