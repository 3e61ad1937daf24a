"""What the driver of the sharded load does between the shards, in plain Python:
split the corpus (`plan_shards`), fan the shards out and retry what failed
(`run_shards`), and report time, throughput and cost (`run_report`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

from ingest.errors import SettingsError, ShardError
from ingest.sharded.shard import ShardResult

log = logging.getLogger(__name__)

# Modal's base rate for one A10G (listed as "Nvidia A10" at $0.000306/s), read from
# modal.com/pricing; the same table's T4, L4, A100-80GB, L40S and H100 rates were
# confirmed unchanged by a third-party survey of 2026-05-07 (the A10 row itself was
# not re-checked here). Multipliers come on top: 1.5-1.75x for a pinned region, 3x
# for non-preemptible containers (neither is used by ingest.modal_app).
A10G_PRICE_PER_HOUR = 0.000306 * 3600  # USD, about 1.10


def plan_shards(n_rows: int, shard_size: int) -> list[tuple[int, int]]:
    """[start, stop) row ranges covering `n_rows`, each `shard_size` long but the last."""
    if n_rows < 0:
        raise SettingsError(f"cannot shard {n_rows} rows")
    if shard_size < 1:
        raise SettingsError(f"shard size must be at least 1, got {shard_size}")
    return [(start, min(start + shard_size, n_rows)) for start in range(0, n_rows, shard_size)]


@dataclass(slots=True)
class ShardRun:
    """All rounds of a fan-out: what finished, and what still failed at the end."""

    results: list[ShardResult] = field(default_factory=list)
    failed: dict[tuple[int, int], str] = field(default_factory=dict)
    rounds: int = 0
    unattributed: list[str] = field(default_factory=list)  # errors that named no shard

    @property
    def dead_letters(self) -> list[dict[str, Any]]:
        return [record for result in self.results for record in result.dead_letters]


def run_shards(
    shards: Sequence[tuple[int, int]],
    run_round: Callable[[list[tuple[int, int]]], Iterable[Any]],
    *,
    max_rounds: int = 3,
    on_output: Callable[[Any], None] | None = None,
) -> ShardRun:
    """Run `shards` through `run_round` (on Modal: a `starmap` with
    `return_exceptions=True`), then again for the shards with no result, up to
    `max_rounds` rounds in all. Outputs are `ShardResult`s or exceptions in any
    order; a shard counts as done only when its result arrived."""
    if max_rounds < 1:
        raise SettingsError(f"max_rounds must be at least 1, got {max_rounds}")
    run = ShardRun()
    pending = list(dict.fromkeys(shards))
    errors: dict[tuple[int, int], str] = {}
    while pending and run.rounds < max_rounds:
        run.rounds += 1
        done: set[tuple[int, int]] = set()
        for output in run_round(list(pending)):
            if on_output is not None:
                on_output(output)
            if isinstance(output, ShardResult):
                run.results.append(output)
                done.add(output.shard)
            elif isinstance(output, ShardError):
                errors[output.shard] = output.message
            elif isinstance(output, BaseException):
                run.unattributed.append(f"{type(output).__name__}: {output}")
            else:
                run.unattributed.append(f"unexpected output {type(output).__name__}")
        pending = [shard for shard in pending if shard not in done]
        if pending:
            log.warning("round %d: %d of the shards failed", run.rounds, len(pending))
    run.failed = {shard: errors.get(shard, "no result (the container failed or timed out)") for shard in pending}
    return run


def run_report(
    results: Sequence[ShardResult],
    wall_seconds: float,
    gpus: int,
    gpu_price_per_hour: float = A10G_PRICE_PER_HOUR,
    *,
    failed: Mapping[tuple[int, int], str] | None = None,
) -> str:
    """A plain-text report of a run. GPU time is `gpus x wall time`: what is billed
    while every container is held for the whole run (containers that scale down
    early make the real bill smaller)."""
    articles = sum(r.summary.articles for r in results)
    chunks = sum(r.summary.chunks for r in results)
    characters = sum(r.summary.characters for r in results)
    points = sum(r.summary.points_written for r in results)
    rejected = sum(r.summary.rejected_chunks for r in results)
    invalid = sum(r.summary.invalid + r.summary.unreadable for r in results)
    duplicates = sum(r.summary.duplicates for r in results)
    retries: dict[str, int] = {}
    for r in results:
        for cause, n in (r.summary.retries or {}).items():
            retries[cause] = retries.get(cause, 0) + n
    wall = max(wall_seconds, 1e-9)
    gpus = max(gpus, 1)
    gpu_seconds = gpus * wall_seconds
    lines = [
        f"shards               {len(results):,} done" + (f", {len(failed):,} failed" if failed else ""),
        f"articles             {articles:,} ({invalid:,} invalid" + (f", {duplicates:,} duplicate ids" if duplicates
                                                                   else "") + ")",
        f"chunks               {chunks:,} ({points:,} points written, {rejected:,} rejected)",
        f"characters           {characters:,}",
        f"wall time            {_duration(wall_seconds)} ({wall_seconds:,.1f} s)",
        f"chunks/s             {chunks / wall:,.0f}",
        f"characters/s per GPU {characters / wall / gpus:,.0f} ({gpus} GPUs)",
        f"GPU-seconds          {gpu_seconds:,.0f} ({gpu_seconds / 3600:,.2f} GPU-hours)",
        f"estimated cost       ${gpu_seconds / 3600 * gpu_price_per_hour:,.2f} at ${gpu_price_per_hour:.4f}/GPU-hour",
    ]
    if retries:
        lines.append("embedder retries     " + ", ".join(f"{c} {n:,}" for c, n in sorted(retries.items())))
    for (start, stop), message in sorted((failed or {}).items()):
        lines.append(f"failed shard [{start}, {stop}): {message}")
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"
