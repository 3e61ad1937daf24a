import tracemalloc

import pytest

from ingest.chunking import Chunker, ChunkingSettings
from ingest.errors import SettingsError
from schemas import Article

TEXT = (
    "The first sentence is here. The second one follows it! Does a third ask a question? "
    "A fourth sentence ends the paragraph.\nA new paragraph starts on a new line and goes on for a while."
)


def article(text=TEXT, title="Title"):
    return Article("a1", "https://en.wikipedia.org/wiki/Title", title, text)


def test_chunks_end_on_sentence_boundaries_and_record_their_spans():
    chunker = Chunker(ChunkingSettings(max_chars=90, title_prefix=False), max_tokens=10_000)
    chunks = list(chunker.chunks(article()))
    assert len(chunks) > 1
    for index, chunk in enumerate(chunks):
        assert chunk.chunk_index == index
        assert chunk.text == TEXT[chunk.start : chunk.end]
        assert len(chunk.text) <= 90
        assert chunk.text[-1] in ".!?" or chunk.end == len(TEXT)
    assert " ".join(c.text for c in chunks).split() == TEXT.split()  # nothing lost


def test_a_long_sentence_is_split_between_words_never_inside_one():
    words = [f"word{i}" for i in range(200)]
    chunker = Chunker(ChunkingSettings(max_chars=60, title_prefix=False), max_tokens=10_000)
    chunks = list(chunker.chunks(article(" ".join(words))))
    assert all(len(c.text) <= 60 for c in chunks)
    assert [w for c in chunks for w in c.text.split()] == words


def test_a_giant_word_is_cut_to_fit():
    chunker = Chunker(ChunkingSettings(max_chars=50, title_prefix=False), max_tokens=10_000)
    chunks = list(chunker.chunks(article("x" * 175)))
    assert [len(c.text) for c in chunks] == [50, 50, 50, 25]


def test_overlap_repeats_trailing_sentences_of_the_previous_chunk():
    sentences = [f"Sentence number {i} is short." for i in range(12)]
    chunker = Chunker(ChunkingSettings(max_chars=120, overlap_chars=50, title_prefix=False), max_tokens=10_000)
    chunks = list(chunker.chunks(article(" ".join(sentences))))
    assert len(chunks) > 2
    for previous, current in zip(chunks, chunks[1:]):
        assert current.start < previous.end  # overlapping spans
        assert current.start > previous.start  # always progressing


def test_title_prefix_goes_into_the_embedded_text_only():
    chunker = Chunker(ChunkingSettings(), max_tokens=512)
    (chunk,) = chunker.chunks(article("Short text."))
    assert chunk.text == "Short text." and chunk.embed_text == "Title\nShort text."


def test_empty_and_whitespace_articles_give_no_chunks():
    chunker = Chunker(ChunkingSettings(), max_tokens=512)
    assert list(chunker.chunks(article(""))) == []
    assert list(chunker.chunks(article(" \n\t "))) == []


def test_never_more_tokens_than_the_model_accepts(local_embedder, sample):
    limit = local_embedder.spec.max_tokens
    chunker = Chunker(ChunkingSettings(max_chars=4000), max_tokens=limit, count_tokens=local_embedder.count_tokens)
    texts = [c.embed_text for r in sample[:150] for c in chunker.chunks(Article.from_row(r))]
    counts = local_embedder.count_tokens(texts)
    assert max(counts) + 2 <= limit  # +2: [CLS] and [SEP]
    assert max(counts) > limit * 0.8  # the token budget, not the 4000 characters, was binding


def test_a_multi_megabyte_article_streams_in_bounded_memory():
    text = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 60_000  # 3.4 MB
    chunker = Chunker(ChunkingSettings(max_chars=1000, title_prefix=False), max_tokens=10_000)
    tracemalloc.start()
    try:
        count = 0
        for _chunk in chunker.chunks(article(text)):
            count += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count >= len(text) // 1000
    assert peak < 2_000_000, f"peak {peak:,} bytes while chunking a {len(text):,}-character article"


@pytest.mark.parametrize("kwargs, message", [({"max_chars": 10}, "too small"), ({"overlap_chars": 600}, "overlap")])
def test_bad_chunk_settings_name_the_setting(kwargs, message):
    with pytest.raises(SettingsError, match=message):
        ChunkingSettings(**kwargs)


@pytest.mark.slow
def test_token_counting_on_another_thread_does_not_disturb_embedding(local_embedder, sample):
    """The chunker counts tokens while the embed thread encodes: they must not share tokenizer state."""
    import threading

    texts = [row["text"] for row in sample[:64]]
    stop = threading.Event()

    def count_forever():
        while not stop.is_set():
            local_embedder.count_tokens(texts[:16])

    counter = threading.Thread(target=count_forever)
    counter.start()
    try:
        for _ in range(3):
            assert local_embedder.embed_passages(texts).vectors.shape == (64, 384)
    finally:
        stop.set()
        counter.join()
    assert local_embedder.count_tokens(["Hello world"]) == [2]


def test_the_direct_engine_gives_sentence_transformers_vectors(local_embedder, sample):
    """The lean forward pass (length-sorted window, pooling on the device) is the same model."""
    import numpy as np

    assert local_embedder.engine == "direct"
    texts = [row["text"] for row in sample[:40]] + ["x", "word " * 600]  # a short one, a truncated one
    reference = local_embedder.model.encode(texts, batch_size=8, normalize_embeddings=True, convert_to_numpy=True)
    np.testing.assert_allclose(local_embedder.embed_passages(texts).vectors, reference, atol=1e-5)
