"""The embedded store's HNSW graph, built without freezing the command that asks for it.

Below `INDEX_FROM` points a shard is searched exactly, in milliseconds; above it, exact
search grows with the store (a tenth of a second per query at a million points) and the
shard gets a graph. Edge builds one only in `EdgeShard.optimize()`, which blocks and holds
the GIL for the whole build (minutes at a million points): in the command's own process
no progress line, no Ctrl-C, no other thread would run. So the command closes its shard
and a process of its own (`main` here) loads it, builds,
flushes and exits, while the command reports progress, stays interruptible, and opens
the shard again afterwards. The folder's lock stays with the command throughout: the
child runs on its behalf, and no other process can take the shard meanwhile.

Qdrant's optimizer writes each new segment beside the old ones and swaps it in under
its own bookkeeping, so a build stopped anywhere (Ctrl-C here, a kill, a power cut)
leaves a shard that opens with every point, searched exactly where it has no graph yet;
the next command that finishes a load builds what is left. The graph's parameters are
given to the shard when the child loads it (`EdgeShard.load(path, config)` records
them), so a shard made by an earlier version gets them too. They were chosen by
measurement on vectors with real structure (docs/measurements.md, "The embedded store
at a million points").
"""

from __future__ import annotations

import ctypes
import json
import logging
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ingest.definitions import DEFINITION_VECTOR
from ingest.errors import StoreError
from ingest.lexical import SPARSE_VECTOR
from ingest.progress import duration
from ingest.store.base import INT8_QUANTILE, OVERSAMPLING

try:
    import qdrant_edge as q  # the embedded engine: only this backend needs it
except ImportError:  # pragma: no cover - depends on the install
    q = None

INDEX_FROM = 20_000  # points outside a graph at the end of a load before one is built (docs/measurements.md)
SEGMENT_POINTS = 200_000  # points outside a graph that make a graph in the middle of a load (docs/measurements.md)
HNSW_M = 16  # graph edges per point
HNSW_EF_CONSTRUCT = 100  # candidates weighed per insertion
FULL_SCAN_KB = 10_000  # a filter matching fewer vectors than this (in KB) is searched exactly: Qdrant's default
HNSW_EF = 512  # candidates weighed per search, before the int8 ranking is rescored with the originals
# The definitions' search weighs fewer: their ranking only adds reciprocal-rank terms, its first
# DEFINITION_DEPTH points, and a graph's near misses there move no hit (docs/measurements.md, "Definitions").
DEFINITION_EF = 128
# and its graph is built cheaper than the chunks' (a fifth less build time at 200,000 points, the
# same recall: docs/measurements.md, "Definitions")
DEFINITION_HNSW_M = 8
DEFINITION_EF_CONSTRUCT = 64
CHILD = "import sys; from ingest.store.edge_index import main; sys.exit(main(sys.argv[1:]))"
HEARTBEAT_S = 10.0  # seconds between progress lines while the graph is built
log = logging.getLogger(__name__)
_built = [0.0, 0]  # seconds this process has spent waiting for builds (`build_seconds`), points they built


def shard_config(dimension: int, sparse: bool, segment_points: int | None = None, *, definitions: bool = False) -> Any:
    """A shard's configuration, given when it is created and again when the child loads it:
    the cosine dense vector in Qdrant's unnamed slot, the `bm25` sparse vector with Qdrant's
    IDF if `sparse`, the `definition` dense vector beside the first if `definitions`
    (`ingest.definitions`, with a sparser graph of its own), payloads on disk, and the graph's
    parameters. The graph is built over int8 copies of the vectors, as a server collection's
    is (a quarter of the memory, and several times faster to build here), and searches
    rescore them. Everything but the int8
    copies is `Cold` in a built segment: in files the kernel pages in as searches read them,
    not in the process's memory, so that memory stays flat as the store grows (an appendable
    segment keeps its own in memory whatever this says). Qdrant's indexing threshold is 1 KB:
    `INDEX_FROM` decides when a build runs (only `optimize()` runs Qdrant's optimizers in
    Edge), and a build then indexes every segment it finds. A segment's size is capped a
    little over `SEGMENT_POINTS`: otherwise Qdrant's merge optimizer joins each new segment
    to the last one, and every build of a long load would build the whole graph again."""
    cold = q.Memory.Cold
    dense = q.EdgeVectorParams(size=dimension, distance=q.Distance.Cosine, memory=cold)
    defined = q.EdgeVectorParams(
        size=dimension,
        distance=q.Distance.Cosine,
        memory=cold,
        hnsw_config=q.HnswIndexConfig(
            m=DEFINITION_HNSW_M, ef_construct=DEFINITION_EF_CONSTRUCT, full_scan_threshold=FULL_SCAN_KB
        ),
    )
    return q.EdgeConfig(
        vectors={"": dense, DEFINITION_VECTOR: defined} if definitions else dense,
        sparse_vectors={SPARSE_VECTOR: q.EdgeSparseVectorParams(modifier=q.Modifier.Idf, memory=cold)}
        if sparse
        else None,
        payload_memory=cold,
        hnsw_config=q.HnswIndexConfig(m=HNSW_M, ef_construct=HNSW_EF_CONSTRUCT, full_scan_threshold=FULL_SCAN_KB),
        quantization_config=int8_config(),
        optimizers=q.EdgeOptimizersConfig(
            indexing_threshold=1,
            max_segment_size=max(int(1.25 * (segment_points or SEGMENT_POINTS) * dimension * 4 / 1024), 1),
        ),
    )


