"""`python -m ingest preflight`: check every assumption a full run makes, against the
real TEI server and Qdrant it will use, in a few minutes and before spending money,
and say go or no-go with the projected time and cost of the full run.

Each check passes, fails (with the fix), or is skipped when it needs something this
run does not have (a Qdrant server, Modal): a skipped check is never counted as
passed. Against Qdrant it creates a throw-away collection as the load creates it,
with strict mode on as Qdrant Cloud turns it on for new collections (a filter on a
key without a payload index is refused), writes, deletes by filter as the reindex
does, waits for its index, puts it behind an alias, searches it and drops it; then it
measures the points/s Qdrant takes from a few parallel writers, and the characters/s
the embedder gives. The Modal form (`modal run -m ingest.modal_app::preflight`) runs
the same checks on one A10G with a worker's own TEI, plus the ones only a container
can make (its secrets, TEI started through the image's entrypoint, the dataset on
its Volume, a Volume commit while the dataset is mapped, the deployed class).

    python -m ingest preflight --embedder tei --tei-url http://localhost:8080 --qdrant-url http://localhost:6333
    python -m ingest preflight --embedder tei --tei-url ... --expect-model BAAI/bge-small-en-v1.5 \\
        --expect-revision 5c38ec7c405ec4b44b94cc5a9bb96e735b38267a --tei-tokenizer tokenizer.json

Exit codes: 0 no check failed; 1 a check failed; 2 bad usage.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

import numpy as np

from ingest import lexical
from ingest.bench.plan import Assumptions, Projection, project
from ingest.chunking import Chunker
from ingest.embedders import Embedder, make_embedder
from ingest.embedders.tei import TEIEmbedder
from ingest.errors import IngestError
from ingest.jobs import collection_spec
from ingest.settings import IngestSettings
from ingest.store import ChunkSelection, PayloadFilter, Store, open_store
from schemas import Article

PASS, FAIL, SKIP = "pass", "fail", "skip"
MIN_QDRANT = (1, 17)  # weighted RRF (1.17), collection metadata (1.16), RRF with k (1.15.4), groups, sparse IDF
PROBE_TEXTS = ["Paris is the capital of France.", "The Rhine rises in the Swiss Alps.", "HAL 9000"]
QDRANT_WRITERS = 8  # parallel writers of the Qdrant rate check (a container runs 4 shards; there are many)
# Three made-up articles, for the checks when the corpus is not at hand (its check fails then).
PROBE_ROWS = [
    {
        "id": "probe-1",
        "url": "https://example.org/probe-1",
        "title": "Probe river",
        "text": "The Probe is a river of some length. It rises in hills and flows to a lake. " * 30,
    },
    {
        "id": "probe-2",
        "url": "https://example.org/probe-2",
        "title": "Probe city",
        "text": "Probe city is a town on the river Probe. Its people fish and trade. " * 25,
    },
    {
        "id": "probe-3",
        "url": "https://example.org/probe-3",
        "title": "Probe bridge",
        "text": "The Probe bridge crosses the river in three spans of stone.",
    },
]


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: str  # pass, fail or skip
    detail: str  # what was seen
    fix: str = ""  # for a failure: what to do; for a skip: what would run it

    def line(self) -> str:
        text = f"{self.status.upper():<4}  {self.name:<30}  {self.detail}"
        return text + (f"\n      {'fix' if self.status == FAIL else 'run'}: {self.fix}" if self.fix else "")


def checked(name: str, run: Callable[[], Check]) -> Check:
    """`run()`, with an unexpected error as a failed check that names it."""
    try:
        return run()
    except IngestError as exc:
        return Check(name, FAIL, str(exc), "see the message")
    except Exception as exc:  # noqa: BLE001 - a preflight reports every failure, it does not stop at one
        return Check(name, FAIL, f"{type(exc).__name__}: {exc}", "see the message")


# -- TEI ------------------------------------------------------------------------------------
def check_served_model(embedder: Embedder, model: str | None, revision: str | None) -> Check:
    name = "TEI serves the pinned model"
    if not isinstance(embedder, TEIEmbedder):
        return Check(name, SKIP, f"the embedder is {type(embedder).__name__}, not TEI", "--embedder tei")
    info = embedder.info
    seen = f"{info.model_id} at {info.model_sha or 'no revision'} (TEI {info.version or '?'})"
    wrong = [
        what
        for what, want, got in (("model", model, info.model_id), ("revision", revision, info.model_sha))
        if want and want != got
    ]
    if wrong:
        return Check(
            name,
            FAIL,
            seen + f"; expected {model} at {revision}",
            "start TEI with the --model-id and --revision the run expects",
        )
    return Check(name, PASS, seen)


def check_wire_formats(embedder: Embedder, settings: IngestSettings) -> Check:
    name = "JSON and base64 routes agree"
    if not isinstance(embedder, TEIEmbedder):
        return Check(name, SKIP, "no TEI server", "--embedder tei")
    other = "json" if embedder.wire == "base64" else "base64"
    twin = make_embedder(replace(settings.embedder, tei_wire=other))
    try:
        a, b = embedder.embed_passages(PROBE_TEXTS).vectors, twin.embed_passages(PROBE_TEXTS).vectors
    finally:
        twin.close()
    gap = float(np.abs(a - b).max())
    detail = f"/embed and /v1/embeddings on {len(PROBE_TEXTS)} texts: max |difference| {gap:.2e}"
    if gap > 1e-3:
        return Check(name, FAIL, detail, "the two routes serve other vectors: use --tei-wire json")
    return Check(name, PASS, detail)


def check_token_budget(embedder: Embedder, settings: IngestSettings, rows: Sequence[dict]) -> Check:
    name = "chunks fit the token limit"
    limit = embedder.spec.max_tokens
    counted = embedder.count_tokens(["probe"])
    if counted is None:
        return Check(
            name,
            FAIL,
            f"the server takes {limit} tokens, but chunks are budgeted by characters only: "
            "TEI would truncate the long ones",
            "pass the served model's tokenizer.json as --tei-tokenizer",
        )
    chunker = Chunker(settings.chunking, max_tokens=limit, count_tokens=embedder.count_tokens)
    texts = [chunk.embed_text for row in rows for chunk in chunker.chunks(Article.from_row(row))]
    longest = max((n + 2 for n in embedder.count_tokens(texts)), default=0)  # + [CLS] and [SEP]
    detail = f"{len(texts):,} chunks of {len(rows):,} articles, the longest {longest} tokens of {limit}"
    if longest > limit:
        return Check(name, FAIL, detail, "the tokenizer is not the served model's: pass its tokenizer.json")
    return Check(name, PASS, detail)


def check_throughput(embedder: Embedder, settings: IngestSettings, rows: Sequence[dict]) -> tuple[Check, float]:
    """Characters/s the embedder gives on the rows' chunks, in windows as a shard sends them."""
    name = "embedder throughput"
    chunker = Chunker(settings.chunking, max_tokens=embedder.spec.max_tokens, count_tokens=embedder.count_tokens)
    texts = [chunk.embed_text for row in rows for chunk in chunker.chunks(Article.from_row(row))]
    embedder.embed_passages(texts[:8])  # warm-up
    started = time.perf_counter()
    for start in range(0, len(texts), settings.window):
        embedder.embed_passages(texts[start : start + settings.window])
    seconds = time.perf_counter() - started
    rate = sum(len(t) for t in texts) / max(seconds, 1e-9)
    return Check(name, PASS, f"{rate:,.0f} characters/s ({len(texts):,} chunks in {seconds:.1f} s)"), rate


