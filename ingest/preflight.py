"""`python -m ingest preflight`: check every assumption a full run makes, against the
real TEI server and Qdrant it will use, in a few minutes and before spending money.

Each check passes, fails (with the fix), or is skipped when it needs something this
run does not have (a Qdrant server, Modal): a skipped check is never counted as
passed. The Modal form (`modal run -m ingest.modal_app::preflight`) runs the same
checks on one A10G with the workers' own TEI, plus the ones only a container can
make (its secrets, a Volume commit while a dataset is mapped, the deployed class).

    python -m ingest preflight --embedder tei --tei-url http://localhost:8080 --qdrant-url http://localhost:6333
    python -m ingest preflight --embedder tei --tei-url ... --expect-model BAAI/bge-small-en-v1.5 \\
        --expect-revision 5c38ec7c405ec4b44b94cc5a9bb96e735b38267a --tei-tokenizer tokenizer.json

Exit codes: 0 no check failed; 1 a check failed; 2 bad usage.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from ingest import lexical
from ingest.bench.plan import Assumptions, project
from ingest.chunking import Chunker
from ingest.embedders import Embedder, make_embedder
from ingest.embedders.tei import TEIEmbedder
from ingest.errors import IngestError
from ingest.settings import IngestSettings
from ingest.sources import sample_rows
from ingest.store import Store, open_store
from ingest.sync import collection_spec
from schemas import Article

PASS, FAIL, SKIP = "pass", "fail", "skip"
MIN_QDRANT = (1, 17)  # weighted RRF (1.17), collection metadata (1.16), RRF with k (1.15.4), groups, sparse IDF
PROBE_TEXTS = ["Paris is the capital of France.", "The Rhine rises in the Swiss Alps.", "HAL 9000"]


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
    wrong = [what for what, want, got in (("model", model, info.model_id), ("revision", revision, info.model_sha))
             if want and want != got]
    if wrong:
        return Check(name, FAIL, seen + f"; expected {model} at {revision}",
                     "start TEI with the --model-id and --revision the run expects")
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
        return Check(name, FAIL, f"the server takes {limit} tokens, but chunks are budgeted by characters only: "
                     "TEI would truncate the long ones", "pass the served model's tokenizer.json as --tei-tokenizer")
    chunker = Chunker(settings.chunking, max_tokens=limit, count_tokens=embedder.count_tokens)
    texts = [chunk.embed_text for row in rows for chunk in chunker.chunks(Article.from_row(row))]
    longest = max((n + 2 for n in embedder.count_tokens(texts)), default=0)  # + [CLS] and [SEP]
    detail = f"{len(texts):,} chunks of {len(rows):,} articles, the longest {longest} tokens of {limit}"
    if longest > limit:
        return Check(name, FAIL, detail, "the tokenizer is not the served model's: pass its tokenizer.json")
    return Check(name, PASS, detail)


def check_throughput(embedder: Embedder, settings: IngestSettings, rows: Sequence[dict], gpus: int) -> Check:
    name = "throughput and projection"
    chunker = Chunker(settings.chunking, max_tokens=embedder.spec.max_tokens, count_tokens=embedder.count_tokens)
    texts = [chunk.embed_text for row in rows for chunk in chunker.chunks(Article.from_row(row))]
    embedder.embed_passages(texts[:8])  # warm-up
    started = time.perf_counter()
    for start in range(0, len(texts), settings.window):
        embedder.embed_passages(texts[start:start + settings.window])
    seconds = time.perf_counter() - started
    rate = sum(len(t) for t in texts) / max(seconds, 1e-9)
    p = project(gpus, Assumptions(gpu_chars_per_s=rate))
    return Check(name, PASS, f"{rate:,.0f} characters/s here ({len(texts):,} chunks in {seconds:.1f} s); the "
                 f"corpus on {gpus} such GPUs: {p.wall_seconds / 3600:,.1f} h, {p.gpu_hours:,.1f} GPU-hours, "
                 f"${p.cost:,.2f} ({p.bound}-bound)")


# -- Qdrant ------------------------------------------------------------------------------------
def check_qdrant_version(store: Store) -> Check:
    name = "Qdrant supports the run"
    version = store.server_version()
    if version is None:
        return Check(name, SKIP, "the embedded store (no server version to check)", "--qdrant-url")
    parts = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    if parts < MIN_QDRANT:
        return Check(name, FAIL, f"Qdrant {version}", f"upgrade Qdrant to {MIN_QDRANT[0]}.{MIN_QDRANT[1]} or later "
                     "(collection metadata, RRF with k)")
    return Check(name, PASS, f"Qdrant {version}: collection metadata, weighted RRF, groups, sparse IDF")


def check_collection_roundtrip(store: Store, embedder: Embedder, settings: IngestSettings,
                               rows: Sequence[dict]) -> Check:
    """Create, upsert, search (hybrid), alias, delete: a throw-away collection."""
    name = "collection round trip"
    token = secrets.token_hex(4)
    scratch, alias = store.at(f"preflight-{token}"), f"preflight-{token}-alias"
    spec = collection_spec(settings, embedder)
    article = Article.from_row(rows[0])
    chunks = list(Chunker(settings.chunking, max_tokens=spec.model.max_tokens).chunks(article))
    try:
        scratch.ensure_collection(spec, bulk_load=True)
        result = embedder.embed_passages([c.embed_text for c in chunks])
        scratch.upsert_pairs([(article, c) for c in chunks], result.vectors)
        scratch.finish_bulk_load(wait_seconds=60)
        store.point_alias(alias, scratch.collection, replace_alias=False)
        led = store.resolve(alias).collection
        query = embedder.embed_queries([article.title])[0]
        hits = scratch.search(query, limit=3, sparse=lexical.query_vector(article.title, spec.sparse) if spec.sparse else None)
        store.delete_alias(alias)
    finally:
        if scratch.exists():
            scratch.drop()
    gone = not scratch.exists() and store.resolve(alias).collection is None
    detail = (f"{len(chunks)} points written to {scratch.collection}, found by a hybrid query, alias "
              f"{'moved' if led == scratch.collection else 'did not move'}, deleted")
    if not hits or hits[0].payload.get("id") != article.id or led != scratch.collection or not gone:
        return Check(name, FAIL, detail, "see the store's log: the server refused part of the run's work")
    return Check(name, PASS, detail)


# -- all of it ------------------------------------------------------------------------------------
def run_preflight(settings: IngestSettings, *, expect_model: str | None = None, expect_revision: str | None = None,
                  articles: int = 200, gpus: int = 100,
                  extra: Sequence[tuple[str, Callable[[], Check]]] = ()) -> list[Check]:
    """Every check, in the order a full run meets them; `extra`: (name, check) pairs the
    caller adds (the Modal form's)."""
    rows = sample_rows()[:articles]
    checks: list[Check] = []
    embedder = make_embedder(settings.embedder)
    try:
        checks.append(checked("TEI serves the pinned model",
                              lambda: check_served_model(embedder, expect_model, expect_revision)))
        checks.append(checked("JSON and base64 routes agree", lambda: check_wire_formats(embedder, settings)))
        checks.append(checked("chunks fit the token limit", lambda: check_token_budget(embedder, settings, rows)))
        store = open_store(settings.store)
        try:
            checks.append(checked("Qdrant supports the run", lambda: check_qdrant_version(store)))
            checks.append(checked("collection round trip",
                                  lambda: check_collection_roundtrip(store, embedder, settings, rows)))
        finally:
            store.close()
        checks.append(checked("throughput and projection", lambda: check_throughput(embedder, settings, rows, gpus)))
    finally:
        embedder.close()
    checks += [checked(name, check) for name, check in extra]
    return checks


# -- what only a Modal container can check ----------------------------------------------------------
def check_secrets(env: Mapping[str, str], required: Mapping[str, Sequence[str]]) -> Check:
    """Every secret's keys are in the container's environment (names only: values are never shown)."""
    name = "secrets are present"
    missing = {secret: [key for key in keys if not env.get(key)] for secret, keys in required.items()}
    missing = {secret: keys for secret, keys in missing.items() if keys}
    if missing:
        return Check(name, FAIL, "missing " + "; ".join(f"{s}: {', '.join(k)}" for s, k in missing.items()),
                     " and ".join(f"modal secret create {s} " + " ".join(f"{k}=..." for k in keys)
                                  for s, keys in missing.items()))
    return Check(name, PASS, ", ".join(f"{s} ({', '.join(keys)})" for s, keys in required.items()))


def check_commit_while_mapped(dataset_path: str, commit_state: Callable[[], None],
                              commit_dataset: Callable[[], None] | None = None) -> Check:
    """The run commits its state Volume while shards have the dataset memory-mapped;
    that must work. Whether committing the dataset's own Volume would, is reported."""
    name = "Volume commit, dataset mapped"
    import datasets  # heavy (pyarrow): only this check maps a dataset

    if not Path(dataset_path).exists():
        return Check(name, SKIP, f"no dataset at {dataset_path}", "modal run -m ingest.modal_app::download_dataset")
    mapped = datasets.load_from_disk(dataset_path)
    first = mapped[0]["id"] if len(mapped) else None  # touch it: the Arrow file is mapped now
    commit_state()
    detail = f"state Volume committed with {dataset_path} mapped (row 0: {first})"
    if commit_dataset is not None:
        try:
            commit_dataset()
            detail += "; the dataset's own Volume committed too"
        except Exception as exc:  # noqa: BLE001 - what Modal says is the finding
            detail += f"; the dataset's own Volume refused ({type(exc).__name__}), as the run expects"
    del mapped
    return Check(name, PASS, detail)


def check_deployed_class(lookup: Callable[[], object], embedder: Embedder) -> Check:
    """A query embedded through the deployed class (as search does it) matches the same
    text embedded by this container's TEI."""
    name = "deployed class embeds alike"
    try:
        remote = lookup()
        vectors = np.asarray(remote.embed.remote(PROBE_TEXTS), dtype=np.float32)
    except Exception as exc:  # noqa: BLE001 - not deployed yet is a skip, not a failure
        if type(exc).__name__ in ("NotFoundError", "AuthError"):
            return Check(name, SKIP, f"no deployed class ({type(exc).__name__})", "modal deploy -m ingest.modal_app")
        raise
    ours = embedder.embed_passages(PROBE_TEXTS).vectors
    cosine = float(((vectors * ours).sum(1) / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(ours, axis=1))).min())
    detail = f"cosine between the deployed class's and this TEI's vectors: {cosine:.5f} (at least)"
    if cosine < 0.999:
        return Check(name, FAIL, detail, "redeploy: the deployed class serves another model or revision")
    return Check(name, PASS, detail)


def report(checks: Sequence[Check]) -> str:
    failed = sum(c.status == FAIL for c in checks)
    skipped = sum(c.status == SKIP for c in checks)
    lines = [c.line() for c in checks]
    lines.append(f"{len(checks) - failed - skipped} of {len(checks)} checks passed; {failed} failed, "
                 f"{skipped} skipped (a skipped check is not a passed one)")
    return "\n".join(lines)
