"""What the HTTP search API takes and answers, as pydantic models: FastAPI
validates requests with them and generates the OpenAPI document from them, and
the MCP tools (`search.mcp_server`) check their arguments with the same rules
through `parse_search`.

- `SearchRequest`: the POST /search body (strict JSON types: `"5"` is no number).
- `SearchParams`: the GET /search query string (`?q=...&title=A&title=B`).
- `SearchResponse`, `Hit`, `Context`, `Health`, `Error`: the answers.
- `explain`: pydantic's validation errors as one `HTTPError` whose one-line
  message names the field at fault and what it accepts.

The query's length limit is the server's (`--max-query-chars`), so the models that
carry it are made per limit: `request_model(2000)`, `params_model(2000)`.

>>> parse_search({"query": "HAL 9000", "k": 3, "titles": ["2001: A Space Odyssey"]}).search_options()
{'titles': ['2001: A Space Odyssey']}
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any, Iterable, Literal, Mapping, Sequence

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, create_model

from search.api import MAX_K, MAX_NEIGHBOURS, MODES

DEFAULT_MAX_QUERY_CHARS = 2000
MAX_CONTEXT_CHARS = 100_000
# (lowest, highest) of each number: the models' bounds, and the messages'.
BOUNDS: dict[str, tuple[float, float | None]] = {
    "k": (1, MAX_K), "neighbours": (0, MAX_NEIGHBOURS), "max_per_article": (1, None),
    "context_chars": (1, MAX_CONTEXT_CHARS), "score_threshold": (-1, 1)}
Mode = Literal[MODES]  # type: ignore[valid-type] - the searcher's modes, as the schema's enum


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
    return Annotated[str, Field(min_length=1, max_length=max_chars, pattern=NOT_BLANK, description=QUERY_DESCRIPTION),
                     AfterValidator(_not_blank)]


def _whole(value: Any) -> Any:
    """JSON's 5.0 is the integer 5 (as JSON Schema says); 5.5, "5" and true are no integers."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _number(name: str, description: str, **extra: Any) -> Any:
    low, high = BOUNDS[name]
    return Field(ge=low, le=high, description=description, **extra)


Strings = Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)]
QUERY_DESCRIPTION = "What to look for, in plain words (not only whitespace)"
QueryText = _query_text()
NUMBERS = {
    "k": "Number of hits",
    "score_threshold": "Leave out hits whose cosine similarity to the query is lower",
    "max_per_article": "At most N hits per article",
    "neighbours": "Add up to N neighbouring chunks on each side of a hit, as its `context`",
    "context_chars": "Also return a numbered RAG context block of at most this many characters, built from the hits",
}
MODE_DESCRIPTION = "dense (vectors only) or hybrid (vectors and BM25); absent or null: the collection's default"


class SearchRequest(BaseModel):
    """A search: the POST /search body, and what `Searcher.search` is called with."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    query: QueryText
    k: Annotated[int, _number("k", NUMBERS["k"]), BeforeValidator(_whole)] = 5
    mode: Annotated[Mode | None, Field(description=MODE_DESCRIPTION)] = None
    score_threshold: Annotated[float | None, _number("score_threshold", NUMBERS["score_threshold"],
                                                     allow_inf_nan=False)] = None
    article_ids: Annotated[Strings | None, Field(description="Only these articles (any of them)")] = None
    titles: Annotated[Strings | None, Field(description="Only articles with these exact titles (any of them)")] = None
    urls: Annotated[Strings | None, Field(description="Only articles with these URLs (any of them)")] = None
    max_per_article: Annotated[int | None, _number("max_per_article", NUMBERS["max_per_article"]),
                               BeforeValidator(_whole)] = None
    neighbours: Annotated[int, _number("neighbours", NUMBERS["neighbours"]), BeforeValidator(_whole)] = 0
    context_chars: Annotated[int | None, _number("context_chars", NUMBERS["context_chars"]),
                             BeforeValidator(_whole)] = None

    def search_options(self) -> dict[str, Any]:
        """The keyword arguments of `Searcher.search` beyond query and k: only those
        asked for, so that the searcher's own defaults apply to the rest."""
        options = {"mode": self.mode, "score_threshold": self.score_threshold, "article_ids": self.article_ids,
                   "titles": self.titles, "urls": self.urls, "max_per_article": self.max_per_article,
                   "neighbours": self.neighbours or None}
        return {name: value for name, value in options.items() if value is not None}