def int8_config() -> Any:
    """The int8 copies a graph is built and searched over, kept in memory (as a server collection's)."""
    return q.ScalarQuantizationConfig(type=q.ScalarType.Int8, quantile=INT8_QUANTILE, always_ram=True)


def search_params(*, exact: bool = False) -> Any:
    """Every dense search's: HNSW_EF, and the int8 candidates rescored with the originals (a
    no-op on segments without a graph, searched exactly over the originals). `exact`:
    every point scored with its original vector, the graph and int8 copies unused."""
    if exact:
        return q.SearchParams(exact=True, quantization=q.QuantizationSearchParams(ignore=True))
    return q.SearchParams(
        hnsw_ef=HNSW_EF, quantization=q.QuantizationSearchParams(rescore=True, oversampling=OVERSAMPLING)
    )


def definition_params(*, exact: bool = False) -> Any:
    """The definitions' search: as `search_params`, weighing DEFINITION_EF candidates."""
    if exact:
        return search_params(exact=True)
    return q.SearchParams(
        hnsw_ef=DEFINITION_EF, quantization=q.QuantizationSearchParams(rescore=True, oversampling=OVERSAMPLING)
    )


def build_in_child(path: Path, dimension: int, sparse: bool, *, definitions: bool, points: int) -> dict[str, Any]:
    """Run the build in a process of its own (the shard closed by the caller) and wait for
    it with a progress line every HEARTBEAT_S; Ctrl-C (or any error here) stops the
    child and re-raises: the shard is whole either way (module docstring)."""
    started = time.monotonic()
    log.warning(
        "building the search index (HNSW graph) of %s over %s new points, in a process of its own; "
        "Ctrl-C stops it, the store stays searchable and the next run finishes it",
        path.name,
        f"{points:,}",
    )
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            CHILD,
            str(path),
            str(dimension),
            str(int(sparse)),
            str(SEGMENT_POINTS),
            str(int(definitions)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_die_with_parent,
    )
    try:
        while True:
            try:
                out, err = child.communicate(timeout=HEARTBEAT_S)
                break
            except subprocess.TimeoutExpired:
                log.warning("  building the search index: %s", _progress(time.monotonic() - started, points))
    except BaseException:
        child.kill()
        child.communicate()  # reaped, its pipes closed
        raise
    if child.returncode == -signal.SIGINT:  # Ctrl-C on the terminal reached it too (`main`)
        raise KeyboardInterrupt
    if child.returncode != 0:
        last = (err.strip().splitlines() or [f"exit {child.returncode}"])[-1]
        raise StoreError(
            f"building the search index of {path.name} failed ({last}): the store holds every point and "
            "answers searches exactly; run the same command again to retry"
        )
    result = json.loads(out.strip().splitlines()[-1])
    _built[0] += time.monotonic() - started
    _built[1] += points
    log.warning(
        "search index built: %s segments, in %s (its process's peak memory %.2f GiB)",
        result["segments"],
        duration(time.monotonic() - started),
        result["peak_rss_bytes"] / 2**30,
    )
    return result


def build_seconds() -> float:
    """Seconds this process has waited for search index builds, all collections (benchmarks read it)."""
    return _built[0]


def _progress(elapsed: float, points: int) -> str:
    """Elapsed, and the time left at the rate of this process's earlier builds (none before the first)."""
    line = f"{duration(elapsed)} elapsed"
    if _built[0] > 0 and _built[1] > 0:
        left = points * _built[0] / _built[1] - elapsed
        line += f", about {duration(left)} left at the earlier builds' rate" if left > 0 else ", about done"
    return line


def _die_with_parent() -> None:
    """In the child before it runs: killed if this process dies (Linux), so that no build
    outlives the command holding the folder's lock."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: a stopped command waits for its child instead
        pass


def main(argv: list[str]) -> int:
    """The child: load the shard with the graph's parameters, optimize, flush, report as JSON.
    Ctrl-C stops it at once (`optimize()` holds the GIL: Python's own handler would wait for it)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    path, dimension, sparse, segment_points, definitions = argv
    config = shard_config(int(dimension), sparse == "1", int(segment_points), definitions=definitions == "1")
    shard = q.EdgeShard.load(path, config)
    try:
        shard.optimize()
        shard.flush()
        segments = int(shard.info().segments_count)
    finally:
        shard.close()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"segments": segments, "peak_rss_bytes": peak}))
    return 0
