import pytest

from schemas import KNOWN_MODELS, Article, Chunk, CollectionSpec, ModelSpec, PointPayload, ValidationError, point_id


def row(**overrides):
    base = {"id": "12", "url": "https://en.wikipedia.org/wiki/X", "title": "X", "text": "Some text."}
    base.update(overrides)
    return base


def test_article_from_row_accepts_a_wikipedia_row_and_integer_ids():
    assert Article.from_row(row()) == Article("12", "https://en.wikipedia.org/wiki/X", "X", "Some text.")
    assert Article.from_row(row(id=7)).id == "7"


@pytest.mark.parametrize(
    "overrides, field, problem",
    [
        ({"text": None}, "text", "must be a string, got NoneType"),
        ({"title": ""}, "title", "is empty"),
        ({"url": 3}, "url", "must be a string, got int"),
    ],
)
def test_validation_errors_name_the_field_and_the_article(overrides, field, problem):
    with pytest.raises(ValidationError) as caught:
        Article.from_row(row(**overrides))
    message = str(caught.value)
    assert f"'{field}'" in message and problem in message and "'12'" in message


def test_a_missing_field_is_named_with_the_row_position_when_the_id_is_missing():
    broken = row()
    del broken["id"]
    with pytest.raises(ValidationError, match=r"row 4 \('X'\): field 'id' is missing"):
        Article.from_row(broken, position=4)


def test_point_ids_are_deterministic_uuids_per_article_and_chunk():
    assert point_id("12", 0) == point_id("12", 0)
    assert len({point_id("12", 0), point_id("12", 1), point_id("13", 0)}) == 3
    assert len(point_id("12", 0)) == 36


def test_payload_carries_citation_fields_and_hashes():
    article = Article.from_row(row())
    chunk = Chunk("12", 0, "Some text.", 0, 10, "X\nSome text.")
    payload = PointPayload.build(article, chunk).to_dict()
    assert payload["id"] == "12" and payload["url"].endswith("/X") and payload["title"] == "X"
    assert payload["text"] == "Some text." and payload["chunk_index"] == 0
    assert payload["chunk_hash"] == chunk.content_hash and payload["article_hash"] == article.content_hash
    assert PointPayload.from_dict(payload) == PointPayload.build(article, chunk)


def test_collection_spec_round_trips_through_metadata_and_fingerprints_settings():
    spec = CollectionSpec(model=KNOWN_MODELS["BAAI/bge-small-en-v1.5"], chunking={"max_chars": 1000})
    again = CollectionSpec.from_metadata(spec.to_metadata())
    assert again == spec and again.fingerprint == spec.fingerprint
    other = CollectionSpec(model=spec.model, chunking={"max_chars": 800})
    assert other.fingerprint != spec.fingerprint
    assert CollectionSpec.from_metadata(None) is None
    with pytest.raises(ValidationError, match="dimension"):
        ModelSpec.from_dict({"name": "m", "max_tokens": 3})


def test_point_ids_are_rfc_4122_version_5_uuids():
    import uuid

    from schemas.records import POINT_NAMESPACE

    for article_id, index in [("12", 0), ("Ωmega", 7), ("a" * 300, 12345)]:
        assert point_id(article_id, index) == str(uuid.uuid5(POINT_NAMESPACE, f"{article_id}:{index}"))


def test_the_upsert_batch_carries_the_payload_schema():
    import numpy as np

    from ingest.store.points import build_batch

    article = Article.from_row(row())
    chunks = [Chunk("12", i, f"part {i}", i, i + 1, f"X\\npart {i}") for i in range(3)]
    batch = build_batch([(article, c) for c in chunks], np.ones((3, 4), dtype=np.float32))
    assert batch.ids == [c.point_id for c in chunks] and batch.vectors[2] == [1.0] * 4
    assert [PointPayload.from_dict(p) for p in batch.payloads] == [PointPayload.build(article, c) for c in chunks]