# -- Qdrant ------------------------------------------------------------------------------------
def check_qdrant_version(store: Store) -> Check:
    name = "Qdrant supports the run"
    version = store.server_version()
    if version is None:
        return Check(name, SKIP, "the embedded store (no server version to check)", "--qdrant-url")
    parts = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    if parts < MIN_QDRANT:
        return Check(
            name,
            FAIL,
            f"Qdrant {version}",
            f"upgrade Qdrant to {MIN_QDRANT[0]}.{MIN_QDRANT[1]} or later (collection metadata, RRF with k)",
        )
    return Check(name, PASS, f"Qdrant {version}: collection metadata, weighted RRF, groups, sparse IDF")


def strict(store: Store) -> bool:
    """Turn strict mode on for a (scratch) collection on a server, as Qdrant Cloud does for
    new collections: filters on keys without a payload index refused, in reads and in
    updates (`StrictModeConfig`, lib/segment/src/types.rs:1322-1431 at v1.19.0). False
    where there is no server."""
    client = getattr(store, "client", None)
    if store.server_version() is None or client is None:
        return False
    from qdrant_client import models

    client.update_collection(
        store.collection,
        strict_mode_config=models.StrictModeConfig(
            enabled=True, unindexed_filtering_retrieve=False, unindexed_filtering_update=False
        ),
    )
    return True


def scratch_name() -> str:
    return f"preflight-{secrets.token_hex(4)}"


