"""The OpenAPI 3.1 description of the HTTP search service (`search.server`),
served at `GET /openapi.json`.

It is built from the same limits the server enforces, so the two cannot drift:

>>> doc = openapi_document(max_query_chars=2000, max_body_bytes=65536, auth=True)
>>> sorted(doc["paths"])
['/health', '/openapi.json', '/search']
"""

from __future__ import annotations

from typing import Any

from search.api import MAX_K, MAX_NEIGHBOURS, MODES

MAX_CONTEXT_CHARS = 100_000
ERROR_STATUSES = {
    "400": "A bad request: an empty or malformed query, a wrong type, an unknown field, a value out of range",
    "401": "The bearer token is missing or wrong",
    "411": "A POST without a Content-Length header",
    "413": "The query or the body is over the server's limit",
    "503": "The search backend (Qdrant or the embedder) failed; the message says how",
}


def openapi_document(*, max_query_chars: int, max_body_bytes: int, auth: bool, version: str = "0.1.0") -> dict:
    """The OpenAPI 3.1 document; `auth`: whether `/search` asks for the bearer token."""
    security = [{"bearerAuth": []}] if auth else []
    search_errors = {status: {"$ref": f"#/components/responses/Error{status}"}
                     for status in ("400", "401", "413", "503")}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "wiki-vector-index search",
            "version": version,
            "description": "Semantic (and hybrid) search over a Qdrant collection of Wikipedia chunks, "
                           "for retrieval-augmented generation. Every response is JSON; every error is "
                           '`{"error": message}`.',
        },
        "paths": {
            "/health": {"get": {
                "operationId": "health",
                "summary": "Whether the service is up, and what it searches",
                "security": [],
                "responses": {"200": _json("The service is up", "#/components/schemas/Health")},
            }},
            "/openapi.json": {"get": {
                "operationId": "openapi",
                "summary": "This document",
                "security": [],
                "responses": {"200": {"description": "The OpenAPI document",
                                      "content": {"application/json": {"schema": {"type": "object"}}}}},
            }},
            "/search": {
                "get": {
                    "operationId": "searchGet",
                    "summary": "Search with query-string parameters",
                    "security": security,
                    "parameters": _query_parameters(max_query_chars),
                    "responses": {"200": _json("Ranked hits", "#/components/schemas/SearchResponse"),
                                  **search_errors},
                },
                "post": {
                    "operationId": "searchPost",
                    "summary": "Search with a JSON body",
                    "security": security,
                    "requestBody": {
                        "required": True,
                        "description": f"At most {max_body_bytes:,} bytes.",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SearchRequest"}}},
                    },
                    "responses": {"200": _json("Ranked hits", "#/components/schemas/SearchResponse"),
                                  **search_errors, "411": {"$ref": "#/components/responses/Error411"}},
                },
            },
        },
        "components": {
            "securitySchemes": {"bearerAuth": {
                "type": "http", "scheme": "bearer",
                "description": "The token the server was started with (SEARCH_API_TOKEN)",
            }},
            "schemas": _schemas(max_query_chars),
            "responses": {f"Error{status}": _error_response(status, text) for status, text in ERROR_STATUSES.items()},
        },
    }


def _json(description: str, ref: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": ref}}}}


def _error_response(status: str, description: str) -> dict:
    response = _json(description, "#/components/schemas/Error")
    if status == "401":
        response["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"},
                                                    "description": 'Bearer realm="search"'}}
    return response


def _nullable(schema: dict) -> dict:
    return {**schema, "type": [schema["type"], "null"]}


def _request_properties(max_query_chars: int) -> dict[str, dict]:
    strings = {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1}
    return {
        "query": {"type": "string", "minLength": 1, "maxLength": max_query_chars,
                  "description": "What to look for, in plain words (not only whitespace)"},
        "k": {"type": "integer", "minimum": 1, "maximum": MAX_K, "default": 5, "description": "Number of hits"},
        "mode": {"type": ["string", "null"], "enum": [*MODES, None],
                 "description": "dense (vectors only) or hybrid (vectors and BM25); null: the collection's default"},
        "score_threshold": _nullable({"type": "number", "minimum": -1, "maximum": 1,
                                      "description": "Leave out hits whose cosine similarity to the query is lower"}),
        "article_ids": _nullable({**strings, "description": "Only these articles (any of them)"}),
        "titles": _nullable({**strings, "description": "Only articles with these exact titles (any of them)"}),
        "urls": _nullable({**strings, "description": "Only articles with these URLs (any of them)"}),
        "max_per_article": _nullable({"type": "integer", "minimum": 1, "description": "At most N hits per article"}),
        "neighbours": {"type": "integer", "minimum": 0, "maximum": MAX_NEIGHBOURS, "default": 0,
                       "description": "Add up to N neighbouring chunks on each side of a hit, as its `context`"},
        "context_chars": _nullable({"type": "integer", "minimum": 1, "maximum": MAX_CONTEXT_CHARS,
                                    "description": "Also return a numbered RAG context block of at most "
                                                   "this many characters, built from the hits"}),
    }