FIELDS = tuple(SearchRequest.model_fields)


class SearchParams(BaseModel):
    """GET /search's query string: the body's fields, `q` for the query, and one
    repeated parameter per list (`?title=A&title=B`)."""

    model_config = ConfigDict(extra="forbid")

    q: QueryText
    k: Annotated[int, _number("k", NUMBERS["k"])] = 5
    mode: Annotated[Mode | None, Field(description=MODE_DESCRIPTION)] = None
    score_threshold: Annotated[float | None, _number("score_threshold", NUMBERS["score_threshold"],
                                                     allow_inf_nan=False)] = None
    article_id: Annotated[Strings | None, Field(description="Only this article (repeat for any of several)")] = None
    title: Annotated[Strings | None, Field(description="Only the article with this exact title (repeatable)")] = None
    url: Annotated[Strings | None, Field(description="Only the article at this URL (repeatable)")] = None
    max_per_article: Annotated[int | None, _number("max_per_article", NUMBERS["max_per_article"])] = None
    neighbours: Annotated[int, _number("neighbours", NUMBERS["neighbours"])] = 0
    context_chars: Annotated[int | None, _number("context_chars", NUMBERS["context_chars"])] = None

    def to_request(self) -> SearchRequest:
        return SearchRequest.model_construct(
            query=self.q, k=self.k, mode=self.mode, score_threshold=self.score_threshold,
            article_ids=self.article_id, titles=self.title, urls=self.url, max_per_article=self.max_per_article,
            neighbours=self.neighbours, context_chars=self.context_chars)


PARAMETERS = tuple(SearchParams.model_fields)
REPEATABLE = frozenset({"article_id", "title", "url"})


@lru_cache(maxsize=None)
def request_model(max_query_chars: int) -> type[SearchRequest]:
    """`SearchRequest` with the query limited to `max_query_chars` (413 beyond)."""
    return create_model("SearchRequest", __base__=SearchRequest, __doc__=SearchRequest.__doc__,
                        query=(_query_text(max_query_chars), ...))


@lru_cache(maxsize=None)
def params_model(max_query_chars: int) -> type[SearchParams]:
    """`SearchParams` with `q` limited to `max_query_chars` (413 beyond)."""
    return create_model("SearchParams", __base__=SearchParams, __doc__=SearchParams.__doc__,
                        q=(_query_text(max_query_chars), ...))


