"""A Qdrant server (REST, v1.19.0) stand-in for tests: real HTTP on loopback.

`qdrant-client`'s REST path (`QdrantClient(url=..., prefer_grpc=False)`) talks to it
exactly as to a Qdrant server, so the code under test runs over a real socket. Points,
vectors, filters, queries, fusion and aliases are served by qdrant-client's own local
mode (`QdrantClient(location=":memory:")`, its in-process implementation of the API):
each request body is read into the qdrant-client model of that request, the local-mode
client answers it, and the answer is written back in Qdrant's envelope
(`{"result": ..., "status": "ok", "time": ...}`; errors `{"status": {"error": ...}, "time": ...}`).

What local mode does not do, and a server does, is modelled here, each rule after
upstream Qdrant at tag v1.19.0 (paths below are in github.com/qdrant/qdrant at v1.19.0):

- the collection's configuration as created and patched (HNSW, optimizers, WAL,
  quantization, shards and replicas, payload placement, strict mode), which local mode
  accepts and forgets, and the payload indexes (`payload_schema`);
- strict mode (`StrictModeConfig`, per collection or a server-wide default, e.g. Qdrant
  Cloud's, `QdrantStandIn(strict=True)`): filters on unindexed keys refused, `group_by`
  needing an index, limits on batch sizes, `limit`, `exact`, search parameters;
- the write (and read) rate limiter of strict mode: a token bucket, HTTP 429 with
  `Retry-After`, plus a deterministic hook, `refuse_writes`;
- the collection status: yellow while an indexing optimization runs (`optimize_seconds`),
  grey after a restart (`restart()`) until an update arrives, green otherwise; and
  `GET /collections/{name}/optimizations`;
- request bodies checked against v1.19.0's own OpenAPI document (the subset in
  `tests/data/qdrant-v1.19.0-openapi-subset.json`), so a field the server would not
  take is refused as it would be.

    with QdrantStandIn(strict=True) as server:
        client = QdrantClient(url=server.url, prefer_grpc=False)

Run as a process (a second process can then use it), until SIGTERM:

    python tests/qdrant_server.py --port 6333 [--strict] [--write-rate-limit N] [--optimize-seconds S]

Simplified: one segment per collection; points written while indexing is on count as
indexed at once (a server indexes a segment once it passes `indexing_threshold`); no red
status; a body that fails the OpenAPI check gets Qdrant's prefix ("Format error in JSON
body: ") with jsonschema's wording after it, not serde's. Not modelled: gRPC (port 6334),
snapshots, sharding and clusters, API keys, batch queries, the IDF corpus filter and
formula keys in strict mode, `max_points_count`, the size limits and `condition_max_size`
of strict mode, the read rate limit of queries.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import math
import re
import signal
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence
from urllib.parse import parse_qs, unquote, urlsplit

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as a script: make `tests` importable from anywhere
    sys.path.insert(0, str(ROOT))

from pydantic import TypeAdapter, ValidationError  # noqa: E402
from qdrant_client import QdrantClient, models  # noqa: E402

from ingest.rehearsal.loopback import Handler, LoopbackServer  # noqa: E402

QDRANT_VERSION = "1.19.0"
OPENAPI_SUBSET = Path(__file__).resolve().parent / "data" / "qdrant-v1.19.0-openapi-subset.json"

# Qdrant Cloud's strict mode for new collections (quoted in `QdrantStandIn`'s docstring).
CLOUD_STRICT_MODE = models.StrictModeConfig(
    enabled=True, unindexed_filtering_retrieve=False, unindexed_filtering_update=False, max_payload_index_count=100
)

# Defaults of a collection created without them: config/config.yaml (storage.hnsw_index,
# storage.optimizers, storage.wal, storage.on_disk_payload, storage.collection).
DEFAULT_HNSW = {"m": 16, "ef_construct": 100, "full_scan_threshold": 10000, "max_indexing_threads": 0, "on_disk": False}
DEFAULT_OPTIMIZERS = {
    "deleted_threshold": 0.2,
    "vacuum_min_vector_number": 1000,
    "default_segment_number": 0,
    "indexing_threshold": 10000,
    "flush_interval_sec": 5,
}
DEFAULT_WAL = {"wal_capacity_mb": 32, "wal_segments_ahead": 0}


# -- errors ------------------------------------------------------------------------------
class QdrantError(Exception):
    """An error answer: HTTP status, the text of `status.error`, extra headers.

    Texts are `StorageError`'s Display (lib/storage/src/content_manager/errors.rs:13-55), the
    statuses `HttpError::status_code` and headers `HttpError::headers` (src/actix/helpers.rs:206-265)."""

    def __init__(
        self, status: int, message: str, headers: dict[str, str] | None = None, format_error: bool = False
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}
        self.format_error = format_error  # answered by actix before any handler: time 0.0 (src/actix/mod.rs:274-279)


def not_found(name: str) -> QdrantError:
    # lib/storage/src/content_manager/collections_ops.rs:25-32, through toc/mod.rs:473 (aliases resolved first)
    return QdrantError(404, f"Not found: Collection `{name}` doesn't exist!")


def bad_request(description: str) -> QdrantError:
    return QdrantError(400, f"Bad request: {description}")


def wrong_input(description: str, status: int = 400) -> QdrantError:
    return QdrantError(status, f"Wrong input: {description}")


def strict_mode_error(error: str, solution: str) -> QdrantError:
    """`CollectionError::strict_mode` (lib/collection/src/operations/types.rs:1033-1036) becomes
    `StorageError::BadRequest` (lib/storage/src/content_manager/errors.rs:179): HTTP 400."""
    return bad_request(f"{error}. Help: {solution}")


def rate_limit_error(kind: str, cost: float, available: float | None, retry_after: float | None) -> QdrantError:
    """`CollectionError::rate_limit_error` (lib/collection/src/operations/types.rs:1038-1069): HTTP 429,
    `Retry-After` in whole seconds rounded up (src/actix/helpers.rs:210-223); none when the request
    can never fit (`available is None`)."""
    if available is None:
        description = (
            f"{kind} rate limit exceeded, request larger than rate limiter capacity, please try to split your request"
        )
        return QdrantError(429, f"Rate limiting exceeded: {description}")
    seconds = math.ceil(retry_after)
    description = (
        f"{kind} rate limit exceeded: Operation requires {cost:g} tokens but only {available:.1f} "
        f"were available. Retry after {seconds}s"
    )
    return QdrantError(429, f"Rate limiting exceeded: {description}", {"Retry-After": str(seconds)})


class RateLimiter:
    """A token bucket of `per_minute` tokens, full at first, refilled at `per_minute / 60` a
    second (lib/common/common/src/rate_limiting.rs:19-67)."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = per_minute
        self.tokens_per_sec = per_minute / 60.0
        self.tokens = float(per_minute)
        self.clock = clock
        self.last_check = clock()

    def try_consume(self, kind: str, cost: int) -> None:
        if cost > self.capacity:  # rate_limiting.rs:37-42: no wait makes it fit
            raise rate_limit_error(kind, cost, None, None)
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + self.tokens_per_sec * (now - self.last_check))
        self.last_check = now
        if self.tokens >= cost:
            self.tokens -= cost
            return
        retry_after = (cost - self.tokens) / self.tokens_per_sec
        raise rate_limit_error(kind, cost, self.tokens, retry_after)


