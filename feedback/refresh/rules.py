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
import math
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


def regressions(
    candidate: dict, current: dict, c: RefreshConfig, base: dict | None = None
) -> list[str]:
    """Why the candidate must not be promoted (empty: promote), in plain words.

    - held-out loss on human answers rose more than `loss_tolerance`;
    - loss on the answers users taught (corrections earlier adapters trained on) rose more
      than `taught_tolerance`: it forgot what it was taught;
    - one fixed judge, comparing both models' answers pairwise in both orders, preferred the
      current model's significantly often (one-sided sign test, p < `gate_alpha`); noise
      alone never rejects;
    - the same paired test on how related each answer is to its question (embeddings): a
      candidate whose answers drift off the questions is caught whatever the judge can tell;
    - sampled answers' diversity (distinct-2, and embedding spread where measured) fell past
      `answer_diversity_tolerance` from the current model's or the base model's (`base`):
      against the current one alone, a drift of a few percent per refresh would pass every
      gate and still add up to collapse.

    >>> cur = {"heldout_loss": 2.0, "taught_loss": 1.0, "answer_distinct_2": 0.5}
    >>> fine = {"wins": 10, "losses": 14, "ties": 40, "prompts": 64, "p_worse": 0.27}
    >>> regressions({"heldout_loss": 1.9, "taught_loss": 1.05, "pairwise": fine, "answer_distinct_2": 0.5}, cur, RefreshConfig())
    []
    >>> worse = {"wins": 3, "losses": 20, "ties": 41, "prompts": 64, "p_worse": 0.0002}
    >>> for r in regressions({"heldout_loss": 2.2, "taught_loss": 1.5, "pairwise": worse, "answer_distinct_2": 0.2}, cur, RefreshConfig()): print(r)
    held-out loss on human answers rose from 2.000 to 2.200 (more than 2%)
    it forgot taught corrections: loss on the answers users wrote rose from 1.000 to 1.500 (more than 10%)
    the judge preferred the current model's answers: worse on 20 prompts, better on 3, tied on 41 of 64 (sign test p = 0.0002, below 0.05)
    sampled answers' distinct-2 fell from 0.500 to 0.200 (more than 10%)
    >>> off = {"wins": 2, "losses": 30, "ties": 32, "prompts": 64, "p_worse": 0.0, "candidate_mean": 0.21, "current_mean": 0.55}
    >>> regressions({"heldout_loss": 1.9, "taught_loss": 1.0, "relevance": off, "answer_distinct_2": 0.5}, cur, RefreshConfig())
    ["its answers drifted off the questions: less related to the question than the current model's on 30 prompts, more on 2 (mean similarity 0.21 against 0.55; sign test p = 0.0, below 0.05)"]
    >>> regressions({"heldout_loss": float("nan"), "answer_distinct_2": 0.5}, cur, RefreshConfig())
    ['held-out loss is nan: training diverged', 'taught loss is nan: training diverged']
    >>> nan = {"heldout_loss": float("nan"), "answer_distinct_2": 0.5}  # no held-out split yet
    >>> regressions(nan, nan, RefreshConfig())
    []

    Each step 5% down, so the current model does not object; the base model does:

    >>> drifted = {"heldout_loss": 2.0, "answer_distinct_2": 0.5, "answer_spread": 0.5}
    >>> cand = {**drifted, "answer_distinct_2": 0.475, "answer_spread": 0.475}
    >>> regressions(cand, drifted, RefreshConfig(), base={"answer_distinct_2": 0.6, "answer_spread": 0.5})
    ["sampled answers' distinct-2 is 0.475, more than 10% below the base model's 0.600"]
    """
    # Against the base only where it is not the current model (that gate is stricter).
    bar = {k: v for k, v in (base or {}).items() if v != current.get(k)}
    out = loss_regressions(candidate, current, c) + base_loss_regressions(candidate, bar, c)
    p = candidate.get("pairwise")
    if p and p["p_worse"] < c.gate_alpha:
        out.append(
            f"the judge preferred the current model's answers: worse on {p['losses']} "
            f"prompts, better on {p['wins']}, tied on {p['ties']} of {p['prompts']} "
            f"(sign test p = {p['p_worse']}, below {c.gate_alpha})"
        )
    r = candidate.get("relevance")
    if r and r["p_worse"] < c.gate_alpha:
        out.append(
            f"its answers drifted off the questions: less related to the question than the "
            f"current model's on {r['losses']} prompts, more on {r['wins']} (mean similarity "
            f"{r['candidate_mean']:.2f} against {r['current_mean']:.2f}; sign test p = "
            f"{r['p_worse']}, below {c.gate_alpha})"
        )
    return out + diversity_regressions(candidate, current, c, base)


