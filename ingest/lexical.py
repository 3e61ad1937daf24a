"""BM25 sparse vectors, the lexical half of hybrid search.

Dense vectors find paraphrases but blur rare names and numbers ("HAL 9000",
"1969"); term matching finds those. Each chunk gets a sparse vector of its terms,
weighted by BM25's saturated term frequency with length normalisation; Qdrant
multiplies in each term's IDF at query time (`Modifier.IDF`), computed over the
whole collection, so nothing here needs corpus statistics and chunks can be
written by many workers independently.

The analyser is Qdrant's standard BM25 (`qdrant_edge.Bm25`, in Rust): Qdrant's
word tokenizer, lowercase, English stopwords, Snowball stemming, murmur3 term
ids. It is the same code as a Qdrant server's own BM25 inference, so any client
can query our collections without this project:
`models.Document(text=query, model="qdrant/bm25")` against the `bm25` vector (a
query's weights are 1 per distinct term; `avg_len` matters only to documents).

`words-v1`, this project's earlier analyser (casefolded, accents stripped, a
short stopword list, an S-stemmer, CRC-32 ids), is kept only to query and
migrate collections it built; no new collection is written with it.
"""

from __future__ import annotations

import re
import unicodedata
import zlib
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ingest.errors import SettingsError
from schemas import SparseSpec

try:
    import qdrant_edge
except ImportError:  # pragma: no cover - a core dependency; checked when first used
    qdrant_edge = None

SPARSE_VECTOR = "bm25"  # the sparse vector's name in a Qdrant collection
STANDARD = "qdrant/bm25"  # Qdrant's BM25: its server's inference model name
WORDS_V1 = "words-v1"  # the word tokenizer of versions before Qdrant's BM25, still read
# Tokens (stopwords dropped) in an average chunk of the default chunking, by Qdrant's
# tokenizer (Qdrant's own default, 256, is a whole document's): docs/measurements.md.
AVG_LEN = 45.5
# BM25's term-frequency saturation and length normalisation, chosen on the tuning sets
# (docs/measurements.md, "BM25 settings"): a search box's few words are better served when
# a chunk's having each term counts more than repeating it than by Qdrant's (1.2, 0.75).
K1, B = 0.3, 0.5


@dataclass(frozen=True, slots=True)
class SparseQuery:
    """A query's lexical vector, as `Store.search` takes it: its distinct terms' ids and
    weights (1 each: the collection's IDF does the rest). No terms: no lexical side."""

    indices: list[int]
    values: list[float]


def default_spec() -> SparseSpec:
    """The lexical settings of a new collection. The title's words are left out of a
    chunk's terms: a few-word query that names a topic ("father of computing") would
    otherwise rank the article of that name ("Computing") over the one it describes;
    the dense vector still sees the title."""
    return SparseSpec(tokenizer=STANDARD, language="english", k1=K1, b=B, avg_len=AVG_LEN, include_title=False)


def passage_text(embed_text: str, text: str, spec: SparseSpec | None) -> str:
    """What a chunk's lexical vector is made from: what the model saw (the title and
    the text, when the chunker prefixes the title), or the text alone (`include_title` off)."""
    return text if spec is not None and not spec.include_title else embed_text


def passage_vector(text: str, spec: SparseSpec) -> tuple[list[int], list[float]]:
    """Indices and BM25 term-frequency weights of a passage (IDF comes from Qdrant)."""
    if spec.tokenizer == WORDS_V1:
        return _words_v1_passage(text, spec)
    vector = _model(spec).embed_document(text)
    return vector.indices, vector.values


def query_vector(text: str, spec: SparseSpec) -> SparseQuery:
    """Indices of a query's distinct terms, weight 1 each: with the IDF modifier,
    a passage scores the BM25 sum over the terms it shares with the query."""
    if spec.tokenizer == WORDS_V1:
        indices = list(dict.fromkeys(_indices(text)))
        return SparseQuery(indices, [1.0] * len(indices))
    vector = _model(spec).embed_query(text)
    return SparseQuery(list(vector.indices), [float(v) for v in vector.values])


def edge_vector(text: str, spec: SparseSpec) -> Any:
    """A passage's vector as Qdrant Edge takes it, with no copy through Python lists."""
    if spec.tokenizer == WORDS_V1:
        return qdrant_edge.SparseVector(*_words_v1_passage(text, spec))
    return _model(spec).embed_document(text)


@lru_cache(maxsize=8)
def _model(spec: SparseSpec) -> Any:
    if spec.tokenizer != STANDARD:
        raise SettingsError(
            f"unknown lexical analyser {spec.tokenizer!r} in the collection's record "
            f"(this version knows {STANDARD} and {WORDS_V1}): upgrade, or search with --mode dense"
        )
    if qdrant_edge is None:
        raise SettingsError("BM25 vectors need qdrant-edge-py: pip install qdrant-edge-py")
    try:
        return qdrant_edge.Bm25(
            qdrant_edge.Bm25Config(k=spec.k1, b=spec.b, avg_len=spec.avg_len, language=spec.language or "english")
        )
    except ValueError as exc:
        raise SettingsError(f"the collection's BM25 settings are not valid ({exc})") from exc


# -- words-v1, the earlier analyser (read-only) ---------------------------------
_WORD = re.compile(r"[^\W_]+")
STOPWORDS = frozenset(
    """
a about above after again against all am an and any are as at be because been before being below between
both but by can could did do does doing down during each few for from further had has have having he her
here hers herself him himself his how i if in into is it its itself just me more most my myself no nor not
of off on once only or other our ours ourselves out over own same she should so some such than that the
their theirs them themselves then there these they this those through to too under until up very was we
were what when where which while who whom why will with would you your yours yourself yourselves also
""".split()
)
_ASCII_SEPARATORS = str.maketrans({chr(c): " " for c in range(128) if not chr(c).isalnum()})


def _fold(text: str) -> str:
    text = text.casefold()
    if text.isascii():
        return text
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def _stem(word: str) -> str:
    """Harman's S-stemmer, as words-v1 had it (bugs included: "texas" -> "texa")."""
    if len(word) > 4 and word.endswith("ies") and not word.endswith(("eies", "aies")):
        return word[:-3] + "y"
    if word.endswith(("sses", "xes", "ches", "shes", "zzes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("us", "ss", "is")):
        return word[:-1]
    return word


def _indices(text: str) -> list[int]:
    folded = _fold(text)
    words = folded.translate(_ASCII_SEPARATORS).split() if folded.isascii() else _WORD.findall(folded)
    return [zlib.crc32(_stem(w).encode("utf-8")) for w in words if w not in STOPWORDS]


def _words_v1_passage(text: str, spec: SparseSpec) -> tuple[list[int], list[float]]:
    counts = Counter(_indices(text))
    if not counts:
        return [], []
    norm = spec.k1 * (1.0 - spec.b + spec.b * sum(counts.values()) / spec.avg_len)
    return list(counts), [tf * (spec.k1 + 1.0) / (tf + norm) for tf in counts.values()]