# -- strict mode: which index a filter needs ---------------------------------------------
# lib/collection/src/problems/unindexed_field.rs:540-653: the capabilities an index has, and
# how a needed capability is named in the error (`PayloadFieldSchema`'s Display,
# lib/segment/src/types.rs:2776-2811).
CAPABILITY_NAMES = {
    "int_match": "integer",
    "int_range": "integer",
    "keyword_match": "keyword",
    "keyword_prefix": "keyword (with prefix: true)",
    "float_range": "float",
    "text": "text",
    "text_phrase": "text (with phrase_matching: true)",
    "bool_match": "bool",
    "uuid_match": "uuid",
    "uuid_range": "uuid",
    "datetime_range": "datetime",
    "geo": "geo",
}
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def _is_uuid(text: str) -> bool:
    """`Uuid::parse_str`: simple, hyphenated, braced and URN forms."""
    return bool(
        re.fullmatch(r"[0-9a-fA-F]{32}", text)
        or _UUID.fullmatch(text)
        or (text.startswith("{") and text.endswith("}") and _UUID.fullmatch(text[1:-1]))
        or (text.startswith("urn:uuid:") and _UUID.fullmatch(text[9:]))
    )


def index_capabilities(schema: Any) -> set[str]:
    """`schema_capabilities` (unindexed_field.rs:558-618) of a stored index schema (its JSON form)."""
    kind, params = (schema, {}) if isinstance(schema, str) else (schema["type"], schema)
    if kind == "keyword":
        return {"keyword_match", "keyword_prefix"} if params.get("prefix") else {"keyword_match"}
    if kind == "integer":
        caps = set()
        if params.get("lookup", True) is not False:  # unwrap_or(true)
            caps.add("int_match")
        if params.get("range", True) is not False:
            caps.add("int_range")
        return caps
    if kind == "text":
        return {"text", "text_phrase"} if params.get("phrase_matching") else {"text"}
    return {
        "uuid": {"uuid_match", "uuid_range"},
        "bool": {"bool_match"},
        "float": {"float_range"},
        "geo": {"geo"},
        "datetime": {"datetime_range"},
    }.get(kind, set())


def supports_match(schema: Any) -> bool:
    """`PayloadFieldSchema::supports_match` (lib/segment/src/types.rs:2879-2903). An integer index
    given as params supports it only with `lookup` set to true explicitly."""
    if isinstance(schema, str):
        return schema in ("keyword", "integer", "uuid", "bool")
    if schema["type"] == "integer":
        return schema.get("lookup") is True
    return schema["type"] in ("keyword", "uuid", "bool")


def _any_needs(values: list) -> list[str]:
    # unindexed_field.rs:193-223; an empty list needs no index
    if not values:
        return []
    if all(isinstance(v, str) for v in values):
        return (["uuid_match"] if all(_is_uuid(v) for v in values) else []) + ["keyword_match"]
    return ["int_match"]


def needed_capabilities(condition: models.FieldCondition) -> list[str]:
    """`infer_index_from_field_condition` (unindexed_field.rs:225-271): capabilities, any one of
    which serves the condition."""
    needed: list[str] = []
    match = condition.match
    if isinstance(match, models.MatchValue):  # unindexed_field.rs:171-191
        value = match.value
        if isinstance(value, bool):
            needed.append("bool_match")
        elif isinstance(value, int):
            needed.append("int_match")
        else:
            needed.extend((["uuid_match"] if _is_uuid(value) else []) + ["keyword_match"])
    elif isinstance(match, (models.MatchText, models.MatchTextAny)):
        needed.append("text")
    elif isinstance(match, models.MatchPhrase):
        needed.append("text_phrase")
    elif isinstance(match, models.MatchPrefix):
        needed.append("keyword_prefix")
    elif isinstance(match, models.MatchAny):
        needed.extend(_any_needs(match.any))
    elif isinstance(match, models.MatchExcept):
        needed.extend(_any_needs(match.except_))
    if isinstance(condition.range, models.DatetimeRange):
        needed.append("datetime_range")
    elif condition.range is not None:
        needed.extend(["float_range", "int_range"])
    if condition.geo_bounding_box or condition.geo_radius or condition.geo_polygon:
        needed.append("geo")
    if condition.values_count is not None or condition.is_empty is not None or condition.is_null is not None:
        needed.extend(CAPABILITY_NAMES)  # any index will do
    return needed


def _conditions(value: Any) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def iter_conditions(flt: models.Filter) -> list:
    """`Filter::iter_conditions` order: must, must_not, should, min_should (lib/segment/src/types.rs:4563-4570)."""
    return (
        _conditions(flt.must)
        + _conditions(flt.must_not)
        + _conditions(flt.should)
        + (list(flt.min_should.conditions) if flt.min_should else [])
    )


def total_conditions(flt: models.Filter) -> int:
    """`Filter::total_conditions_count` (lib/segment/src/types.rs:4573-4584, 4116-4130)."""
    count = 0
    for condition in iter_conditions(flt):
        if isinstance(condition, models.Filter):
            count += total_conditions(condition)
        elif isinstance(condition, models.NestedCondition):
            count += total_conditions(condition.nested.filter)
        else:
            count += 1
    return count


def one_unindexed_key(schema: dict[str, Any], flt: models.Filter) -> tuple[str, list[str]] | None:
    """The first key of `flt` lacking a suitable index, and the indexes that would do (their names,
    sorted and deduplicated as the error shows them), or None.

    `Extractor::update_from_filter_once` (unindexed_field.rs:354-409): top-level conditions in
    `iter_conditions` order, stopping at the first that leaves an unindexed key; a sub-filter or a
    nested filter is walked whole (upstream then picks any of its keys from a HashMap; here the
    first found). HasId, HasVector and Slice need no index."""
    found: dict[str, list[str]] = {}

    def visit(condition: Any, prefix: str | None) -> None:
        if isinstance(condition, models.Filter):
            for inner in iter_conditions(condition):
                visit(inner, prefix)
            return
        if isinstance(condition, models.NestedCondition):
            array_key = condition.nested.key + "[]"  # `JsonPath::array_key`
            for inner in iter_conditions(condition.nested.filter):
                visit(inner, f"{prefix}.{array_key}" if prefix else array_key)
            return
        if isinstance(condition, models.FieldCondition):
            key, needed = condition.key, needed_capabilities(condition)
        elif isinstance(condition, models.IsEmptyCondition):
            key, needed = condition.is_empty.key, list(CAPABILITY_NAMES)
        elif isinstance(condition, models.IsNullCondition):
            key, needed = condition.is_null.key, list(CAPABILITY_NAMES)
        else:
            return
        if not needed:
            return
        full_key = f"{prefix}.{key}" if prefix else key
        index = schema.get(full_key)
        if index is None or not set(needed) & index_capabilities(index):
            found.setdefault(full_key, []).extend(needed)

    for condition in iter_conditions(flt):
        visit(condition, None)
        if found:
            break
    if not found:
        return None
    key, needed = next(iter(found.items()))
    return key, sorted({CAPABILITY_NAMES[n] for n in needed})


# -- the per-collection record -------------------------------------------------------------
@dataclass
class _Optimization:
    """An indexing optimization: running since `started` (monotonic), or paused (`started` None:
    the collection is grey) with `remaining` seconds to go."""

    points: int
    remaining: float
    started: float | None
    uuid: str = field(default_factory=lambda: str(uuid.uuid4()))
    segment: str = field(default_factory=lambda: str(uuid.uuid4()))
    started_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat())


