"""Which physical collection a run writes, and moving the name search uses onto it.

The name users give (`--collection wikipedia`) is a Qdrant alias over physical
collections named `{name}-{fingerprint[:8]}`, the fingerprint covering everything
that shapes a vector (`schemas.CollectionSpec.fingerprint`: model id and revision,
dimension, pooling, normalisation, query instruction, chunker settings).

- The live collection has this run's fingerprint: the run updates it in place.
- It has another one: the run builds `{name}-{fp8}` from the whole source (or goes on
  building it, after a stop), checks it with a smoke query, then moves the alias in
  one atomic `update_collection_aliases` call. Search answers from the old
  collection until that call, and from the new one after. A failure anywhere before
  leaves the alias where it was. `drop_old` deletes the collection left behind.
- Nothing by that name yet: the run builds `{name}-{fp8}` and creates the alias.
- An unaliased collection, a real collection named `name` (built before aliases): it is
  adopted and updated in place while its fingerprint matches. Replacing it needs
  `drop_old`, because an alias cannot take a name a collection holds: it is deleted
  just before the alias is created, the one moment (milliseconds) when the name
  leads nowhere. A stop between the two heals on the next run, which finds the new
  collection complete and creates the alias.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

from ingest.crashpoints import crashpoint
from ingest.embedders import Embedder
from ingest.errors import RebuildError
from ingest.store import Catalogue, PointReader
from schemas import CollectionSpec, PointPayload, ValidationError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Target:
    name: str  # what search uses: an alias, or an unaliased collection's own name
    collection: str  # the physical collection this run writes
    live: str | None  # where `name` leads now
    unaliased: bool  # `name` is a real collection, not an alias

    @property
    def in_place(self) -> bool:
        return self.collection == self.live

    @property
    def rebuild(self) -> bool:
        """A live collection of other settings is being replaced."""
        return self.live is not None and not self.in_place


def physical_name(name: str, spec: CollectionSpec) -> str:
    return f"{name}-{spec.fingerprint[:8]}"


def plan_target(store: Catalogue, name: str, spec: CollectionSpec) -> Target:
    """Where a run with `spec` writes (see the module docstring)."""
    resolved = store.resolve(name)
    live = resolved.collection
    if live is not None:
        live_spec = store.at(live).read_spec()
        # No record: not ours, or empty; `ensure_collection` adopts an empty one or refuses.
        if live_spec is None or live_spec.fingerprint == spec.fingerprint:
            return Target(name, live, live, unaliased=not resolved.is_alias)
    return Target(name, physical_name(name, spec), live, unaliased=live is not None and not resolved.is_alias)


def check_target(target: Target, *, drop_old: bool) -> None:
    """Fail before any work when the rebuild could not be switched to at the end."""
    if target.rebuild and target.unaliased and not drop_old:
        raise RebuildError(
            f"collection {target.name!r} was built with other settings, before collections had aliases: "
            f"the rebuild {target.collection!r} can take its name only once it is gone. Pass --drop-old "
            "to delete it when the new collection is ready, or use another --collection"
        )


def smoke_check(store: PointReader, embedder: Embedder) -> None:
    """A query through the new collection must find points with a valid payload."""
    some = store.any_point()
    if some is None:
        raise RebuildError(f"collection {store.collection!r} holds no points: the alias stays where it was")
    query = str(some.get("title") or some.get("text") or "test")
    hits = store.search(embedder.embed_queries([query])[0], limit=3)
    if not hits:
        raise RebuildError(f"a smoke query on {store.collection!r} found nothing: the alias stays where it was")
    try:
        PointPayload.from_dict(hits[0].payload, point=hits[0].id)
    except ValidationError as exc:
        raise RebuildError(
            f"a smoke query on {store.collection!r} found a bad point ({exc}): the alias stays where it was"
        ) from exc


def go_live(store: Catalogue, target: Target, *, drop_old: bool) -> str | None:
    """Point `target.name` at `target.collection`; with `drop_old`, delete the
    collection it led to. Returns the dropped collection's name, if any."""
    crashpoint("before-alias-switch")
    if target.unaliased and target.live is not None:
        store.at(target.live).drop()  # frees the name for the alias
        store.point_alias(target.name, target.collection, replace_alias=False)
        log.info("replaced collection %s by %s, now behind the alias %s", target.live, target.collection, target.name)
        return target.live
    store.point_alias(target.name, target.collection, replace_alias=target.live is not None)
    log.info(
        "alias %s now leads to %s%s", target.name, target.collection, f" (was {target.live})" if target.live else ""
    )
    if not drop_old or target.live is None:
        return None
    others = store.aliases_of(target.live)
    if others:
        log.warning("kept %s: other aliases still lead to it (%s)", target.live, ", ".join(others))
        return None
    store.at(target.live).drop()
    return target.live


def not_indexed(target: Target, waited: float) -> str:
    """Why the alias did not move: the new collection's index is still being built."""
    return (
        f"{target.collection} was still building its index after {waited:,.0f} s, so {target.name} "
        + (f"still leads to {target.live}" if target.live else "does not lead to it yet")
        + ": run the same command again (it finds the collection complete, waits again, then switches)"
    )


def switch(
    store: Catalogue, target: Target, embedder: Embedder, *, drop_old: bool, forget: Callable[[str], None]
) -> str:
    """Check the built collection with a smoke query, move the alias onto it, and
    `forget` (the state of) the collection dropped, if any. Returns the report line."""
    smoke_check(store.at(target.collection), embedder)
    dropped = go_live(store, target, drop_old=drop_old)
    if dropped:
        forget(dropped)
    return f"{target.name} now leads to {target.collection}" + (
        f" (was {target.live}{', dropped' if dropped else ', kept'})" if target.live else ""
    )
