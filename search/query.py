"""What a search takes and what it finds, each declared once: `SearchOptions`
(the options of `Searcher.search`, with their limits) and `Hit` (one passage found).

Every way in takes the same options: `Searcher.search` (as keywords, or as a
`SearchOptions`), the command line's flags, the HTTP API's body and query string
(`search.request`), the MCP tools and both framework retrievers. The limits are
declared on the fields, so the OpenAPI document, the flags and the searcher's
refusals say the same thing; `problem` puts pydantic's errors in those words. `Hit`
is what the Python API returns and what the HTTP API answers.

>>> SearchOptions.of(k=3, titles="Mona Lisa").titles   # in Python, a string is a list of one
['Mona Lisa']
>>> SearchOptions.of(k=0)
Traceback (most recent call last):
ingest.errors.SearchUsageError: k must be between 1 and 100, got 0
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Mapping, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, ValidationInfo

from ingest.errors import SearchUsageError

SearchMode = Literal["dense", "hybrid"]
SEARCH_MODES: tuple[str, ...] = get_args(SearchMode)
MAX_K = 100
MAX_NEIGHBOURS = 5


def _whole(value: Any) -> Any:
    """JSON's 5.0 is the integer 5 (as JSON Schema says); 5.5, "5" and true are no integers."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _listed(value: Any, info: ValidationInfo) -> Any:
    """In Python a single title (or id, or url) is a list of one; JSON must send a
    list (the HTTP body's model is strict)."""
    return [value] if isinstance(value, str) and not (info.config or {}).get("strict") else value


WHOLE = BeforeValidator(_whole)  # for an integer field that JSON may send as 5.0
Names = Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1), BeforeValidator(_listed)]
MODE_DESCRIPTION = "dense (vectors only) or hybrid (vectors and BM25); absent or null: the collection's default"


