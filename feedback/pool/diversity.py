"""How varied a set of texts is: the figures that show a pool, or a model, collapsing.

Owns two measures, both pure: distinct-n (the share of n-grams that are unique, across all the
texts; it falls as answers repeat each other) and embedding spread (the mean cosine distance of
the embeddings from their centroid; it falls as answers crowd into one topic or phrasing).
Where the texts and embeddings come from is the caller's business.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np

WORD = re.compile(r"\w+", re.UNICODE)


def ngrams(tokens: list[str], n: int):
    return zip(*(tokens[i:] for i in range(n)), strict=False)


def distinct_n(texts: Iterable[str], n: int = 2) -> float:
    """Unique n-grams over all n-grams in `texts` (lower-cased words); 0.0 for no n-grams.

    >>> distinct_n(["the cat sat", "the cat ran"], n=1)
    0.6667
    >>> distinct_n(["the cat sat", "the cat sat"], n=2)
    0.5
    >>> distinct_n(["a b c", "d e f"], n=2), distinct_n([], n=2)
    (1.0, 0.0)
    """
    total, unique = 0, set()
    for text in texts:
        grams = list(ngrams(WORD.findall(text.lower()), n))
        total += len(grams)
        unique.update(grams)
    return round(len(unique) / total, 4) if total else 0.0


def embedding_spread(vectors: np.ndarray) -> float:
    """Mean cosine distance of unit vectors from their (normalised) centroid; 0 = all alike.

    >>> embedding_spread(np.array([[1.0, 0.0], [1.0, 0.0]]))
    0.0
    >>> embedding_spread(np.array([[1.0, 0.0], [0.0, 1.0]]))
    0.2929
    >>> embedding_spread(np.zeros((0, 2)))
    0.0
    """
    if len(vectors) < 2:
        return 0.0
    centroid = vectors.mean(axis=0)
    norm = np.linalg.norm(centroid)
    if norm == 0:
        return 1.0
    return round(float(np.mean(1.0 - vectors @ (centroid / norm))), 4)
