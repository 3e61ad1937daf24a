"""The Qdrant stand-in (tests/qdrant_server.py) through the real qdrant-client over REST.

Each test talks to the server on loopback exactly as the store does with a Qdrant server,
so what is checked is what that client sends and parses: the calls round-trip, strict mode
refuses what Qdrant 1.19 refuses (same status, same text), the rate limiter answers 429 as
Qdrant does (and qdrant-client turns it into the exception the store sees), and the
collection status goes yellow, grey and green as a server's does. Then the project's own
`ServerStore` runs over it, with and without Qdrant Cloud's strict mode."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import httpx
import numpy as np
import pytest
from qdrant_client import QdrantClient, models
from qdrant_client.common.client_exceptions import ResourceExhaustedResponse
from qdrant_client.http.exceptions import UnexpectedResponse
from qdrant_client.hybrid.fusion import reciprocal_rank_fusion

from tests.qdrant_server import CLOUD_STRICT_MODE, OpenApiValidator, QdrantStandIn

INDEX_REQUIRED = (
    'Bad request: Index required but not found for "{key}" of one of the following types: '
    "[{types}]. Help: Create an index for this key or use a different filter."
)


class FakeClock:
    """Monotonic seconds a test moves itself: rate limiters and optimizations without sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def rest_client(server: QdrantStandIn) -> QdrantClient:
    return QdrantClient(url=server.url, prefer_grpc=False, check_compatibility=False, timeout=5)


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def server(clock):
    with QdrantStandIn(clock=clock) as running:
        yield running


@pytest.fixture
def strict_server(clock):
    with QdrantStandIn(strict=True, clock=clock) as running:
        yield running


@pytest.fixture
def client(server):
    qdrant = rest_client(server)
    yield qdrant
    qdrant.close()


@pytest.fixture
def strict_client(strict_server):
    qdrant = rest_client(strict_server)
    yield qdrant
    qdrant.close()


def error_of(raised: pytest.ExceptionInfo) -> tuple[int, str]:
    """Status and `status.error` of a refused call (Qdrant's error envelope)."""
    exc = raised.value
    body = exc.structured()
    assert set(body) == {"status", "time"} and isinstance(body["time"], float)
    return exc.status_code, body["status"]["error"]


def chunks(client: QdrantClient, name: str = "c", n: int = 6, **create) -> None:
    """A collection of `n` points over two articles: dense [cos, sin] vectors, a sparse one,
    and the store's payload fields."""
    client.create_collection(
        name,
        vectors_config=models.VectorParams(size=2, distance=models.Distance.COSINE),
        sparse_vectors_config={"bm25": models.SparseVectorParams(modifier=models.Modifier.IDF)},
        **create,
    )
    if not n:
        return
    angles = np.linspace(0.0, np.pi / 2, n)
    client.upsert(
        name,
        wait=True,
        points=models.Batch(
            ids=list(range(1, n + 1)),
            vectors={
                "": [[float(np.cos(a)), float(np.sin(a))] for a in angles],
                "bm25": [models.SparseVector(indices=[i % 3, 7], values=[1.0, 0.5]) for i in range(n)],
            },
            payloads=[
                {
                    "id": "a" if i < n // 2 else "b",
                    "title": "A" if i < n // 2 else "B",
                    "chunk_index": i,
                    "score": i / 10,
                }
                for i in range(n)
            ],
        ),
    )


