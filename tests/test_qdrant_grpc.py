"""What the server store sends over gRPC (production's path: `prefer_grpc=True`),
captured by an in-process gRPC server built from qdrant-client's own generated
service descriptors, and held to Qdrant v1.19.0's protocol: every field set in
every request exists in v1.19's .proto messages (`tests/data/`). A field a server
does not know is dropped without an error by protobuf; this is where that shows."""

from __future__ import annotations

import json
from concurrent import futures
from pathlib import Path

import grpc
import numpy as np
import pytest
from google.protobuf import message_factory
from qdrant_client import QdrantClient
from qdrant_client.grpc import (
    collections_pb2,
    collections_service_pb2,
    points_pb2,
    points_service_pb2,
    qdrant_pb2,
)

from ingest import lexical
from ingest.store import ChunkSelection, PayloadFilter
from ingest.store.server import ServerStore
from schemas import KNOWN_MODELS, Article, Chunk, CollectionSpec

V1_19 = json.loads((Path(__file__).parent / "data" / "qdrant-v1.19.0-grpc-fields.json").read_text())["messages"]
SERVICES = {
    service.full_name: service
    for module in (points_service_pb2, collections_service_pb2, qdrant_pb2)
    for service in module.DESCRIPTOR.services_by_name.values()
}
SPEC = CollectionSpec(
    model=KNOWN_MODELS["BAAI/bge-small-en-v1.5"], chunking={"max_chars": 1000}, sparse=lexical.default_spec()
)


class Recorder(grpc.GenericRpcHandler):
    """Answers every Qdrant RPC with a minimal valid response, recording the request."""

    def __init__(self, version: str = "") -> None:
        self.calls: list[tuple[str, object]] = []
        self.collections: set[str] = set()
        self.version = version  # what the health check answers

    def service(self, details):
        _, service, method = details.method.split("/")
        descriptor = SERVICES[service].methods_by_name[method]
        request_type = message_factory.GetMessageClass(descriptor.input_type)
        response_type = message_factory.GetMessageClass(descriptor.output_type)

        def answer(request, context):
            self.calls.append((f"{service}/{method}", request))
            response = response_type()
            if method == "CollectionExists":
                response.result.exists = request.collection_name in self.collections
            elif method == "Create":
                self.collections.add(request.collection_name)
                response.result = True
            elif method in ("Update", "UpdateAliases", "Delete") and service.endswith("Collections"):
                response.result = True
            elif (
                hasattr(response, "result")
                and response.DESCRIPTOR.fields_by_name["result"].message_type is points_pb2.UpdateResult.DESCRIPTOR
            ):
                response.result.status = points_pb2.UpdateStatus.Completed
            elif method == "Count":
                response.result.count = 1
            elif method == "HealthCheck":
                response.version = self.version
            return response

        return grpc.unary_unary_rpc_method_handler(
            answer, request_deserializer=request_type.FromString, response_serializer=response_type.SerializeToString
        )


@pytest.fixture(params=["1.17.0", "1.19.0"])
def grpc_server(request):
    recorder = Recorder(request.param)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), handlers=[recorder])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield port, recorder
    server.stop(grace=None)


def unknown_to_v1_19(message, path: str = "") -> list[str]:
    """The fields set in `message` (recursively) that v1.19's protos do not have."""
    name = message.DESCRIPTOR.full_name
    if name.startswith("google.protobuf."):
        return []
    known = V1_19.get(name)
    if known is None:
        return [f"{path or name}: message {name} is not in v1.19"]
    unknown = []
    for field, value in message.ListFields():
        where = f"{path}.{field.name}" if path else f"{name}.{field.name}"
        if field.name not in known:
            unknown.append(where)
        elif field.message_type is not None:
            if field.message_type.GetOptions().map_entry:
                values = [v for v in value.values()] if field.message_type.fields_by_name["value"].message_type else []
            else:
                values = list(value) if field.is_repeated else [value]
            for item in values:
                unknown += unknown_to_v1_19(item, where)
    return unknown


