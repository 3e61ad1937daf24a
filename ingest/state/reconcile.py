"""Keep the manifest true to the collection, and the collection true to a snapshot.

- `verify`: every point of the collection (its article id, chunk index and article
  hash; no vectors) is aggregated per article into the manifest's temporary tables
  and compared with the manifest's rows: articles whose points are all lost, short,
  extra (or past the article's chunk count), of another version, unknown to the
  manifest, or left pending by a stopped run.
- `repair`: the manifest rebuilt from the collection alone. An article whose points
  run 0..n-1 with one hash is recorded as done; any other (a hole, mixed versions)
  as pending, so that the next run redoes or deletes it.
- `reconcile`: what a run does first. A cheap check (the points outside the pending
  articles against the manifest's count) and, only when it fails, a full `verify`
  whose drifted articles are then marked pending, so this very run restores them.
  A lost manifest, or a collection built before manifests existed, is adopted this way.
- `delete_unseen`: after a reindex, the articles the snapshot no longer has.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

from ingest.crashpoints import crashpoint
from ingest.errors import MassDeleteError
from ingest.state.manifest import Category, Comparison, Manifest
from ingest.state.provenance import noted_sources, rerun
from ingest.store import PointReader, Store

log = logging.getLogger(__name__)

DELETE_BATCH = 256  # articles per delete request
CONFIRM_SHARE = 0.05  # deleting more of the indexed articles (and more than CONFIRM_FLOOR) needs a yes
CONFIRM_FLOOR = 10
_CHEAP_CHECK_MAX_PENDING = 10_000  # beyond this, a filter naming them all costs more than a scan

_LABELS = {
    "lost": "articles whose points are all gone",
    "short": "articles missing some points",
    "extra": "articles with points past their chunk count",
    "stale": "articles whose points hold another version",
    "unknown": "articles in the collection but not in the manifest",
    "pending": "articles a stopped run left pending",
    "refused": "articles with chunks the embedder refused, not indexed (dead-lettered; the next run tries them again)",
}


@dataclass(frozen=True, slots=True)
class DriftReport:
    collection: str
    manifest: str
    articles: int  # rows in the manifest
    expected_points: int  # what those rows (not pending) say the collection holds
    points: int  # what it holds
    unattributed: int  # points without an article id in their payload
    comparison: Comparison
    sources: tuple[str, ...] = ()  # what wrote the collection (`ingest.state.provenance`), the latest last
    flags: str = ""  # the store's flags, for the commands the advice gives

    @property
    def in_sync(self) -> bool:
        c = self.comparison
        return c.drifted == 0 and c.pending.count == 0 and c.refused.count == 0 and self.unattributed == 0

    def lines(self) -> list[str]:
        lines = [
            f"collection {self.collection}: {self.points:,} points; manifest {self.manifest}: "
            f"{self.articles:,} articles, {self.expected_points:,} points expected"
        ]
        for name, label in _LABELS.items():
            category: Category = getattr(self.comparison, name)
            if category.count:
                lines.append(f"{category.count:,} {label}, e.g. {', '.join(category.examples)}")
        if self.unattributed:
            lines.append(f"{self.unattributed:,} points without an article id (not written by this tool)")
        lines.append("in sync" if self.in_sync else self.advice())
        return lines

    def advice(self) -> str:
        """What to do, never a command that deletes: a stopped run is run again; other drift is
        restored by running again what wrote the collection (a run redoes what it finds damaged)."""
        c = self.comparison
        if c.drifted == 0 and c.refused.count == 0 and not self.unattributed:
            (last,) = rerun(list(self.sources[-1:]), self.flags)
            return f"a run was stopped before it finished: run it again to finish it (`{last}`); it deletes nothing"
        commands = "; ".join(f"`{command}`" for command in rerun(list(self.sources), self.flags))
        return (
            f"drift: {commands} restores what is damaged or pending and deletes nothing; "
            f"`python -m ingest repair{self.flags}` rebuilds the manifest from the collection instead"
        )


@dataclass(frozen=True, slots=True)
class RepairReport:
    collection: str
    manifest: str
    points: int
    done: int
    pending: int

    def line(self) -> str:
        return (
            f"manifest {self.manifest} rebuilt from collection {self.collection} ({self.points:,} points): "
            f"{self.done:,} articles recorded as indexed, {self.pending:,} left pending (holes or mixed "
            "versions: the next run redoes them)"
        )


def _observe(store: PointReader, manifest: Manifest) -> int:
    """Aggregate every point of the collection into the manifest's `observed` table."""
    manifest.start_observing()
    seen = 0
    for page in store.scan_chunks():
        manifest.observe(page)
        seen += len(page)
    return seen