# -- the calls round-trip --------------------------------------------------------------------
def test_collections_are_created_with_everything_a_server_keeps_and_read_back(client):
    """What local mode ignores (HNSW, optimizers, quantization, shards, payload placement, strict
    mode) comes back from GET /collections/{name} as it was set, with Qdrant 1.19's defaults for
    the rest; PATCH updates it; payload indexes show in `payload_schema` with their point counts."""
    assert client.info().version == "1.19.0"
    assert client.create_collection(
        "wiki",
        vectors_config=models.VectorParams(size=2, distance=models.Distance.COSINE, on_disk=True),
        sparse_vectors_config={"bm25": models.SparseVectorParams(modifier=models.Modifier.IDF)},
        hnsw_config=models.HnswConfigDiff(m=0, ef_construct=64),
        optimizers_config=models.OptimizersConfigDiff(indexing_threshold=5000),
        quantization_config=models.ScalarQuantization(
            scalar=models.ScalarQuantizationConfig(type=models.ScalarType.INT8, quantile=0.99, always_ram=True)
        ),
        strict_mode_config=models.StrictModeConfig(enabled=True, max_query_limit=50),
        shard_number=2,
        replication_factor=2,
        write_consistency_factor=2,
        on_disk_payload=True,
        payload=models.PayloadStorageParams(memory=models.Memory.COLD),
        metadata={"model": "m", "dims": 2},
    )
    assert [c.name for c in client.get_collections().collections] == ["wiki"]
    assert client.collection_exists("wiki") and not client.collection_exists("other")
    client.create_payload_index("wiki", "id", field_schema=models.PayloadSchemaType.KEYWORD, wait=True)
    client.create_payload_index(
        "wiki",
        "chunk_index",
        wait=True,
        field_schema=models.IntegerIndexParams(type=models.IntegerIndexType.INTEGER, lookup=True, range=False),
    )
    client.upsert(
        "wiki",
        wait=True,
        points=[
            models.PointStruct(
                id=1,
                vector={"": [1.0, 0.0], "bm25": models.SparseVector(indices=[3], values=[1.0])},
                payload={"id": "a", "chunk_index": 0},
            ),
            models.PointStruct(id=2, vector={"": [0.0, 1.0]}, payload={"id": "b"}),
        ],
    )

    info = client.get_collection("wiki")
    assert (info.status, info.optimizer_status, info.points_count, info.segments_count) == ("green", "ok", 2, 1)
    assert info.indexed_vectors_count == 0  # m = 0: no graph
    params = info.config.params
    assert params.vectors == models.VectorParams(size=2, distance=models.Distance.COSINE, on_disk=True)
    assert params.sparse_vectors == {"bm25": models.SparseVectorParams(modifier=models.Modifier.IDF)}
    assert (params.shard_number, params.replication_factor, params.write_consistency_factor) == (2, 2, 2)
    assert params.on_disk_payload is True and params.payload.memory == models.Memory.COLD
    assert (info.config.hnsw_config.m, info.config.hnsw_config.ef_construct) == (0, 64)
    assert info.config.hnsw_config.full_scan_threshold == 10000  # config/config.yaml's default
    assert info.config.optimizer_config.indexing_threshold == 5000
    assert info.config.optimizer_config.deleted_threshold == 0.2
    assert info.config.quantization_config.scalar.quantile == 0.99
    assert info.config.strict_mode_config.enabled and info.config.strict_mode_config.max_query_limit == 50
    assert info.config.metadata == {"model": "m", "dims": 2}
    assert info.payload_schema["id"].data_type == models.PayloadSchemaType.KEYWORD
    assert info.payload_schema["id"].points == 2 and info.payload_schema["chunk_index"].points == 1
    assert info.payload_schema["chunk_index"].params.range is False

    assert (
        client.update_collection(
            "wiki",
            metadata={"dims": None, "run": 7},
            hnsw_config=models.HnswConfigDiff(m=32),
            optimizers_config=models.OptimizersConfigDiff(indexing_threshold=20000),
            strict_mode_config=models.StrictModeConfig(max_query_limit=10),
        )
        is True
    )
    info = client.get_collection("wiki")
    assert info.config.metadata == {"model": "m", "run": 7}  # merged, a null removes a key
    assert (info.config.hnsw_config.m, info.config.hnsw_config.ef_construct) == (32, 64)
    assert info.config.optimizer_config.indexing_threshold == 20000
    assert info.config.strict_mode_config.max_query_limit == 10 and info.config.strict_mode_config.enabled

    assert client.delete_collection("wiki") is True
    assert not client.collection_exists("wiki")
    with pytest.raises(UnexpectedResponse) as raised:
        client.get_collection("wiki")
    assert error_of(raised) == (404, "Not found: Collection `wiki` doesn't exist!")


def test_points_are_written_counted_scrolled_retrieved_and_deleted(client):
    chunks(client, n=6)
    assert client.count("c", exact=True).count == 6
    article_a = models.Filter(must=[models.FieldCondition(key="id", match=models.MatchValue(value="a"))])
    assert client.count("c", count_filter=article_a, exact=True).count == 3

    fields = models.PayloadSelectorInclude(include=["chunk_index"])
    page, offset = client.scroll("c", limit=4, with_payload=fields, with_vectors=False)
    assert [p.id for p in page] == [1, 2, 3, 4] and offset == 5
    assert page[0].payload == {"chunk_index": 0} and page[0].vector is None
    rest, offset = client.scroll("c", limit=4, offset=offset, with_payload=fields)
    assert [p.id for p in rest] == [5, 6] and offset is None

    (point,) = client.retrieve("c", ids=[6], with_payload=["title"], with_vectors=True)
    assert point.payload == {"title": "B"} and point.vector[""] == pytest.approx([0.0, 1.0], abs=1e-6)
    assert point.vector["bm25"].indices == [2, 7]

    client.set_payload("c", payload={"seen": True}, points=article_a, wait=True)
    client.overwrite_payload("c", payload={"id": "b", "only": 1}, points=[6], wait=True)
    client.delete_payload("c", keys=["seen"], points=[1], wait=True)
    payloads = {p.id: p.payload for p in client.retrieve("c", ids=[1, 2, 6])}
    assert payloads[1].get("seen") is None and payloads[2]["seen"] is True and payloads[6] == {"id": "b", "only": 1}

    client.delete("c", points_selector=models.PointIdsList(points=[1]), wait=True)
    client.delete(
        "c",
        points_selector=models.FilterSelector(
            filter=models.Filter(must=[models.FieldCondition(key="chunk_index", range=models.Range(gte=4))])
        ),
        wait=True,
    )
    assert sorted(p.id for p in client.scroll("c", limit=10)[0]) == [2, 3, 4, 6]  # 6 has no chunk_index now


def test_queries_dense_fused_with_weights_and_grouped(server, client):
    """Dense nearest neighbours; prefetch + weighted RRF gives what qdrant-client's own fusion
    gives for the two rankings (local mode applies the weights); grouping by article."""
    chunks(client, n=6)
    dense = client.query_points("c", query=[1.0, 0.0], limit=3, with_payload=True)
    assert [p.id for p in dense.points] == [1, 2, 3] and dense.points[0].score == pytest.approx(1.0)
    assert dense.points[0].payload["chunk_index"] == 0
    bare = httpx.post(server.url + "/collections/c/points/query", json={"query": [1.0, 0.0]}).json()["result"]
    assert len(bare["points"]) == 6 and bare["points"][0]["payload"] is None  # REST defaults: limit 10, no payload

    sparse = models.SparseVector(indices=[2, 7], values=[1.0, 1.0])
    branches = [models.Prefetch(query=[0.0, 1.0], limit=6), models.Prefetch(query=sparse, using="bm25", limit=6)]
    for weights in ([1.0, 1.05], [3.0, 0.1]):
        fused = client.query_points(
            "c", prefetch=branches, limit=4, query=models.RrfQuery(rrf=models.Rrf(k=2, weights=weights))
        ).points
        rankings = [
            client.query_points("c", query=[0.0, 1.0], limit=6).points,
            client.query_points("c", query=sparse, using="bm25", limit=6).points,
        ]
        expected = reciprocal_rank_fusion(rankings, limit=4, ranking_constant_k=2, weights=weights)
        assert [(p.id, p.score) for p in fused] == [(p.id, pytest.approx(p.score)) for p in expected]

    groups = client.query_points_groups("c", group_by="id", query=[1.0, 0.0], limit=2, group_size=2).groups
    assert [(g.id, [h.id for h in g.hits]) for g in groups] == [("a", [1, 2]), ("b", [4, 5])]


