"""The pool's knobs: how the curator admits exchanges (`CuratorConfig`, with the verdict rules'
`PoolRules`) and how past exchanges are retrieved as examples (`RetrievalConfig`).

Owns nothing but these declarations, kept apart from the curator so reading a default is cheap:
assistant/settings.py builds its `pool_*` and `retrieval_*` settings from them without loading
numpy, BM25 or the vector index. feedback/pool/curator.py imports them from here, so both names
still work there.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from assistant.options import option
from feedback.pool.rules import PoolRules


@dataclass(frozen=True)
class RetrievalConfig:
    """Past approved exchanges shown to the model as examples; `Settings`: `retrieval_<name>`."""

    enabled: bool = option(True, "show the model similar approved exchanges as examples")
    examples: int = option(2, "most examples per prompt")
    max_tokens: int = option(400, "most prompt tokens the examples may add")
    min_similarity: float = option(0.6, "least question similarity for an example")
    # The four below were chosen on the development half of bench/data/memory_facts.jsonl by
    # bench/memory_lookup.py (docs/learning.md has the figures).
    taught_similarity: float = option(
        0.6, "least question similarity for a taught answer, when the question names nothing"
    )
    min_keywords: float = option(
        3.0, "least BM25 score for a taught answer, when the question names nothing"
    )
    agree_similarity: float = option(
        0.3, "least question similarity for a taught answer that names what the question names"
    )
    agree_keywords: float = option(
        1.5, "least BM25 score for a taught answer that names what the question names"
    )
    # bench/presentation.py (docs/learning.md): given the right taught answer, the embedded
    # 135M model used it for 84.0% of reworded questions in front of the message, 77.1% as
    # earlier turns, 71.5% in a system-message block.
    taught_in: str = option(
        "message",
        "where taught answers go in the prompt: 'message' (question and answer in front of the "
        "user's message), 'turns' (as earlier turns of the conversation) or 'system' (a block in the "
        "system message)",
    )
    share_approved: bool = option(
        True,
        "show a user other users' exchanges when a person wrote or approved the answer "
        "(PII-masked); off: each user's own only",
    )
    # bench/presentation.py: the 135M model, given the right correction, still answers
    # something else for about one reworded question in six.
    restate: bool = option(
        True,
        "when an answer leaves out the names and numbers of a taught answer the memory found "
        "for its question, add the taught answer under it, marked as taught, with its date",
    )
    restate_similarity: float = option(
        0.85,
        "least question similarity for that, when the question names nothing (a question "
        "that names something already had to share its names with the taught answer)",
    )


@dataclass(frozen=True)
class CuratorConfig:
    """How the pool admits exchanges; `Settings` offers these as `pool_<name>` and `pii_region`,
    and `retrieval` as `retrieval_<name>`."""

    rules: PoolRules = field(default_factory=PoolRules)
    dedup_similarity: float = option(0.92, "cosine similarity at which two exchanges are one")
    max_user_share: float = option(0.5, "most of the pool one user may contribute (2+ users)")
    supersede_similarity: float = option(
        0.9, "question similarity at which a user's newer correction replaces their older one"
    )
    pii_region: str = option("US", "country whose local phone numbers are masked")
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
