"""The loopback TEI server the tests use, and our client, held to TEI's own OpenAPI
document (v1.9.3, `tests/data/`): every answer the server gives validates against
the response schema TEI declares for it, and every request the client sends
against the request schema."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import jsonschema
import pytest

from ingest.embedders.tei import TEIEmbedder
from ingest.rehearsal.tei import Faults, TEIServer

DOCUMENT = json.loads((Path(__file__).parent / "data" / "tei-openapi-v1.9.3.json").read_text(encoding="utf-8"))


def json_schema(node):
    """OpenAPI 3.0's `nullable: true` as JSON Schema's null alternative; the rest as it is."""
    if isinstance(node, list):
        return [json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: json_schema(value) for key, value in node.items() if key not in ("nullable", "example")}
    if node.get("nullable"):
        return {"anyOf": [converted, {"type": "null"}]}
    return converted


COMPONENTS = json_schema(DOCUMENT["components"])


def validate(instance, schema: dict) -> None:
    jsonschema.validate(instance, {**schema, "components": COMPONENTS})


def response_schema(path: str, method: str, status: int) -> dict:
    responses = DOCUMENT["paths"][path][method]["responses"]
    return json_schema(responses[str(status)]["content"]["application/json"]["schema"])


def request_schema(path: str) -> dict:
    return json_schema(DOCUMENT["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"])


def test_the_document_is_teis_1_9_3():
    assert DOCUMENT["info"]["version"] == "1.9.3"
    assert {"/info", "/embed", "/v1/embeddings", "/health"} <= set(DOCUMENT["paths"])


def test_the_servers_info_and_embeddings_are_what_tei_declares():
    with TEIServer(model_id="BAAI/bge-small-en-v1.5") as server, httpx.Client(base_url=server.url) as http:
        validate(http.get("/info").json(), response_schema("/info", "get", 200))
        validate(http.post("/embed", json={"inputs": ["a", "b"]}).json(), response_schema("/embed", "post", 200))
        for encoding in ("float", "base64"):
            body = http.post("/v1/embeddings", json={"input": ["a"], "encoding_format": encoding}).json()
            validate(body, response_schema("/v1/embeddings", "post", 200))


def as_documented(openai_error: dict) -> dict:
    """An OpenAI-compatible error as the document names its fields: TEI declares
    `error_type` and serialises it as "type" (`#[serde(rename(serialize = "type"))]`,
    router/src/http/types.rs:509-515 at v1.9.3), so the wire has "type" and no
    "error_type"."""
    assert "error_type" not in openai_error
    return {("error_type" if key == "type" else key): value for key, value in openai_error.items()}


@pytest.mark.parametrize("status", [413, 422, 424, 429])
def test_the_servers_errors_are_what_tei_declares(status):
    with TEIServer(faults=Faults(script=[status, status])) as server, httpx.Client(base_url=server.url) as http:
        embed = http.post("/embed", json={"inputs": ["a"]})
        openai = http.post("/v1/embeddings", json={"input": ["a"]})
    assert embed.status_code == openai.status_code == status
    validate(embed.json(), response_schema("/embed", "post", status))
    validate(as_documented(openai.json()), response_schema("/v1/embeddings", "post", status))


def test_a_sick_backend_fails_every_request_with_424_and_its_health_check_with_503():
    """TEI fails every input of a backend batch that failed (core/src/infer.rs:581-621,
    424: server.rs:1891-1901), and once one failed its /health runs a forward pass,
    503 while the backend stays broken (backends/src/lib.rs:301-333, server.rs:70-78)."""
    with TEIServer(faults=Faults(sick_after=1)) as server, httpx.Client(base_url=server.url) as http:
        assert http.post("/embed", json={"inputs": ["a"]}).status_code == 200
        assert http.get("/health").status_code == 200
        failed = [http.post("/embed", json={"inputs": ["a", "b"]}) for _ in range(3)]
        openai = http.post("/v1/embeddings", json={"input": ["a"]})
        health = http.get("/health")
    assert [r.status_code for r in failed] == [424, 424, 424] and openai.status_code == 424
    assert failed[0].json()["error_type"] == "Backend" and failed[0].json()["error"].startswith("Backend error: ")
    validate(failed[0].json(), response_schema("/embed", "post", 424))
    validate(as_documented(openai.json()), response_schema("/v1/embeddings", "post", 424))
    assert health.status_code == 503 and health.json() == {"error": "unhealthy", "error_type": "Unhealthy"}
    validate(health.json(), response_schema("/health", "get", 503))


@pytest.mark.parametrize("wire, path", [("json", "/embed"), ("base64", "/v1/embeddings")])
def test_the_clients_requests_are_what_tei_accepts(wire, path):
    with TEIServer(max_client_batch_size=4) as server:
        embedder = TEIEmbedder(server.url, wire=wire, max_concurrency=2)
        try:
            embedder.embed_passages([f"passage {i}" for i in range(9)])
            embedder.embed_queries(["a query"])
        finally:
            embedder.close()
        sent = server.received.requests
    assert len(sent) >= 4  # the probe, three batches of at most 4, the query
    for body in sent:
        validate(body, request_schema(path))