def test_aliases_lead_to_their_collection_everywhere(client):
    chunks(client, "v1", n=2)
    chunks(client, "v2", n=3)
    create = models.CreateAliasOperation(create_alias=models.CreateAlias(collection_name="v1", alias_name="live"))
    assert client.update_collection_aliases(change_aliases_operations=[create])
    assert client.count("live").count == 2 and client.get_collection("live").points_count == 2
    assert client.collection_exists("live")
    client.update_collection_aliases(
        change_aliases_operations=[
            models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name="live")),
            models.CreateAliasOperation(create_alias=models.CreateAlias(collection_name="v2", alias_name="live")),
        ]
    )
    assert [(a.alias_name, a.collection_name) for a in client.get_aliases().aliases] == [("live", "v2")]
    assert [a.alias_name for a in client.get_collection_aliases("v2").aliases] == ["live"]
    assert client.get_collection_aliases("v1").aliases == []
    assert client.query_points("live", query=[1.0, 0.0], limit=10).points[-1].id == 3
    with pytest.raises(UnexpectedResponse) as raised:
        client.update_collection_aliases(
            change_aliases_operations=[
                models.CreateAliasOperation(create_alias=models.CreateAlias(collection_name="gone", alias_name="x"))
            ]
        )
    assert error_of(raised) == (404, "Not found: Collection `gone` doesn't exist!")


def test_bodies_are_held_to_qdrant_1_19s_openapi_document(server, client):
    """Requests the 1.19 server could not read are refused as actix refuses them (400, "Format
    error in JSON body"); answers validate against the same document's response schemas."""
    chunks(client, n=3)
    check = OpenApiValidator.load()
    for path, template in (
        ("/collections/c", "/collections/{collection_name}"),
        (
            "/collections/c/optimizations?with=queued,completed,idle_segments",
            "/collections/{collection_name}/optimizations",
        ),
        ("/collections", "/collections"),
        ("/aliases", "/aliases"),
        ("/", "/"),
    ):
        answer = httpx.get(server.url + path)
        assert answer.status_code == 200 and check.response_errors(template, "get", 200, answer.json()) == []
    for path, body in (
        ("points/scroll", {"limit": 2, "with_vector": True}),
        ("points/count", {}),
        ("points/query", {"query": [1.0, 0.0], "with_payload": True}),
        ("points", {"ids": [1]}),
        ("points/query/groups", {"query": [1.0, 0.0], "group_by": "id"}),
    ):
        answer = httpx.post(f"{server.url}/collections/c/{path}", json=body)
        template = "/collections/{collection_name}/" + path
        assert answer.status_code == 200 and check.response_errors(template, "post", 200, answer.json()) == []

    answer = httpx.post(server.url + "/collections/c/points/scroll", json={"limit": "ten"})
    assert answer.status_code == 400 and answer.json() == {
        "status": {"error": "Format error in JSON body: limit: 'ten' is not of type 'integer', 'null'"},
        "time": 0.0,
    }
    # qdrant-client 1.20 has a `substring` match that a 1.19 server does not know
    with pytest.raises(UnexpectedResponse) as raised:
        client.count(
            "c",
            count_filter=models.Filter(
                must=[models.FieldCondition(key="title", match=models.MatchSubstring(substring="A"))]
            ),
        )
    status, message = error_of(raised)
    assert status == 400 and message.startswith("Format error in JSON body: filter:")


# -- strict mode -------------------------------------------------------------------------------------
def test_strict_mode_refuses_reads_and_writes_filtering_on_an_unindexed_key(strict_client):
    """Qdrant Cloud's default: the exact 400 of lib/collection/src/operations/verification/mod.rs:138-143
    for count, query (its prefetches too) and delete by filter, until the key has an integer index,
    which serves both `range` and `match: any`."""
    chunks(strict_client, n=6)
    assert strict_client.get_collection("c").config.strict_mode_config == models.StrictModeConfigOutput(
        **CLOUD_STRICT_MODE.model_dump(exclude_none=True)
    )
    tail = models.Filter(must=[models.FieldCondition(key="chunk_index", range=models.Range(gte=4))])
    some = models.Filter(must=[models.FieldCondition(key="chunk_index", match=models.MatchAny(any=[0, 1]))])
    refused = {
        "count range": lambda: strict_client.count("c", count_filter=tail),
        "count any": lambda: strict_client.count("c", count_filter=some),
        "query": lambda: strict_client.query_points("c", query=[1.0, 0.0], query_filter=some),
        "prefetch": lambda: strict_client.query_points(
            "c", prefetch=[models.Prefetch(query=[1.0, 0.0], filter=tail)], query=models.RrfQuery(rrf=models.Rrf(k=2))
        ),
        "scroll": lambda: strict_client.scroll("c", scroll_filter=some),
        "delete": lambda: strict_client.delete("c", points_selector=models.FilterSelector(filter=tail), wait=True),
        "set payload": lambda: strict_client.set_payload("c", payload={"x": 1}, points=some, wait=True),
    }
    for what, call in refused.items():
        with pytest.raises(UnexpectedResponse) as raised:
            call()
        types = "float, integer" if what in ("count range", "prefetch", "delete") else "integer"
        assert error_of(raised) == (400, INDEX_REQUIRED.format(key="chunk_index", types=types)), what
    assert strict_client.count("c").count == 6  # nothing was deleted

    strict_client.create_payload_index("c", "chunk_index", field_schema=models.PayloadSchemaType.INTEGER, wait=True)
    assert strict_client.count("c", count_filter=tail).count == 2
    assert strict_client.count("c", count_filter=some).count == 2
    assert len(strict_client.query_points("c", query=[1.0, 0.0], query_filter=some).points) == 2
    strict_client.delete("c", points_selector=models.FilterSelector(filter=tail), wait=True)
    assert strict_client.count("c").count == 4