@dataclass
class _Collection:
    """What a server keeps of a collection and local mode does not."""

    name: str
    vectors: Any  # VectorParams or {name: VectorParams}, as JSON
    params: dict[str, Any]  # CollectionParams other than the vectors
    hnsw: dict[str, Any]
    optimizers: dict[str, Any]
    wal: dict[str, Any]
    quantization: Any
    strict: dict[str, Any] | None
    created_at: str
    payload_schema: dict[str, Any] = field(default_factory=dict)  # field name -> PayloadFieldSchema JSON
    write_limiter: RateLimiter | None = None
    read_limiter: RateLimiter | None = None
    optimization: _Optimization | None = None
    indexed: bool = True  # every stored point is in the vector index
    completed: list[dict[str, Any]] = field(default_factory=list)

    def strict_mode(self) -> dict[str, Any] | None:
        """The strict mode config when it is on (lib/storage/src/content_manager/collection_verification.rs:40-46)."""
        return self.strict if self.strict and self.strict.get("enabled") else None

    def dense_vectors(self) -> dict[str, dict[str, Any]]:
        """The dense vectors' params by name ("" for the unnamed one)."""
        if isinstance(self.vectors, dict) and "size" not in self.vectors:
            return self.vectors
        return {"": self.vectors}

    def hnsw_m(self, vector: str = "") -> int:
        """A vector's own `m` if it has one, else the collection's (verification/query.rs:66-76)."""
        own = (self.dense_vectors().get(vector) or {}).get("hnsw_config") or {}
        return own.get("m", self.hnsw["m"])

    def indexing_on(self) -> bool:
        """Vectors get an index: an HNSW graph (`m > 0`) and indexing not switched off
        (`optimizers_config.indexing_threshold = 0`)."""
        if self.optimizers.get("indexing_threshold") == 0:
            return False
        return any(self.hnsw_m(name) > 0 for name in self.dense_vectors()) or self.hnsw["m"] > 0


def _merge(base: dict[str, Any], diff: Any) -> dict[str, Any]:
    """A config updated by a diff: the diff's given fields win (e.g. `HnswConfig::update`)."""
    given = diff.model_dump(mode="json", exclude_none=True) if hasattr(diff, "model_dump") else dict(diff or {})
    return {**base, **given}


def _json(model: Any, exclude_none: bool = True) -> Any:
    """A model (or a list or dict of them) as JSON data."""
    if isinstance(model, list):
        return [_json(m, exclude_none) for m in model]
    if isinstance(model, dict):
        return {k: _json(v, exclude_none) for k, v in model.items()}
    return model.model_dump(mode="json", exclude_none=exclude_none) if hasattr(model, "model_dump") else model


_POINT_INSERT = TypeAdapter(models.PointInsertOperations)
_POINTS_SELECTOR = TypeAdapter(models.PointsSelector)
_FIELD_SCHEMA = TypeAdapter(models.PayloadFieldSchema)


