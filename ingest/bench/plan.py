"""`python -m ingest plan`: what making all of English Wikipedia searchable would
take on 10, 50 and 100 A10Gs, before spending anything.

The time until the index is searchable has three phases, as the run report counts
them:

- the load: each GPU container embeds at the smallest of three rates: what its GPU
  does (TEI's throughput, characters per second), what its client side keeps up with
  (our Python pipeline chunking, decoding vectors and writing points, chunks per
  second per core), and its share of what the Qdrant cluster absorbs (points per
  second per node, when given). The table says which one bounds it and the points/s
  the cluster must take. Only this phase holds GPUs: GPU-hours and cost are its;
- the index build: Qdrant builds the HNSW graph (and the int8 copies) once the load
  is over, each node over its share of the points, at `--index-points-per-s` per
  core (measured with Qdrant's own engine, see below) on `--qdrant-cores` cores;
- the switch: the shards' records become the manifest, a smoke query, the alias.

The points are what the chunker makes: `--chunk-chars` (default 1000, the
production load's chunk size) characters at most, so about one chunk per full
window of text plus each article's last, partly filled one.

It also sizes the cluster: RAM and disk per node for the corpus's points, with the
collection as `ingest.store.server` creates it (int8 vectors in RAM and float32 on
disk, or float32 in RAM), spread over `--qdrant-nodes` with `--replicas` copies.
Estimates from stated per-point costs (Qdrant's own sizing rule: 1.5x the raw data
for what stays in RAM), not measurements of a cluster.

    python -m ingest plan
    python -m ingest plan --gpu-chars-per-s 150000 --client-chunks-per-s 900 --gpus 20 40
    python -m ingest plan --qdrant-nodes 3 --replicas 2 --qdrant-points-per-s 15000
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Sequence, TextIO

from ingest.edge import Edge, run_command
from ingest.sharded.driver import A10G_PRICE_PER_HOUR

# English Wikipedia as the reference run measured it (wikipedia 20220301.en).
CORPUS_ARTICLES = 6_460_000  # "6.46M", as the notes round it
CORPUS_CHARACTERS = 19_560_538_957
# 21.26M characters/s on 100 A10Gs (567-labs/fastllm benchmarks.json, the Jan 2024 run).
REFERENCE_CHARS_PER_GPU = 212_600
# The reference's request loop (httpx, res.json(), np.array) against an instant
# server, one core, measured here: a ceiling for the client's cost, not our pipeline's.
REFERENCE_CLIENT_CHUNKS_PER_S = 6_600
PRODUCTION_CHUNK_CHARS = 1000  # ingest.modal_app's chunk size
# Characters of an article's definition (ingest.definitions), embedded beside its chunks, on average over
# the bundled sample's 10,033 lead sections (a full article's first sentence is its lead's); docs/measurements.md.
DEFINITION_CHARS = 105
DEFAULT_GPUS = (10, 50, 100)
# Index build, per core: HNSW m=16 over 384-dimension vectors with their BM25 vectors and payload
# indexes; docs/measurements.md gives the two figures it is the lower of, rounded down (Qdrant's
# engine on this machine, and Qdrant's own published drain time scaled to 384 dimensions).
INDEX_POINTS_PER_S_PER_CORE = 1_000.0
QDRANT_CORES = 8  # per node: a Qdrant Cloud node of 8 vCPUs
MANIFEST_ROWS_PER_S = 250_000.0  # shard records merged into the manifest (SQLite); docs/measurements.md
SWITCH_OVERHEAD_SECONDS = 30.0  # the smoke query, the alias, the Volume's commits
# Per-point costs, measured on the bundled sample's chunks (2,049 of 474 characters on
# average): a payload is its text plus ~230 bytes (title, url, ids, offsets, hashes);
# a BM25 vector holds ~0.08 terms per character of text; the indexed fields (id, title,
# url, chunk_index) ~78 bytes.
PAYLOAD_OVERHEAD_BYTES = 230
SPARSE_TERMS_PER_CHAR = 0.08
INDEXED_FIELD_BYTES = 78
HNSW_LINK_BYTES = 16 * 2 * 4 * 1.1  # m=16: 2m links of 4 bytes at level 0, ~10% more above
RAM_HEADROOM = 1.5  # Qdrant's sizing rule for what it keeps in memory
GB = 1e9


@dataclass(frozen=True, slots=True)
class Projection:
    gpus: int
    chars_per_gpu: float
    bound: str
    wall_seconds: float  # the load, which holds the GPUs
    gpu_hours: float
    cost: float
    points_per_s: float = 0.0  # what the Qdrant cluster takes at this pace
    index_seconds: float = 0.0
    switch_seconds: float = 0.0

    @property
    def searchable_seconds(self) -> float:
        """From the first shard until the alias leads to the whole, indexed collection."""
        return self.wall_seconds + self.index_seconds + self.switch_seconds


@dataclass(frozen=True, slots=True)
class Assumptions:
    articles: int = CORPUS_ARTICLES
    characters: int = CORPUS_CHARACTERS
    chunk_chars: int = PRODUCTION_CHUNK_CHARS
    gpu_chars_per_s: float = REFERENCE_CHARS_PER_GPU
    client_chunks_per_s: float = REFERENCE_CLIENT_CHUNKS_PER_S
    client_cores: float = 1.0
    qdrant_points_per_s: float | None = None  # what one node absorbs
    qdrant_nodes: int = 1
    replicas: int = 1
    quantization: str = "int8"
    dimension: int = 384
    startup_seconds: float = 0.0
    price_per_gpu_hour: float = A10G_PRICE_PER_HOUR
    index_points_per_s_per_core: float = INDEX_POINTS_PER_S_PER_CORE
    qdrant_cores: int = QDRANT_CORES
    definition_chars: float = DEFINITION_CHARS  # 0: a collection without definition vectors

    @property
    def embedded_characters(self) -> float:
        """What the GPUs read: the chunks' text and each article's definition."""
        return self.characters + self.articles * self.definition_chars

    @property
    def vectors(self) -> int:
        """Dense vectors the cluster indexes: one per chunk, and one per article's definition."""
        return self.chunks + (self.articles if self.definition_chars else 0)

    @property
    def chunks(self) -> int:
        """Full windows of text, plus each article's last, partly filled chunk."""
        return self.characters // self.chunk_chars + self.articles // 2

    @property
    def chars_per_chunk(self) -> float:
        return self.characters / max(self.chunks, 1)

    @property
    def cluster_points_per_s(self) -> float | None:
        """Upserts the cluster absorbs: every replica writes each point."""
        if self.qdrant_points_per_s is None:
            return None
        return self.qdrant_points_per_s * self.qdrant_nodes / self.replicas


