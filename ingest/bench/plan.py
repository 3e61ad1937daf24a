"""`python -m ingest plan`: what embedding all of English Wikipedia would take on
10, 50 and 100 A10Gs, before spending anything.

Each GPU container embeds at the smaller of two rates: what its GPU does (TEI's
throughput, characters per second) and what its client side keeps up with (our
Python pipeline chunking, decoding vectors and writing points, chunks per second
per core). The table says which one bounds it, then the wall time, GPU-hours and
cost, assuming the work spreads evenly and every GPU is held for the whole run.

    python -m ingest plan
    python -m ingest plan --gpu-chars-per-s 150000 --client-chunks-per-s 900 --gpus 20 40
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Sequence, TextIO

from ingest.sharded.driver import A10G_PRICE_PER_HOUR

# English Wikipedia as the reference run measured it (wikipedia 20220301.en).
CORPUS_ARTICLES = 6_460_000  # "6.46M", as the notes round it
CORPUS_CHARACTERS = 19_560_538_957
# 21.26M characters/s on 100 A10Gs (567-labs/fastllm benchmarks.json, the Jan 2024 run).
REFERENCE_CHARS_PER_GPU = 212_600
# The reference's request loop (httpx, res.json(), np.array) against an instant
# server, one core, measured here: a ceiling for the client's cost, not our pipeline's.
REFERENCE_CLIENT_CHUNKS_PER_S = 6_600
REFERENCE_CHUNK_CHARS = 512
DEFAULT_GPUS = (10, 50, 100)


@dataclass(frozen=True, slots=True)
class Projection:
    gpus: int
    chars_per_gpu: float
    bound: str
    wall_seconds: float
    gpu_hours: float
    cost: float


@dataclass(frozen=True, slots=True)
class Assumptions:
    articles: int = CORPUS_ARTICLES
    characters: int = CORPUS_CHARACTERS
    chunk_chars: int = REFERENCE_CHUNK_CHARS
    gpu_chars_per_s: float = REFERENCE_CHARS_PER_GPU
    client_chunks_per_s: float = REFERENCE_CLIENT_CHUNKS_PER_S
    client_cores: float = 1.0
    qdrant_points_per_s: float | None = None
    startup_seconds: float = 0.0
    price_per_gpu_hour: float = A10G_PRICE_PER_HOUR

    @property
    def chunks(self) -> int:
        """Full windows of text, plus each article's last, partly filled chunk."""
        return self.characters // self.chunk_chars + self.articles // 2

    @property
    def chars_per_chunk(self) -> float:
        return self.characters / max(self.chunks, 1)


def project(gpus: int, a: Assumptions) -> Projection:
    client_chars = a.client_chunks_per_s * a.client_cores * a.chars_per_chunk
    per_gpu, bound = (a.gpu_chars_per_s, "GPU") if a.gpu_chars_per_s <= client_chars else (client_chars, "client")
    if a.qdrant_points_per_s is not None:
        qdrant_chars = a.qdrant_points_per_s * a.chars_per_chunk / gpus  # one Qdrant shared by all GPUs
        if qdrant_chars < per_gpu:
            per_gpu, bound = qdrant_chars, "Qdrant"
    wall = a.characters / (per_gpu * gpus) + a.startup_seconds
    gpu_hours = gpus * wall / 3600
    return Projection(gpus, per_gpu, bound, wall, gpu_hours, gpu_hours * a.price_per_gpu_hour)


def render(projections: Sequence[Projection], a: Assumptions) -> str:
    client = a.client_chunks_per_s * a.client_cores
    lines = [
        f"corpus: {a.articles:,} articles, {a.characters:,} characters, ~{a.chunks:,} chunks "
        f"of <= {a.chunk_chars} characters ({a.chars_per_chunk:,.0f} on average)",
        f"GPU: {a.gpu_chars_per_s:,.0f} characters/s each; client: {client:,.0f} chunks/s "
        f"({a.client_chunks_per_s:,.0f}/s per core x {a.client_cores:g} cores) = "
        f"{client * a.chars_per_chunk:,.0f} characters/s per GPU"
        + (f"; Qdrant: {a.qdrant_points_per_s:,.0f} points/s in all" if a.qdrant_points_per_s else ""),
        f"price: ${a.price_per_gpu_hour:.4f} per GPU-hour; "
        + (f"{a.startup_seconds:g} s of start-up added" if a.startup_seconds else "cold starts not included"),
        "",
        f"{'GPUs':>5}  {'chars/s per GPU':>15}  {'bound':>6}  {'wall time':>9}  {'GPU-hours':>9}  {'cost':>9}",
    ]
    for p in projections:
        lines.append(
            f"{p.gpus:>5}  {p.chars_per_gpu:>15,.0f}  {p.bound:>6}  {_duration(p.wall_seconds):>9}  "
            f"{p.gpu_hours:>9,.2f}  {'$' + format(p.cost, ',.2f'):>9}"
        )
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
    parser = argparse.ArgumentParser(prog="python -m ingest plan", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpus", type=_positive(int), nargs="+", default=list(DEFAULT_GPUS),
                        help="GPU counts to project (default: %(default)s)")
    parser.add_argument("--gpu-chars-per-s", type=_positive(float), default=d.gpu_chars_per_s,
                        help="TEI throughput of one GPU in characters/s (default: %(default)s, the "
                             "reference's A10G figure)")
    parser.add_argument("--client-chunks-per-s", type=_positive(float), default=d.client_chunks_per_s,
                        help="chunks/s one core of the client side sustains (default: %(default)s, the "
                             "reference's request loop alone: measure the pipeline and pass yours)")
    parser.add_argument("--client-cores", type=_positive(float), default=d.client_cores,
                        help="cores of client work per GPU (default: %(default)s: one Python process)")
    parser.add_argument("--chunk-chars", type=_positive(int), default=d.chunk_chars,
                        help="characters per chunk (default: %(default)s, the reference's windows; "
                             "the chunker's default is 1000)")
    parser.add_argument("--articles", type=_positive(int), default=d.articles, help="default: %(default)s")
    parser.add_argument("--characters", type=_positive(int), default=d.characters, help="default: %(default)s")
    parser.add_argument("--qdrant-points-per-s", type=_positive(float), default=None,
                        help="upsert rate of the one Qdrant all GPUs write to (default: not a limit)")
    parser.add_argument("--startup-seconds", type=float, default=d.startup_seconds,
                        help="cold start added to the wall time (default: %(default)s)")
    parser.add_argument("--price-per-gpu-hour", type=_positive(float), default=d.price_per_gpu_hour,
                        help="USD (default: %(default).4f, Modal's A10G base rate)")
    return parser


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None) -> int:
    args = build_parser().parse_args(argv)
    assumptions = Assumptions(
        articles=args.articles,
        characters=args.characters,
        chunk_chars=args.chunk_chars,
        gpu_chars_per_s=args.gpu_chars_per_s,
        client_chunks_per_s=args.client_chunks_per_s,
        client_cores=args.client_cores,
        qdrant_points_per_s=args.qdrant_points_per_s,
        startup_seconds=max(args.startup_seconds, 0.0),
        price_per_gpu_hour=args.price_per_gpu_hour,
    )
    projections = [project(gpus, assumptions) for gpus in args.gpus]
    print(render(projections, assumptions), file=out or sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