def test_strict_mode_names_the_first_unindexed_key_and_the_indexes_that_would_serve_it(strict_client):
    """Conditions in Qdrant's order (must, must_not, should, min_should); what each needs: a UUID
    string a keyword or uuid index, emptiness any index, an id none (unindexed_field.rs:171-409)."""
    chunks(strict_client, n=2)
    strict_client.create_payload_index("c", "id", field_schema=models.PayloadSchemaType.KEYWORD, wait=True)

    def refusal(flt: models.Filter) -> str:
        with pytest.raises(UnexpectedResponse) as raised:
            strict_client.count("c", count_filter=flt)
        return error_of(raised)[1]

    field = models.FieldCondition
    indexed = field(key="id", match=models.MatchValue(value="a"))
    assert refusal(
        models.Filter(
            must=[indexed],
            should=[field(key="title", match=models.MatchValue(value="A"))],
            must_not=[field(key="flag", match=models.MatchValue(value=True))],
        )
    ) == INDEX_REQUIRED.format(key="flag", types="bool")
    uuid = "0b31e274-dc65-40e4-8493-67ebed4bcf10"
    assert refusal(
        models.Filter(
            min_should=models.MinShould(
                conditions=[field(key="ref", match=models.MatchAny(any=[uuid])), indexed], min_count=1
            )
        )
    ) == INDEX_REQUIRED.format(key="ref", types="keyword, uuid")
    assert refusal(
        models.Filter(must=[models.Filter(should=[models.IsEmptyCondition(is_empty=models.PayloadField(key="tags"))])])
    ) == INDEX_REQUIRED.format(
        key="tags",
        types="bool, datetime, float, geo, integer, keyword, keyword (with prefix: true), "
        "text, text (with phrase_matching: true), uuid",
    )
    assert refusal(
        models.Filter(
            must=[
                models.NestedCondition(
                    nested=models.Nested(
                        key="parts", filter=models.Filter(must=[field(key="n", range=models.Range(lt=3))])
                    )
                )
            ]
        )
    ) == INDEX_REQUIRED.format(key="parts[].n", types="float, integer")
    no_index_needed = models.Filter(
        must=[
            indexed,
            models.HasIdCondition(has_id=[1, 2]),
            field(key="title", match=models.MatchExcept(**{"except": []})),
        ]
    )
    assert strict_client.count("c", count_filter=no_index_needed).count == 1
    # a keyword index does not serve an integer match
    strict_client.create_payload_index("c", "chunk_index", field_schema=models.PayloadSchemaType.KEYWORD, wait=True)
    assert refusal(
        models.Filter(must=[field(key="chunk_index", match=models.MatchValue(value=1))])
    ) == INDEX_REQUIRED.format(key="chunk_index", types="integer")


def test_strict_mode_wants_group_by_on_an_index_that_serves_match(strict_client):
    """verification/mod.rs:364-389: no index, or one without `match` (a float index; an integer
    index given as params without `lookup: true`), refuses the grouped query."""
    chunks(strict_client, n=4)
    group = lambda key: strict_client.query_points_groups("c", group_by=key, query=[1.0, 0.0], limit=2)  # noqa: E731
    with pytest.raises(UnexpectedResponse) as raised:
        group("id")
    assert error_of(raised) == (
        400,
        'Bad request: Index required but not found for "id". Help: Create an index supporting `match` for this key.',
    )
    strict_client.create_payload_index("c", "score", field_schema=models.PayloadSchemaType.FLOAT, wait=True)
    strict_client.create_payload_index(
        "c", "chunk_index", wait=True, field_schema=models.IntegerIndexParams(type=models.IntegerIndexType.INTEGER)
    )
    for key, kind in (("score", "Float"), ("chunk_index", "Integer")):
        with pytest.raises(UnexpectedResponse) as raised:
            group(key)
        assert error_of(raised) == (
            400,
            f'Bad request: Index of type "{kind}" found for "{key}". '
            "Help: Create an index supporting `match` for this key.",
        )
    strict_client.create_payload_index("c", "id", field_schema=models.PayloadSchemaType.KEYWORD, wait=True)
    assert [g.id for g in group("id").groups] == ["a", "b"]


