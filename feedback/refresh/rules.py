"""The refresh's rules: from the curated pool to a promoted LoRA adapter, or a recorded refusal.

Owns the steps' definitions, the mix's guards and the promotion gates, as small pure functions
with their configuration (`RefreshConfig`). Running the steps is feedback/refresh/pipeline.py's:
each step is logged on the run's row before it starts, so a run killed at any point is on
record with the step it died in, and the active adapter is only ever changed by the last step's
atomic rename (store/adapters.py).

  1. select    every `train` entry not held out (data accumulates: the pool only grows, and
               each run trains on all of it, never on the newest alone), minus deleted
               conversations. New entries are split once into the fixed held-out set.
  1b. synthesize  the model writes lessons from each human entry not held out that has none
               yet (feedback/synthesis), graded against it by the product's grader; stale ones
               (parent corrected again, deleted, rejected) are withdrawn first.
  2. guard     up to `lessons_per_parent` kept lessons of each human entry join the mix.
               The human share (counted without lessons): at least `human_share` of the mix
               is human-written, human-approved or from the operator's anchor file; model-
               only examples are capped to
               keep it, may not repeat one answer past `max_answer_repeats` copies, and
               give at most `model_answers_per_question` answers to one question.
               Too few new examples, or a mix less diverse than the last promoted run's by
               more than `diversity_tolerance` (distinct-2, or the embedding spread of its
               answers): refused, with the reason.
  3. train     LoRA with TRL's SFTTrainer (feedback/refresh/train.py), then DPOTrainer on the
               correction and regeneration pairs when there are `min_pairs` of them.
  4. export    the adapter as GGUF (feedback/refresh/gguf_export.py).
  5. verify    llama.cpp with the adapter must predict the same next token as PyTorch with it
               at `min_agreement` of probe positions, and as often at those where the adapter
               changed the base's pick, or the run fails.
  6. evaluate  held-out loss and loss on the answers users taught, candidate against the current
               model; both answer the same prompts and one fixed judge (never the candidate)
               compares each pair in both orders; answers' diversity against the base model's
               too (feedback/refresh/evaluation.py, feedback/refresh/pairwise.py).
  7. promote   unless a loss rose past its tolerance, the judge found it significantly worse
               (sign test), or diversity fell; else the candidate stays on disk,
               marked rejected, with the reasons.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from feedback.pool.diversity import WORD, distinct_n, embedding_spread
from feedback.pool.records import lesson_record, sft_record
from feedback.refresh.config import RefreshConfig
from store.lessons import written_from

log = logging.getLogger(__name__)
STEPS = ("select", "synthesize", "guard", "train", "export", "verify", "evaluate", "promote")
HUMAN = ("human_written", "human_approved")


def held_out(exchange_id: int, share: float) -> bool:
    """Whether an exchange belongs to the evaluation split: a stable hash, so the choice never
    depends on the order exchanges arrive in.

    >>> sum(held_out(i, 0.1) for i in range(1, 1001))
    101
    >>> held_out(5, 0.0), held_out(5, 1.0)
    (False, True)
    """
    digest = hashlib.sha256(f"heldout:{exchange_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < share


def cap_model_only(human: int, model_only: int, share: float) -> int:
    """How many model-only examples a mix with `human` human ones may hold.

    >>> cap_model_only(10, 50, 0.5), cap_model_only(10, 3, 0.5), cap_model_only(0, 9, 0.5)
    (10, 3, 0)
    >>> cap_model_only(30, 100, 0.75)
    10
    """
    if share <= 0:
        return model_only
    return min(model_only, int(human * (1 - share) / share))


def answer_key(text: str) -> str:
    """An answer as the repeat cap compares it: its words, lower-cased.

    >>> answer_key("I have no comment.") == answer_key("  i HAVE no comment ")
    True
    """
    return " ".join(WORD.findall(text.lower()))


def diversity_drop(current: float, previous: float | None) -> float:
    """Relative fall from `previous` to `current` (0 when it rose or there is no previous).

    >>> diversity_drop(0.45, 0.5), diversity_drop(0.6, 0.5), diversity_drop(0.3, None)
    (0.1, 0.0, 0.0)
    """
    if not previous:
        return 0.0
    return round(max(0.0, (previous - current) / previous), 4)


GENERAL = Path(__file__).parent / "data" / "general.jsonl"  # the yardstick every gate has


def rehearsal_prompts(n: int) -> list[str]:
    """The first `n` of the 48 rehearsal prompts shipped with the package (data/README.md).

    >>> len(rehearsal_prompts(5)), len(rehearsal_prompts(1000))
    (5, 48)
    """
    lines = (GENERAL.parent / "rehearsal.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["prompt"] for line in lines if line.strip()][:n]


def general_records() -> list[dict]:
    """The 64 general answers shipped with the package (data/README.md)."""
    return read_anchor(GENERAL)


@dataclass
class Mix:
    """The training mix a run settled on, and the figures its guards looked at."""

    records: list[dict]  # {"messages": [...]} for TRL
    exchange_ids: list[int]
    counts: dict
    refused: str | None = None


def read_anchor(path: Path | None) -> list[dict]:
    """The operator's anchor examples; a broken line is named, not skipped."""
    if path is None:
        return []
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            messages = record["messages"]
            assert messages and messages[-1]["role"] == "assistant"
        except (ValueError, KeyError, TypeError, AssertionError, IndexError):
            raise ValueError(
                f"{path}, line {n}: not a {{'messages': [...]}} record ending in an answer"
            ) from None
        out.append({"messages": messages})
    return out


