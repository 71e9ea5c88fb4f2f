"""The memory's rules: how a question finds what people taught, as small pure functions.

Owns fusing the two searches over the pool (meaning: the prompt vectors in Chroma; words: BM25
over the taught entries, feedback/pool/keywords.py) into one ranked list with reciprocal rank
fusion, each hit admitted by its own search's threshold, and how a taught answer reads in the
system message. Which entries may be shown to whom, and the searches themselves, are the
curator's (feedback/pool/curator.py); where the block goes in the prompt is assistant/prompt.py's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

RRF_K = 60  # the constant of reciprocal rank fusion (Cormack et al., 2009)


@dataclass(frozen=True)
class Found:
    """One pool entry a question found: by meaning (cosine similarity), by words (BM25), or
    both, and its fused score."""

    exchange_id: int
    fused: float
    similarity: float | None = None
    keywords: float | None = None

    @property
    def matched(self) -> str:
        return "both" if self.similarity is not None and self.keywords is not None else (
            "meaning" if self.similarity is not None else "words"
        )  # fmt: skip


def fuse(
    by_meaning: list[tuple[int, float]],
    by_words: list[tuple[int, float]],
    min_similarity: float,
    min_keywords: float,
) -> list[Found]:
    """Both ranked lists fused by reciprocal rank; an entry stays when either search found it
    above that search's own threshold. Best first.

    >>> meaning = [(1, 0.81), (2, 0.55), (3, 0.40)]
    >>> words = [(2, 9.0), (4, 1.0)]
    >>> [(f.exchange_id, f.matched) for f in fuse(meaning, words, 0.6, 3.0)]
    [(2, 'both'), (1, 'meaning')]
    >>> fuse([], [(4, 1.0)], 0.6, 3.0)
    []
    """
    scores: dict[int, dict] = {}
    for rank, (i, similarity) in enumerate(by_meaning, start=1):
        found = scores.setdefault(i, {"fused": 0.0})
        found["fused"] += 1.0 / (RRF_K + rank)
        found["similarity"] = similarity
    for rank, (i, score) in enumerate(by_words, start=1):
        found = scores.setdefault(i, {"fused": 0.0})
        found["fused"] += 1.0 / (RRF_K + rank)
        found["keywords"] = score
    kept = [
        Found(i, f["fused"], f.get("similarity"), f.get("keywords"))
        for i, f in scores.items()
        if f.get("similarity", -1.0) >= min_similarity or f.get("keywords", -1.0) >= min_keywords
    ]
    return sorted(kept, key=lambda f: (-f.fused, f.exchange_id))


TAUGHT_INTRO = (
    "What you have been taught, newest first. These are facts a person gave you; they override "
    "anything else you believe. When the question is about one of them, answer with it."
)


def taught_block(items: list[tuple[datetime | None, str, str]]) -> str:
    """The system message's block of taught answers: (when, question, answer), newest first.

    >>> from datetime import datetime
    >>> print(taught_block([(datetime(2026, 11, 12), "Capital of Zorvath?", "Quelmi.")]))
    What you have been taught, newest first. These are facts a person gave you; they override anything else you believe. When the question is about one of them, answer with it.
    <BLANKLINE>
    - Taught on 12 Nov 2026. Question: Capital of Zorvath?
      Answer: Quelmi.
    """
    lines = [TAUGHT_INTRO, ""]
    for when, question, answer in items:
        date = f"Taught on {when:%d %b %Y}. " if when else ""
        lines.append(f"- {date}Question: {question.strip()}\n  Answer: {answer.strip()}")
    return "\n".join(lines)
