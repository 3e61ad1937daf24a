"""What a run did: counts and timings, where it wrote, and the lines the command line prints."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class RunSummary:
    articles: int = 0
    skipped_empty: int = 0
    invalid: int = 0
    chunks: int = 0  # chunks written: embedded or reused
    reused: int = 0  # chunks of changed articles that kept their stored vector
    characters: int = 0
    points_written: int = 0
    rejected_chunks: int = 0
    seconds: float = 0.0
    embed_seconds: float = 0.0
    write_seconds: float = 0.0
    dead_letter: str | None = None
    added: int = 0  # articles: new to the collection
    changed: int = 0  # in it, in another version (or left pending by a stopped run)
    unchanged: int = 0  # in it as they are: skipped
    deleted: int = 0  # in it, absent from the snapshot: deleted
    retried: int = 0  # in it as they are, less chunks an embedder refused before: those tried again
    duplicates: int = 0  # rows of the source whose article id an earlier row had: left out
    unreadable: int = 0  # rows the source could not read (a bad JSON line): left out
    points_deleted: int = 0
    retries: dict[str, int] = field(default_factory=dict)  # embedder requests retried, by cause ("429", ...)
    # Where the run wrote (`ingest.jobs.run_ingest`; left as they are by the pipeline alone):
    collection: str | None = None  # the physical collection written
    collection_points: int = 0  # the points it holds at the end
    seeded: str | None = None  # how a rebuild was seeded from the live collection's vectors, if it was
    alias: str | None = None  # where the collection's name leads after a rebuild, and why
    index_seconds: float = 0.0  # after the pipeline: building the search index, or waiting for a server's

    @property
    def failed(self) -> int:
        return self.invalid + self.rejected_chunks + self.duplicates + self.unreadable

    @property
    def embedded(self) -> int:
        return self.chunks - self.reused

    @property
    def chunks_per_second(self) -> float:
        return self.chunks / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        share = 100 * self.embed_seconds / self.seconds if self.seconds else 0.0
        text = (
            f"articles read {self.articles:,}, skipped (empty) {self.skipped_empty:,}, "
            f"invalid {self.invalid + self.unreadable:,}, chunks {self.chunks:,}, "
            f"points written {self.points_written:,}, "
            f"rejected chunks {self.rejected_chunks:,}, {self.seconds:,.1f} s, "
            f"{self.chunks_per_second:,.1f} chunks/s, {self.characters / max(self.seconds, 1e-9):,.0f} chars/s, "
            f"embedder {share:.0f}% of wall time"
        )
        if self.dead_letter:
            text += f"; dead letters in {self.dead_letter}"
        return text

    def report(self) -> str:
        """What changed: the line `run` and `reindex` end with."""
        text = (
            f"articles added {self.added:,}, changed {self.changed:,}, unchanged {self.unchanged:,}, "
            f"deleted {self.deleted:,}"
        )
        if self.retried:
            text += f", retried {self.retried:,} (refused chunks tried again)"
        if self.duplicates:
            text += f", duplicate ids left out {self.duplicates:,}"
        text += (
            f"; chunks embedded {self.embedded:,}, reused {self.reused:,}; points written "
            f"{self.points_written:,}, deleted {self.points_deleted:,}; {self.seconds:,.1f} s"
        )
        if self.index_seconds >= 0.5:
            text += f", then {self.index_seconds:,.1f} s for the search index"
        if self.retries:
            causes = ", ".join(f"{cause} {n:,}" for cause, n in sorted(self.retries.items()))
            text += f"; embedder retries: {causes}"
        return text