def check_collection_roundtrip(
    store: Store, embedder: Embedder, settings: IngestSettings, rows: Sequence[dict]
) -> Check:
    """Create (as the load does, strict mode on), upsert, delete by filter (as the
    reindex does), index, alias, search (hybrid, filtered, capped per article), drop."""
    name = "collection round trip"
    scratch = store.at(scratch_name())
    alias = scratch.collection + "-alias"
    spec = collection_spec(settings, embedder)
    chunker = Chunker(settings.chunking, max_tokens=spec.model.max_tokens)
    longest = sorted(rows, key=lambda row: len(str(row.get("text") or "")), reverse=True)[:2]
    articles = [Article.from_row(row) for row in longest]  # the longest has chunks to lose
    pairs = [(a, c) for a in articles for c in chunker.chunks(a)]
    first = articles[0]
    chunks = sum(1 for a, _ in pairs if a.id == first.id)
    kept = max(chunks - 1, 1)  # it shrank by a chunk, as an edited article may
    try:
        scratch.ensure_collection(spec, bulk_load=True)
        enforced = strict(scratch)
        scratch.upsert_pairs(pairs, embedder.embed_passages([c.embed_text for _, c in pairs]).vectors)
        stale = scratch.delete_chunks([ChunkSelection(first.id, from_index=kept)])  # as the reindex deletes them
        gone = scratch.delete_articles([a.id for a in articles[1:]])  # articles the dump lacks
        left = scratch.count()
        indexed = scratch.finish_bulk_load(wait_seconds=120)
        store.point_alias(alias, scratch.collection, replace_alias=False)
        led = store.resolve(alias).collection
        query = embedder.embed_queries([first.title])[0]
        hits = scratch.search(
            query,
            limit=3,
            sparse=lexical.query_vector(first.title, spec.sparse) if spec.sparse else None,
            where=PayloadFilter(article_ids=(first.id,)),
            group_size=2,
        )
        store.delete_alias(alias)
    finally:
        if scratch.exists():
            scratch.drop()
    dropped = not scratch.exists() and store.resolve(alias).collection is None
    detail = (
        f"{len(pairs)} points written to {scratch.collection}"
        + (" in strict mode" if enforced else "")
        + f"; deleted by filter: {stale} stale chunks, {gone} points of other articles; {left} left; "
        f"{'indexed' if indexed else 'NOT indexed within 120 s'}; alias "
        f"{'moved' if led == scratch.collection else 'did not move'}; a filtered hybrid query found "
        f"{len(hits)}; dropped"
    )
    if (
        not hits
        or hits[0].payload.get("id") != first.id
        or led != scratch.collection
        or not dropped
        or left != kept
        or not indexed
    ):
        return Check(name, FAIL, detail, "see the store's log: the server refused part of the run's work")
    return Check(name, PASS, detail)


