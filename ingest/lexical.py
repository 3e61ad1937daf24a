"""BM25-style sparse vectors, the lexical half of hybrid search.

Dense vectors find paraphrases but blur rare names and numbers ("HAL 9000",
"1969"); term matching finds those. Each chunk gets a sparse vector of its terms,
weighted by BM25's saturated term frequency with length normalisation; Qdrant
multiplies in each term's IDF at query time (`Modifier.IDF`), computed over the
whole collection, so nothing here needs corpus statistics and chunks can be
written by many workers independently.

Terms are words, not model word-pieces: casefolded, accents stripped, English
stopwords dropped, plurals folded (`stem`). A term's index is its
CRC-32, so the vocabulary is open (any word, any language) and no vocabulary file
has to travel with the workers. Queries and passages go through the same
`terms`; the collection records the tokenizer's version (`SparseSpec.tokenizer`)
so that a change to it forces a rebuild rather than silently mismatching.
"""

from __future__ import annotations

import re
import unicodedata
import zlib
from collections import Counter

from schemas import SparseSpec

SPARSE_VECTOR = "bm25"  # the sparse vector's name in a Qdrant collection
TOKENIZER = "words-v1"

_WORD = re.compile(r"[^\W_]+")

# A common English list (the classic Lucene/Snowball core), short on purpose: drop
# only words that carry no topic. Numbers and one-letter words stay ("HAL 9000").
STOPWORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being below between
both but by can could did do does doing down during each few for from further had has have having he her
here hers herself him himself his how i if in into is it its itself just me more most my myself no nor not
of off on once only or other our ours ourselves out over own same she should so some such than that the
their theirs them themselves then there these they this those through to too under until up very was we
were what when where which while who whom why will with would you your yours yourself yourselves also
""".split())


def _fold(text: str) -> str:
    """Casefold and strip accents: "Beyoncé" and "beyonce" are one term."""
    text = text.casefold()
    if text.isascii():
        return text
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def stem(word: str) -> str:
    """Folds English plurals only, after Harman's S-stemmer (1991), so it rarely
    conflates unrelated words: "cities" → "city", "boxes" → "box", "dogs" → "dog",
    while "analysis", "bus" and "glass" stay."""
    if len(word) > 4 and word.endswith("ies") and not word.endswith(("eies", "aies")):
        return word[:-3] + "y"
    if word.endswith(("sses", "xes", "ches", "shes", "zzes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("us", "ss", "is")):
        return word[:-1]
    return word


def terms(text: str) -> list[str]:
    """The text's index terms, in order, repeats kept."""
    return [stem(w) for w in _words(_fold(text)) if w not in STOPWORDS]


def term_index(term: str) -> int:
    return zlib.crc32(term.encode("utf-8"))


_ASCII_SEPARATORS = str.maketrans({chr(c): " " for c in range(128) if not chr(c).isalnum()})
_CACHE: dict[str, int] = {}  # folded word -> term index, or -1 for a stopword
_CACHE_LIMIT = 1 << 20


def _words(folded: str) -> list[str]:
    """`_WORD.findall`, five times faster on ASCII text (most of English Wikipedia)."""
    if folded.isascii():
        return folded.translate(_ASCII_SEPARATORS).split()
    return _WORD.findall(folded)


def _word_index(word: str) -> int:
    index = -1 if word in STOPWORDS else term_index(stem(word))
    if len(_CACHE) >= _CACHE_LIMIT:
        _CACHE.clear()
    _CACHE[word] = index
    return index


def _indices(text: str) -> list[int]:
    """Term indices of a text. Words repeat so much that a cache of their indices
    triples the speed (this runs on every chunk a worker writes)."""
    cache = _CACHE
    out = []
    for word in _words(_fold(text)):
        index = cache.get(word)
        if index is None:
            index = _word_index(word)
        if index >= 0:
            out.append(index)
    return out


def passage_vector(text: str, spec: SparseSpec) -> tuple[list[int], list[float]]:
    """Indices and BM25 term-frequency weights of a passage (IDF comes from Qdrant)."""
    counts = Counter(_indices(text))  # "city" and "cities" are one term
    length = sum(counts.values())
    if not counts:
        return [], []
    norm = spec.k1 * (1.0 - spec.b + spec.b * length / spec.avg_len)
    scale = spec.k1 + 1.0
    return list(counts), [tf * scale / (tf + norm) for tf in counts.values()]


def query_vector(text: str) -> tuple[list[int], list[float]]:
    """Indices of a query's distinct terms, weight 1 each: with the IDF modifier,
    a passage scores the BM25 sum over the terms it shares with the query."""
    indices = list(dict.fromkeys(_indices(text)))
    return indices, [1.0] * len(indices)


def default_spec() -> SparseSpec:
    return SparseSpec(tokenizer=TOKENIZER)