def test_a_collection_keeps_its_own_strict_mode_over_the_servers(strict_client, client):
    """A collection created with a strict mode diff gets it over the server's default
    (toc/create_collection.rs:208-224); updates and retrievals are governed separately; a server
    without strict mode filters freely; the payload index count is capped (src/common/update.rs:221-230)."""
    unindexed = models.Filter(must=[models.FieldCondition(key="title", match=models.MatchValue(value="A"))])
    chunks(client, n=2)
    assert client.count("c", count_filter=unindexed).count == 1
    assert client.get_collection("c").config.strict_mode_config is None

    chunks(
        strict_client,
        n=2,
        strict_mode_config=models.StrictModeConfig(unindexed_filtering_retrieve=True, max_payload_index_count=1),
    )
    config = strict_client.get_collection("c").config.strict_mode_config
    assert (config.enabled, config.unindexed_filtering_retrieve, config.unindexed_filtering_update) == (
        True,
        True,
        False,
    )
    assert strict_client.count("c", count_filter=unindexed).count == 1
    with pytest.raises(UnexpectedResponse) as raised:
        strict_client.delete("c", points_selector=models.FilterSelector(filter=unindexed))
    assert error_of(raised) == (400, INDEX_REQUIRED.format(key="title", types="keyword"))
    strict_client.create_payload_index("c", "title", field_schema=models.PayloadSchemaType.KEYWORD, wait=True)
    with pytest.raises(UnexpectedResponse) as raised:
        strict_client.create_payload_index("c", "id", field_schema=models.PayloadSchemaType.KEYWORD, wait=True)
    assert error_of(raised) == (
        400,
        "Bad request: Collection already has the maximum number of payload indices (1)."
        " Help: Please delete an existing index before creating a new one.",
    )
    strict_client.update_collection("c", strict_mode_config=models.StrictModeConfig(enabled=False))
    strict_client.delete(
        "c",
        points_selector=models.FilterSelector(
            filter=models.Filter(must=[models.FieldCondition(key="chunk_index", match=models.MatchValue(value=0))])
        ),
        wait=True,
    )
    assert strict_client.count("c").count == 1


def test_strict_mode_limits_and_full_scans(client):
    """The other checks a request passes (verification/mod.rs:78-111, 287-304, query.rs:40-131,
    update.rs:155-182): `limit`, upsert batch size, `exact`, and with `search_allow_exact: false` a
    dense query (or a dense prefetch) on a collection without an HNSW graph."""
    chunks(
        client,
        n=2,
        hnsw_config=models.HnswConfigDiff(m=0),
        strict_mode_config=models.StrictModeConfig(
            enabled=True, max_query_limit=5, upsert_max_batchsize=2, search_allow_exact=False
        ),
    )
    sparse = models.SparseVector(indices=[7], values=[1.0])
    dense_branch = models.Prefetch(query=[1.0, 0.0], limit=3)
    refused = {
        "limit": (
            lambda: client.scroll("c", limit=6),
            'Limit exceeded 6 > 5 for "limit". Help: Reduce the "limit" parameter to or below 5.',
        ),
        "upsert": (
            lambda: client.upsert("c", points=models.Batch(ids=[7, 8, 9], vectors=[[1.0, 0.0]] * 3)),
            'Limit exceeded 3 > 2 for "upsert limit". Help: Reduce the "upsert limit" parameter to or below 2.',
        ),
        "exact": (lambda: client.count("c"), "Exact search disabled!. Help: Set exact=false."),
        "full scan": (
            lambda: client.query_points("c", query=[1.0, 0.0], limit=3),
            "Request is forbidden because global vector indexing is disabled (hnsw_config.m = 0). Help: "
            "Use tenant-specific filter, enable global vector indexing or enable strict mode "
            "`search_allow_exact` option",
        ),
    }
    for what, (call, message) in refused.items():
        with pytest.raises(UnexpectedResponse) as raised:
            call()
        assert error_of(raised) == (400, f"Bad request: {message}"), what
    with pytest.raises(UnexpectedResponse) as raised:
        client.query_points("c", prefetch=[dense_branch], query=models.RrfQuery(rrf=models.Rrf()), limit=3)
    assert error_of(raised) == (400, f"Bad request: {refused['full scan'][1]}")
    assert client.count("c", exact=False).count == 2
    assert len(client.query_points("c", query=sparse, using="bm25", limit=3).points) == 2  # sparse: always indexed
    client.update_collection("c", hnsw_config=models.HnswConfigDiff(m=16))
    assert (
        len(client.query_points("c", prefetch=[dense_branch], query=models.RrfQuery(rrf=models.Rrf()), limit=3).points)
        == 2
    )


# -- rate limits ---------------------------------------------------------------------------------------
def test_the_write_rate_limit_answers_429_with_retry_after(client, clock):
    """A bucket of `write_rate_limit` tokens refilled over a minute (lib/common/common/src/rate_limiting.rs);
    a write costs the points it touches; qdrant-client raises ResourceExhaustedResponse on a 429
    with Retry-After, UnexpectedResponse(429) on one without (a request larger than the bucket)."""
    chunks(client, n=0, strict_mode_config=models.StrictModeConfig(enabled=True, write_rate_limit=6))
    batch = lambda n, start=0: models.Batch(ids=list(range(start, start + n)), vectors=[[1.0, 0.0]] * n)  # noqa: E731
    client.upsert("c", points=batch(4), wait=True)  # 6 - 4 = 2 left
    with pytest.raises(ResourceExhaustedResponse) as raised:
        client.upsert("c", points=batch(4, 10), wait=True)
    assert raised.value.retry_after_s == 20  # (4 - 2) tokens at 6/60 a second
    assert str(raised.value) == (
        "Rate limiting exceeded: Write rate limit exceeded: Operation requires 4 tokens "
        "but only 2.0 were available. Retry after 20s"
    )
    clock.advance(20)
    client.upsert("c", points=batch(4, 10), wait=True)
    assert client.count("c").count == 8

    clock.advance(60)  # full again: 6
    client.delete(
        "c",
        points_selector=models.FilterSelector(filter=models.Filter(must=[models.HasIdCondition(has_id=[0, 1, 2])])),
        wait=True,
    )  # costs the 3 points it matches
    client.delete("c", points_selector=models.PointIdsList(points=[10, 11]), wait=True)  # 2
    with pytest.raises(ResourceExhaustedResponse) as raised:
        client.delete("c", points_selector=models.PointIdsList(points=[12, 13]), wait=True)
    assert raised.value.retry_after_s == 10 and "requires 2 tokens but only 1.0 were available" in str(raised.value)

    with pytest.raises(UnexpectedResponse) as raised:  # can never fit: no Retry-After
        client.upsert("c", points=batch(7, 100), wait=True)
    assert "retry-after" not in raised.value.headers
    assert error_of(raised) == (
        429,
        "Rate limiting exceeded: Write rate limit exceeded, request larger than rate "
        "limiter capacity, please try to split your request",
    )
    assert client.count("c").count == 3  # reads are not limited