def check_qdrant_rate(
    store: Store,
    settings: IngestSettings,
    embedder: Embedder,
    rows: Sequence[dict],
    seconds: float,
    writers: int = QDRANT_WRITERS,
) -> tuple[Check, float | None]:
    """Points/s Qdrant takes from `writers` parallel writers, in batches like a shard's,
    for `seconds`, into a throw-away collection created as the load's are."""
    name = "Qdrant write rate"
    if seconds <= 0:
        return Check(name, SKIP, "not measured", "a positive --qdrant-seconds"), None
    spec = collection_spec(settings, embedder)
    chunker = Chunker(settings.chunking, max_tokens=spec.model.max_tokens)
    pairs = [(a, c) for a in map(Article.from_row, rows) for c in chunker.chunks(a)][:256] or []
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((len(pairs), spec.dimension)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    scratch = store.at(scratch_name())
    written, failures = [0] * writers, []

    def write(worker: int, deadline: float) -> None:
        batch = 0
        try:
            while time.monotonic() < deadline:
                # each batch's points are new: the article ids carry the writer and the batch
                renamed = [(replace(a, id=f"{a.id}-{worker}-{batch}"), c) for a, c in pairs]
                scratch.upsert_pairs([(a, replace(c, article_id=a.id)) for a, c in renamed], vectors)
                written[worker] += len(renamed)
                batch += 1
        except Exception as exc:  # noqa: BLE001 - reported in the check
            failures.append(f"{type(exc).__name__}: {exc}")

    try:
        scratch.ensure_collection(spec, bulk_load=True)
        started = time.monotonic()
        threads = [threading.Thread(target=write, args=(i, started + seconds)) for i in range(writers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
    finally:
        if scratch.exists():
            scratch.drop()
    rate = sum(written) / max(elapsed, 1e-9)
    detail = f"{sum(written):,} points in {elapsed:.1f} s from {writers} writers = {rate:,.0f} points/s"
    if failures:
        return Check(name, FAIL, detail + f"; a writer failed: {failures[0][:300]}", "see the store's log"), None
    return Check(name, PASS, detail), rate


# -- all of it ------------------------------------------------------------------------------------
@dataclass(slots=True)
class Preflight:
    """The checks, what was measured, and the full run projected from it."""

    checks: list[Check] = field(default_factory=list)
    chars_per_s: float | None = None  # the embedder's
    points_per_s: float | None = None  # Qdrant's, from QDRANT_WRITERS writers
    projection: Projection | None = None
    gpus: int = 100

    @property
    def go(self) -> bool:
        return not any(c.status == FAIL for c in self.checks)


def _measured(results: list, name: str, run: Callable[[], tuple[Check, float | None]]) -> float | None:
    """`checked`, for a check that also measures something: the value, when it passed."""
    value: list[float | None] = []

    def check() -> Check:
        found, measured = run()
        value.append(measured)
        return found

    results.append(checked(name, check))
    return value[0] if value else None


def run_preflight(
    settings: IngestSettings,
    rows: Sequence[dict],
    *,
    expect_model: str | None = None,
    expect_revision: str | None = None,
    gpus: int = 100,
    qdrant_seconds: float = 10.0,
    extra: Sequence[tuple[str, Callable[[], Check]]] = (),
) -> Preflight:
    """Every check, in the order a full run meets them, on `rows` (the corpus's first
    articles); `extra`: (name, check) pairs the caller adds (the Modal form's)."""
    rows = list(rows) or PROBE_ROWS
    result = Preflight(gpus=gpus)
    checks = result.checks
    checks += [checked(name, check) for name, check in extra]
    embedder = make_embedder(settings.embedder)
    try:
        checks.append(
            checked("TEI serves the pinned model", lambda: check_served_model(embedder, expect_model, expect_revision))
        )
        checks.append(checked("JSON and base64 routes agree", lambda: check_wire_formats(embedder, settings)))
        checks.append(checked("chunks fit the token limit", lambda: check_token_budget(embedder, settings, rows)))
        store = open_store(settings.store)
        try:
            checks.append(checked("Qdrant supports the run", lambda: check_qdrant_version(store)))
            checks.append(
                checked("collection round trip", lambda: check_collection_roundtrip(store, embedder, settings, rows))
            )
            result.points_per_s = _measured(
                checks, "Qdrant write rate", lambda: check_qdrant_rate(store, settings, embedder, rows, qdrant_seconds)
            )
        finally:
            store.close()
        result.chars_per_s = _measured(
            checks, "embedder throughput", lambda: check_throughput(embedder, settings, rows)
        )
    finally:
        embedder.close()
    if result.chars_per_s:
        result.projection = project(
            gpus, Assumptions(gpu_chars_per_s=result.chars_per_s, chunk_chars=settings.chunking.max_chars)
        )
    return result


def report(result: Preflight) -> str:
    """The table of checks, what was measured, the projected full run, and go or no-go."""
    checks = result.checks
    failed = sum(c.status == FAIL for c in checks)
    skipped = [c.name for c in checks if c.status == SKIP]
    lines = [c.line() for c in checks]
    lines.append(
        f"{len(checks) - failed - len(skipped)} of {len(checks)} checks passed; {failed} failed, "
        f"{len(skipped)} skipped (a skipped check is not a passed one)"
    )
    p = result.projection
    if p is not None:
        lines.append(
            f"the full corpus on {p.gpus} such GPUs at {p.chars_per_gpu:,.0f} characters/s each: load "
            f"{_hours(p.wall_seconds)}, index {_hours(p.index_seconds)}, switch {_hours(p.switch_seconds)}; "
            f"searchable after {_hours(p.searchable_seconds)}; {p.gpu_hours:,.1f} GPU-hours, "
            f"${p.cost:,.2f} ({p.bound}-bound)"
        )
        if result.points_per_s is not None:
            lines.append(
                f"Qdrant must take {p.points_per_s:,.0f} points/s at that pace; {QDRANT_WRITERS} writers "
                f"got {result.points_per_s:,.0f} points/s here"
                + (
                    " (fewer than needed: more nodes or shards, or fewer GPUs)"
                    if result.points_per_s < p.points_per_s
                    else ""
                )
            )
    verdict = "GO" if result.go else f"NO-GO: {failed} check{'s' if failed != 1 else ''} failed"
    if result.go and skipped:
        verdict += f" ({len(skipped)} not checked: {', '.join(skipped)})"
    lines.append(verdict)
    return "\n".join(lines)


def _hours(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