# Query-string names of the body's fields (the lists repeat: ?title=A&title=B).
QUERY_PARAMETERS = {"q": "query", "k": "k", "mode": "mode", "score_threshold": "score_threshold",
                    "article_id": "article_ids", "title": "titles", "url": "urls",
                    "max_per_article": "max_per_article", "neighbours": "neighbours", "context_chars": "context_chars"}


def _query_parameters(max_query_chars: int) -> list[dict]:
    properties = _request_properties(max_query_chars)
    parameters = []
    for name, field in QUERY_PARAMETERS.items():
        schema = dict(properties[field])
        description = schema.pop("description")
        if isinstance(schema["type"], list):  # absent, not null, in a query string
            schema["type"] = schema["type"][0]
            if "enum" in schema:
                schema["enum"] = [v for v in schema["enum"] if v is not None]
        if schema["type"] == "array":
            description += " (repeat the parameter)"
            schema = {"type": "array", "items": schema["items"]}
        parameters.append({"name": name, "in": "query", "required": name == "q", "description": description,
                           "schema": schema, **({"explode": True, "style": "form"} if schema["type"] == "array"
                                                else {})})
    return parameters


def _schemas(max_query_chars: int) -> dict[str, Any]:
    return {
        "SearchRequest": {
            "type": "object",
            "required": ["query"],
            "additionalProperties": False,
            "properties": _request_properties(max_query_chars),
        },
        "Hit": {
            "type": "object",
            "required": ["rank", "score", "similarity", "article_id", "title", "url", "text", "chunk_index",
                         "start", "end", "point_id"],
            "properties": {
                "rank": {"type": "integer", "minimum": 1},
                "score": {"type": "number", "description": "What ranks the hits: the cosine similarity in dense "
                                                           "mode, the fused reciprocal-rank score in hybrid mode"},
                "similarity": {"type": "number", "description": "The passage's cosine similarity to the query"},
                "article_id": {"type": "string"},
                "title": {"type": "string"},
                "url": {"type": "string"},
                "text": {"type": "string", "description": "The chunk's text"},
                "chunk_index": {"type": "integer", "minimum": 0},
                "start": {"type": "integer", "description": "Where the text starts in the article (characters)"},
                "end": {"type": "integer", "description": "Where it ends"},
                "point_id": {"type": "string"},
                "context": {"type": ["string", "null"],
                            "description": "With `neighbours`: the text of this chunk and its neighbours, merged"},
                "context_first": {"type": ["integer", "null"], "description": "The first chunk in `context`"},
                "context_last": {"type": ["integer", "null"], "description": "The last chunk in `context`"},
                "context_start": {"type": ["integer", "null"], "description": "Where `context` starts in the article"},
                "context_end": {"type": ["integer", "null"], "description": "Where it ends"},
            },
        },
        "Passage": {
            "type": "object",
            "required": ["start", "end", "text"],
            "properties": {"start": {"type": "integer"}, "end": {"type": "integer"}, "text": {"type": "string"}},
        },
        "Source": {
            "type": "object",
            "required": ["number", "article_id", "title", "url", "score", "passages"],
            "properties": {
                "number": {"type": "integer", "minimum": 1, "description": "Its [number] in the context text"},
                "article_id": {"type": "string"},
                "title": {"type": "string"},
                "url": {"type": "string"},
                "score": {"type": "number", "description": "Its best hit's score"},
                "passages": {"type": "array", "items": {"$ref": "#/components/schemas/Passage"}},
            },
        },
        "Context": {
            "type": "object",
            "required": ["text", "sources", "truncated"],
            "properties": {
                "text": {"type": "string", "description": "Numbered passages under their titles and URLs, "
                                                          "ready for a prompt"},
                "sources": {"type": "array", "items": {"$ref": "#/components/schemas/Source"},
                            "description": "What each number in the text cites"},
                "truncated": {"type": "boolean", "description": "Whether some of what was found did not fit"},
            },
        },
        "SearchResponse": {
            "type": "object",
            "required": ["query", "k", "mode", "took_ms", "hits"],
            "properties": {
                "query": {"type": "string"},
                "k": {"type": "integer"},
                "mode": {"type": ["string", "null"], "description": "The mode searched with"},
                "took_ms": {"type": "number",
                            "description": "Milliseconds from the request's validation to its answer, "
                                           "waiting for an earlier search included"},
                "hits": {"type": "array", "items": {"$ref": "#/components/schemas/Hit"}},
                "context": {"$ref": "#/components/schemas/Context"},
            },
        },
        "Health": {
            "type": "object",
            "required": ["status", "collection", "model"],
            "properties": {
                "status": {"type": "string", "enum": ["ok"]},
                "collection": {"type": "string", "description": "The name searched (usually an alias)"},
                "physical_collection": {"type": "string", "description": "The collection it leads to now"},
                "model": {"type": "string", "description": "The embedding model the collection was built with"},
                "dimension": {"type": "integer"},
                "auth": {"type": "boolean", "description": "Whether /search asks for the bearer token"},
            },
        },
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {"error": {"type": "string", "description": "What went wrong, and what to change"}},
        },
    }
