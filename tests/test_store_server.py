"""Bulk-load settings against a server. Local mode has no HNSW graph and no payload
indexes, so this records what the real qdrant-client sends to a Qdrant-protocol
server on loopback (REST), answering as Qdrant does."""

import json
import threading
import time
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from qdrant_client import models

from ingest import lexical
from ingest.settings import ServerLayout
from ingest.store import PayloadFilter
from ingest.store.base import RRF_K, RRF_WEIGHTS
from ingest.store.layout import HNSW_M, PAYLOAD_INDEXES
from ingest.store.server import ServerStore
from tests.test_store import SPEC, pairs


def collection_info(status: str, m: int) -> dict:
    """GET /collections/{name}'s result, built with qdrant-client's own models (what it parses)."""
    info = models.CollectionInfo(
        status=status,
        optimizer_status="ok",
        segments_count=1,
        payload_schema={},
        config=models.CollectionConfig(
            params=models.CollectionParams(vectors=models.VectorParams(size=2, distance=models.Distance.COSINE)),
            hnsw_config=models.HnswConfig(m=m, ef_construct=100, full_scan_threshold=10000),
            optimizer_config=models.OptimizersConfig(default_segment_number=0, flush_interval_sec=5),
        ),
    )
    return json.loads(info.model_dump_json(exclude_none=True))