def build_mix(
    entries: list,
    heldout: set[int],
    trained_before: set[int],
    anchor: list[dict],
    previous: dict | None,
    system: str | None,
    c: RefreshConfig,
    forced: bool = False,
    embed: Callable[[list[str]], np.ndarray] | None = None,
    lessons: list = (),
    rehearsal: list[dict] = (),
) -> Mix:
    """Steps 1 and 2 on the pool's `train` entries: pure but for `embed` (texts to unit
    vectors), so each guard is tested alone. `previous` is the last promoted run's figures
    (`distinct_2`, `embedding_spread`); each diversity figure is gated against its own.
    `lessons` are the kept lessons (store.tables.Lesson); only those of a human entry in the
    mix come in, at most `lessons_per_parent` each. The human share is counted without them:
    they are bound to a person's words, not free model output. `rehearsal` records (the
    model's own graded answers to general prompts) fill what room the human share leaves
    after the model-only entries."""
    usable = [e for e in entries if e.exchange_id not in heldout]
    new = [e for e in usable if e.exchange_id not in trained_before]
    human = [e for e in usable if e.source in HUMAN]
    model_only = [e for e in usable if e.source not in HUMAN]
    allowed = cap_model_only(
        len(human) + len(anchor), len(model_only) + len(rehearsal), c.human_share
    )
    kept_model, repeats = breadth_not_depth(human, anchor, model_only, allowed, c)
    room = max(0, allowed - len(kept_model))
    rehearsed = not_repeated(rehearsal, human + kept_model, anchor, c)[:room]
    chosen = sorted(human + kept_model, key=lambda e: e.exchange_id)
    taught = per_parent(lessons, {e.exchange_id: e for e in human}, c.lessons_per_parent)
    records = [sft_record(e, system) for e in chosen] + anchor + rehearsed
    # Diversity is the mix's own: a reworded question's lesson repeats its parent's answer by
    # design, and must not read as the collapse the guard looks for.
    texts = [r["messages"][-1]["content"] for r in records]
    records += [lesson_record(lesson, parent, system) for lesson, parent in taught]
    distinct = distinct_n(texts, 2)
    spread = embedding_spread(embed(texts)) if embed and texts else None
    previous = previous or {}
    total = len(records)
    counts = {
        "pool_train": len(entries),
        "heldout": len(heldout),
        "new": len(new),
        "trained_before": len(usable) - len(new),
        "human_written": sum(e.source == "human_written" for e in chosen),
        "human_approved": sum(e.source == "human_approved" for e in chosen),
        "anchor": len(anchor),
        "model_only": len(kept_model),
        "model_only_capped": len(model_only) - len(kept_model),
        "model_only_repeats": repeats,
        "rehearsal": len(rehearsed),
        "rehearsal_capped": len(rehearsal) - len(rehearsed),
        "synthetic": len(taught),
        "synthetic_parents": len({parent.exchange_id for _, parent in taught}),
        "mix": total,
        "human_share": round((len(human) + len(anchor)) / (total - len(taught)), 4)
        if total > len(taught)
        else 0.0,
        "distinct_2": distinct,
        "previous_distinct_2": previous.get("distinct_2"),
        "embedding_spread": spread,
        "previous_embedding_spread": previous.get("embedding_spread"),
    }
    refused = refusal(len(new), total, counts, previous, c, forced)
    return Mix(records, [e.exchange_id for e in chosen], counts, refused)


def not_repeated(rehearsal: list[dict], entries, anchor: list[dict], c: RefreshConfig):
    """The rehearsal records the repeat caps let in: no answer past `max_answer_repeats`
    copies in the mix, no question past `model_answers_per_question` answers (as for
    model-only entries: one safe answer to many questions is how collapse starts).

    >>> r = [{"messages": [{"role": "user", "content": f"q{i}"},
    ...     {"role": "assistant", "content": "I have no comment."}]} for i in range(4)]
    >>> len(not_repeated(r, [], [], RefreshConfig()))
    2
    """
    copies = Counter(answer_key(e.completion) for e in entries)
    copies.update(answer_key(r["messages"][-1]["content"]) for r in anchor)
    asked = Counter(answer_key(e.prompt) for e in entries)
    kept = []
    for record in rehearsal:
        answer = answer_key(record["messages"][-1]["content"])
        question = answer_key(record["messages"][-2]["content"])
        if copies[answer] < c.max_answer_repeats and asked[question] < c.model_answers_per_question:
            copies[answer] += 1
            asked[question] += 1
            kept.append(record)
    return kept