@dataclass(frozen=True, slots=True)
class Sizing:
    """A Qdrant node's share of the collection, in bytes: what stays in RAM, and on disk."""

    ram: dict[str, float]
    disk: dict[str, float]

    @property
    def ram_total(self) -> float:
        return RAM_HEADROOM * sum(self.ram.values())

    @property
    def disk_total(self) -> float:
        return sum(self.disk.values())


def size_cluster(a: Assumptions) -> Sizing:
    """Per node: the points spread over the nodes, each held `replicas` times."""
    share = a.chunks * a.replicas / a.qdrant_nodes
    vectors = a.vectors * a.replicas / a.qdrant_nodes  # the definitions' beside the chunks'
    terms = SPARSE_TERMS_PER_CHAR * a.chars_per_chunk
    float32 = vectors * a.dimension * 4
    ram = {
        "vectors": vectors * a.dimension * (1 if a.quantization == "int8" else 4),
        "HNSW graph": vectors * HNSW_LINK_BYTES,
        "sparse index": share * terms * 8,
        "payload indexes": share * (INDEXED_FIELD_BYTES + 50),
    }
    disk = {
        "vectors (float32)": float32,
        **({"vectors (int8 copy)": vectors * a.dimension} if a.quantization == "int8" else {}),
        "payloads": share * (a.chars_per_chunk + PAYLOAD_OVERHEAD_BYTES),
        "sparse vectors": share * terms * 8,
        "HNSW graph": vectors * HNSW_LINK_BYTES,
    }
    return Sizing(ram, disk)


def project(gpus: int, a: Assumptions) -> Projection:
    """In chunks per second per GPU, the slowest of: the GPU (its characters/s over what it reads a
    chunk, definitions included), the client, and the GPUs' share of what the cluster takes."""
    read_per_chunk = a.embedded_characters / max(a.chunks, 1)
    per_gpu, bound = a.gpu_chars_per_s / read_per_chunk, "GPU"
    if a.client_chunks_per_s * a.client_cores < per_gpu:
        per_gpu, bound = a.client_chunks_per_s * a.client_cores, "client"
    if a.cluster_points_per_s is not None and a.cluster_points_per_s / gpus < per_gpu:
        per_gpu, bound = a.cluster_points_per_s / gpus, "Qdrant"  # one cluster shared by all GPUs
    wall = a.chunks / (per_gpu * gpus) + a.startup_seconds
    gpu_hours = gpus * wall / 3600
    return Projection(
        gpus,
        per_gpu * read_per_chunk,
        bound,
        wall,
        gpu_hours,
        gpu_hours * a.price_per_gpu_hour,
        points_per_s=per_gpu * gpus,
        index_seconds=index_seconds(a),
        switch_seconds=a.articles / MANIFEST_ROWS_PER_S + SWITCH_OVERHEAD_SECONDS,
    )