class SearchOptions(BaseModel):
    """How to search: the options of `Searcher.search`, which every way in takes.

    mode: "dense" (semantic only), "hybrid" (semantic and BM25 lexical, fused by
    reciprocal rank), or None for the collection's default. score_threshold:
    leave out passages whose cosine similarity to the query is lower.
    article_ids / titles / urls: only these articles (any of each list given; every
    list given must hold). max_per_article: at most this many hits per article, so
    that one long article does not crowd out the others. neighbours: also fetch this
    many chunks either side of each hit, merged into `Hit.context`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    k: Annotated[int, Field(ge=1, le=MAX_K, description="Number of hits"), WHOLE] = 5
    mode: Annotated[SearchMode | None, Field(description=MODE_DESCRIPTION)] = None
    score_threshold: Annotated[
        float | None,
        Field(
            ge=-1, le=1, allow_inf_nan=False, description="Leave out hits whose cosine similarity to the query is lower"
        ),
    ] = None
    article_ids: Annotated[Names | None, Field(description="Only these articles (any of them)")] = None
    titles: Annotated[Names | None, Field(description="Only articles with these exact titles (any of them)")] = None
    urls: Annotated[Names | None, Field(description="Only articles with these URLs (any of them)")] = None
    max_per_article: Annotated[int | None, Field(ge=1, description="At most N hits per article"), WHOLE] = None
    neighbours: Annotated[
        int,
        Field(
            ge=0,
            le=MAX_NEIGHBOURS,
            description="Add up to N neighbouring chunks on each side of a hit, as its `context`",
        ),
        WHOLE,
    ] = 0

    @classmethod
    def of(cls, options: SearchOptions | None = None, /, **changes: Any) -> SearchOptions:
        """`options` (by default, the defaults) with `changes`, checked. A wrong
        value is a `SearchUsageError` that names it; an unknown name, a TypeError
        (as an unknown keyword argument is)."""
        unknown = changes.keys() - SearchOptions.model_fields.keys()
        if unknown:
            raise TypeError(
                f"unknown search option(s) {', '.join(sorted(unknown))}: use {', '.join(SearchOptions.model_fields)}"
            )
        if type(options) is SearchOptions and not changes:
            return options  # checked when it was made, and frozen
        given = options.model_dump(include=set(SearchOptions.model_fields)) if options is not None else {}
        try:
            return SearchOptions.model_validate({**given, **changes})
        except ValidationError as exc:
            errors = exc.errors()
            raise SearchUsageError(problem(errors[0]) + and_more(len(errors) - 1)) from None


class Hit(BaseModel):
    """One passage found: where it is (`article_id`, `title`, `url`, and `start`/`end`
    in the article's text), how it ranked, and, with `neighbours`, its `context`."""

    # Every field is in every answer, so the answer's schema requires them all (defaults included).
    model_config = ConfigDict(frozen=True, json_schema_serialization_defaults_required=True)

    rank: Annotated[int, Field(ge=1)]
    score: Annotated[
        float,
        Field(
            description="What ranks the hits: the cosine similarity in dense mode, "
            "the fused reciprocal-rank score in hybrid mode"
        ),
    ]
    similarity: Annotated[float, Field(description="The passage's cosine similarity to the query")]
    article_id: str
    title: str
    url: str
    text: Annotated[str, Field(description="The chunk's text")]
    chunk_index: Annotated[int, Field(ge=0)]
    start: Annotated[int, Field(description="Where the text starts in the article (characters)")]
    end: Annotated[int, Field(description="Where it ends")]
    point_id: str
    context: Annotated[str | None, Field(description="With `neighbours`: this chunk and its neighbours, merged")] = None
    context_first: Annotated[int | None, Field(description="The first chunk in `context`")] = None
    context_last: Annotated[int | None, Field(description="The last chunk in `context`")] = None
    context_start: Annotated[int | None, Field(description="Where `context` starts in the article")] = None
    context_end: Annotated[int | None, Field(description="Where it ends")] = None


# -- pydantic's errors in the options' words --------------------------------------------------
def limits(model: type[BaseModel], name: str) -> tuple[Any, Any]:
    """(lowest, highest) that the field `name` of `model` accepts, as declared on it (None: no limit)."""
    field = model.model_fields.get(name)
    low = high = None
    for rule in field.metadata if field is not None else ():
        low, high = getattr(rule, "ge", low), getattr(rule, "le", high)
    return low, high


def problem(error: Mapping[str, Any], model: type[BaseModel] = SearchOptions) -> str:
    """One of pydantic's errors about a field of `model`, as a sentence that names
    the field and what it accepts: "k must be between 1 and 100, got 0"."""
    kind, value, where = error["type"], error.get("input"), [str(part) for part in error["loc"]]
    name = where[0]
    path = name + "".join(f"[{part}]" for part in where[1:])
    low, high = limits(model, name)
    bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"{path} must be a whole number {bounds}, got {described(value)}"
    if kind in ("float_type", "float_parsing", "finite_number"):
        return f"{path} must be a number {bounds}, got {described(value)}"
    if kind in ("greater_than_equal", "less_than_equal"):
        return f"{path} must be {bounds}, got {value}"
    if kind == "literal_error":
        return f"{path} must be one of {', '.join(SEARCH_MODES)}, got {described(value)}"
    if kind == "string_unicode":
        return f"{path} holds a lone surrogate or other invalid Unicode: send valid Unicode"
    if kind == "string_type":
        return f"{path} must be a string, got {described(value)}"
    if kind == "list_type":
        return f"{path} must be a list of strings, got {described(value)}"
    if kind in ("too_short", "string_too_short"):
        return f"{name} must hold at least one value, and no empty one"
    if kind == "missing":
        return f"{path} is missing"
    return f"{path}: {error.get('msg', kind)}"


def and_more(count: int) -> str:
    """What follows the first problem's message when there are `count` more."""
    return f" (and {count} more problem{'s' if count > 1 else ''})" if count > 0 else ""


def described(value: Any) -> str:
    """A value as its JSON type, for messages: `'5' (a string)`."""
    names = {
        bool: "a boolean",
        str: "a string",
        int: "a number",
        float: "a number",
        list: "an array",
        dict: "an object",
        type(None): "null",
    }
    kind = names.get(type(value), type(value).__name__)
    return kind if isinstance(value, (list, dict, type(None))) else f"{show(value)} ({kind})"


def show(value: Any, limit: int = 40) -> str:
    """`repr(value)`, cut to `limit` characters: a message quotes what it was given, not all of it."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