class QdrantRecorder(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the client expects
    log: list = []
    exists = False
    statuses: list = []  # what GET /collections/wiki reports, one per call (then green)
    hnsw_m = 0

    def _answer(self, result):
        body = json.dumps({"result": result, "status": "ok", "time": 0.0}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _record(self):
        length = int(self.headers.get("content-length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.log.append((self.command, self.path.split("?")[0], body))

    def do_GET(self):
        self._record()
        if self.path == "/":
            body = json.dumps({"title": "qdrant", "version": "1.19.0"}).encode()
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.path.endswith("/exists"):
            self._answer({"exists": type(self).exists})
        elif self.path.split("?")[0] == "/collections/wiki":
            status = type(self).statuses.pop(0) if type(self).statuses else "green"
            self._answer(collection_info(status, type(self).hnsw_m))
        else:
            self.send_error(404)

    def do_PUT(self):
        self._record()
        path = self.path.split("?")[0]
        if path.endswith(("/points", "/index")):
            self._answer({"operation_id": len(self.log), "status": "completed"})
        else:
            type(self).exists = True
            self._answer(True)

    def do_PATCH(self):
        self._record()
        self._answer(True)

    def do_POST(self):  # searches: one stored point, as Qdrant returns it
        self._record()
        point = {
            "id": "00000000-0000-0000-0000-000000000001",
            "version": 1,
            "score": 0.5,
            "payload": {"id": "a", "title": "A", "text": "t", "chunk_index": 0},
            "vector": {"": [0.6, 0.8], "bm25": {"indices": [1], "values": [1.0]}},
        }
        if self.path.split("?")[0].endswith("/groups"):
            self._answer({"groups": [{"id": "a", "hits": [point]}]})
        else:
            self._answer({"points": [point]})

    def log_message(self, *args):
        pass


@pytest.fixture
def qdrant_server():
    QdrantRecorder.log, QdrantRecorder.exists, QdrantRecorder.statuses, QdrantRecorder.hnsw_m = [], False, [], 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), QdrantRecorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", QdrantRecorder.log
    deadline = time.monotonic() + 10  # the client checks the server's version on a thread of its own
    while ("GET", "/", None) not in QdrantRecorder.log and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)
    server.shutdown()
    server.server_close()


def test_a_bulk_load_indexes_payload_first_defers_indexing_and_restores_it(qdrant_server):
    url, log = qdrant_server
    store = ServerStore.connect(url, collection="wiki", prefer_grpc=False, timeout=5)
    try:
        assert store.ensure_collection(SPEC, bulk_load=True)
        items, vectors = pairs(3)
        store.upsert_pairs(items, vectors.astype(np.float32))
        store.finish_bulk_load()
    finally:
        store.close()
    writes = [(method, path, body) for method, path, body in log if method in ("PUT", "PATCH")]
    create = writes[0]
    assert create[:2] == ("PUT", "/collections/wiki")
    # Qdrant's 1.19 bulk-load guidance: the graph's m as it will stay, indexing off until the end,
    # payloads (and, quantized, the float32 originals) in the cold tier
    assert create[2]["hnsw_config"]["m"] == HNSW_M and create[2]["optimizers_config"] == {"indexing_threshold": 0}
    assert create[2]["payload"] == {"memory": "cold"} and "on_disk_payload" not in create[2]
    assert create[2]["metadata"]["embedding_model"]["name"] == SPEC.model.name
    indexes = {body["field_name"]: body["field_schema"] for method, path, body in writes[1:5]}
    assert indexes == {"id": "keyword", "title": "keyword", "url": "keyword", "chunk_index": "integer"}
    assert set(indexes) == set(PAYLOAD_INDEXES) and all(p.endswith("/index") for _, p, _ in writes[1:5])
    assert writes[5][1] == "/collections/wiki/points" and len(writes[5][2]["batch"]["ids"]) == 3
    assert writes[6] == (
        "PATCH",
        "/collections/wiki",
        {"hnsw_config": {"m": HNSW_M}, "optimizers_config": {"indexing_threshold": 10_000}},
    )


def created(url: str, log: list, layout: ServerLayout = ServerLayout()) -> dict:
    """The body of the PUT that creates "wiki" with SPEC (and `layout`)."""
    store = ServerStore.connect(url, collection="wiki", prefer_grpc=False, timeout=5, layout=layout)
    try:
        store.ensure_collection(SPEC)
    finally:
        store.close()
    return next(body for method, path, body in log if method == "PUT" and path == "/collections/wiki")


def test_an_ordinary_run_keeps_the_graph_on(qdrant_server):
    create = created(*qdrant_server)
    assert create["hnsw_config"]["m"] == HNSW_M


def test_hybrid_collections_and_queries_on_a_server(qdrant_server):
    """What a server gets: the sparse vector config with Qdrant's IDF, each point's
    sparse vector beside the dense one, and hybrid queries as prefetch + RRF (with
    the filter on each branch, and grouping by article through the groups API)."""
    url, log = qdrant_server
    store = ServerStore.connect(url, collection="wiki", prefer_grpc=False, timeout=5)
    try:
        store.ensure_collection(replace(SPEC, sparse=lexical.default_spec()))
        items, vectors = pairs(2)
        store.upsert_pairs(items, vectors)
        query = np.array([3.0, 4.0], dtype=np.float32)
        sparse = lexical.query_vector("text about Kubrick", lexical.default_spec())
        hits = store.search(query, sparse=sparse, limit=5, where=PayloadFilter(titles=("A",)))
        grouped = store.search(query, sparse=sparse, limit=5, group_size=2)
        dense = store.search(query, limit=5, score_threshold=0.2)
    finally:
        store.close()
    create = next(body for method, path, body in log if method == "PUT" and path == "/collections/wiki")
    assert create["sparse_vectors"] == {"bm25": {"modifier": "idf"}}
    batch = next(body["batch"] for method, path, body in log if path == "/collections/wiki/points")
    assert len(batch["vectors"][""]) == 2 and len(batch["vectors"]["bm25"]) == 2
    assert (
        batch["vectors"]["bm25"][0]["indices"]
        == lexical.passage_vector(
            items[0][1].text,  # no title
            lexical.default_spec(),
        )[0]
    )
    searches = [(path, body) for method, path, body in log if method == "POST"]
    (path, body), (group_path, group_body), (_, dense_body) = searches
    assert path == "/collections/wiki/points/query"
    assert body["query"] == {"rrf": {"k": RRF_K, "weights": list(RRF_WEIGHTS)}}
    dense_branch, sparse_branch = body["prefetch"]
    assert dense_branch["query"] == [3.0, 4.0] and dense_branch.get("using") is None
    assert sparse_branch["using"] == "bm25"
    assert sparse_branch["query"] == {"indices": sparse.indices, "values": sparse.values}
    title_filter = {"must": [{"key": "title", "match": {"any": ["A"]}}]}
    assert dense_branch["filter"] == sparse_branch["filter"] == body["filter"] == title_filter
    assert body["limit"] == 5 and dense_branch["limit"] == sparse_branch["limit"] == 50
    assert body["with_vector"] is True  # the cosine of each fused hit is computed from its dense vector
    assert group_path.endswith("/points/query/groups") and group_body["group_by"] == "id"
    assert group_body["group_size"] == 2 and group_body["query"] == {"rrf": {"k": RRF_K, "weights": list(RRF_WEIGHTS)}}
    assert "prefetch" not in dense_body and dense_body["score_threshold"] == 0.2
    rescored = {"quantization": {"rescore": True, "oversampling": 2.0}}  # int8 candidates, float32 rescoring
    assert dense_body["params"] == dense_branch["params"] == rescored and "params" not in sparse_branch
    assert hits[0].similarity == pytest.approx(1.0) and hits[0].score == 0.5  # [3, 4] and [0.6, 0.8]
    assert grouped[0].payload["title"] == "A" and dense[0].similarity == 0.5


def test_finishing_a_bulk_load_waits_for_the_index_within_a_bound(qdrant_server):
    """The graph is turned on, then the collection is polled until it reports green;
    past the wait, it says so (the caller keeps the alias where it was)."""
    url, log = qdrant_server
    QdrantRecorder.statuses = ["yellow", "yellow", "green"]
    store = ServerStore.connect(url, collection="wiki", prefer_grpc=False, timeout=5)
    try:
        assert store.finish_bulk_load(wait_seconds=10, poll_seconds=0.01) is True
        assert [entry for entry in log if entry[0] == "PATCH"] == [  # it read m=0: deferred by an earlier version
            (
                "PATCH",
                "/collections/wiki",
                {"hnsw_config": {"m": HNSW_M}, "optimizers_config": {"indexing_threshold": 10_000}},
            )
        ]
        assert sum(1 for method, path, _ in log if (method, path) == ("GET", "/collections/wiki")) == 3  # m, 2 polls
        QdrantRecorder.statuses, QdrantRecorder.hnsw_m = ["yellow"] * 1000, HNSW_M
        started = time.monotonic()
        assert store.finish_bulk_load(wait_seconds=0.2, poll_seconds=0.01) is False
        assert 0.2 <= time.monotonic() - started < 5
        assert sum(1 for method, _, _ in log if method == "PATCH") == 1  # the graph was on already
    finally:
        store.close()


def test_a_server_collection_is_laid_out_for_the_whole_corpus(qdrant_server):
    """By default: int8 vectors in RAM, the float32 originals on disk. Shards, replicas and
    write consistency when asked for (a cluster)."""
    url, log = qdrant_server
    create = created(url, log)
    # Qdrant 1.19's tiers: the originals cold (on disk), the int8 copy pinned in RAM
    assert create["vectors"] == {"size": 384, "distance": "Cosine", "memory": "cold"}
    assert create["quantization_config"] == {"scalar": {"type": "int8", "quantile": 0.99, "memory": "pinned"}}
    assert not {"shard_number", "replication_factor", "write_consistency_factor"} & set(create)  # the server's

    QdrantRecorder.log.clear()
    QdrantRecorder.exists = False
    create = created(url, log, ServerLayout(quantization="none", shards=6, replicas=2, write_consistency=2))
    assert create["vectors"] == {"size": 384, "distance": "Cosine"} and "quantization_config" not in create
    assert (create["shard_number"], create["replication_factor"], create["write_consistency_factor"]) == (6, 2, 2)


def test_the_layout_comes_from_flags_and_the_environment_and_is_checked():
    from ingest.modal_settings import store_settings_from_env
    from ingest.settings import SettingsError

    env = {"QDRANT_URL": "http://q:6333", "QDRANT_SHARDS": "12", "QDRANT_REPLICAS": "2", "QDRANT_QUANTIZATION": "none"}
    assert store_settings_from_env(env).layout == ServerLayout(quantization="none", shards=12, replicas=2)
    with pytest.raises(SettingsError, match="--write-consistency 3 cannot exceed --replicas 2"):
        ServerLayout(replicas=2, write_consistency=3)
    with pytest.raises(SettingsError, match="--shards must be at least 1"):
        ServerLayout(shards=0)
    with pytest.raises(SettingsError, match="--quantization 'pq'"):
        ServerLayout(quantization="pq")
