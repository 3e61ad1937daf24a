"""What the HTTP search API takes and answers, as pydantic models: FastAPI
validates requests with them and generates the OpenAPI document from them, and
the MCP tools (`search.mcp_server`) check their arguments with the same rules
through `parse_search`. The search options and the hits are `search.query`'s, the
context block `search.context`'s: these models add only what HTTP adds.

- `SearchRequest`: the POST /search body, a query and the search options (strict
  JSON types: `"5"` is no number), and a context block's size.
- `SearchParams`: the GET /search query string (`?q=...&title=A&title=B`), the
  body's fields under the names a query string gives them (PARAMETER_NAMES).
- `SearchResponse`, `Health`, `Error`: the answers.
- `invalid_request`: pydantic's validation errors as one `HTTPError` whose one-line
  message names the field at fault and what it accepts.

The query's length limit is the server's (`--max-query-chars`), so the models that
carry it are made per limit: `request_model(2000)`, `params_model(2000)`.

>>> parse_search({"query": "HAL 9000", "k": 3, "titles": ["2001: A Space Odyssey"]}).titles
['2001: A Space Odyssey']
"""

from __future__ import annotations

from copy import copy
from functools import cache
from typing import Annotated, Any, Iterable, Literal, Mapping, Sequence

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, create_model

from search.context import Context
from search.query import WHOLE, Hit, SearchMode, SearchOptions, and_more, described, problem, show

DEFAULT_MAX_QUERY_CHARS = 2000
MAX_CONTEXT_CHARS = 100_000


