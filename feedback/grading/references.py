"""What an answer is graded against: the user's own corrections and approvals, and the
document passages the answer was given.

Owns finding the references for one exchange, or for a bare question (the benchmarks):
- human-written (a correction) or human-approved (a thumbs up) pool entries whose question is
  like this one (the same embedder, above `ReferenceConfig.min_similarity`), so one correction
  protects every later answer to the same question;
- the knowledge passages the exchange's prompt held (store/knowledge.py records them).
It reads stores and the vector index; it does not grade (feedback/grading/grader.py does).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from feedback.grading.config import ReferenceConfig
from store.knowledge import KnowledgeStore, Source
from store.pool import PoolStore
from store.vectors import VectorIndex

log = logging.getLogger(__name__)

HUMAN_SOURCES = ("human_written", "human_approved")


@dataclass(frozen=True)
class Reference:
    """One piece of evidence an answer is graded against."""

    kind: str  # correction, approved, documents
    text: str
    label: str  # how the badge names it: "your correction of 12 Nov"
    exchange_id: int | None = None  # the corrected or approved exchange
    at: datetime | None = None
    chunks: tuple[int, ...] = field(default_factory=tuple)
    similarity: float | None = None  # of the questions (corrections) or best passage

    def to_json(self) -> dict:
        return {
            "kind": self.kind,
            "label": self.label,
            "exchange_id": self.exchange_id,
            "at": self.at.isoformat() if self.at else None,
            "chunks": list(self.chunks),
            "similarity": self.similarity,
            "excerpt": excerpt(self.text),
        }


def excerpt(text: str, limit: int = 120) -> str:
    """One line of a reference for a hover.

    >>> excerpt("The seeds pass\\nthrough you.")
    'The seeds pass through you.'
    >>> excerpt("x" * 200, limit=10)
    'xxxxxxxxx…'
    """
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def label(kind: str, at: datetime | None, documents: tuple[str, ...] = ()) -> str:
    """How a reference is named to the user.

    >>> from datetime import datetime
    >>> label("correction", datetime(2026, 11, 12))
    'your correction of 12 Nov'
    >>> label("approved", datetime(2026, 11, 2))
    'the answer you approved on 2 Nov'
    >>> label("documents", None, ("a.pdf", "b.md"))
    'your documents (a.pdf, b.md)'
    """
    day = f"{at.day} {at:%b}" if at else "an earlier day"
    if kind == "correction":
        return f"your correction of {day}"
    if kind == "approved":
        return f"the answer you approved on {day}"
    return f"your documents ({', '.join(documents)})"


def from_sources(sources: list[Source], max_chars: int) -> Reference | None:
    """The passages an answer was given, as one reference (numbered as in the prompt)."""
    if not sources:
        return None
    text = "\n\n".join(f"[{s.number}] {s.text}" for s in sources)[:max_chars]
    names = tuple(dict.fromkeys(s.document for s in sources))
    return Reference(
        "documents",
        text,
        label("documents", None, names),
        chunks=tuple(s.chunk_id for s in sources),
        similarity=max(s.similarity for s in sources),
    )


class ReferenceFinder:
    def __init__(
        self,
        pool: PoolStore | None = None,
        index: VectorIndex | None = None,
        knowledge: KnowledgeStore | None = None,
        embed: Callable[[list[str]], np.ndarray] | None = None,
        config: ReferenceConfig = ReferenceConfig(),
        owner: Callable[[int], int | None] | None = None,
    ):
        self.owner = owner  # exchange id -> its user's id; None: one user, no filtering
        self.pool = pool
        self.index = index
        self.knowledge = knowledge
        self.embed = embed
        self.config = config

    def for_exchange(self, exchange_id: int, question: str) -> list[Reference]:
        """Corrections and approvals of similar questions first, then the exchange's passages."""
        user_id = self.owner(exchange_id) if self.owner else None
        refs = self.human(question, exclude=exchange_id, user_id=user_id)
        if self.knowledge is not None:
            docs = from_sources(
                self.knowledge.sources([exchange_id])[exchange_id], self.config.max_chars
            )
            if docs is not None:
                refs.append(docs)
        return refs

    def human(
        self, question: str, exclude: int | None = None, user_id: int | None = None
    ) -> list[Reference]:
        """Human-written or human-approved answers to questions like this one, most similar
        first (the pool's index holds the `train` entries' questions). `exclude`: the exchange
        being graded, whose own thumbs up or correction must not grade it (that would feed the
        thumbs into the signals the calibration fits to them). `user_id`: whose answer is
        graded; their own references, and other users' only when `config.shared`."""
        cfg = self.config
        if not cfg.corrections or self.index is None or self.embed is None or self.pool is None:
            return []
        if not question.strip() or self.index.count() == 0:
            return []
        vector = self.embed([question[:4000]])[0]
        near = [
            n
            for n in self.index.nearest_prompts(
                vector,
                cfg.most * 4,
                sources=HUMAN_SOURCES,
                user_id=user_id,
                shared_sources=HUMAN_SOURCES if cfg.shared else (),
            )
            if n.similarity >= cfg.min_similarity and n.exchange_id != exclude
        ]
        entries = self.pool.entries([n.exchange_id for n in near])
        out = []
        for n in near:
            e = entries.get(n.exchange_id)
            if e is None or e.status != "train" or e.source not in HUMAN_SOURCES:
                continue
            if user_id is not None and e.user_id != user_id:
                # the database decides, whatever a stale vector says: another user's answer only
                # with sharing on and a reviewer's word for it
                if not cfg.shared or e.exchange_id not in self.pool.vouched([e.exchange_id]):
                    continue
            kind = "correction" if e.source == "human_written" else "approved"
            out.append(
                Reference(
                    kind,
                    e.completion[: cfg.max_chars],
                    label(kind, e.updated_at),
                    exchange_id=e.exchange_id,
                    at=e.updated_at,
                    similarity=round(n.similarity, 4),
                )
            )
        return out[: cfg.most]
