"""`python -m ingest bench`: how fast is the embedder alone, and how much of that
speed survives a whole run (chunking, embedding and upserts overlapped)?

Both are measured in one process on the same chunks, so the ratio holds even on a
noisy shared machine. `--embedder-only` skips the run (no Qdrant needed), for
measuring a GPU; `--repeat N` embeds the chunks N times for a longer measurement;
`--dtypes auto float32` measures each precision in turn and prints their ratio.
"""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import replace
from typing import Sequence

from ingest.chunking import Chunker
from ingest.embedders import Embedder, make_embedder
from ingest.jobs import run_ingest
from ingest.settings import IngestSettings
from ingest.sources import SAMPLE, open_source, sample_rows
from schemas import Article


def chunk_texts(settings: IngestSettings, embedder: Embedder) -> tuple[list[str], int]:
    """Embedded texts of the source's chunks, and their stored characters."""
    if settings.source_name == SAMPLE:  # no `datasets` needed: lets the GPU check run on a bare machine
        rows = sample_rows()[: settings.limit]
    else:
        rows = open_source(settings.source_name, limit=settings.limit)
    chunker = Chunker(settings.chunking, max_tokens=embedder.spec.max_tokens, count_tokens=embedder.count_tokens)
    texts, characters = [], 0
    for row in rows:
        article = Article.from_row(row)
        for chunk in chunker.chunks(article):
            texts.append(chunk.embed_text)
            characters += len(chunk.text)
    return texts, characters


def embedder_alone(embedder: Embedder, texts: list[str], window: int, repeat: int = 1) -> float:
    """Seconds to embed `texts` `repeat` times, in windows like the pipeline's."""
    embedder.embed_passages(texts[: min(len(texts), 64)])  # warm-up (CUDA context, kernels)
    started = time.perf_counter()
    for _ in range(repeat):
        for start in range(0, len(texts), window):
            embedder.embed_passages(texts[start : start + window])
    _synchronize()
    return time.perf_counter() - started


def _synchronize() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.synchronize()


def run_bench(
    settings: IngestSettings, *, embedder_only: bool = False, repeat: int = 1, dtypes: Sequence[str] = ()
) -> str:
    """The report. With `dtypes` (say auto and float32), each precision is measured in
    turn on the same chunks, and the last line gives their ratios to the first."""
    runs = [replace(settings, embedder=replace(settings.embedder, dtype=d)) for d in dtypes] or [settings]
    texts: list[str] | None = None
    lines, rates = [], []
    for run in runs:
        embedder = make_embedder(run.embedder)
        try:
            if texts is None:
                texts, characters = chunk_texts(settings, embedder)
            block, rate = _measure(run, embedder, texts, characters, embedder_only=embedder_only, repeat=repeat)
        finally:
            embedder.close()
        lines += block
        rates.append((getattr(embedder, "dtype", run.embedder.dtype), rate))
    if len(rates) > 1:
        (first, (alone, whole)), others = rates[0], rates[1:]
        for name, (other_alone, other_whole) in others:
            lines.append(
                f"{first} / {name}: embedder alone {alone / other_alone:.2f}x"
                + (f", whole run {whole / other_whole:.2f}x" if whole and other_whole else "")
            )
    return "\n".join(lines)


def _measure(
    settings: IngestSettings, embedder: Embedder, texts: list[str], characters: int, *, embedder_only: bool, repeat: int
) -> tuple[list[str], tuple[float, float | None]]:
    """Lines of the report for one embedder, and its (embedder-alone, whole-run) chunks/s."""
    seconds = embedder_alone(embedder, texts, settings.window, repeat)
    n, chars = len(texts) * repeat, characters * repeat
    counted = embedder.count_tokens(texts)
    tokens = (sum(counted) + 2 * len(texts)) * repeat if counted is not None else None
    device = getattr(embedder, "device", settings.embedder.embedder)
    if getattr(embedder, "engine", None):
        device += f", {embedder.engine} engine"
    dtype = getattr(embedder, "dtype", settings.embedder.dtype)
    if settings.embedder.dtype == "auto" and dtype != "auto":
        dtype = f"auto: {dtype}"
    lines = [
        f"model {embedder.spec.name} on {device} ({dtype}, batch {settings.embedder.batch_size}, "
        f"length-sorted windows of {settings.window})",
        f"chunks {len(texts):,} x {repeat}, {characters / max(len(texts), 1):,.0f} characters each on average",
        f"embedder alone: {n / seconds:,.1f} chunks/s, {chars / seconds:,.0f} characters/s"
        + (f", {tokens / seconds:,.0f} tokens/s" if tokens else "")
        + f" ({seconds:,.1f} s)",
    ]
    alone = n / seconds
    if embedder_only:
        return lines, (alone, None)
    with tempfile.TemporaryDirectory(prefix="ingest-bench-") as folder:
        run = replace(
            settings,
            progress=False,
            dead_letter=f"{folder}/dead_letter.jsonl",
            store=replace(settings.store, qdrant_path=f"{folder}/qdrant", qdrant_url=None, collection="bench"),
        )
        summary = run_ingest(run, embedder=embedder)
    lines.append(f"whole run: {summary.line()}")
    lines.append(
        f"whole run / embedder alone: {summary.chunks_per_second / alone:.2f} "
        f"(chunks/s {summary.chunks_per_second:,.1f} vs {alone:,.1f})"
    )
    return lines, (alone, summary.chunks_per_second)