# -- the server -----------------------------------------------------------------------------
class QdrantStandIn(LoopbackServer):
    """Qdrant 1.19 (REST) on 127.0.0.1; a context manager with `.url`.

    - `strict`: the strict mode a new collection gets unless it brings its own (Qdrant's
      `storage.collection.strict_mode`, lib/storage/src/content_manager/toc/create_collection.rs:208-224):
      a `models.StrictModeConfig`, or True for Qdrant Cloud's (`CLOUD_STRICT_MODE`). Its docs
      (https://qdrant.tech/documentation/cloud/configure-cluster/): "strict mode is activated by
      default for new collections, with the following restrictions: Retrieving points by filtering
      on a non indexed payload key is not allowed (unindexed_filtering_retrieve is set to false).
      Updating points by filtering on a non indexed payload key is not allowed
      (unindexed_filtering_update is set to false). The maximum number of payload indexes per
      collection is set to 100 (max_payload_index_count is set to 100).";
    - `write_rate_limit` / `read_rate_limit`: added to that default (strict mode on);
    - `optimize_seconds`: how long an indexing optimization runs (the collection is yellow);
    - `validate`: check request bodies against v1.19.0's OpenAPI document;
    - `port`: 0 for a free one;
    - `clock`: seconds, monotonic (rate limiters and optimizations; a test can pass its own).

    Test hooks: `restart()` (a server restart: optimizations pause, grey), `refuse_writes(n)`
    (the next n writes get 429), `requests` (method, path, status of every request)."""

    def __init__(
        self,
        *,
        strict: bool | models.StrictModeConfig = False,
        write_rate_limit: int | None = None,
        read_rate_limit: int | None = None,
        optimize_seconds: float = 0.3,
        validate: bool = True,
        port: int = 0,
        host: str = "127.0.0.1",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        default = CLOUD_STRICT_MODE if strict is True else (strict or None)
        config = default.model_dump(exclude_none=True) if default is not None else {}
        if write_rate_limit is not None:
            config.update(enabled=True, write_rate_limit=write_rate_limit)
        if read_rate_limit is not None:
            config.update(enabled=True, read_rate_limit=read_rate_limit)
        self.default_strict: dict[str, Any] | None = config or None
        self.optimize_seconds = optimize_seconds
        self.clock = clock
        self.host, self.port = host, port
        self.requests: list[tuple[str, str, int]] = []
        self._validator = OpenApiValidator.load() if validate else None
        self._local = QdrantClient(location=":memory:")
        self._collections: dict[str, _Collection] = {}
        self._refusals: list[int] = []  # Retry-After seconds of the writes to refuse next
        self._lock = threading.RLock()
        self._routes = self._build_routes()

    # -- lifecycle ------------------------------------------------------------------
    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        self._local.close()

    def restart(self) -> None:
        """Simulate a restart of the server: points, aliases and configs stay (they are on disk),
        but an optimization queued or running is not resumed until an update arrives.

        After a restart the optimizers have not been triggered, so a shard with pending
        optimizations reports grey rather than yellow (lib/collection/src/shards/local_shard/mod.rs:1205-1222,
        `has_triggered_optimizers` set only by an optimizer signal,
        lib/collection/src/update_workers/optimization_worker.rs:85-109). Docs: "Grey collection
        status ... You must send any update operation to trigger and start the optimizations again".
        Rate limiters start full again (`LocalShard::new`, mod.rs:317-328)."""
        with self._lock:
            now = self.clock()
            for coll in self._collections.values():
                self._refresh(coll, now)
                opt = coll.optimization
                if opt is not None and opt.started is not None:
                    opt.remaining, opt.started = max(opt.remaining - (now - opt.started), 0.0), None
                self._build_limiters(coll, on_load=True)

    def refuse_writes(self, n: int, retry_after: int = 1) -> None:
        """The next `n` write requests (point and index updates) get HTTP 429 with `Retry-After`,
        as the write rate limiter answers, whatever the bucket holds."""
        with self._lock:
            self._refusals.extend([retry_after] * n)

    def collection_status(self, name: str) -> str:
        with self._lock:
            coll = self._collections[self._resolve(name)]
            return self._status(coll, self.clock())

    # -- HTTP --------------------------------------------------------------------------
    def handle(self, request: Handler) -> None:
        started = time.monotonic()
        parts = urlsplit(request.path)
        path, query = parts.path, {k: v[-1] for k, v in parse_qs(parts.query).items()}
        length = int(request.headers.get("content-length") or 0)
        raw = request.rfile.read(length) if length else b""
        status, body, headers = 200, None, {}
        try:
            route, params = self._route(request.command, path)
        except LookupError:  # actix's default service: 404, empty body
            with self._lock:
                self.requests.append((request.command, path, 404))
            return request.reply(404, b"")
        try:
            handler, schema_path = route
            payload = None
            if raw:
                try:
                    payload = json.loads(raw)
                except ValueError as exc:
                    raise QdrantError(400, f"Format error in JSON body: {exc}", format_error=True) from exc
            if self._validator is not None and schema_path is not None:
                self._validator.check_request(schema_path, request.command.lower(), payload)
            with self._lock:
                result = handler(payload, query, **params)
            if handler == self._root:  # `VersionInfo` alone, not in the envelope (src/actix/mod.rs:58-60)
                body = result
            else:
                body = {"result": result, "status": "ok", "time": time.monotonic() - started}
        except QdrantError as exc:
            status, headers = exc.status, exc.headers
            body = {"status": {"error": exc.message}, "time": 0.0 if exc.format_error else time.monotonic() - started}
        except (ValueError, ValidationError) as exc:  # local mode's refusals, invalid models
            status = 400
            body = {"status": {"error": f"Bad request: {exc}"}, "time": time.monotonic() - started}
        except Exception as exc:  # a bug here: answered, as Qdrant answers its own (500), not a dropped socket
            status = 500
            body = {
                "status": {"error": f"Service internal error: {type(exc).__name__}: {exc}"},
                "time": time.monotonic() - started,
            }
        with self._lock:
            self.requests.append((request.command, path, status))
        request.reply(status, json.dumps(body, separators=(",", ":")).encode(), headers=headers)

    def _route(self, method: str, path: str) -> tuple[tuple[Callable, str | None], dict[str, str]]:
        for (verb, pattern), route in self._routes.items():
            if verb == method and (m := pattern.fullmatch(path)):
                return route, {k: unquote(v) for k, v in m.groupdict().items()}
        raise LookupError(f"{method} {path}")

    def _build_routes(self) -> dict:
        c = "/collections/{collection_name}"
        table = [
            ("GET", "/", self._root, "/"),
            ("GET", "/collections", self._list_collections, "/collections"),
            ("POST", "/collections/aliases", self._update_aliases, "/collections/aliases"),
            ("GET", "/aliases", self._aliases, "/aliases"),
            ("GET", c, self._get_collection, c),
            ("PUT", c, self._create_collection, c),
            ("PATCH", c, self._update_collection, c),
            ("DELETE", c, self._delete_collection, c),
            ("GET", c + "/exists", self._exists, c + "/exists"),
            ("GET", c + "/aliases", self._collection_aliases, c + "/aliases"),
            ("GET", c + "/optimizations", self._optimizations, c + "/optimizations"),
            ("PUT", c + "/index", self._create_index, c + "/index"),
            ("DELETE", c + "/index/{field_name}", self._delete_index, c + "/index/{field_name}"),
            ("PUT", c + "/points", self._upsert, c + "/points"),
            ("POST", c + "/points", self._retrieve, c + "/points"),
            ("POST", c + "/points/delete", self._delete, c + "/points/delete"),
            ("POST", c + "/points/payload", self._set_payload, c + "/points/payload"),
            ("PUT", c + "/points/payload", self._overwrite_payload, c + "/points/payload"),
            ("POST", c + "/points/payload/delete", self._delete_payload, c + "/points/payload/delete"),
            ("POST", c + "/points/count", self._count, c + "/points/count"),
            ("POST", c + "/points/scroll", self._scroll, c + "/points/scroll"),
            ("POST", c + "/points/query", self._query, c + "/points/query"),
            ("POST", c + "/points/query/groups", self._query_groups, c + "/points/query/groups"),
        ]
        routes = {}
        for method, template, handler, schema_path in table:
            pattern = re.escape(template).replace(r"\{collection_name\}", "(?P<name>[^/]+)")
            pattern = pattern.replace(r"\{field_name\}", "(?P<field_name>[^/]+)")
            routes[(method, re.compile(pattern))] = (handler, schema_path)
        return routes

    # -- shared checks ------------------------------------------------------------------------
    def _resolve(self, name: str) -> str:
        """The collection `name` leads to, through an alias (lib/storage/src/content_manager/toc/mod.rs:473)."""
        if name in self._collections:
            return name
        for alias in self._local.get_aliases().aliases:
            if alias.alias_name == name and alias.collection_name in self._collections:
                return alias.collection_name
        raise not_found(name)

    def _strict_check(
        self,
        coll: _Collection,
        query: dict[str, str],
        *,
        read: models.Filter | None = None,
        write: models.Filter | None = None,
        limit: int | None = None,
        exact: bool | None = None,
        params: models.SearchParams | None = None,
    ) -> None:
        """`StrictModeVerification::check_strict_mode` (lib/collection/src/operations/verification/mod.rs:165-178)
        for one request, once its own `check_custom` has run: the limit, the filters (read, then
        write: mod.rs:113-161), `exact`, the search parameters (mod.rs:321-362); then the timeout
        (lib/storage/src/content_manager/collection_verification.rs:70-72)."""
        config = coll.strict_mode()
        if config is None:
            return
        _check_limit(limit, config.get("max_query_limit"), "limit")
        self._check_filter(coll, read, config.get("unindexed_filtering_retrieve"), config)
        self._check_filter(coll, write, config.get("unindexed_filtering_update"), config)
        _check_exact(exact, config)
        if params is not None:
            oversampling = params.quantization.oversampling if params.quantization else None
            _check_limit(oversampling, config.get("search_max_oversampling"), "oversampling")
            _check_limit(params.hnsw_ef, config.get("search_max_hnsw_ef"), "hnsw_ef")
            _check_exact(params.exact, config)
        if "timeout" in query:
            _check_limit(int(query["timeout"]), config.get("max_timeout"), "timeout")

    def _check_filter(
        self, coll: _Collection, flt: models.Filter | None, allow_unindexed: bool | None, config: dict[str, Any]
    ) -> None:
        """mod.rs:119-149: with unindexed filtering disallowed (`Some(false)`), the first key lacking
        a suitable index fails the request; then the condition count limit."""
        if flt is None:
            return
        if allow_unindexed is False and (unindexed := one_unindexed_key(coll.payload_schema, flt)):
            key, schemas = unindexed
            raise strict_mode_error(
                f'Index required but not found for "{key}" of one of the following types: [{", ".join(schemas)}]',
                "Create an index for this key or use a different filter.",
            )
        limit = config.get("filter_max_conditions")
        if limit is not None and (count := total_conditions(flt)) > limit:  # mod.rs:185-197
            raise strict_mode_error(
                f"Filter condition limit reached ({count} > {limit})", "Reduce the amount of conditions of your filter."
            )

    def _check_fullscan(self, coll: _Collection, query: Any, using: str | None, flt: models.Filter | None) -> None:
        """`Query::check_fullscan` (lib/collection/src/operations/verification/query.rs:40-131): with
        `search_allow_exact: false`, a vector query on a dense vector without an HNSW graph is refused
        unless it filters on a tenant index and `payload_m` is positive."""
        config = coll.strict_mode()
        if config is None or config.get("search_allow_exact") is not False or query is None:
            return
        if isinstance(
            query, (models.FusionQuery, models.RrfQuery, models.OrderByQuery, models.FormulaQuery, models.SampleQuery)
        ):
            return
        name = using or ""
        sparse = self._local.get_collection(coll.name).config.params.sparse_vectors or {}
        if name in sparse:  # sparse vectors are always indexed
            return
        m = coll.hnsw_m(name)
        if m > 0:
            return
        own = (coll.dense_vectors().get(name) or {}).get("hnsw_config") or {}
        payload_m = own.get("payload_m", coll.hnsw.get("payload_m", m))
        label = "" if name == "" else f" on '{name}'"
        tenant = flt is not None and any(
            isinstance(c, models.FieldCondition)
            and isinstance(s := coll.payload_schema.get(c.key), dict)
            and s.get("is_tenant")
            for c in iter_conditions(flt)
        )
        if not tenant:
            raise strict_mode_error(
                f"Request is forbidden{label} because global vector indexing is disabled (hnsw_config.m = 0)",
                "Use tenant-specific filter, enable global vector indexing or enable strict mode "
                "`search_allow_exact` option",
            )
        if payload_m == 0:
            raise strict_mode_error(
                f"Request is forbidden{label} because vector indexing is disabled "
                "(hnsw_config.m = 0 and hnsw_config.payload_m = 0)",
                "Enable vector indexing, use a prefetch query with indexed vectors or enable strict mode "
                "`search_allow_exact` option",
            )

    def _check_prefetch(self, coll: _Collection, prefetch: models.Prefetch, query: dict[str, str]) -> None:
        """`CollectionPrefetch`'s verification (query.rs:187-234): its own prefetches first, then its
        full-scan check, then limit, filter and search parameters."""
        for inner in _conditions(prefetch.prefetch):
            self._check_prefetch(coll, inner, query)
        self._check_fullscan(coll, prefetch.query, prefetch.using, prefetch.filter)
        self._strict_check(
            coll,
            {},
            read=prefetch.filter,
            limit=prefetch.limit if prefetch.limit is not None else 10,
            params=prefetch.params,
        )

    def _write(self, coll: _Collection, cost: Callable[[], int]) -> None:
        """A write reaching the shard: a refusal asked for by `refuse_writes`, else the write rate
        limiter with cost max(1, points affected) (lib/collection/src/shards/replica_set/update.rs:667-693,
        `estimate_request_cardinality`, lib/collection/src/shards/shard.rs:492-505). Checked after
        strict mode, which runs before the operation reaches a shard."""
        if self._refusals:
            retry_after = self._refusals.pop(0)
            raise rate_limit_error("Write", max(1, cost()), 0.0, float(retry_after))
        if coll.write_limiter is not None:
            coll.write_limiter.try_consume("Write", max(1, cost()))

    def _read(self, coll: _Collection, cost: int) -> None:
        """The read rate limiter (lib/collection/src/shards/local_shard/mod.rs:1429-1455), for
        count, scroll and retrieve (lib/collection/src/shards/local_shard/shard_ops.rs:279-285, 393-399, 448)."""
        if coll.read_limiter is not None:
            coll.read_limiter.try_consume("Read", cost)

    def _build_limiters(self, coll: _Collection, *, on_load: bool) -> None:
        """Rate limiters from the strict mode config. A shard being created or loaded takes the limits
        whether or not strict mode is enabled (lib/collection/src/shards/local_shard/mod.rs:317-328); an
        update of the strict mode config sets them only when it is enabled (mod.rs:1042-1056)."""
        config = coll.strict if on_load else coll.strict_mode()
        config = config or {}
        write, read = config.get("write_rate_limit"), config.get("read_rate_limit")
        coll.write_limiter = RateLimiter(write, self.clock) if write else None
        coll.read_limiter = RateLimiter(read, self.clock) if read else None

    # -- optimizations --------------------------------------------------------------------------
    def _points(self, coll: _Collection) -> int:
        return self._local.count(coll.name, exact=True).count

    def _refresh(self, coll: _Collection, now: float) -> None:
        opt = coll.optimization
        if opt is not None and opt.started is not None and now - opt.started >= opt.remaining:
            finished = datetime.now(timezone.utc).isoformat()
            coll.completed.append(
                {
                    "uuid": opt.uuid,
                    "optimizer": "indexing",
                    "status": "done",
                    "segments": [{"uuid": opt.segment, "points_count": opt.points}],
                    "progress": {
                        "name": "Segment Optimizing",
                        "started_at": opt.started_at,
                        "finished_at": finished,
                        "duration_sec": self.optimize_seconds,
                    },
                }
            )
            coll.optimization, coll.indexed = None, True

    def _status(self, coll: _Collection, now: float) -> str:
        """Yellow while an optimization runs, grey while one waits for a trigger after a restart,
        green otherwise (lib/collection/src/shards/local_shard/mod.rs:1168-1226; no red here)."""
        self._refresh(coll, now)
        if coll.optimization is None:
            return "green"
        return "yellow" if coll.optimization.started is not None else "grey"

    def _updated(self, coll: _Collection) -> None:
        """An update reached the collection: the optimizers run (a paused optimization resumes),
        and if indexing is on and points are not in the index, an indexing optimization starts
        (the update signals the optimizers: optimization_worker.rs:85-109).

        A server indexes segments past `indexing_threshold`; here points written while indexing
        is on count as indexed at once, and those written while it was off (`m = 0`, or
        `indexing_threshold = 0`, e.g. a bulk load) are indexed by one optimization of
        `optimize_seconds` once it is turned on."""
        now = self.clock()
        self._refresh(coll, now)
        points = self._points(coll)
        if not coll.indexing_on():
            coll.optimization = None
            coll.indexed = points == 0
            return
        if coll.optimization is not None:
            if coll.optimization.started is None:
                coll.optimization.started = now
            coll.optimization.points = points
            return
        if not coll.indexed and points:
            coll.optimization = _Optimization(points=points, remaining=self.optimize_seconds, started=now)
        else:
            coll.indexed = True

    # -- service ----------------------------------------------------------------------------------
    def _root(self, body: Any, query: dict) -> Any:
        return {"title": "qdrant - vector search engine", "version": QDRANT_VERSION, "commit": None}

    def _list_collections(self, body: Any, query: dict) -> Any:
        return {"collections": [{"name": name} for name in self._collections]}

    def _aliases(self, body: Any, query: dict) -> Any:
        return _json(self._local.get_aliases())

    def _collection_aliases(self, body: Any, query: dict, name: str) -> Any:
        self._resolve(name)
        return _json(self._local.get_collection_aliases(name))

    def _update_aliases(self, body: Any, query: dict) -> Any:
        request = models.ChangeAliasesOperation.model_validate(body)
        for action in request.actions:
            if isinstance(action, models.CreateAliasOperation):  # collection_meta_ops.rs:326
                if action.create_alias.collection_name not in self._collections:
                    raise not_found(action.create_alias.collection_name)
        return self._local.update_collection_aliases(change_aliases_operations=request.actions)

    def _exists(self, body: Any, query: dict, name: str) -> Any:
        try:
            self._resolve(name)
            return {"exists": True}
        except QdrantError:
            return {"exists": False}

    # -- collections -------------------------------------------------------------------------------
    def _create_collection(self, body: Any, query: dict, name: str) -> Any:
        """Create in local mode (vectors, sparse vectors, metadata) and keep the rest
        (lib/storage/src/content_manager/toc/create_collection.rs:59-240)."""
        request = models.CreateCollection.model_validate(body or {})
        if name in self._collections:  # collections_ops.rs:16-23: AlreadyExists, 409
            raise wrong_input(f"Collection `{name}` already exists!", 409)
        if any(a.alias_name == name for a in self._local.get_aliases().aliases):  # create_collection.rs:100-109
            raise wrong_input(f"Can't create collection with name {name}. Alias with the same name already exists")
        for field_name in ("shard_number", "replication_factor", "write_consistency_factor"):
            if getattr(request, field_name) == 0:  # create_collection.rs:173-183
                raise wrong_input(f"`{field_name}` cannot be 0")
        self._local.create_collection(
            name,
            vectors_config=request.vectors,
            sparse_vectors_config=request.sparse_vectors,
            metadata=request.metadata,
        )
        if request.strict_mode_config is not None:  # create_collection.rs:208-224: a diff over the default
            strict = _merge(self.default_strict or {}, request.strict_mode_config)
        else:
            strict = copy.deepcopy(self.default_strict)
        coll = _Collection(
            name=name,
            vectors=_json(request.vectors) if request.vectors is not None else {},
            params={
                "shard_number": request.shard_number or 1,
                "sharding_method": _json(request.sharding_method),
                "replication_factor": request.replication_factor or 1,
                "write_consistency_factor": request.write_consistency_factor or 1,
                "on_disk_payload": True if request.on_disk_payload is None else request.on_disk_payload,
                "payload": _json(request.payload),
                "id_tracker": _json(request.id_tracker),
            },
            hnsw=_merge(DEFAULT_HNSW, request.hnsw_config),
            optimizers=_merge(DEFAULT_OPTIMIZERS, _optimizers_diff(request.optimizers_config)),
            wal=_merge(DEFAULT_WAL, request.wal_config),
            quantization=_json(request.quantization_config),
            strict=strict,
            created_at=datetime.now(timezone.utc).isoformat(),
        )
        self._collections[name] = coll
        self._build_limiters(coll, on_load=True)
        return True

    def _update_collection(self, body: Any, query: dict, name: str) -> Any:
        """PATCH (lib/storage/src/content_manager/toc/collection_meta_ops.rs:151-219): each given diff is
        applied; a diff of the optimizers, params, HNSW, vectors, quantization or sparse vectors (even
        an empty one) recreates the optimizers, which signals them (collection_meta_ops.rs:215-217,
        lib/collection/src/shards/local_shard/updaters.rs:140); metadata and strict mode alone do not."""
        request = models.UpdateCollection.model_validate(body or {})
        real = name if name in self._collections else self._resolve(name)
        coll = self._collections[real]
        if request.metadata is not None or request.sparse_vectors is not None or request.vectors is not None:
            self._local.update_collection(
                real,
                metadata=request.metadata,
                sparse_vectors_config=request.sparse_vectors,
                vectors_config=request.vectors,
            )
        if request.optimizers_config is not None:
            coll.optimizers = _merge(coll.optimizers, _optimizers_diff(request.optimizers_config))
        if request.params is not None:
            coll.params = _merge(coll.params, request.params)
        if request.hnsw_config is not None:
            coll.hnsw = _merge(coll.hnsw, request.hnsw_config)
        if request.vectors is not None:
            for vector_name, diff in request.vectors.items():
                if isinstance(coll.vectors, dict) and "size" not in coll.vectors:
                    coll.vectors[vector_name] = _merge(coll.vectors.get(vector_name) or {}, diff)
                elif vector_name == "":
                    coll.vectors = _merge(coll.vectors, diff)
        if request.quantization_config is not None:
            diff = request.quantization_config
            coll.quantization = None if diff == models.Disabled.DISABLED else _json(diff)
        if request.strict_mode_config is not None:  # collection_ops.rs:182-215
            coll.strict = _merge(coll.strict or {}, request.strict_mode_config)
            self._build_limiters(coll, on_load=False)
        recreate = any(
            getattr(request, f) is not None
            for f in ("optimizers_config", "params", "hnsw_config", "vectors", "quantization_config", "sparse_vectors")
        )
        if recreate:
            self._updated(coll)
        return True

    def _delete_collection(self, body: Any, query: dict, name: str) -> Any:
        self._collections.pop(name, None)
        return self._local.delete_collection(name)

    def _get_collection(self, body: Any, query: dict, name: str) -> Any:
        """`CollectionInfo`: counts from local mode, everything else from the record."""
        real = self._resolve(name)
        coll = self._collections[real]
        local = self._local.get_collection(real)
        status = self._status(coll, self.clock())
        points = local.points_count or 0
        indexed = points if coll.indexing_on() and coll.indexed and coll.optimization is None else 0
        schema = {}
        for field_name, index in coll.payload_schema.items():
            present = models.Filter(must_not=[models.IsEmptyCondition(is_empty=models.PayloadField(key=field_name))])
            info = {
                "data_type": index if isinstance(index, str) else index["type"],
                "points": self._local.count(real, count_filter=present, exact=True).count,
            }
            if isinstance(index, dict):
                info["params"] = index
            schema[field_name] = info
        params = {key: value for key, value in coll.params.items() if value is not None}
        params["vectors"] = coll.vectors
        sparse = local.config.params.sparse_vectors
        if sparse:
            params["sparse_vectors"] = _json(sparse)
        config = {
            "params": params,
            "hnsw_config": coll.hnsw,
            "optimizer_config": coll.optimizers,
            "wal_config": coll.wal,
            "quantization_config": coll.quantization,
            "strict_mode_config": coll.strict,
            "metadata": local.config.metadata,
        }
        return {
            "status": status,
            "optimizer_status": "ok",
            "indexed_vectors_count": indexed,
            "points_count": points,
            "segments_count": 1,
            "config": {k: v for k, v in config.items() if v is not None},
            "payload_schema": schema,
            "update_queue": {"length": 0},
            "created_at": coll.created_at,
        }

    def _optimizations(self, body: Any, query: dict, name: str) -> Any:
        """`OptimizationsResponse` (lib/shard/src/operations/optimization.rs:9-113) of the one
        segment modelled: queued while grey, running while yellow, idle when green."""
        coll = self._collections[self._resolve(name)]
        status = self._status(coll, self.clock())
        opt = coll.optimization
        segment = [{"uuid": opt.segment, "points_count": opt.points}] if opt else []
        summary = {
            "queued_optimizations": 0,
            "queued_segments": 0,
            "queued_points": 0,
            "idle_segments": 0 if opt else 1,
        }
        running = []
        if status == "grey":
            summary.update(queued_optimizations=1, queued_segments=1, queued_points=opt.points)
        elif status == "yellow":
            running.append(
                {
                    "uuid": opt.uuid,
                    "optimizer": "indexing",
                    "status": "optimizing",
                    "segments": segment,
                    "progress": {"name": "Segment Optimizing", "started_at": opt.started_at},
                }
            )
        result: dict[str, Any] = {"summary": summary, "running": running}
        wanted = set(query.get("with", "").split(","))
        if "queued" in wanted:
            result["queued"] = [{"optimizer": "indexing", "segments": segment}] if status == "grey" else []
        if "completed" in wanted:
            limit = int(query.get("completed_limit", 16))
            result["completed"] = coll.completed[-limit:] if limit else []
        if "idle_segments" in wanted:
            result["idle_segments"] = (
                [] if opt else [{"uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, name)), "points_count": self._points(coll)}]
            )
        return result

    # -- payload indexes -------------------------------------------------------------------------
    def _create_index(self, body: Any, query: dict, name: str) -> Any:
        """Record the index (local mode has none); strict mode's `max_payload_index_count`
        (src/common/update.rs:211-233) is checked first."""
        request = models.CreateFieldIndex.model_validate(body)
        coll = self._collections[self._resolve(name)]
        config = coll.strict_mode()
        if (
            config
            and (limit := config.get("max_payload_index_count")) is not None
            and len(coll.payload_schema) >= limit
        ):
            raise strict_mode_error(
                f"Collection already has the maximum number of payload indices ({limit})",
                "Please delete an existing index before creating a new one.",
            )
        if request.field_schema is None:
            raise bad_request("Can't auto-detect field type, please specify `field_schema` in the request")
        self._write(coll, lambda: 0)
        coll.payload_schema[request.field_name] = _json(_FIELD_SCHEMA.validate_python(request.field_schema))
        self._updated(coll)
        return _update_result(query)

    def _delete_index(self, body: Any, query: dict, name: str, field_name: str) -> Any:
        coll = self._collections[self._resolve(name)]
        self._write(coll, lambda: 0)
        coll.payload_schema.pop(field_name, None)
        self._updated(coll)
        return _update_result(query)

    # -- points: writes -----------------------------------------------------------------------------
    def _upsert(self, body: Any, query: dict, name: str) -> Any:
        real = self._resolve(name)
        coll = self._collections[real]
        request = _POINT_INSERT.validate_python(body)
        points = request.batch if isinstance(request, models.PointsBatch) else request.points
        count = len(points.ids) if isinstance(points, models.Batch) else len(points)
        config = coll.strict_mode()
        if config:  # verification/update.rs:155-182
            _check_limit(count, config.get("upsert_max_batchsize"), "upsert limit")
            self._strict_check(coll, query)
        self._write(coll, lambda: count)
        self._local.upsert(real, points=points, update_filter=request.update_filter, update_mode=request.update_mode)
        coll.indexed = coll.indexed and coll.indexing_on() and coll.optimization is None
        self._updated(coll)
        return _update_result(query)

    def _affected(self, real: str, ids: Sequence[Any] | None, flt: models.Filter | None) -> Callable[[], int]:
        """The cost of a write: its ids, or the points its filter matches."""
        if ids is not None:
            return lambda: len(ids)
        return lambda: self._local.count(real, count_filter=flt, exact=True).count

    def _delete(self, body: Any, query: dict, name: str) -> Any:
        real = self._resolve(name)
        coll = self._collections[real]
        selector = _POINTS_SELECTOR.validate_python(body)
        flt = selector.filter if isinstance(selector, models.FilterSelector) else None
        self._strict_check(coll, query, write=flt)  # verification/update.rs:46-69
        ids = selector.points if isinstance(selector, models.PointIdsList) else None
        self._write(coll, self._affected(real, ids, flt))
        self._local.delete(real, points_selector=selector)
        self._updated(coll)
        return _update_result(query)

    def _payload_write(self, body: Any, query: dict, name: str, apply: str) -> Any:
        real = self._resolve(name)
        coll = self._collections[real]
        request = (models.DeletePayload if apply == "delete" else models.SetPayload).model_validate(body)
        self._strict_check(coll, query, write=request.filter)  # verification/update.rs:93-153
        self._write(coll, self._affected(real, request.points, request.filter))
        selector = (
            models.PointIdsList(points=request.points)
            if request.points is not None
            else models.FilterSelector(filter=request.filter)
        )
        if apply == "delete":
            self._local.delete_payload(real, keys=request.keys, points=selector)
        elif apply == "overwrite":
            self._local.overwrite_payload(real, payload=request.payload, points=selector)
        else:
            self._local.set_payload(real, payload=request.payload, points=selector, key=request.key)
        self._updated(coll)
        return _update_result(query)

    def _set_payload(self, body: Any, query: dict, name: str) -> Any:
        return self._payload_write(body, query, name, "set")

    def _overwrite_payload(self, body: Any, query: dict, name: str) -> Any:
        return self._payload_write(body, query, name, "overwrite")

    def _delete_payload(self, body: Any, query: dict, name: str) -> Any:
        return self._payload_write(body, query, name, "delete")

    # -- points: reads --------------------------------------------------------------------------------
    def _count(self, body: Any, query: dict, name: str) -> Any:
        real = self._resolve(name)
        coll = self._collections[real]
        request = models.CountRequest.model_validate(body or {})
        exact = True if request.exact is None else request.exact
        self._strict_check(coll, query, read=request.filter, exact=exact)  # verification/count.rs
        self._read(coll, 1 + (total_conditions(request.filter) if request.filter else 0))
        return _json(self._local.count(real, count_filter=request.filter, exact=exact))

    def _scroll(self, body: Any, query: dict, name: str) -> Any:
        real = self._resolve(name)
        coll = self._collections[real]
        request = models.ScrollRequest.model_validate(body or {})
        self._strict_check(coll, query, read=request.filter, limit=request.limit)  # verification/local_shard.rs:6-26
        self._read(coll, 1 + (total_conditions(request.filter) if request.filter else 0))
        points, offset = self._local.scroll(
            real,
            scroll_filter=request.filter,
            limit=request.limit if request.limit is not None else 10,
            offset=request.offset,
            order_by=request.order_by,
            with_payload=True if request.with_payload is None else request.with_payload,
            with_vectors=False if request.with_vector is None else request.with_vector,
        )
        return {"points": _json(points, exclude_none=False), "next_page_offset": offset}

    def _retrieve(self, body: Any, query: dict, name: str) -> Any:
        real = self._resolve(name)
        coll = self._collections[real]
        request = models.PointRequest.model_validate(body)
        self._read(coll, len(request.ids))
        points = self._local.retrieve(
            real,
            ids=request.ids,
            with_payload=True if request.with_payload is None else request.with_payload,
            with_vectors=False if request.with_vector is None else request.with_vector,
        )
        return _json(points, exclude_none=False)

    def _query_kwargs(self, request: models.QueryRequest | models.QueryGroupsRequest) -> dict[str, Any]:
        # REST defaults (the request models' docs): no payload, no vectors, limit 10.
        return dict(
            query=request.query,
            using=request.using,
            prefetch=request.prefetch,
            query_filter=request.filter,
            search_params=_local_params(request.params),
            score_threshold=request.score_threshold,
            with_payload=False if request.with_payload is None else request.with_payload,
            with_vectors=False if request.with_vector is None else request.with_vector,
            lookup_from=request.lookup_from,
            limit=request.limit if request.limit is not None else 10,
        )

    def _query(self, body: Any, query: dict, name: str) -> Any:
        """Universal query. Strict mode: every prefetch first, then the full-scan check of the query
        when it has no prefetch, then its limit, filter and parameters (verification/query.rs:134-185)."""
        real = self._resolve(name)
        coll = self._collections[real]
        request = models.QueryRequest.model_validate(body or {})
        if coll.strict_mode():
            for prefetch in _conditions(request.prefetch):
                self._check_prefetch(coll, prefetch, query)
            if not request.prefetch:
                self._check_fullscan(coll, request.query, request.using, request.filter)
            self._strict_check(
                coll,
                query,
                read=request.filter,
                limit=request.limit if request.limit is not None else 10,
                params=request.params,
            )
        result = self._local.query_points(real, offset=request.offset, **self._query_kwargs(request))
        return {"points": _json(result.points, exclude_none=False)}

    def _query_groups(self, body: Any, query: dict, name: str) -> Any:
        """Grouped query. Strict mode (verification/query.rs:236-281): the full-scan check without
        prefetches, the `group_by` key's index (verification/mod.rs:364-389), then limit x group
        size, the filter and parameters. v1.19.0 does not check a groups request's prefetches."""
        real = self._resolve(name)
        coll = self._collections[real]
        request = models.QueryGroupsRequest.model_validate(body or {})
        limit = request.limit if request.limit is not None else 10
        group_size = request.group_size if request.group_size is not None else 3
        config = coll.strict_mode()
        if config:
            if not request.prefetch:
                self._check_fullscan(coll, request.query, request.using, request.filter)
            if config.get("unindexed_filtering_retrieve") is False:
                index = coll.payload_schema.get(request.group_by)
                if index is None:
                    raise strict_mode_error(
                        f'Index required but not found for "{request.group_by}"',
                        "Create an index supporting `match` for this key.",
                    )
                if not supports_match(index):
                    kind = (index if isinstance(index, str) else index["type"]).capitalize()
                    raise strict_mode_error(
                        f'Index of type "{kind}" found for "{request.group_by}"',
                        "Create an index supporting `match` for this key.",
                    )
            self._strict_check(coll, query, read=request.filter, limit=limit * group_size, params=request.params)
        kwargs = self._query_kwargs(request)
        result = self._local.query_points_groups(
            real, group_by=request.group_by, group_size=group_size, with_lookup=request.with_lookup, **kwargs
        )
        return _json(result, exclude_none=False)


def _check_limit(value: Any, limit: Any, name: str) -> None:
    """`check_limit_opt` (lib/collection/src/operations/verification/mod.rs:287-304)."""
    if value is not None and limit is not None and value > limit:
        raise strict_mode_error(
            f'Limit exceeded {value:g} > {limit:g} for "{name}"'
            if isinstance(value, float)
            else f'Limit exceeded {value} > {limit} for "{name}"',
            f'Reduce the "{name}" parameter to or below {limit}.',
        )


def _check_exact(exact: bool | None, config: dict[str, Any]) -> None:
    """`check_bool_opt` for `search_allow_exact` (verification/mod.rs:78-86, 271-285)."""
    if config.get("search_allow_exact") is False and exact:
        raise strict_mode_error("Exact search disabled!", "Set exact=false.")


def _optimizers_diff(diff: models.OptimizersConfigDiff | None) -> dict[str, Any]:
    """An optimizers diff in `OptimizersConfig`'s terms: `max_optimization_threads: "auto"` is no limit."""
    if diff is None:
        return {}
    given = diff.model_dump(mode="json", exclude_none=True)
    if given.get("max_optimization_threads") == "auto":
        given["max_optimization_threads"] = None
    return given


def _local_params(params: models.SearchParams | None) -> models.SearchParams | None:
    """What local mode does with search parameters: only `idf` (its exact search has no use for
    the rest, and it warns about them, which tests treat as errors)."""
    idf = getattr(params, "idf", None) if params is not None else None
    return models.SearchParams(idf=idf) if idf is not None else None


def _update_result(query: dict[str, str]) -> dict[str, Any]:
    """`UpdateResult`: completed when the caller waited (`wait=true`), acknowledged otherwise."""
    return {"operation_id": 0, "status": "completed" if query.get("wait") == "true" else "acknowledged"}


# -- request bodies against Qdrant's OpenAPI document ----------------------------------------------
class OpenApiValidator:
    """Request bodies checked against the request schemas of v1.19.0's OpenAPI document
    (docs/redoc/master/openapi.json at v1.19.0, the subset this server serves). A body the server
    could not deserialize is refused as actix does: 400, "Format error in JSON body: ..."
    (src/actix/mod.rs:229-281). OpenAPI 3.0's `nullable` is read as "or null"."""

    def __init__(self, document: dict[str, Any]) -> None:
        from jsonschema import Draft7Validator
        from referencing import Registry, Resource
        from referencing.jsonschema import DRAFT7

        self.document = _nullable_to_json_schema(document)
        resource = Resource(contents=self.document, specification=DRAFT7)
        self.registry = Registry().with_resource("urn:qdrant-openapi", resource)
        self._validators: dict[str, Any] = {}
        self._cls = Draft7Validator

    @classmethod
    @functools.cache
    def load(cls, path: Path = OPENAPI_SUBSET) -> OpenApiValidator:
        """Read once per process; the compiled validators are shared by every server."""
        return cls(json.loads(path.read_text(encoding="utf-8")))

    def validator(self, ref: str) -> Any:
        if ref not in self._validators:
            self._validators[ref] = self._cls({"$ref": f"urn:qdrant-openapi{ref}"}, registry=self.registry)
        return self._validators[ref]

    def request_schema(self, path: str, method: str) -> str | None:
        operation = self.document["paths"].get(path, {}).get(method, {})
        schema = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
        return schema["$ref"] if schema else None

    def check_request(self, path: str, method: str, body: Any) -> None:
        ref = self.request_schema(path, method)
        if ref is None:
            return
        if body is None:
            raise QdrantError(400, "Json payload error: Content type error", format_error=True)
        error = next(iter(self.validator(ref).iter_errors(body)), None)
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "body"
            raise QdrantError(400, f"Format error in JSON body: {where}: {error.message}", format_error=True)

    def response_errors(self, path: str, method: str, status: int, body: Any) -> list[str]:
        """For tests: how `body` departs from the documented response of `method path` (status 200)."""
        operation = self.document["paths"][path][method]
        schema = operation["responses"][str(status)]["content"]["application/json"]["schema"]
        validator = self._cls(_rebase(schema), registry=self.registry)
        return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(body)]


def _rebase(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: (f"urn:qdrant-openapi{v}" if k == "$ref" else _rebase(v)) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_rebase(v) for v in schema]
    return schema


def _nullable_to_json_schema(node: Any) -> Any:
    if isinstance(node, list):
        return [_nullable_to_json_schema(v) for v in node]
    if not isinstance(node, dict):
        return node
    node = {k: _nullable_to_json_schema(v) for k, v in node.items()}
    if node.pop("nullable", False):
        if "type" in node:
            node["type"] = [node["type"], "null"] if isinstance(node["type"], str) else [*node["type"], "null"]
            if "enum" in node:
                node["enum"] = [*node["enum"], None]
        elif set(node) - {"description", "default", "example"}:
            node = {"anyOf": [node, {"type": "null"}]}
        else:
            node = {**node, "type": "null"}
    return node


def extract_openapi_subset(document: dict[str, Any], paths: Sequence[str]) -> dict[str, Any]:
    """The `paths` of Qdrant's OpenAPI document and the schemas they reference, transitively."""
    schemas = document["components"]["schemas"]
    subset_paths = {p: document["paths"][p] for p in paths}
    wanted: list[str] = []

    def refs(node: Any) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
                name = ref.rsplit("/", 1)[1]
                if name not in wanted:
                    wanted.append(name)
                    refs(schemas[name])
            for value in node.values():
                refs(value)
        elif isinstance(node, list):
            for value in node:
                refs(value)

    refs(subset_paths)
    return {
        "openapi": document["openapi"],
        "info": {
            "title": document["info"]["title"],
            "description": "Subset of docs/redoc/master/openapi.json at qdrant/qdrant tag v1.19.0: "
            "the paths tests/qdrant_server.py serves and the schemas they reference.",
            "version": QDRANT_VERSION,
        },
        "paths": subset_paths,
        "components": {"schemas": {name: schemas[name] for name in sorted(wanted)}},
    }


SERVED_PATHS = (
    "/",
    "/collections",
    "/collections/aliases",
    "/aliases",
    "/collections/{collection_name}",
    "/collections/{collection_name}/exists",
    "/collections/{collection_name}/aliases",
    "/collections/{collection_name}/optimizations",
    "/collections/{collection_name}/index",
    "/collections/{collection_name}/index/{field_name}",
    "/collections/{collection_name}/points",
    "/collections/{collection_name}/points/delete",
    "/collections/{collection_name}/points/payload",
    "/collections/{collection_name}/points/payload/delete",
    "/collections/{collection_name}/points/count",
    "/collections/{collection_name}/points/scroll",
    "/collections/{collection_name}/points/query",
    "/collections/{collection_name}/points/query/groups",
)


# -- process entry point ---------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python tests/qdrant_server.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=False, default=6333)
    parser.add_argument("--strict", action="store_true", help="Qdrant Cloud's strict mode for new collections")
    parser.add_argument("--write-rate-limit", type=int, default=None, help="write operations per minute")
    parser.add_argument("--read-rate-limit", type=int, default=None, help="read operations per minute")
    parser.add_argument("--optimize-seconds", type=float, default=0.3)
    parser.add_argument("--no-validate", action="store_true", help="skip the OpenAPI check of request bodies")
    parser.add_argument(
        "--extract-openapi",
        metavar="OPENAPI_JSON",
        default=None,
        help="write the subset of this OpenAPI document the server serves to "
        "tests/data/qdrant-v1.19.0-openapi-subset.json, and exit",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.extract_openapi:
        document = json.loads(Path(args.extract_openapi).read_text(encoding="utf-8"))
        OPENAPI_SUBSET.write_text(
            json.dumps(extract_openapi_subset(document, SERVED_PATHS), indent=1) + "\n", encoding="utf-8"
        )
        return 0
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    server = QdrantStandIn(
        strict=args.strict,
        write_rate_limit=args.write_rate_limit,
        read_rate_limit=args.read_rate_limit,
        optimize_seconds=args.optimize_seconds,
        validate=not args.no_validate,
        port=args.port,
        host=args.host,
    )
    with server:
        print(f"Ready on {server.url}", flush=True)
        while not stop.wait(0.1):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
