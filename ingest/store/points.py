"""Points as qdrant-client models: the upsert body on every backend's hot path, and
the filters the store's neutral types (`ingest.store.base`) stand for."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
from qdrant_client import models

from ingest.definitions import DEFINITION_VECTOR
from ingest.lexical import SPARSE_VECTOR, passage_text, passage_vector
from ingest.store.base import ChunkSelection, Pair, PayloadFilter, StoredHit, StoredPoint, StoredVector
from schemas import SparseSpec

DENSE_VECTOR = ""  # the dense vector keeps Qdrant's default (unnamed) slot, as before sparse vectors came

# Bodies well under Qdrant's 32 MB REST limit and quick to retry. Estimated per point:
# its text and title (UTF-8, JSON-escaped), its floats as JSON text, and the other fields.
MAX_REQUEST_BYTES = 8 * 1024 * 1024
_BYTES_PER_FLOAT = 12
_POINT_OVERHEAD_BYTES = 400


def dense_vector(vector: Any) -> Any:
    """A point's dense vector, whether Qdrant returned it alone or beside its sparse one."""
    return vector.get(DENSE_VECTOR) if isinstance(vector, dict) else vector


def split_by_bytes(pairs: Sequence[Pair], dimension: int, max_bytes: int = MAX_REQUEST_BYTES) -> list[slice]:
    """Slices of `pairs` whose estimated request size stays under `max_bytes`."""
    slices, start, size = [], 0, 0
    for index, (article, chunk) in enumerate(pairs):
        # text and title twice (JSON escapes), and about as much again for a sparse vector
        point = (len(chunk.text) * 4 + (len(article.title) + len(article.url)) * 2) + dimension * _BYTES_PER_FLOAT
        point += _POINT_OVERHEAD_BYTES
        if index > start and size + point > max_bytes:
            slices.append(slice(start, index))
            start, size = index, 0
        size += point
    if start < len(pairs):
        slices.append(slice(start, len(pairs)))
    return slices


def point_payloads(pairs: Sequence[Pair]) -> tuple[list[str], list[dict[str, Any]]]:
    """Point ids and payloads (the fields of `PointPayload`, as plain dicts). Each
    article's hash is computed once per batch, not once per chunk."""
    article_hashes: dict[int, str] = {}
    ids, payloads = [], []
    for article, chunk in pairs:
        article_hash = article_hashes.get(id(article))
        if article_hash is None:
            article_hash = article_hashes[id(article)] = article.content_hash
        ids.append(chunk.point_id)
        payloads.append(
            {
                "id": article.id,
                "url": article.url,
                "title": article.title,
                "text": chunk.text,
                "chunk_index": chunk.chunk_index,
                "start": chunk.start,
                "end": chunk.end,
                "chunk_hash": chunk.content_hash,
                "article_hash": article_hash,
            }
        )
    return ids, payloads


def definition_vector(vector: Any) -> np.ndarray | None:
    """A point's definition vector (`ingest.definitions`), None where it has none."""
    definition = vector.get(DEFINITION_VECTOR) if isinstance(vector, dict) else None
    return np.asarray(definition, dtype=np.float32) if definition is not None else None


def definitions_of(points: Sequence[StoredPoint]) -> dict[int, np.ndarray]:
    """The definition vectors of exported points, by position: what `upsert_pairs` takes as
    `definitions`, for a copy (`import_points`)."""
    return {i: p.definition for i, p in enumerate(points) if p.definition is not None}


def stored_chunk_vector(payload: dict[str, Any] | None, vector: Any) -> StoredVector | None:
    """A retrieved point's chunk hash and dense vector (and its definition vector, where it has
    one), None if it lacks either of the first two."""
    chunk_hash, dense = (payload or {}).get("chunk_hash"), dense_vector(vector)
    if not chunk_hash or dense is None:
        return None
    return StoredVector(chunk_hash, np.asarray(dense, dtype=np.float32), definition_vector(vector))