def per_parent(lessons, parents: dict, cap: int) -> list[tuple]:
    """(lesson, parent) for the lessons whose parent is in `parents` and that were written from
    its current text (a parent corrected again has stale lessons until they are withdrawn), at
    most `cap` each, the oldest first (a lesson is never a parent: `parents` hold pool entries
    only).

    >>> from types import SimpleNamespace as N
    >>> from store.lessons import parent_key
    >>> parents = {p: N(prompt=f"q{p}", completion="a", id=p) for p in (1, 2)}
    >>> ls = [N(parent_exchange_id=p, id=i, parent_key=parent_key(f"q{p}", "a"))
    ...       for i, p in enumerate([1, 1, 1, 2, 3])]
    >>> [(x.id, p.id) for x, p in per_parent(ls, parents, 2)]
    [(0, 1), (1, 1), (3, 2)]
    >>> parents[2].completion = "corrected again"
    >>> [(x.id, p.id) for x, p in per_parent(ls, parents, 2)]
    [(0, 1), (1, 1)]
    """
    out, taken = [], Counter()
    for lesson in sorted(lessons, key=lambda x: (x.parent_exchange_id, x.id)):
        parent = parents.get(lesson.parent_exchange_id)
        if parent is None or not written_from(lesson, parent):
            continue
        if taken[lesson.parent_exchange_id] < cap:
            taken[lesson.parent_exchange_id] += 1
            out.append((lesson, parent))
    return out


def breadth_not_depth(human, anchor, model_only, allowed: int, c: RefreshConfig):
    """The model-only entries a mix keeps (at most `allowed`), and how many were dropped as
    repeats.

    One answer given to many questions is how a model's own output collapses: a safe non-
    answer ("I have no comment") that the grader never flags is kept, learnt, given more
    often and kept again. Many of its own answers to one question only echo its style back
    at it. Human data stays as people wrote it; model-only examples add breadth, never depth:
    copies of an answer stop at `max_answer_repeats` in the whole mix, and answers to one
    question at `model_answers_per_question`.
    """
    copies = Counter(answer_key(e.completion) for e in human)
    copies.update(answer_key(r["messages"][-1]["content"]) for r in anchor)
    asked = Counter(answer_key(e.prompt) for e in human)
    asked.update(answer_key(r["messages"][-2]["content"]) for r in anchor if len(r["messages"]) > 1)
    kept, repeats = [], 0
    for e in random.Random(c.seed).sample(model_only, len(model_only)):
        if len(kept) == allowed:
            break
        answer, question = answer_key(e.completion), answer_key(e.prompt)
        if (
            copies[answer] >= c.max_answer_repeats
            or asked[question] >= c.model_answers_per_question
        ):
            repeats += 1
            continue
        copies[answer] += 1
        asked[question] += 1
        kept.append(e)
    return sorted(kept, key=lambda e: e.exchange_id), repeats


def refusal(
    new: int, total: int, counts: dict, previous: dict, c: RefreshConfig, forced: bool
) -> str | None:
    """Why the mix must not be trained on (None: train): too few new examples, an empty
    pool, or diversity fallen past the tolerance from the last promoted run's.

    >>> refusal(3, 10, {}, {}, RefreshConfig(), forced=False)[:40]
    'only 3 new training example(s) since the'
    >>> refusal(3, 10, {"distinct_2": 0.5}, {"distinct_2": 0.8}, RefreshConfig(), forced=True)[:38]
    'the mix is less diverse than the last '
    >>> refusal(30, 10, {"distinct_2": 0.79}, {"distinct_2": 0.8}, RefreshConfig(), forced=False)
    """
    if not forced and new < c.min_new:
        return (
            f"only {new} new training example(s) since the last promoted adapter; "
            f"at least {c.min_new} are needed (rate or correct more answers, or use --force)"
        )
    if not total:
        return "the training pool is empty"
    for name, key in (("distinct-2", "distinct_2"), ("embedding spread", "embedding_spread")):
        now, before = counts.get(key), previous.get(key)
        if now is None or before is None:
            continue
        if (drop := diversity_drop(now, before)) > c.diversity_tolerance:
            return (
                f"the mix is less diverse than the last promoted run's: {name} fell from "
                f"{before:.3f} to {now:.3f} ({drop:.0%}, more than "
                f"{c.diversity_tolerance:.0%}); training on it risks collapse"
            )
    return None


Progress = Callable[[str, float, str], None]  # (step, fraction done, message)