def index_seconds(a: Assumptions) -> float:
    """Each node builds the graphs over its share (every replica builds its own): the chunks' vectors
    and the definitions'."""
    share = a.vectors * a.replicas / a.qdrant_nodes
    return share / (a.index_points_per_s_per_core * a.qdrant_cores)


def render(projections: Sequence[Projection], a: Assumptions) -> str:
    client = a.client_chunks_per_s * a.client_cores
    lines = [
        f"corpus: {a.articles:,} articles, {a.characters:,} characters, ~{a.chunks:,} chunks "
        f"of <= {a.chunk_chars} characters ({a.chars_per_chunk:,.0f} on average)"
        + (
            f"; and each article's definition, {a.definition_chars:g} characters on average, "
            f"{a.embedded_characters:,.0f} characters embedded in all"
            if a.definition_chars
            else ""
        ),
        f"GPU: {a.gpu_chars_per_s:,.0f} characters/s each; client: {client:,.0f} chunks/s "
        f"({a.client_chunks_per_s:,.0f}/s per core x {a.client_cores:g} cores) = "
        f"{client * a.chars_per_chunk:,.0f} characters/s per GPU"
        + (
            f"; Qdrant: {a.qdrant_points_per_s:,.0f} points/s per node, {a.cluster_points_per_s:,.0f} for the cluster"
            if a.qdrant_points_per_s
            else ""
        ),
        f"price: ${a.price_per_gpu_hour:.4f} per GPU-hour; "
        + (f"{a.startup_seconds:g} s of start-up added" if a.startup_seconds else "cold starts not included"),
        f"index: {a.index_points_per_s_per_core:,.0f} points/s per core x {a.qdrant_cores} cores on each of "
        f"{a.qdrant_nodes} node{'s' if a.qdrant_nodes > 1 else ''}; switch: {a.articles:,} manifest rows, the smoke "
        "query, the alias",
        "",
        f"{'GPUs':>5}  {'chars/s per GPU':>15}  {'bound':>6}  {'points/s':>9}  {'load':>8}  {'index':>8}  "
        f"{'switch':>8}  {'searchable':>10}  {'GPU-hours':>9}  {'cost':>9}",
    ]
    for p in projections:
        lines.append(
            f"{p.gpus:>5}  {p.chars_per_gpu:>15,.0f}  {p.bound:>6}  {p.points_per_s:>9,.0f}  "
            f"{_duration(p.wall_seconds):>8}  {_duration(p.index_seconds):>8}  {_duration(p.switch_seconds):>8}  "
            f"{_duration(p.searchable_seconds):>10}  {p.gpu_hours:>9,.2f}  {'$' + format(p.cost, ',.2f'):>9}"
        )
    lines.append("GPU-hours and cost are the load's: the index build and the switch hold no GPU")
    if any(p.bound == "Qdrant" for p in projections):
        lines.append(
            "Qdrant bounds the runs marked so: more nodes (or fewer replicas while loading) go faster, more GPUs do not"
        )
    sizing = size_cluster(a)
    where = "int8 vectors in RAM, float32 on disk" if a.quantization == "int8" else "float32 vectors in RAM"
    lines += [
        "",
        f"Qdrant: {a.chunks:,} points ({a.vectors:,} dense vectors) on {a.qdrant_nodes} "
        f"node{'s' if a.qdrant_nodes > 1 else ''}, "
        f"{a.replicas} cop{'ies' if a.replicas > 1 else 'y'} of each ({where}); per node:",
        f"  RAM  {sizing.ram_total / GB:>7,.1f} GB = {RAM_HEADROOM:g} x ("
        + ", ".join(f"{name} {size / GB:,.1f}" for name, size in sizing.ram.items())
        + ")",
        f"  disk {sizing.disk_total / GB:>7,.1f} GB = "
        + ", ".join(f"{name} {size / GB:,.1f}" for name, size in sizing.disk.items())
        + " (plus the WAL)",
    ]
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


