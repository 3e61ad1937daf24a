"""`python -m ingest bench`: how fast is the embedder alone, and how much of that
speed survives a whole run (chunking, embedding and upserts overlapped)?

Both are measured in one process on the same chunks, so the ratio holds even on a
noisy shared machine. `--embedder-only` skips the run (no Qdrant needed), for
measuring a GPU; `--repeat N` embeds the chunks N times for a longer measurement.
"""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import replace

from ingest.chunking import Chunker
from ingest.embedders import Embedder, make_embedder
from ingest.settings import IngestSettings
from ingest.sources import SAMPLE, open_source, sample_rows
from ingest.sync import run_ingest
from schemas import Article


def chunk_texts(settings: IngestSettings, embedder: Embedder) -> tuple[list[str], int]:
    """Embedded texts of the source's chunks, and their stored characters."""
    if settings.source == SAMPLE:  # no `datasets` needed: lets the GPU check run on a bare machine
        rows = sample_rows()[: settings.limit]
    else:
        rows = open_source(settings.source, limit=settings.limit)
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


def run_bench(settings: IngestSettings, *, embedder_only: bool = False, repeat: int = 1) -> str:
    embedder = make_embedder(settings.embedder)
    try:
        texts, characters = chunk_texts(settings, embedder)
        seconds = embedder_alone(embedder, texts, settings.window, repeat)
        n, chars = len(texts) * repeat, characters * repeat
        counted = embedder.count_tokens(texts)
        tokens = (sum(counted) + 2 * len(texts)) * repeat if counted is not None else None
        device = getattr(embedder, "device", settings.embedder.embedder)
        if getattr(embedder, "engine", None):
            device += f", {embedder.engine} engine"
        lines = [
            f"model {embedder.spec.name} on {device} ({settings.embedder.dtype}, batch {settings.embedder.batch_size}, "
            f"length-sorted windows of {settings.window})",
            f"chunks {len(texts):,} x {repeat}, {characters / max(len(texts), 1):,.0f} characters each on average",
            f"embedder alone: {n / seconds:,.1f} chunks/s, {chars / seconds:,.0f} characters/s"
            + (f", {tokens / seconds:,.0f} tokens/s" if tokens else "")
            + f" ({seconds:,.1f} s)",
        ]
        if not embedder_only:
            with tempfile.TemporaryDirectory(prefix="ingest-bench-") as folder:
                run = replace(
                    settings,
                    progress=False,
                    dead_letter=f"{folder}/dead_letter.jsonl",
                    store=replace(settings.store, qdrant_path=f"{folder}/qdrant", qdrant_url=None,
                                  collection="bench"),
                )
                summary = run_ingest(run, embedder=embedder)
            lines.append(f"whole run: {summary.line()}")
            alone = len(texts) * repeat / seconds
            lines.append(
                f"whole run / embedder alone: {summary.chunks_per_second / alone:.2f} "
                f"(chunks/s {summary.chunks_per_second:,.1f} vs {alone:,.1f})"
            )
        return "\n".join(lines)
    finally:
        embedder.close()