def test_every_store_call_sends_only_what_qdrant_1_19_knows(grpc_server):
    port, recorder = grpc_server
    client = QdrantClient(
        host="127.0.0.1", port=port + 1, grpc_port=port, prefer_grpc=True, check_compatibility=False, timeout=5
    )
    store = ServerStore(client, "wiki", location="grpc test")
    article = Article("a", "https://en.wikipedia.org/wiki/A", "A", "text " * 20)
    pairs = [(article, Chunk("a", i, f"text {i}", i, i + 1, f"A\ntext {i}")) for i in range(3)]
    vectors = np.random.default_rng(0).standard_normal((3, 384)).astype(np.float32)
    query, sparse = vectors[0], lexical.query_vector("text about A", lexical.default_spec())
    try:
        store.ensure_collection(SPEC, bulk_load=True)
        store.upsert_pairs(pairs, vectors)
        store.search(query, limit=5)
        store.search(query, limit=5, sparse=sparse, where=PayloadFilter(titles=("A",)), score_threshold=0.1)
        store.search(query, limit=5, sparse=sparse, group_size=2)
        store.count_excluding(["b"])
        store.delete_chunks([ChunkSelection("a", from_index=2, indices=(0,))])
        store.delete_articles(["a"])
        list(store.scan_chunks())
        store.stored_vectors([pairs[0][1].point_id])
        store.point_alias("wikipedia", "wiki", replace_alias=True)
        store.resolve("wikipedia")
        store.delete_alias("wikipedia")
    finally:
        store.close()
    methods = {method for method, _ in recorder.calls}
    assert {
        "qdrant.Collections/Create",
        "qdrant.Points/CreateFieldIndex",
        "qdrant.Points/Upsert",
        "qdrant.Points/Query",
        "qdrant.Points/QueryGroups",
        "qdrant.Points/Count",
        "qdrant.Points/Delete",
        "qdrant.Points/Scroll",
        "qdrant.Points/Get",
        "qdrant.Collections/UpdateAliases",
        "qdrant.Collections/ListAliases",
    } <= methods
    unknown = [f"{method}: {field}" for method, request in recorder.calls for field in unknown_to_v1_19(request)]
    assert not unknown, "fields Qdrant v1.19 would drop without a word:\n" + "\n".join(unknown)
    create = next(request for method, request in recorder.calls if method == "qdrant.Collections/Create")
    # the graph's m as it will stay, indexing deferred (Qdrant's bulk-load guidance as of 1.19)
    assert create.hnsw_config.m == 16 and create.optimizers_config.indexing_threshold == 0
    # int8 in RAM, the float32 originals and the payloads on disk: as `memory` tiers from 1.19, older flags before
    if recorder.version == "1.19.0":
        assert create.quantization_config.scalar.memory == collections_pb2.Memory.Value("Pinned")
        assert create.vectors_config.params.memory == create.payload.memory == collections_pb2.Memory.Value("Cold")
        assert not create.quantization_config.scalar.HasField("always_ram") and not create.HasField("on_disk_payload")
    else:
        assert create.quantization_config.scalar.always_ram and create.on_disk_payload
        assert create.vectors_config.params.on_disk and not create.vectors_config.params.HasField("memory")
    hybrid = [request for method, request in recorder.calls if method == "qdrant.Points/Query" and request.prefetch]
    assert hybrid and hybrid[0].query.rrf.k == 2 and hybrid[0].prefetch[0].params.quantization.rescore


def test_the_check_catches_a_field_v1_19_lacks(monkeypatch):
    request = points_pb2.QueryPoints(collection_name="wiki", limit=3)
    assert unknown_to_v1_19(request) == []
    older = {**V1_19, "qdrant.QueryPoints": {k: v for k, v in V1_19["qdrant.QueryPoints"].items() if k != "limit"}}
    monkeypatch.setitem(globals(), "V1_19", older)
    assert unknown_to_v1_19(request) == ["qdrant.QueryPoints.limit"]


def test_grpc_is_dialled_one_port_above_the_urls_not_on_6334(grpc_server, tmp_path):
    """qdrant-client dials gRPC on 6334 whatever port the URL names (1.20:
    qdrant_remote.py:55-72, 103-110): the docker-compose cluster publishes REST on 7333 and
    gRPC on 7334, so `--qdrant-url http://localhost:7333` reached 6334, another server's
    port. The store now dials the port one above the URL's (or --qdrant-grpc-port)."""
    from ingest.settings import StoreSettings
    from ingest.store import open_store

    port, recorder = grpc_server
    settings = StoreSettings(qdrant_url=f"http://127.0.0.1:{port - 1}", collection="wiki")
    assert settings.grpc_port_used == port and settings.address.endswith(f"(gRPC on port {port})")
    store = open_store(settings)
    try:
        store.exists()
    finally:
        store.close()
    assert ("qdrant.Collections/CollectionExists") in {method for method, _ in recorder.calls}  # it got here
    explicit = StoreSettings(qdrant_url="http://127.0.0.1:7333", grpc_port=port)
    store = open_store(explicit)
    try:
        store.exists()
    finally:
        store.close()
    assert sum(method == "qdrant.Collections/CollectionExists" for method, _ in recorder.calls) == 2


def test_a_refused_connection_names_the_grpc_port_it_was_to(tmp_path, caplog):
    from ingest.cli import main as ingest_main
    from ingest.rehearsal.standin_router import free_port

    port = free_port()
    code = ingest_main(["verify", "--qdrant-url", f"http://127.0.0.1:{port}", "--collection", "wiki"])
    assert code == 1 and f"server at http://127.0.0.1:{port} (gRPC on port {port + 1})" in caplog.text
