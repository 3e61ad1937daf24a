"""search.server over real parts: the bundled model, qdrant-client local mode, a real
wsgiref server on loopback (and `python -m search serve` as a subprocess); fakes of
the searcher only where a failure or a race has to be provoked."""

from __future__ import annotations

import http.client
import io
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
from dataclasses import replace
from pathlib import Path
from wsgiref.util import setup_testing_defaults

import pytest

from ingest.chunking import ChunkingSettings
from ingest.errors import EmbedderError, StoreError
from ingest.sync import run_ingest
from ingest.settings import IngestSettings, StoreSettings
from search import Searcher
from search.api import SearchError
from search.cli import build_parser, check_exposure, main, search_options
from search.openapi import QUERY_PARAMETERS
from search.server import FIELDS, SearchRequest, is_loopback, make_app, make_server, parse_search

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "test-token-0123456789abcdef"
HAL_QUERY = "the space film in which the computer HAL 9000 turns on its crew"
HAL_TITLE = "2001: A Space Odyssey"
ARTICLES = 12  # of the bundled sample, in 300-character chunks: about 25 chunks, a few seconds to embed


# -- fixtures ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def index(tmp_path_factory, local_embedder):
    """A small collection, and a copy of its folder for a second process (local mode
    lets one process at a time open a folder)."""
    tmp_path = tmp_path_factory.mktemp("server")
    settings = IngestSettings(source="sample", limit=ARTICLES, progress=False,
                              dead_letter=str(tmp_path / "dead_letter.jsonl"),
                              chunking=ChunkingSettings(max_chars=300),
                              store=StoreSettings(qdrant_path=str(tmp_path / "qdrant"), collection="wiki"))
    summary = run_ingest(settings, embedder=local_embedder)
    assert summary.points_written > ARTICLES  # some articles span several chunks
    shutil.copytree(tmp_path / "qdrant", tmp_path / "qdrant-copy")
    return settings.store, replace(settings.store, qdrant_path=str(tmp_path / "qdrant-copy"))


@pytest.fixture(scope="module")
def searcher(index, local_embedder):
    with Searcher.open(index[0], embedder=local_embedder) as searcher:
        yield searcher