def hits_from(points: Sequence[Any], dense: np.ndarray, *, fused: bool) -> list[StoredHit]:
    """Typed hits from scored points (qdrant-client's or Qdrant Edge's: id, score,
    payload, vector); a fused hit's cosine similarity is computed from its stored vector."""
    unit = dense / (float(np.linalg.norm(dense)) or 1.0)
    hits = []
    for p in points:
        similarity = float(p.score)
        if fused:
            stored = np.asarray(dense_vector(p.vector), dtype=np.float32)
            similarity = float(unit @ stored / (float(np.linalg.norm(stored)) or 1.0))
        hits.append(StoredHit(str(p.id), float(p.score), dict(p.payload or {}), similarity))
    return hits


def build_batch(
    pairs: Sequence[Pair],
    vectors: np.ndarray,
    sparse: SparseSpec | None = None,
    definitions: Mapping[int, np.ndarray] | None = None,
) -> models.Batch | list[models.PointStruct]:
    """Column-oriented upsert body, built for speed: it is on every backend's hot path.

    Payloads come from `point_payloads`, and the vectors, float32 already checked at
    the embedder boundary, skip pydantic's per-float validation. With `sparse`, each
    point also gets its lexical vector (`ingest.lexical`), made from the text the
    model saw (less the title, if the spec leaves it out); with `definitions` (position
    in `pairs` -> vector), those points their definition vector."""
    ids, payloads = point_payloads(pairs)
    return batch_of(
        ids,
        vectors.tolist(),
        payloads,
        [passage_text(chunk.embed_text, chunk.text, sparse) for _, chunk in pairs],
        sparse,
        definitions,
    )


def batch_of(
    ids: list[str],
    dense: list,
    payloads: list[dict[str, Any]],
    texts: Sequence[str],
    sparse: SparseSpec | None,
    definitions: Mapping[int, np.ndarray] | None = None,
) -> models.Batch | list[models.PointStruct]:
    """The upsert body of points given whole (`build_batch`, and a copy between
    stores): with `sparse`, each point's lexical vector is made from its `texts`. Points
    with a definition vector are given one by one: a batch's named vectors are columns,
    one value for every point, and only an article's first chunk has a definition."""
    if sparse is None and not definitions:
        return models.Batch.model_construct(ids=ids, vectors=dense, payloads=payloads)
    columns: dict[str, list] = {DENSE_VECTOR: dense}
    if sparse is not None:
        columns[SPARSE_VECTOR] = [
            models.SparseVector.model_construct(indices=indices, values=values)
            for indices, values in (passage_vector(text, sparse) for text in texts)
        ]
    if not definitions:
        return models.Batch.model_construct(ids=ids, vectors=columns, payloads=payloads)
    points = []
    for i, (pid, payload) in enumerate(zip(ids, payloads)):
        named = {name: column[i] for name, column in columns.items()}
        if (definition := definitions.get(i)) is not None:
            named[DEFINITION_VECTOR] = definition.tolist()
        points.append(models.PointStruct.model_construct(id=pid, vector=named, payload=payload))
    return points


def selection_filter(selection: ChunkSelection) -> models.Filter:
    which: list[models.Condition] = []
    if selection.from_index is not None:
        which.append(models.FieldCondition(key="chunk_index", range=models.Range(gte=selection.from_index)))
    if selection.indices:
        which.append(models.FieldCondition(key="chunk_index", match=models.MatchAny(any=list(selection.indices))))
    article = models.FieldCondition(key="id", match=models.MatchValue(value=selection.article_id))
    return models.Filter(must=[article], should=which or None)


def articles_filter(article_ids: Sequence[str]) -> models.Filter:
    return models.Filter(must=[models.FieldCondition(key="id", match=models.MatchAny(any=list(article_ids)))])


def payload_filter(where: PayloadFilter | None) -> models.Filter | None:
    """Qdrant's filter for `where`: every given part must hold, any of its values."""
    if where is None or not where.conditions():
        return None
    return models.Filter(
        must=[
            models.FieldCondition(key=key, match=models.MatchAny(any=list(values)))
            for key, values in where.conditions()
        ]
    )