def _positive(kind: type):
    def parse(raw: str):
        try:
            value = kind(raw)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{raw!r} is not a number") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{raw!r} must be above zero")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    d = Assumptions()
    parser = argparse.ArgumentParser(
        prog="python -m ingest plan", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--gpus",
        type=_positive(int),
        nargs="+",
        default=list(DEFAULT_GPUS),
        help="GPU counts to project (default: %(default)s)",
    )
    parser.add_argument(
        "--gpu-chars-per-s",
        type=_positive(float),
        default=d.gpu_chars_per_s,
        help="TEI throughput of one GPU in characters/s (default: %(default)s, the reference's A10G figure)",
    )
    parser.add_argument(
        "--client-chunks-per-s",
        type=_positive(float),
        default=d.client_chunks_per_s,
        help="chunks/s one core of the client side sustains (default: %(default)s, the "
        "reference's request loop alone: measure the pipeline and pass yours)",
    )
    parser.add_argument(
        "--client-cores",
        type=_positive(float),
        default=d.client_cores,
        help="cores of client work per GPU (default: %(default)s: one Python process)",
    )
    parser.add_argument(
        "--chunk-chars",
        type=_positive(int),
        default=d.chunk_chars,
        help="characters per chunk at most (default: %(default)s, the production load's; the "
        "reference cut 512-character windows)",
    )
    parser.add_argument("--articles", type=_positive(int), default=d.articles, help="default: %(default)s")
    parser.add_argument(
        "--definition-chars",
        type=float,
        default=d.definition_chars,
        help="characters of each article's definition, embedded beside its chunks (default: %(default)s, "
        "the bundled sample's average; 0: --definitions none)",
    )
    parser.add_argument("--characters", type=_positive(int), default=d.characters, help="default: %(default)s")
    parser.add_argument(
        "--qdrant-points-per-s",
        type=_positive(float),
        default=None,
        help="upsert rate one Qdrant node sustains (default: not a limit)",
    )
    parser.add_argument(
        "--qdrant-nodes",
        type=_positive(int),
        default=d.qdrant_nodes,
        help="Qdrant nodes the collection spreads over (default: %(default)s)",
    )
    parser.add_argument(
        "--replicas", type=_positive(int), default=d.replicas, help="copies of each shard (default: %(default)s)"
    )
    parser.add_argument(
        "--quantization",
        choices=("int8", "none"),
        default=d.quantization,
        help="as the collection is created (default: %(default)s)",
    )
    parser.add_argument(
        "--dimension",
        type=_positive(int),
        default=d.dimension,
        help="vector dimension (default: %(default)s, bge-small-en-v1.5)",
    )
    parser.add_argument(
        "--index-points-per-s",
        type=_positive(float),
        default=d.index_points_per_s_per_core,
        help="HNSW build rate per Qdrant core, points/s (default: %(default)s, measured with Qdrant's engine)",
    )
    parser.add_argument(
        "--qdrant-cores",
        type=_positive(int),
        default=d.qdrant_cores,
        help="cores of each Qdrant node (default: %(default)s)",
    )
    parser.add_argument(
        "--startup-seconds",
        type=float,
        default=d.startup_seconds,
        help="cold start added to the wall time (default: %(default)s)",
    )
    parser.add_argument(
        "--price-per-gpu-hour",
        type=_positive(float),
        default=d.price_per_gpu_hour,
        help="USD (default: %(default).4f, Modal's A10G base rate)",
    )
    return parser


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None) -> int:
    return run_command("python -m ingest plan", lambda edge: _plan(edge, argv, out))


def _plan(edge: Edge, argv: Sequence[str] | None, out: TextIO | None) -> int:
    args = build_parser().parse_args(argv)
    edge.ready()
    assumptions = Assumptions(
        articles=args.articles,
        characters=args.characters,
        chunk_chars=args.chunk_chars,
        gpu_chars_per_s=args.gpu_chars_per_s,
        client_chunks_per_s=args.client_chunks_per_s,
        client_cores=args.client_cores,
        qdrant_points_per_s=args.qdrant_points_per_s,
        qdrant_nodes=args.qdrant_nodes,
        replicas=args.replicas,
        quantization=args.quantization,
        dimension=args.dimension,
        startup_seconds=max(args.startup_seconds, 0.0),
        price_per_gpu_hour=args.price_per_gpu_hour,
        index_points_per_s_per_core=args.index_points_per_s,
        qdrant_cores=args.qdrant_cores,
        definition_chars=max(args.definition_chars, 0.0),
    )
    projections = [project(gpus, assumptions) for gpus in args.gpus]
    print(render(projections, assumptions), file=out or sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