def test_refuse_writes_makes_the_next_writes_429_and_reads_pass(server, client):
    chunks(client, n=2)
    server.refuse_writes(2, retry_after=3)
    for _ in range(2):
        with pytest.raises(ResourceExhaustedResponse) as raised:
            client.upsert("c", points=[models.PointStruct(id=9, vector={"": [1.0, 0.0]})], wait=True)
        assert raised.value.retry_after_s == 3 and "Retry after 3s" in str(raised.value)
        assert client.count("c").count == 2
    client.upsert("c", points=[models.PointStruct(id=9, vector={"": [1.0, 0.0]})], wait=True)
    assert client.count("c").count == 3
    assert [
        status for method, path, status in server.requests if method == "PUT" and path == "/collections/c/points"
    ] == [200, 429, 429, 200]


def test_a_server_wide_read_rate_limit_counts_filter_conditions(clock):
    """Reads cost 1 plus the filter's conditions (shard_ops.rs:279-285, 393-399), retrievals their ids."""
    with QdrantStandIn(read_rate_limit=4, clock=clock) as server:
        client = rest_client(server)
        chunks(client, n=2)
        some = models.Filter(
            must=[
                models.FieldCondition(key="id", match=models.MatchValue(value="a")),
                models.HasIdCondition(has_id=[1]),
            ]
        )
        assert client.count("c", count_filter=some).count == 1  # 3 tokens
        with pytest.raises(ResourceExhaustedResponse) as raised:
            client.retrieve("c", ids=[1, 2])
        assert raised.value.retry_after_s == 15 and str(raised.value).startswith(
            "Rate limiting exceeded: Read rate limit exceeded: Operation requires 2 tokens but only 1.0"
        )
        client.close()


# -- collection status ---------------------------------------------------------------------------------
def test_turning_indexing_on_runs_an_optimization_that_a_restart_pauses_until_an_update(server, client, clock):
    """Points written with m=0 are indexed once m > 0: yellow for `optimize_seconds`, then green. A
    restart while it runs turns the collection grey, and it stays grey, whatever time passes, until an
    update arrives (a metadata-only PATCH does not recreate the optimizers, collection_meta_ops.rs:200-217;
    an empty optimizers diff does); points and aliases survive the restart."""
    chunks(client, n=5, hnsw_config=models.HnswConfigDiff(m=0))
    client.update_collection_aliases(
        change_aliases_operations=[
            models.CreateAliasOperation(create_alias=models.CreateAlias(collection_name="c", alias_name="live"))
        ]
    )
    info = client.get_collection("c")
    assert (info.status, info.indexed_vectors_count, client.get_optimizations("c").running) == ("green", 0, [])

    client.update_collection("c", hnsw_config=models.HnswConfigDiff(m=16))
    info, optimizations = client.get_collection("c"), client.get_optimizations("c")
    assert (info.status, info.indexed_vectors_count) == ("yellow", 0)
    (running,) = optimizations.running
    assert (running.optimizer, running.status, running.segments[0].points_count) == ("indexing", "optimizing", 5)
    assert optimizations.summary.queued_optimizations == 0

    clock.advance(0.1)
    server.restart()
    clock.advance(60)
    assert client.get_collection("live").status == "grey" and client.get_collection("c").points_count == 5
    optimizations = client.get_optimizations("c")
    assert optimizations.running == [] and optimizations.summary.model_dump() == {
        "queued_optimizations": 1,
        "queued_segments": 1,
        "queued_points": 5,
        "idle_segments": 0,
    }
    client.update_collection("c", metadata={"note": "x"})
    assert client.get_collection("c").status == "grey"

    client.update_collection("c", optimizers_config=models.OptimizersConfigDiff())
    info = client.get_collection("c")
    assert (info.status, info.indexed_vectors_count) == ("yellow", 0)
    clock.advance(0.19)  # 0.3 s in all, less the 0.1 s it ran before the restart
    assert client.get_collection("c").status == "yellow"
    clock.advance(0.02)
    info, optimizations = client.get_collection("c"), client.get_optimizations("c")
    assert (info.status, info.indexed_vectors_count) == ("green", 5)
    assert optimizations.running == [] and optimizations.summary.queued_optimizations == 0
    server.restart()
    assert client.get_collection("c").status == "green"