def loss_regressions(candidate: dict, current: dict, c: RefreshConfig) -> list[str]:
    """The loss gates: held-out human answers, and the answers users taught."""
    out = []
    gates = (
        ("heldout_loss", c.loss_tolerance, "held-out loss on human answers rose"),
        ("general_loss", c.loss_tolerance, "loss on the general answers rose"),
        (
            "taught_loss",
            c.taught_tolerance,
            "it forgot taught corrections: loss on the answers users wrote rose",
        ),
    )
    for key, tolerance, what in gates:
        was, now = current.get(key, math.nan), candidate.get(key, math.nan)
        if not math.isfinite(was):
            continue  # nothing to compare yet (no held-out split, nothing taught before)
        if not math.isfinite(now):  # NaN compares false with everything
            out.append(
                f"{key.replace('_', ' ').replace('heldout', 'held-out')} is {now}: training diverged"
            )
        elif now > was * (1 + tolerance):
            out.append(f"{what} from {was:.3f} to {now:.3f} (more than {tolerance:.0%})")
    return out


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


def unmeasured(evaluation: dict) -> list[str]:
    """What the gate could not measure this time, in plain words: such a gate is not counted
    as passed, and the run's record says so.

    >>> unmeasured({"candidate": {"heldout_loss": float("nan"), "pairwise": {"ties": 4, "prompts": 4}}, "current": {"heldout_loss": float("nan")}})
    ['held-out loss: no held-out answers yet (the general answers stood in)', 'the judge tied all 4 pairs: its verdicts did not count']
    >>> pairwise = {"ties": 8, "prompts": 8, "judged": 8, "unasked": 56}
    >>> unmeasured({"candidate": {"pairwise": pairwise}, "current": {"heldout_loss": 2.0}})
    ['the judge chose by position in all 8 pairs it was asked (56 more were not asked): its verdicts did not count']
    """
    out = []
    cand, cur = evaluation.get("candidate", {}), evaluation.get("current", {})
    if not math.isfinite(cur.get("heldout_loss", math.nan)):
        out.append("held-out loss: no held-out answers yet (the general answers stood in)")
    if not math.isfinite(cur.get("taught_loss", 0.0)):
        out.append("taught loss: nothing taught was trained on before")
    p = cand.get("pairwise")
    if p and p.get("unasked"):
        out.append(
            f"the judge chose by position in all {p['judged']} pairs it was asked "
            f"({p['unasked']} more were not asked): its verdicts did not count"
        )
    elif p and p["prompts"] and p["ties"] == p["prompts"]:
        out.append(f"the judge tied all {p['prompts']} pairs: its verdicts did not count")
    return out


def base_loss_regressions(candidate: dict, base: dict | None, c: RefreshConfig) -> list[str]:
    """Held-out and general loss against the base model's: a bar no promotion can lower.

    >>> base_loss_regressions({"general_loss": 2.2}, {"general_loss": 2.0}, RefreshConfig())
    ["loss on the general answers is 2.200, more than 5% above the base model's 2.000"]
    >>> base_loss_regressions({"general_loss": 2.05}, {"general_loss": 2.0}, RefreshConfig())
    []
    """
    out = []
    for key, what in (
        ("heldout_loss", "held-out loss"),
        ("general_loss", "loss on the general answers"),
    ):
        was, now = (base or {}).get(key, math.nan), candidate.get(key, math.nan)
        if math.isfinite(was) and math.isfinite(now) and now > was * (1 + c.base_loss_tolerance):
            out.append(
                f"{what} is {now:.3f}, more than {c.base_loss_tolerance:.0%} above the base "
                f"model's {was:.3f}"
            )
    return out


def diversity_regressions(
    candidate: dict, current: dict, c: RefreshConfig, base: dict | None
) -> list[str]:
    """Sampled answers' diversity against the current model's, then the base model's."""
    out = []
    tol = c.answer_diversity_tolerance
    for key, name in (("answer_distinct_2", "distinct-2"), ("answer_spread", "embedding spread")):
        now = candidate.get(key)
        if now is None:
            continue
        was = current.get(key)
        if was is not None and diversity_drop(now, was) > tol:
            out.append(
                f"sampled answers' {name} fell from {was:.3f} to {now:.3f} (more than {tol:.0%})"
            )
            continue
        first = (base or {}).get(key)
        if first is not None and diversity_drop(now, first) > tol:
            out.append(
                f"sampled answers' {name} is {now:.3f}, more than {tol:.0%} below the base "
                f"model's {first:.3f}"
            )
    return out


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
