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
from tests.tei_server import Faults, TEIServer

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


@pytest.mark.parametrize("status", [413, 422, 424, 429])
def test_the_servers_errors_are_what_tei_declares(status):
    with TEIServer(faults=Faults(script=[status, status])) as server, httpx.Client(base_url=server.url) as http:
        embed = http.post("/embed", json={"inputs": ["a"]})
        openai = http.post("/v1/embeddings", json={"input": ["a"]})
    assert embed.status_code == openai.status_code == status
    validate(embed.json(), response_schema("/embed", "post", status))
    validate(openai.json(), response_schema("/v1/embeddings", "post", status))


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
