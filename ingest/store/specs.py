"""A collection's record of how it was built, checked against a run's settings:
the same for every backend, so that no store ever mixes models or chunkings."""

from __future__ import annotations

from ingest.errors import CollectionMismatchError
from schemas import CollectionSpec


def check_compatible(collection: str, existing: CollectionSpec, wanted: CollectionSpec) -> None:
    """Raise `CollectionMismatchError`, naming what differs, unless `wanted` is how
    `collection` was built."""
    if existing.dimension != wanted.dimension or existing.model.name != wanted.model.name:
        raise CollectionMismatchError(
            f"collection {collection!r} holds {existing.dimension}-dimension vectors of "
            f"{existing.model.name!r}; refusing to add {wanted.dimension}-dimension vectors of "
            f"{wanted.model.name!r}. Use --model {existing.model.name} or another --collection"
        )
    if existing.fingerprint != wanted.fingerprint:
        changed = [
            key
            for key in sorted(set(existing.chunking) | set(wanted.chunking))
            if existing.chunking.get(key) != wanted.chunking.get(key)
        ]
        if existing.sparse != wanted.sparse:
            changed.insert(0, "sparse vectors")
        if existing.definition != wanted.definition:
            changed.insert(0, "definition vectors")
        if existing.model != wanted.model:
            changed.insert(0, "model settings")
        raise CollectionMismatchError(
            f"collection {collection!r} was built with other settings "
            f"({', '.join(changed) or 'distance'} differ): use the same settings or another --collection"
        )


def check_adoptable(collection: str, spec: CollectionSpec, *, points: int, dimension: int | None) -> None:
    """A collection with no record of its build (made by hand, or before records) may
    be adopted only when it is empty, of the right dimension, and dense only."""
    if points > 0 or dimension != spec.dimension:
        raise CollectionMismatchError(
            f"collection {collection!r} was not created by this tool (no embedding-model "
            f"record; {dimension} dims, {points} points): pick another --collection"
        )
    if spec.sparse:
        raise CollectionMismatchError(
            f"collection {collection!r} was created without sparse vectors and Qdrant cannot add "
            "them: pass --sparse none, or another --collection"
        )