def parse_search(fields: Mapping[str, Any], *, max_query_chars: int = DEFAULT_MAX_QUERY_CHARS) -> SearchRequest:
    """Check a search's fields as POST /search does; HTTPError 413 or 422 when wrong."""
    try:
        return request_model(max_query_chars).model_validate(dict(fields) if isinstance(fields, Mapping) else fields)
    except ValidationError as exc:  # located as FastAPI locates a body's errors
        raise explain([{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]) from None


# -- the answers ----------------------------------------------------------------------------
class Hit(BaseModel):
    """One passage found (`search.api.Hit`)."""

    rank: Annotated[int, Field(ge=1)]
    score: Annotated[float, Field(description="What ranks the hits: the cosine similarity in dense mode, "
                                              "the fused reciprocal-rank score in hybrid mode")]
    similarity: Annotated[float, Field(description="The passage's cosine similarity to the query")]
    article_id: str
    title: str
    url: str
    text: Annotated[str, Field(description="The chunk's text")]
    chunk_index: Annotated[int, Field(ge=0)]
    start: Annotated[int, Field(description="Where the text starts in the article (characters)")]
    end: Annotated[int, Field(description="Where it ends")]
    point_id: str
    context: Annotated[str | None, Field(description="With `neighbours`: this chunk and its neighbours, merged")]
    context_first: Annotated[int | None, Field(description="The first chunk in `context`")]
    context_last: Annotated[int | None, Field(description="The last chunk in `context`")]
    context_start: Annotated[int | None, Field(description="Where `context` starts in the article")]
    context_end: Annotated[int | None, Field(description="Where it ends")]


class Passage(BaseModel):
    start: int
    end: int
    text: str


class Source(BaseModel):
    number: Annotated[int, Field(ge=1, description="Its [number] in the context text")]
    article_id: str
    title: str
    url: str
    score: Annotated[float, Field(description="Its best hit's score")]
    passages: list[Passage]


class Context(BaseModel):
    """The numbered RAG context block (`search.context.Context`)."""

    text: Annotated[str, Field(description="Numbered passages under their titles and URLs, ready for a prompt")]
    sources: Annotated[list[Source], Field(description="What each number in the text cites")]
    truncated: Annotated[bool, Field(description="Whether some of what was found did not fit")]


class SearchResponse(BaseModel):
    query: str
    k: int
    mode: Annotated[Mode, Field(description="The mode searched with")]
    took_ms: Annotated[float, Field(description="Milliseconds from the request's validation to its answer, "
                                                "waiting for an earlier search included")]
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
def explain(errors: Sequence[Mapping[str, Any]]) -> HTTPError:
    """pydantic's (or FastAPI's) validation errors as one HTTPError: 400 when the
    body is not JSON, 413 when the query is over the limit, 422 otherwise."""
    unknown = [e for e in errors if e["type"] == "extra_forbidden"]
    if unknown:
        names = [str(e["loc"][-1]) for e in unknown]
        what, known = ("parameter", PARAMETERS) if unknown[0]["loc"][0] == "query" else ("field", FIELDS)
        return HTTPError(422, f"unknown {what}{'s' if len(names) > 1 else ''} {', '.join(map(_show, names))}: "
                              f"the {what}s are {', '.join(known)}")
    status, message = _one(errors[0])
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return HTTPError(status, message)


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
        return 422, f'the body must be a JSON object such as {{"query": "...", "k": 5}}, got {_kind(value)}'
    name = str(where[0])
    path = name + "".join(f"[{part}]" for part in where[1:])
    if name in ("query", "q") and len(where) == 1:
        if kind == "missing":
            return 422, "the query is missing: give it as 'query' in a JSON body, or ?q= in the URL"
        if kind == "string_too_long":
            return 413, f"the query is {len(value):,} characters long; the limit is {ctx['max_length']:,}"
        if kind in ("string_too_short", "string_pattern_mismatch") or (kind == "value_error" and not value.strip()):
            return 422, "the query is empty"
    low, high = BOUNDS.get(name, (None, None))
    bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return 422, f"{path} must be a whole number {bounds}, got {_kind(value)}"
    if kind in ("float_type", "float_parsing", "finite_number"):
        return 422, f"{path} must be a number {bounds}, got {_kind(value)}"
    if kind in ("greater_than_equal", "less_than_equal"):
        return 422, f"{path} must be {bounds}, got {value}"
    if kind == "literal_error":
        return 422, f"{path} must be one of {', '.join(MODES)}, got {_kind(value)}"
    if kind == "string_unicode":
        return 422, f"{path} holds a lone surrogate or other invalid Unicode: send valid Unicode"
    if kind == "string_type":
        return 422, f"{path} must be a string, got {_kind(value)}"
    if kind == "list_type":
        return 422, f"{path} must be a list of strings, got {_kind(value)}"
    if kind in ("too_short", "string_too_short"):
        return 422, f"{name} must hold at least one value, and no empty one"
    if kind == "missing":
        return 422, f"{path} is missing"
    return 422, f"{path}: {error.get('msg', kind)}"


def _kind(value: Any) -> str:
    """A value as its JSON type, for messages: `'5' (a string)`."""
    names = {bool: "a boolean", str: "a string", int: "a number", float: "a number", list: "an array",
             dict: "an object", type(None): "null"}
    kind = names.get(type(value), type(value).__name__)
    return kind if isinstance(value, (list, dict, type(None))) else f"{_show(value)} ({kind})"


def _show(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