class HTTPError(Exception):
    """An answer other than 200: its status, message and extra headers."""

    def __init__(self, status: int, message: str, headers: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, dict(headers)


# A query needs one character that is not blank. "Blank" is Python's whitespace (what the
# searcher strips) and ECMA-262's (what JSON Schema patterns mean): they differ in \x1c-\x1f
# and \x85 (Python's only) and U+FEFF (ECMA's only). The pattern excludes the first two
# itself and `_not_blank` the third, so a client's schema validator and this server agree.
NOT_BLANK = r"[^\s\x1c-\x1f\x85]"


def _not_blank(query: str) -> str:
    if not query.replace("\ufeff", " ").strip():
        raise ValueError("the query is empty")
    return query


def _query_text(max_chars: int | None = None) -> Any:
    """The query's type: a string with a character that is not blank, of at most
    `max_chars` characters (the server's limit: 413 beyond)."""
    return Annotated[
        str,
        Field(min_length=1, max_length=max_chars, pattern=NOT_BLANK, description=QUERY_DESCRIPTION),
        AfterValidator(_not_blank),
    ]


QUERY_DESCRIPTION = "What to look for, in plain words (not only whitespace)"
QueryText = _query_text()


class _Query(BaseModel):
    """The query, first among a request's fields: pydantic lists the fields of a
    class's bases before its own, those of the last base first."""

    query: QueryText


class SearchRequest(SearchOptions, _Query):
    """A search: the POST /search body, and what the MCP tools check their arguments
    with. Being a `SearchOptions`, it is what `Searcher.search` is called with."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    context_chars: Annotated[
        int | None,
        Field(
            ge=1,
            le=MAX_CONTEXT_CHARS,
            description="Also return a numbered RAG context block of at most this many characters, built from the hits",
        ),
        WHOLE,
    ] = None


FIELDS = tuple(SearchRequest.model_fields)
# GET /search's names for the body's fields: `q` for the query, one repeated parameter per list.
PARAMETER_NAMES = {"query": "q", "article_ids": "article_id", "titles": "title", "urls": "url"}
REPEATED = {
    "article_id": "Only this article (repeat for any of several)",
    "title": "Only the article with this exact title (repeatable)",
    "url": "Only the article at this URL (repeatable)",
}


class _Parameters(BaseModel):
    """The base of GET /search's model, whose fields `_parameter` makes from the body's."""

    model_config = ConfigDict(extra="forbid")

    def to_request(self) -> SearchRequest:
        """The body these parameters stand for (checked already: not again)."""
        return SearchRequest.model_construct(
            **{field: getattr(self, PARAMETER_NAMES.get(field, field)) for field in SearchRequest.model_fields}
        )


def _parameter(name: str) -> tuple[Any, Any]:
    """The body's field `name` as a query-string parameter: the same type, limits and default."""
    field = copy(SearchRequest.model_fields[name])
    field.description = REPEATED.get(PARAMETER_NAMES.get(name, name), field.description)
    return field.annotation, field


# The query string is text: its model is not strict, so that "5" is read as 5.
SearchParams = create_model(
    "SearchParams",
    __base__=_Parameters,
    __module__=__name__,
    __doc__="GET /search's query string: the body's fields, `q` for the query, and one repeated parameter per "
    "list (`?title=A&title=B`).",
    **{PARAMETER_NAMES.get(name, name): _parameter(name) for name in SearchRequest.model_fields},
)
PARAMETERS = tuple(SearchParams.model_fields)
REPEATABLE = frozenset(REPEATED)


@cache
def request_model(max_query_chars: int) -> type[SearchRequest]:
    """`SearchRequest` with the query limited to `max_query_chars` (413 beyond)."""
    return create_model(
        "SearchRequest",
        __base__=SearchRequest,
        __doc__=SearchRequest.__doc__,
        query=(_query_text(max_query_chars), ...),
    )


@cache
def params_model(max_query_chars: int) -> type[_Parameters]:
    """`SearchParams` with `q` limited to `max_query_chars` (413 beyond)."""
    return create_model(
        "SearchParams", __base__=SearchParams, __doc__=SearchParams.__doc__, q=(_query_text(max_query_chars), ...)
    )


def parse_search(fields: Mapping[str, Any], *, max_query_chars: int = DEFAULT_MAX_QUERY_CHARS) -> SearchRequest:
    """Check a search's fields as POST /search does; HTTPError 413 or 422 when wrong."""
    try:
        return request_model(max_query_chars).model_validate(dict(fields) if isinstance(fields, Mapping) else fields)
    except ValidationError as exc:  # located as FastAPI locates a body's errors
        raise invalid_request([{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]) from None


# -- the answers: hits (`search.query.Hit`) and a context block (`search.context.Context`) ----------
class SearchResponse(BaseModel):
    query: str
    k: int
    mode: Annotated[SearchMode, Field(description="The mode searched with")]
    took_ms: Annotated[
        float,
        Field(
            description="Milliseconds from the request's validation to its answer, "
            "waiting for an earlier search included"
        ),
    ]
    hits: list[Hit]
    context: Annotated[Context | None, Field(description="With `context_chars` only")] = None


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    store: Literal["ok", "unavailable"]
    embedder: Literal["ok", "unavailable"]
    collection: Annotated[str, Field(description="The name searched (usually an alias)")]
    physical_collection: Annotated[str, Field(description="The collection it leads to now")]
    model: Annotated[str, Field(description="The embedding model the collection was built with")]
    dimension: int
    auth: Annotated[bool, Field(description="Whether /search asks for the bearer token")]
    error: Annotated[str | None, Field(description="With status unavailable: which part failed")] = None


class Error(BaseModel):
    """Every error's body."""

    error: Annotated[str, Field(description="What went wrong, and what to change")]


# -- validation errors as one message ----------------------------------------------------------
def invalid_request(errors: Sequence[Mapping[str, Any]]) -> HTTPError:
    """pydantic's (or FastAPI's) validation errors as one HTTPError: 400 when the
    body is not JSON, 413 when the query is over the limit, 422 otherwise."""
    unknown = [e for e in errors if e["type"] == "extra_forbidden"]
    if unknown:
        names = [str(e["loc"][-1]) for e in unknown]
        what, known = ("parameter", PARAMETERS) if unknown[0]["loc"][0] == "query" else ("field", FIELDS)
        return HTTPError(
            422,
            f"unknown {what}{'s' if len(names) > 1 else ''} {', '.join(map(show, names))}: "
            f"the {what}s are {', '.join(known)}",
        )
    status, message = _one(errors[0])
    return HTTPError(status, message + and_more(len(errors) - 1))


def _one(error: Mapping[str, Any]) -> tuple[int, str]:
    kind, value, ctx = error["type"], error.get("input"), error.get("ctx") or {}
    where = list(error["loc"][1:])  # after FastAPI's "body" or "query"
    if kind == "json_invalid":
        return 400, f"the body is not valid JSON: {ctx.get('error', 'malformed')} (at character {where[0]})"
    if not where or kind == "model_attributes_type":
        if kind == "missing":
            return 422, 'the body is missing: send a JSON object such as {"query": "...", "k": 5}'
        if isinstance(value, (bytes, bytearray)):
            return 422, "the body must be JSON, sent with the header 'Content-Type: application/json'"
        return 422, f'the body must be a JSON object such as {{"query": "...", "k": 5}}, got {described(value)}'
    if str(where[0]) in ("query", "q") and len(where) == 1:
        if kind == "missing":
            return 422, "the query is missing: give it as 'query' in a JSON body, or ?q= in the URL"
        if kind == "string_too_long":
            return 413, f"the query is {len(value):,} characters long; the limit is {ctx['max_length']:,}"
        if kind in ("string_too_short", "string_pattern_mismatch") or (kind == "value_error" and not value.strip()):
            return 422, "the query is empty"
    return 422, problem({**error, "loc": tuple(where)}, SearchRequest)
