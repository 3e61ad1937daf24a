"""The sharded load's driver, in plain Python: the same code whether Modal runs the
workers (`modal run -m ingest.modal_app`) or a local pool does
(`python -m ingest rehearse`).

`run_load(fleet, request)` asks the fleet to pick and create the collection, fans
the shards out round after round until each has landed (or the rounds run out),
then, only if every shard landed and the refused chunks stay within what a healthy
GPU refuses, waits for the server to index the collection and has it checked and
put behind the alias. Its report splits the time until the collection is
searchable into the load, the index build and the switch, and counts the GPU time
the workers were held (`WorkerStamp`s), which is what a GPU cloud bills.

A `Fleet` is four calls: `prepare`, `run_round` (outputs in any order, exceptions
as outputs: Modal's `starmap(..., return_exceptions=True)`), `wait_until_indexed`
and `finish`.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Protocol, Sequence

from ingest.errors import SettingsError, ShardError
from ingest.sharded.shard import REFUSED_FLOOR, REFUSED_SHARE, ShardResult, WorkerStamp

log = logging.getLogger(__name__)

# Modal's base rate for one A10G (listed as "Nvidia A10" at $0.000306/s), read from
# modal.com/pricing; the same table's T4, L4, A100-80GB, L40S and H100 rates were
# confirmed unchanged by a third-party survey of 2026-05-07 (the A10 row itself was
# not re-checked here). Multipliers come on top: 1.5-1.75x for a pinned region, 3x
# for non-preemptible containers (neither is used by ingest.modal_app).
A10G_PRICE_PER_HOUR = 0.000306 * 3600  # USD, about 1.10
TRIAL_SUFFIX = "-trial"  # a --limit load lives under its own name: `wikipedia-trial`


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
    stamps: list[WorkerStamp] = field(default_factory=list)  # of every result and shard error
    broken: set[str] = field(default_factory=set)  # workers that reported their GPU or TEI broken

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
            stamp = getattr(output, "stamp", None)
            if isinstance(stamp, WorkerStamp):
                run.stamps.append(stamp)
            if isinstance(output, ShardResult):
                run.results.append(output)
                done.add(output.shard)
            elif isinstance(output, ShardError):
                errors[output.shard] = output.message
                if output.broken and isinstance(stamp, WorkerStamp):
                    run.broken.add(stamp.worker)
            elif isinstance(output, BaseException):
                run.unattributed.append(f"{type(output).__name__}: {output}")
            else:
                run.unattributed.append(f"unexpected output {type(output).__name__}")
        pending = [shard for shard in pending if shard not in done]
        if pending:
            log.warning("round %d: %d of the shards failed", run.rounds, len(pending))
    run.failed = {shard: errors.get(shard, "no result (the container failed or timed out)") for shard in pending}
    return run


# -- GPU time ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class GpuTime:
    """What the workers were held for: each from its start to its last shard's end,
    plus the idle time before it is let go (Modal's `scaledown_window`)."""

    seconds: float
    workers: int  # containers that ran at least one shard
    peak: int  # containers held at once, at most

    @classmethod
    def of(cls, stamps: Sequence[WorkerStamp], idle_seconds: float = 0.0) -> GpuTime:
        spans: dict[str, tuple[float, float]] = {}
        for stamp in stamps:
            start, end = spans.get(stamp.worker, (stamp.started, stamp.finished))
            spans[stamp.worker] = (min(start, stamp.started), max(end, stamp.finished))
        held = [(start, end + idle_seconds) for start, end in spans.values()]
        events = sorted([(start, 1) for start, _ in held] + [(end, -1) for _, end in held])
        peak = now = 0
        for _, change in events:
            now += change
            peak = max(peak, now)
        return cls(sum(end - start for start, end in held), len(held), peak)


# -- the load ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class LoadRequest:
    """One sharded load, as the driver's command line asked for it."""

    dataset: str  # the saved dataset, as the workers see it
    rows: int  # how many of its rows the load covers
    key: str  # names the run: the same request resumes it (`ingest.sharded.records.run_key`)
    collection: str = "wikipedia"  # the name search uses; a trial's gets TRIAL_SUFFIX
    snapshot: str = ""  # the dump's config (20231101.en): what the collection holds once loaded
    layout: Mapping[str, Any] = field(default_factory=dict)  # the chunker's settings and "sparse"
    shard_size: int = 5_000
    window: int = 2048
    max_rounds: int = 3
    trial: bool = False  # a --limit load: built under `<collection>-trial`, never the live name
    drop_old: bool = False
    fresh: bool = False
    gpus: int = 1  # asked for (the driver learns how many it got)
    price_per_gpu_hour: float = A10G_PRICE_PER_HOUR
    idle_seconds: float = 0.0  # how long an idle worker is still billed before it is let go
    dead_letter: str | None = None  # the local file the run's dead letters are appended to

    @property
    def name(self) -> str:
        return self.collection + (TRIAL_SUFFIX if self.trial else "")


class Fleet(Protocol):
    """Where the workers run (see the module docstring)."""

    def prepare(self, request: LoadRequest) -> Any:
        """`ingest.sharded.load.prepare_load`'s `LoadPlan`, on a worker."""
        ...

    def run_round(self, request: LoadRequest, plan: Any, shards: list[tuple[int, int]]) -> Iterable[Any]: ...

    def wait_until_indexed(self, collection: str) -> bool: ...

    def finish(self, request: LoadRequest, plan: Any) -> str:
        """`ingest.sharded.load.finish_load`'s report line, on a worker."""
        ...


@dataclass(slots=True)
class LoadOutcome:
    run: ShardRun
    plan: Any
    skipped: list[ShardResult]  # recorded by an earlier attempt
    load_seconds: float = 0.0
    index_seconds: float | None = None
    switch_seconds: float | None = None
    switched: str | None = None  # the finish's report line
    problem: str | None = None  # why the alias did not move

    @property
    def ok(self) -> bool:
        return self.problem is None


def run_load(fleet: Fleet, request: LoadRequest, *, out: Callable[[str], None] = print) -> LoadOutcome:
    """The whole load (see the module docstring); `out` gets the progress lines."""
    shards = plan_shards(request.rows, request.shard_size)
    plan = fleet.prepare(request)
    skipped = {result.shard: result for result in plan.finished}
    pending = [shard for shard in shards if shard not in skipped]
    out(
        f"building {plan.collection} for {plan.name}"
        + (f" (live now: {plan.live})" if plan.live else "")
        + (f"; {len(skipped):,} shards already done by an earlier attempt" if skipped else "")
    )
    done = len(skipped)

    def progress(output: Any) -> None:
        nonlocal done
        if isinstance(output, ShardResult):
            done += 1
            out(
                f"[{done:,}/{len(shards):,}] shard [{output.start}, {output.stop}): "
                f"{output.summary.chunks:,} chunks in {output.summary.seconds:,.0f} s"
            )
        else:
            out(f"failed: {type(output).__name__}: {output}")

    started = time.perf_counter()
    run = run_shards(
        pending, lambda todo: fleet.run_round(request, plan, todo), max_rounds=request.max_rounds, on_output=progress
    )
    outcome = LoadOutcome(run, plan, list(skipped.values()), load_seconds=time.perf_counter() - started)
    if run.failed:
        outcome.problem = (
            f"{len(run.failed)} shards failed after {run.rounds} rounds; the alias did not move. "
            "Run the same command again: it retries only those"
        )
        return outcome
    results = [*skipped.values(), *run.results]
    chunks = sum(r.summary.chunks for r in results)
    refused = sum(r.summary.rejected_chunks for r in results)
    if refused > max(REFUSED_FLOOR, REFUSED_SHARE * chunks):
        outcome.problem = (
            f"the embedders refused {refused:,} of {chunks:,} chunks, more than healthy GPUs refuse: "
            "the alias did not move; see the dead letters, then run again with --fresh"
        )
        return outcome
    started = time.perf_counter()
    indexed = fleet.wait_until_indexed(plan.collection)
    outcome.index_seconds = time.perf_counter() - started
    if not indexed:
        outcome.problem = (
            f"{plan.collection} was still building its index when the wait ended; the alias did not "
            "move. Run the same command again: it waits again, then switches"
        )
        return outcome
    started = time.perf_counter()
    outcome.switched = fleet.finish(request, plan)
    outcome.switch_seconds = time.perf_counter() - started
    return outcome


def write_dead_letters(path: str | Path, outcome: LoadOutcome) -> int:
    """Append the load's dead letters (an earlier attempt's shards' too) that `path`
    does not hold yet; returns how many were appended."""
    path = Path(path)
    seen = set(path.read_text(encoding="utf-8").splitlines()) if path.is_file() else set()
    records = [r for result in [*outcome.skipped, *outcome.run.results] for r in result.dead_letters]
    lines = [line for line in (json.dumps(r, ensure_ascii=False, sort_keys=True) for r in records) if line not in seen]
    if lines:
        with path.open("a", encoding="utf-8") as handle:
            handle.write("".join(line + "\n" for line in dict.fromkeys(lines)))
    return len(dict.fromkeys(lines))


def load_report(outcome: LoadOutcome, request: LoadRequest) -> str:
    """A plain-text report of a load: what it did, then its time until searchable by
    phase, the GPU time the workers were held and what that costs."""
    results = outcome.run.results
    gpu = GpuTime.of(outcome.run.stamps, request.idle_seconds)
    characters = sum(r.summary.characters for r in results)
    chunks = sum(r.summary.chunks for r in results)
    load = max(outcome.load_seconds, 1e-9)
    lines = [
        f"shards               {len(results):,} done this attempt"
        + (f", {len(outcome.skipped):,} by an earlier one" if outcome.skipped else "")
        + (f", {len(outcome.run.failed):,} failed" if outcome.run.failed else "")
        + (f" ({outcome.run.rounds} rounds)" if outcome.run.rounds > 1 else ""),
        *_counts(results),
        f"load                 {_duration(outcome.load_seconds)} ({outcome.load_seconds:,.1f} s): "
        f"{chunks / load:,.0f} chunks/s, {characters / load:,.0f} characters/s",
        f"workers              {gpu.workers:,} ran shards, {gpu.peak:,} at once at most ({request.gpus:,} asked for)"
        + (f"; {len(outcome.run.broken):,} reported a broken GPU or TEI server" if outcome.run.broken else ""),
        f"characters/s per GPU {characters / max(gpu.seconds, 1e-9):,.0f} (over the GPU-seconds held)",
        f"GPU-seconds held     {gpu.seconds:,.0f} ({gpu.seconds / 3600:,.2f} GPU-hours, "
        f"{request.idle_seconds:g} s idle each before release)",
        f"cost                 ${gpu.seconds / 3600 * request.price_per_gpu_hour:,.2f} at "
        f"${request.price_per_gpu_hour:.4f}/GPU-hour",
    ]
    if outcome.index_seconds is not None:
        lines.append(f"index build          {_duration(outcome.index_seconds)} ({outcome.index_seconds:,.1f} s)")
    if outcome.switch_seconds is not None:
        total = outcome.load_seconds + (outcome.index_seconds or 0.0) + outcome.switch_seconds
        lines.append(f"alias switch         {_duration(outcome.switch_seconds)} ({outcome.switch_seconds:,.1f} s)")
        lines.append(f"time to searchable   {_duration(total)} ({total:,.1f} s)")
    retries: dict[str, int] = {}
    for r in results:
        for cause, n in (r.summary.retries or {}).items():
            retries[cause] = retries.get(cause, 0) + n
    if retries:
        lines.append("embedder retries     " + ", ".join(f"{c} {n:,}" for c, n in sorted(retries.items())))
    for (start, stop), message in sorted(outcome.run.failed.items()):
        lines.append(f"failed shard [{start}, {stop}): {message}")
    for message in outcome.run.unattributed:
        lines.append(f"lost worker          {message}")
    return "\n".join(lines)


def _counts(results: Sequence[ShardResult]) -> list[str]:
    articles = sum(r.summary.articles for r in results)
    invalid = sum(r.summary.invalid + r.summary.unreadable for r in results)
    duplicates = sum(r.summary.duplicates for r in results)
    return [
        f"articles             {articles:,} ({invalid:,} invalid"
        + (f", {duplicates:,} duplicate ids" if duplicates else "")
        + ")",
        f"chunks               {sum(r.summary.chunks for r in results):,} ("
        f"{sum(r.summary.points_written for r in results):,} points written, "
        f"{sum(r.summary.rejected_chunks for r in results):,} refused)",
        f"characters           {sum(r.summary.characters for r in results):,}",
    ]


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"