def test_an_upsert_resumes_a_paused_optimization_and_indexing_threshold_zero_defers_it_too(server, client, clock):
    chunks(client, n=3, optimizers_config=models.OptimizersConfigDiff(indexing_threshold=0))
    assert client.get_collection("c").config.hnsw_config.m == 16
    client.update_collection("c", optimizers_config=models.OptimizersConfigDiff(indexing_threshold=10000))
    server.restart()
    assert client.get_collection("c").status == "grey"
    client.upsert("c", points=[models.PointStruct(id=9, vector={"": [1.0, 0.0]})], wait=True)
    assert client.get_collection("c").status == "yellow"
    clock.advance(0.31)
    info = client.get_collection("c")
    assert (info.status, info.indexed_vectors_count, info.points_count) == ("green", 4, 4)
    completed = httpx.get(server.url + "/collections/c/optimizations?with=completed").json()["result"]["completed"]
    assert [(c["optimizer"], c["status"], c["segments"][0]["points_count"]) for c in completed] == [
        ("indexing", "done", 4)
    ]


# -- a second process ------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_server_runs_as_a_process_another_process_can_use(tmp_path):
    port = free_port()
    script = Path(__file__).resolve().parent / "qdrant_server.py"
    process = subprocess.Popen(
        [
            sys.executable,
            str(script),
            "--port",
            str(port),
            "--strict",
            "--write-rate-limit",
            "100",
            "--optimize-seconds",
            "0.05",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout.readline().strip() == f"Ready on http://127.0.0.1:{port}"
        client = QdrantClient(url=f"http://127.0.0.1:{port}", prefer_grpc=False, check_compatibility=False, timeout=5)
        chunks(client, n=2)
        config = client.get_collection("c").config.strict_mode_config
        assert (config.enabled, config.unindexed_filtering_retrieve, config.write_rate_limit) == (True, False, 100)
        with pytest.raises(UnexpectedResponse) as raised:
            client.count(
                "c",
                count_filter=models.Filter(must=[models.FieldCondition(key="id", match=models.MatchValue(value="a"))]),
            )
        assert error_of(raised) == (400, INDEX_REQUIRED.format(key="id", types="keyword"))
        client.close()
    finally:
        process.terminate()  # SIGTERM: it stops serving and exits 0
        _, errors = process.communicate(timeout=10)
    assert process.returncode == 0, errors


# -- the project's server store over it ----------------------------------------------------------------------
def test_the_server_store_loads_searches_and_deletes_over_rest():
    """A bulk load through `ServerStore`: indexing deferred, points in, dense, hybrid and grouped
    searches, chunk and article deletes, then `finish_bulk_load` waits out the optimization (and
    resumes it when a restart left the collection grey) before the alias moves."""
    from ingest import lexical
    from ingest.store import PayloadFilter
    from ingest.store.base import ChunkSelection
    from ingest.store.layout import HNSW_M, PAYLOAD_INDEXES
    from ingest.store.server import ServerStore
    from tests.test_store import SPEC, pairs

    spec = replace(SPEC, sparse=lexical.default_spec())
    with QdrantStandIn(optimize_seconds=0.05) as server:
        store = ServerStore.connect(server.url, collection="wiki_v1", prefer_grpc=False, timeout=5)
        try:
            assert store.ensure_collection(spec, bulk_load=True) is True
            info = store.client.get_collection("wiki_v1")
            assert info.config.hnsw_config.m == 0 or info.config.optimizer_config.indexing_threshold == 0
            assert set(info.payload_schema) == set(PAYLOAD_INDEXES) and info.config.params.sparse_vectors
            items, vectors = pairs(6)
            store.upsert_pairs(items, vectors)
            assert store.count() == 6 and store.ensure_collection(spec) is False
            assert store.client.get_collection("wiki_v1").indexed_vectors_count == 0

            hit = store.search(vectors[2], limit=3)[0]
            assert hit.payload["chunk_index"] == 2 and hit.similarity == pytest.approx(1.0, abs=1e-5)
            sparse = lexical.query_vector(items[4][1].text, spec.sparse)
            fused = store.search(vectors[4], limit=3, sparse=sparse, where=PayloadFilter(titles=("A",)))
            assert 4 in [h.payload["chunk_index"] for h in fused] and len(fused) == 3
            assert store.search(vectors[4], limit=3, sparse=sparse, where=PayloadFilter(titles=("B",))) == []
            assert len(store.search(vectors[0], limit=5, group_size=2)) == 2  # one article: two chunks

            assert sorted(ref.chunk_index for page in store.scan_chunks(batch=4) for ref in page) == list(range(6))
            assert store.delete_chunks([ChunkSelection("a", from_index=4)]) == 2
            assert store.delete_chunks([ChunkSelection("a", indices=(0,))]) == 1
            assert store.count() == 3

            assert store.finish_bulk_load(wait_seconds=0) is False  # the optimization has just started
            server.restart()
            assert server.collection_status("wiki_v1") == "grey"
            assert store.finish_bulk_load(wait_seconds=5, poll_seconds=0.01) is True
            info = store.client.get_collection("wiki_v1")
            assert (info.status, info.indexed_vectors_count, info.config.hnsw_config.m) == ("green", 3, HNSW_M)

            store.point_alias("wiki", "wiki_v1", replace_alias=False)
            assert store.resolve("wiki").collection == "wiki_v1" and store.resolve("wiki").is_alias
            assert store.aliases_of("wiki_v1") == ["wiki"]
            assert store.delete_articles(["a"]) == 3 and store.count() == 0
        finally:
            store.close()


def test_the_server_store_under_qdrant_clouds_strict_mode():
    """The store's payload indexes serve its filtered searches and article deletes; deleting some
    chunks filters on `chunk_index` (a Range and a MatchAny), which needs an integer index."""
    from ingest.store import PayloadFilter
    from ingest.store.base import ChunkSelection
    from ingest.store.server import ServerStore
    from tests.test_store import SPEC, pairs

    with QdrantStandIn(strict=True) as server:
        store = ServerStore.connect(server.url, collection="wiki", prefer_grpc=False, timeout=5)
        try:
            store.ensure_collection(SPEC, bulk_load=True)
            items, vectors = pairs(6)
            store.upsert_pairs(items, vectors)
            assert store.search(vectors[1], limit=2, where=PayloadFilter(titles=("A",)))[0].payload["chunk_index"] == 1
            assert store.count_excluding(["b"]) == 6

            # the stale-chunk deletes of a reindex: a Range and a MatchAny on `chunk_index`, indexed before the load
            assert store.delete_chunks([ChunkSelection("a", from_index=4)]) == 2

            # a collection built without that index (by an earlier version) is refused the delete...
            store.client.delete_payload_index("wiki", "chunk_index", wait=True)
            for selection, types in (
                (ChunkSelection("a", from_index=2), "float, integer"),
                (ChunkSelection("a", indices=(0, 1)), "integer"),
            ):
                with pytest.raises(UnexpectedResponse) as raised:
                    store.delete_chunks([selection])
                assert error_of(raised) == (400, INDEX_REQUIRED.format(key="chunk_index", types=types))
            # ...until a run opens it: the missing index is added before any write
            assert store.at("wiki").ensure_collection(SPEC) is False
            assert "chunk_index" in store.client.get_collection("wiki").payload_schema
            assert store.delete_chunks([ChunkSelection("a", from_index=2)]) == 2
            assert store.delete_articles(["a"]) == 2 and store.count() == 0
        finally:
            store.close()


def test_unknown_routes_and_collections_answer_like_qdrant(server):
    answer = httpx.get(server.url + "/collections/nope/points/count")
    assert answer.status_code == 404
    answer = httpx.post(server.url + "/collections/nope/points/count", json={})
    assert (answer.status_code, answer.json()["status"]["error"]) == (
        404,
        "Not found: Collection `nope` doesn't exist!",
    )
    assert re.fullmatch(r'\{"status":\{"error":"[^"]+"\},"time":[0-9.e-]+\}', answer.text)
    assert httpx.put(server.url + "/collections/x", json={}).json()["result"] is True
    answer = httpx.put(server.url + "/collections/x", json={})
    assert (answer.status_code, answer.json()["status"]["error"]) == (
        409,
        "Wrong input: Collection `x` already exists!",
    )


def test_the_incremental_reindex_of_a_shrunk_article_under_strict_mode(tmp_path):
    """On Qdrant Cloud (strict mode for new collections) the weekly reindex failed the first
    time an article shrank: its stale-chunk delete filters on `chunk_index`, which had no
    payload index. Loaded, then reindexed with the first article cut to one chunk."""
    import json

    from ingest.chunking import ChunkingSettings
    from ingest.jobs import run_ingest
    from ingest.settings import IngestSettings, StoreSettings
    from tests.counting_embedder import CountingEmbedder

    long = " ".join(f"Sentence {i} of the first article says something of its own." for i in range(40))
    rows = [
        {"id": "1", "url": "https://e.org/1", "title": "One", "text": long},
        {"id": "2", "url": "https://e.org/2", "title": "Two", "text": "A short one. Two sentences."},
    ]
    source = tmp_path / "rows.jsonl"
    with QdrantStandIn(strict=True, optimize_seconds=0.01) as server:
        settings = IngestSettings(
            progress=False,
            chunking=ChunkingSettings(max_chars=300),
            index_wait=10,
            dead_letter=str(tmp_path / "dl.jsonl"),
            store=StoreSettings(
                qdrant_url=server.url, prefer_grpc=False, collection="wiki", state_dir=str(tmp_path / "state")
            ),
        )
        source.write_text("".join(json.dumps(r) + "\n" for r in rows))
        first = run_ingest(IngestSettings(**{**_fields(settings), "source": str(source)}), embedder=CountingEmbedder())
        assert first.points_written > 5
        rows[0]["text"] = "The first article, cut short. It has two sentences now."
        source.write_text("".join(json.dumps(r) + "\n" for r in rows))
        second = run_ingest(
            IngestSettings(**{**_fields(settings), "source": str(source)}), embedder=CountingEmbedder(), mode="reindex"
        )
        assert (second.changed, second.points_deleted) == (1, first.points_written - 2)
        assert second.collection_points == 2


def _fields(settings):
    from dataclasses import fields

    return {f.name: getattr(settings, f.name) for f in fields(settings)}


def test_the_store_rides_out_qdrants_rate_limit_after_its_retry_after():
    """Strict mode's write limit answers 429 with Retry-After (src/actix/helpers.rs:210-259);
    qdrant-client raises ResourceExhaustedResponse; the store waits that long and writes."""
    import time as clock

    from ingest.store.server import ServerStore
    from tests.test_store import SPEC, pairs

    with QdrantStandIn() as server:
        store = ServerStore.connect(server.url, collection="wiki", prefer_grpc=False, timeout=5)
        try:
            store.ensure_collection(SPEC)
            items, vectors = pairs(3)
            server.refuse_writes(2, retry_after=1)
            started = clock.monotonic()
            store.upsert_pairs(items, vectors)
            assert clock.monotonic() - started >= 2.0 and store.count() == 3
            assert [status for _, path, status in server.requests if path.endswith("/points")][:3] == [429, 429, 200]
        finally:
            store.close()
