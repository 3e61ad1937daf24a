"""Each article's definition: the phrase its first sentence defines it by, embedded on its own.

A query that describes its answer the way a short description does ("landlocked country
in South Asia", "branch of psychology") matches what an encyclopedia article says of
itself first: "Nepal ... is a landlocked country in South Asia." The chunk's vector is
the whole passage's, and the dense model puts the region or the field itself (South Asia,
Psychology) above its members; a vector of the defining phrase alone, the first
sentence after its "is", "was" or "refers to", ranks the members. It goes on each
article's first chunk as a named vector (`DEFINITION_VECTOR`) and a hybrid search fuses
a third ranking over it (`ingest.store.base.RRF_WEIGHTS`). The figures that chose it,
and what it costs, are in docs/measurements.md ("Definitions").

The cut is a rule, versioned by name (`CUT`, recorded in the collection's build record):
another rule is another collection. It reads the chunk's text, so a chunk whose hash is
unchanged keeps its definition as it keeps its vector.
"""

from __future__ import annotations

import re

DEFINITION_VECTOR = "definition"  # the named dense vector on each article's first chunk
CUT = "copula-v1"  # the rule below; `CollectionSpec.definition` records it
MAX_WORDS = 40  # a definition's words at most: its sentence can run on (lists, clauses)

# Words that end with a full stop without ending the sentence ("St. Paul", "c. 1500").
_ABBREVIATIONS = frozenset(
    "st mr mrs ms dr jr sr no nos vs c ca e.g i.e approx inc ltd co mt ft u.s u.k lit b d fl r op vol p pp gen col lt "
    "sgt rev prof ph.d a.d b.c".split()
)
_COPULA = re.compile(r"\s(?:is|was|are|were|refers to|has been)\s")
_LAST_WORD = re.compile(r"[\w.]+$")
_INITIALS = re.compile(r"(?:\w\.)+\w")


def definition_text(text: str) -> str:
    """The defining phrase of an article whose text starts `text`: its first sentence from
    the word after the first "is"/"was"/"are"/"were"/"refers to"/"has been" outside
    brackets, at most `MAX_WORDS` words; the whole first sentence when it has none of them.
    "" for an empty text."""
    sentence = first_sentence(text)
    for match in _COPULA.finditer(sentence):
        before = sentence[: match.start()]
        if before.count("(") == before.count(")") and before.count("[") == before.count("]"):
            sentence = sentence[match.end() :]
            break
    return " ".join(sentence.rstrip(".").split()[:MAX_WORDS])


def first_sentence(text: str) -> str:
    """Up to the first full stop (or ! or ?) outside brackets that is followed by a space
    and a capital, a digit, a quote or a bracket, and does not close an abbreviation or an initial."""
    depth = 0
    for i, char in enumerate(text):
        if char in "([":
            depth += 1
        elif char in ")]":
            depth = max(0, depth - 1)
        elif char in ".!?" and depth == 0 and _ends_sentence(text, i):
            return text[: i + 1]
    return text


def _ends_sentence(text: str, i: int) -> bool:
    after = text[i + 1 : i + 3]
    if after and not (after[0].isspace() and (len(after) < 2 or after[1].isupper() or after[1] in "0123456789\"'“(")):
        return False
    word = _LAST_WORD.search(text, max(0, i - 64), i)  # the word the stop closes, not a scan from the start
    last = word.group(0).lower() if word else ""
    return not (last in _ABBREVIATIONS or (len(last) == 1 and last.isalpha()) or _INITIALS.fullmatch(last))
