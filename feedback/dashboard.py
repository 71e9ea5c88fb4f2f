"""The Dashboard tab's figures: store/dashboard.py's aggregates plus the pool's diversity.

Owns adding the measures that are the pool stage's (distinct-1, distinct-2 and, given the
vector index, embedding spread) to the SQL figures, on the bounded sample of pool answers the
query layer returns. The plots are assistant/web/dashboard_tab.py's.
"""

from __future__ import annotations

import pandas as pd

from feedback.pool.diversity import distinct_n, embedding_spread
from store.dashboard import SAMPLE, Dashboard
from store.dashboard import compute as queries


def compute(engine, index=None) -> Dashboard:
    """Every figure at once; `index` (store/vectors.py) adds the embedding spread."""
    board = queries(engine)
    rows = [
        ("distinct-1", distinct_n(board.sample, 1)),
        ("distinct-2", distinct_n(board.sample, 2)),
    ]
    if index is not None:
        rows.append(("embedding spread", embedding_spread(index.sample(SAMPLE))))
    board.diversity = pd.DataFrame(rows, columns=["measure", "value"])
    return board