def serving(app):
    """A started loopback server for `app` (port 0), and how to stop it."""
    server = make_server(app, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()

    def stop():
        server.shutdown()
        server.server_close()
        thread.join()

    return server, stop


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
        headers.setdefault("Content-Type", "application/json")
    connection = http.client.HTTPConnection(host, port, timeout=120)
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        raw = response.read()
    finally:
        connection.close()
    assert response.getheader("Content-Type") == "application/json; charset=utf-8"
    return Answer(status=response.status, headers={k.lower(): v for k, v in response.getheaders()},
                  json=json.loads(raw))


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
    assert answer.json["hits"] == [hit.to_dict() for hit in searcher.search(HAL_QUERY, k=4)]
    default = post(server, {"query": HAL_QUERY})
    assert default.json["k"] == 5 and len(default.json["hits"]) == 5


def test_filters_and_options_reach_the_searcher(server, searcher):
    body = {"query": HAL_QUERY, "k": 3, "titles": ["Accordion", "Acting"], "max_per_article": 1, "neighbours": 1,
            "mode": "dense", "score_threshold": -1.0}
    answer = post(server, body)
    assert answer.status == 200, answer.json
    assert sorted(h["title"] for h in answer.json["hits"]) == ["Accordion", "Acting"]
    assert answer.json["mode"] == "dense"
    expected = searcher.search(HAL_QUERY, k=3, titles=["Accordion", "Acting"], max_per_article=1, neighbours=1,
                               mode="dense", score_threshold=-1.0)
    assert answer.json["hits"] == [hit.to_dict() for hit in expected]
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


def test_context_chars_adds_the_rag_context_block(server, searcher):
    from search.context import build_context

    answer = post(server, {"query": HAL_QUERY, "k": 3, "context_chars": 600})
    assert answer.status == 200, answer.json
    context = answer.json["context"]
    assert context == build_context(searcher.search(HAL_QUERY, k=3), max_chars=600).to_dict()
    assert 0 < len(context["text"]) <= 600 and context["sources"]
    assert "context" in get(server, "q=HAL+9000&context_chars=300").json


def test_a_searcher_refusal_is_a_400_with_its_message(server):
    answer = post(server, {"query": HAL_QUERY, "mode": "sideways"})
    assert answer.status == 400 and "sideways" in answer.json["error"]


# -- auth --------------------------------------------------------------------------------
@pytest.mark.parametrize("token, headers, message", [
    (None, None, "bearer token is required"),
    ("wrong-token", None, "bearer token is wrong"),
    (TOKEN[:-1], None, "bearer token is wrong"),
    (None, {"Authorization": f"Basic {TOKEN}"}, "bearer token is required"),
    (None, {"Authorization": "Bearer "}, "bearer token is required"),
])
def test_searches_without_the_right_token_are_401(server, token, headers, message, caplog):
    caplog.set_level(logging.DEBUG)
    for answer in (get(server, "q=HAL", token=token, headers=headers),
                   post(server, {"query": "HAL"}, token=token, headers=headers)):
        assert answer.status == 401 and message in answer.json["error"]
        assert answer.headers["www-authenticate"].startswith("Bearer ")
        assert TOKEN not in json.dumps(answer.json) and TOKEN not in str(answer.headers)
    eventually(lambda: '"POST /search" 401' in caplog.text)  # the access log, path only, after the answer
    assert TOKEN not in caplog.text and (token is None or token not in caplog.text)


def test_health_and_openapi_need_no_token(server, searcher):
    health = call(server, "GET", "/health", token=None)
    assert health.status == 200
    assert health.json == {"status": "ok", "store": "ok", "embedder": "ok", "collection": "wiki",
                           "physical_collection": searcher.store.collection,
                           "model": "sentence-transformers/all-MiniLM-L6-v2", "dimension": 384, "auth": True}
    assert call(server, "GET", "/openapi.json", token=None).status == 200


# -- bad requests ------------------------------------------------------------------------
@pytest.mark.parametrize("query_string, status, message", [
    ("q=", 400, "the query is empty"),
    ("q=+++", 400, "the query is empty"),
    ("k=3", 400, "the query is missing"),
    ("q=HAL&k=0", 400, "k must be between 1 and 100, got 0"),
    ("q=HAL&k=101", 400, "k must be between 1 and 100, got 101"),
    ("q=HAL&k=three", 400, "k must be a whole number, got 'three'"),
    ("q=HAL&k=1&k=2", 400, "k is given 2 times"),
    ("q=HAL&neighbours=-1", 400, "neighbours must be between 0 and 5"),
    ("q=HAL&score_threshold=2", 400, "score_threshold is a cosine similarity, between -1 and 1"),
    ("q=HAL&mode=hybrid&mode=dense", 400, "mode is given 2 times"),
    ("q=HAL&score_threshold=high", 400, "score_threshold must be a number"),
    ("q=HAL&score_threshold=nan", 400, "score_threshold must be a number"),
    ("q=HAL&title=", 400, "titles must hold at least one value, and no empty one"),
    ("q=HAL&limit=3", 400, "unknown parameter 'limit': the parameters are q, k, mode"),
    ("q=" + "x" * 2001, 413, "the query is 2,001 characters long; the limit is 2,000"),
])
def test_bad_get_queries_are_4xx_with_a_message(server, query_string, status, message):
    answer = get(server, query_string)
    assert (answer.status, answer.json.keys()) == (status, {"error"})
    assert message in answer.json["error"]


@pytest.mark.parametrize("body, status, message", [
    ('{"query": "HAL", ', 400, "the body is not valid JSON: Expecting"),
    ("", 400, "the body is not valid JSON"),
    (b"\xff\xfe{", 400, "the body is not valid JSON"),
    ("[" * 100_00 + "]" * 100_00, 400, "the body is not valid JSON"),
    ('"HAL"', 400, "the body must be a JSON object"),
    ({"query": ""}, 400, "the query is empty"),
    ({"query": "   \n"}, 400, "the query is empty"),
    ({"k": 3}, 400, "the query is missing"),
    ({"query": 9000}, 400, "query must be a string, got 9000 (a number)"),
    ({"query": "HAL", "k": "5"}, 400, "k must be a whole number between 1 and 100, got '5' (a string)"),
    ({"query": "HAL", "k": 2.5}, 400, "k must be a whole number"),
    ({"query": "HAL", "k": True}, 400, "k must be a whole number between 1 and 100, got True (a boolean)"),
    ({"query": "HAL", "k": 0}, 400, "k must be between 1 and 100, got 0"),
    ({"query": "HAL", "titles": "Accordion"}, 400, "titles must be a list of strings"),
    ({"query": "HAL", "titles": []}, 400, "titles must hold at least one value"),
    ({"query": "HAL", "urls": [1]}, 400, "urls must be a list of strings"),
    ({"query": "HAL", "mode": 1}, 400, "mode must be a string"),
    ({"query": "HAL", "max_per_article": 0}, 400, "max_per_article must be at least 1, got 0"),
    ({"query": "HAL", "context_chars": 0}, 400, "context_chars must be between 1 and 100000"),
    ({"query": "HAL", "q": "HAL"}, 400, "unknown field 'q': the fields are query, k, mode"),
    ({"query": "HAL", "limit": 1, "top": 2}, 400, "unknown fields 'limit', 'top'"),
    ({"query": "x" * 2001}, 413, "the query is 2,001 characters long; the limit is 2,000"),
    ({"query": "HAL", "titles": ["x" * 100] * 700}, 413, "the limit is 65,536"),
])
def test_bad_post_bodies_are_4xx_with_a_message(server, body, status, message):
    answer = post(server, body)
    assert (answer.status, answer.json.keys()) == (status, {"error"}), answer.json
    assert message in answer.json["error"]


def test_unknown_paths_are_404_and_wrong_methods_405_with_allow(server):
    missing = call(server, "GET", "/nowhere")
    assert missing.status == 404 and "/search" in missing.json["error"]
    assert call(server, "GET", "/search/", token=None).status == 404
    wrong = call(server, "DELETE", "/search")
    assert (wrong.status, wrong.headers["allow"]) == (405, "GET, POST")
    assert "not 'DELETE'" in wrong.json["error"]
    health = call(server, "POST", "/health", body={"query": "x"})
    assert (health.status, health.headers["allow"]) == (405, "GET")


def test_openapi_describes_every_route_and_the_bearer_scheme(server):
    doc = call(server, "GET", "/openapi.json", token=None).json
    assert doc["openapi"].startswith("3.1.")
    assert set(doc["paths"]) == {"/health", "/search", "/openapi.json"}
    assert set(doc["paths"]["/search"]) == {"get", "post"}
    assert doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    search_post = doc["paths"]["/search"]["post"]
    assert search_post["security"] == [{"bearerAuth": []}] and doc["paths"]["/health"]["get"]["security"] == []
    assert {"200", "400", "401", "413"} <= set(search_post["responses"])
    request = doc["components"]["schemas"]["SearchRequest"]
    assert set(request["properties"]) == set(FIELDS) and request["additionalProperties"] is False
    assert request["properties"]["query"]["maxLength"] == 2000 and request["properties"]["k"]["maximum"] == 100
    parameters = {p["name"]: p for p in doc["paths"]["/search"]["get"]["parameters"]}
    assert set(parameters) == set(QUERY_PARAMETERS) and parameters["q"]["required"] is True
    assert parameters["title"]["schema"]["type"] == "array"
    refs = re.findall(r'"\$ref": "#/components/(\w+)/(\w+)"', json.dumps(doc))
    assert refs and all(name in doc["components"][kind] for kind, name in refs)  # no dangling reference


# -- the application alone, with a fake searcher where a failure must be provoked ----------
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


def wsgi_call(app, method, path, *, body=b"", token=TOKEN, length=True):
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "wsgi.input": io.BytesIO(body)}
    if length:
        environ["CONTENT_LENGTH"] = str(len(body))
    if token:
        environ["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    setup_testing_defaults(environ)
    seen = {}
    chunks = app(environ, lambda status, headers: seen.update(status=status, headers=dict(headers)))
    return int(seen["status"].split()[0]), seen["headers"], json.loads(b"".join(chunks))


def test_searches_run_concurrently_up_to_the_limit():
    fake = FakeSearcher(seconds=0.2)
    server, stop = serving(make_app(fake, token=TOKEN, max_concurrent=3))
    try:
        call(server, "GET", "/health", token=None)  # checked once now, then reused for HEALTH_SECONDS
        answers = []
        threads = [threading.Thread(target=lambda: answers.append(get(server, "q=HAL").status)) for _ in range(9)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        health = call(server, "GET", "/health", token=None)  # answered while searches queue
        for thread in threads:
            thread.join()
        took = time.monotonic() - started
    finally:
        stop()
    assert answers == [200] * 9 and health.status == 200
    assert fake.most_at_once == 3 and took < 9 * 0.2  # three at a time, not one


def test_an_outage_is_a_quick_503_that_names_the_part_not_its_address_and_health_says_so(caplog):
    down = FakeSearcher(EmbedderError("TEI server http://10.0.0.7:8080 still answered 503 to POST /embed"))
    app = make_app(down, token=TOKEN)
    status, _, body = wsgi_call(app, "POST", "/search", body=b'{"query": "HAL"}')
    assert status == 503 and "the embedder failed" in body["error"] and "10.0.0.7" not in body["error"]
    status, _, body = wsgi_call(app, "GET", "/health", token=None)
    assert (status, body["status"], body["embedder"], body["store"]) == (503, "unavailable", "unavailable", "ok")
    assert "10.0.0.7" not in json.dumps(body) and "10.0.0.7" in caplog.text  # the log has the details


def test_malformed_request_lines_get_their_answer_and_lone_surrogates_are_400(caplog):
    server, stop = serving(make_app(FakeSearcher(), token=TOKEN))
    try:
        host, port = server.server_address[:2]
        for line in (b"GARBAGE\r\n\r\n", b"GET /" + b"x" * 70000 + b" HTTP/1.1\r\n\r\n"):
            with socket.create_connection((host, port), timeout=10) as raw:
                raw.sendall(line)
                answer = b""
                while chunk := raw.recv(65536):
                    answer += chunk
                assert b"400" in answer or b"414" in answer  # answered, not dropped
        answer = post(server, '{"query": "HAL \\ud800"}')
        assert answer.status == 400 and "lone surrogate" in answer.json["error"]
        answer = post(server, '{"query": "HAL", "titles": ["\\udfff"]}')
        assert answer.status == 400 and "titles holds a lone surrogate" in answer.json["error"]
    finally:
        stop()
    assert "AttributeError" not in caplog.text


def test_the_server_keeps_a_bounded_pool_of_threads():
    server, stop = serving(make_app(FakeSearcher(), token=TOKEN))
    try:
        host, port = server.server_address[:2]
        idle = [socket.create_connection((host, port), timeout=10) for _ in range(100)]
        time.sleep(0.3)
        assert 0 < server.pool_threads <= 32 and server.request_queue_size >= 128
        for sock in idle:
            sock.close()
        assert get(server, "q=HAL").status == 200  # still answering
    finally:
        stop()


def test_backend_failures_are_503_and_surprises_500_without_details(caplog):
    status, _, body = wsgi_call(make_app(FakeSearcher(StoreError("Qdrant at http://q:6333 is down")), token=TOKEN),
                                "POST", "/search", body=b'{"query": "HAL"}')
    assert (status, body) == (503, {"error": "the search backend is unavailable (the store failed; the server's log "
                                             "says more): try again later"})
    status, _, body = wsgi_call(make_app(FakeSearcher(SearchError("mode 'x' is unknown")), token=TOKEN),
                                "GET", "/search", body=b"", length=False)
    assert (status, body) == (400, {"error": "the query is missing: give it as 'query' in a JSON body, or ?q= in "
                                             "the URL"})
    status, _, body = wsgi_call(make_app(FakeSearcher(SearchError("mode 'x' is unknown")), token=TOKEN),
                                "POST", "/search", body=b'{"query": "HAL", "mode": "x"}')
    assert (status, body) == (400, {"error": "mode 'x' is unknown"})
    status, _, body = wsgi_call(make_app(FakeSearcher(RuntimeError("secret detail")), token=TOKEN),
                                "POST", "/search", body=b'{"query": "HAL"}')
    assert status == 500 and "secret detail" not in body["error"] and "secret detail" in caplog.text


def test_a_post_without_content_length_is_411_and_an_open_app_asks_no_token():
    app = make_app(FakeSearcher(), token=TOKEN)
    assert wsgi_call(app, "POST", "/search", length=False)[0] == 411
    open_app = make_app(FakeSearcher(), token=None)
    status, _, body = wsgi_call(open_app, "POST", "/search", body=b'{"query": "HAL"}', token=None)
    assert (status, body["hits"]) == (200, [])
    assert wsgi_call(open_app, "GET", "/health", token=None)[2]["auth"] is False
    assert "bearerAuth" not in json.dumps(wsgi_call(open_app, "GET", "/openapi.json")[2]["paths"])
    with pytest.raises(ValueError, match="token is empty"):
        make_app(FakeSearcher(), token="  ")
    assert TOKEN not in repr(app)


def test_parse_search_passes_only_the_options_given():
    request = parse_search({"query": "HAL", "titles": ["A"], "neighbours": 0, "mode": None})
    assert request == SearchRequest(query="HAL", titles=("A",))
    assert request.search_options() == {"titles": ("A",)}
    assert parse_search({"query": "HAL", "score_threshold": 1, "neighbours": 2}).search_options() == {
        "score_threshold": 1.0, "neighbours": 2}
    with pytest.raises(Exception, match="the limit is 10"):
        parse_search({"query": "x" * 11}, max_query_chars=10)


# -- the command line ----------------------------------------------------------------------
def test_query_flags_map_to_the_search_options():
    args = build_parser().parse_args(["--mode", "hybrid", "--threshold", "0.3", "--title", "A", "--title", "B",
                                      "--article-id", "7", "--url", "u", "--max-per-article", "2",
                                      "--neighbours", "1", "--context", "900", "HAL"])
    assert search_options(args) == {"mode": "hybrid", "score_threshold": 0.3, "titles": ["A", "B"],
                                    "article_ids": ["7"], "urls": ["u"], "max_per_article": 2, "neighbours": 1}
    assert args.context == 900 and search_options(build_parser().parse_args(["HAL"])) == {}


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
    return subprocess.run([sys.executable, "-m", "search", *args], env=env, capture_output=True, text=True,
                          timeout=120, **kwargs)


@pytest.mark.parametrize("args, token, message", [
    (["serve"], None, "SEARCH_API_TOKEN is not set"),
    (["serve", "--host", "0.0.0.0", "--open"], None, "--open serves without a token, so only on a loopback host"),
    (["serve", "--host", "10.1.2.3", "--open"], TOKEN, "not '10.1.2.3'"),
])
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
    code = main(["--qdrant-path", store.qdrant_path, "--collection", store.collection, "--device", "cpu",
                 "--json", "--context", "600", "--mode", "dense", "--title", HAL_TITLE, "--neighbours", "1",
                 "-k", "2", HAL_QUERY])
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
        [sys.executable, "-m", "search", "serve", "--port", "0", "--qdrant-path", store.qdrant_path,
         "--collection", store.collection, "--device", "cpu"],
        env={**os.environ, "PYTHONPATH": str(ROOT), "SEARCH_API_TOKEN": TOKEN}, cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
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