def verify(store: PointReader, manifest: Manifest, *, flags: str = "") -> DriftReport:
    """Compare the manifest with the collection, article by article (changes nothing).
    `flags`: the store's, for the advice's commands."""
    points = store.count()
    attributed = _observe(store, manifest)
    return DriftReport(
        store.collection,
        manifest.path,
        manifest.count(),
        manifest.expected_points(),
        points,
        max(points - attributed, 0),
        manifest.compare(),
        tuple(noted_sources(manifest)),
        flags,
    )


def repair(store: PointReader, manifest: Manifest) -> RepairReport:
    """Rebuild the manifest from the collection's points alone."""
    points = _observe(store, manifest)
    done, pending = manifest.rebuild_from_observed()
    return RepairReport(store.collection, manifest.path, points, done, pending)


def reconcile(store: PointReader, manifest: Manifest) -> DriftReport | None:
    """Before a run: if the collection does not hold what the manifest says, find the
    articles that differ and mark them pending (this run restores them); adopt the
    articles the manifest does not know. Returns the drift found, None if none."""
    if not manifest.recheck and manifest.count_pending() <= _CHEAP_CHECK_MAX_PENDING:
        pending = manifest.pending_ids(_CHEAP_CHECK_MAX_PENDING)  # only a few: never the whole corpus's ids
        outside, expected = store.count_excluding(pending), manifest.expected_points()
        if outside == expected:
            return None
        log.warning(
            "collection %s holds %d points outside the pending articles, the manifest expects %d: "
            "comparing them article by article",
            store.collection,
            outside,
            expected,
        )
    report = verify(store, manifest)
    redo, adopted = manifest.fix_drift()
    if redo or adopted:
        log.warning(
            "manifest %s: %d drifted articles will be redone, %d articles adopted from the collection",
            manifest.path,
            redo,
            adopted,
        )
    return report


def delete_unseen(
    store: Store,
    manifest: Manifest,
    *,
    max_share: float,
    confirm: Callable[[str], bool] | None = None,
    source: str = "the source",
) -> tuple[int, int]:
    """Delete the articles of the manifest that the snapshot lacked (`mark_seen`);
    returns (articles, points) deleted. Refuses when they are more than `max_share`
    of the indexed articles: a truncated or wrong snapshot must not empty the index;
    over `CONFIRM_SHARE` (and `CONFIRM_FLOOR`), deletes only if `confirm(question)` says yes."""
    unseen = manifest.count_unseen()
    if not unseen:
        return 0, 0
    indexed = manifest.count()
    if unseen > max_share * indexed:
        raise MassDeleteError(
            f"the snapshot lacks {unseen:,} of the {indexed:,} indexed articles ({unseen / indexed:.0%}, over "
            f"--max-delete-share {max_share:g}); nothing was deleted. Check the source, or raise "
            "--max-delete-share to delete them"
        )
    if unseen > max(CONFIRM_SHARE * indexed, CONFIRM_FLOOR):
        question = (
            f"delete {unseen:,} of the {indexed:,} articles of {store.collection} ({unseen / indexed:.0%}), "
            f"which {source} lacks?"
        )
        if confirm is None or not confirm(question):
            raise MassDeleteError(
                f"{unseen:,} of the {indexed:,} articles of {store.collection} ({unseen / indexed:.0%}), which "
                f"{source} lacks, were not deleted: not confirmed (asked on a terminal only). If {source} is all "
                "the collection should hold, run the same reindex with --yes"
            )
    crashpoint("before-delete")
    articles = points = 0
    while ids := manifest.unseen(DELETE_BATCH):
        manifest.mark_pending(ids)  # if this stops half-way, the next run finishes the job
        points += store.delete_articles(ids)
        store.flush()
        manifest.remove(ids)
        articles += len(ids)
    return articles, points
