"""Which exchanges may be trained on: the pool's verdict rules, as small pure functions.

Owns turning everything known about one exchange (the user's thumbs and reasons, a correction,
a reviewer's decision, the self-grade and its separate signals) into one score, a status and a
provenance. It does not read the database, mask PII or find duplicates (feedback/pool/curator.py
does, and store/pool.py keeps the result).

The rules, most authoritative first:
  1. A person wrote a better answer (a correction by the user or a reviewer): `train`,
     `human_written`, whatever the model thought.
  2. A reviewer confirmed a hallucination: `flagged`. An answer that was stopped or cut off is
     never trained on as it stands (`neutral`).
  3. Thumbs down: never trained on; `flagged` when the user said the facts were wrong (or gave
     no reason), `neutral` when the complaint was about form ("too long").
  4. Thumbs up: `train`, `human_approved`; the user's judgement outweighs the model's.
  5. No human judgement: `model_only`. The self-grade alone never suffices: it must reach
     `train_threshold` *and* at least `min_agreement` independent signals must agree.
     Flagged by the grader: `flagged`; otherwise `neutral`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from assistant.options import option

SOURCES = ("human_written", "human_approved", "model_only")
STATUSES = ("train", "flagged", "neutral", "duplicate", "capped")
# Complaints about the facts (or none given) mean "likely hallucination"; the others do not.
FACTUAL = {"wrong facts", "other"}


@dataclass(frozen=True)
class Evidence:
    rating: int = 0  # the newest thumbs: +1, -1, or 0 for none / taken back
    reasons: tuple[str, ...] = ()
    corrected: bool = False  # a person wrote a better answer
    review: str | None = None  # the newest reviewer decision: confirm, dismiss, correct
    complete: bool = True  # False: stopped by the user or cut off at max_tokens
    grade: float | None = None  # the self-grade's combined score, 0-1
    grade_flagged: bool = False
    judge: int | None = None  # the separate signals, for agreement
    consistency: float | None = None
    grounding: float | None = None


@dataclass(frozen=True)
class PoolRules:
    """The verdict rules' knobs; `Settings` offers the first three as `pool_<name>`."""

    user_weight: float = option(3.0, "how many times a thumbs outweighs the self-grade in the pool")
    train_threshold: float = option(
        0.7, "least self-grade for a model-only answer to be trained on"
    )
    min_agreement: int = option(
        1, "signals besides the self-grade that must agree (model-only answers)"
    )
    judge_agrees: int = option(8, "judge score (1-10) that counts as agreement")
    consistency_agrees: float = option(0.7, "self-consistency that counts as agreement")
    grounding_agrees: float = option(0.1, "mean log-prob gain from a reference that counts")


@dataclass(frozen=True)
class Verdict:
    status: str
    source: str
    score: float
    reason: str
    agreeing: tuple[str, ...] = field(default_factory=tuple)


def blended(rating: int, grade: float | None, user_weight: float) -> float:
    """One 0-1 score from the user's thumbs and the self-grade, the user weighing more.

    >>> blended(1, 0.2, 3.0), blended(-1, 0.9, 3.0), blended(0, 0.6, 3.0)
    (0.8, 0.225, 0.6)
    >>> blended(1, None, 3.0), blended(0, None, 3.0)
    (1.0, 0.5)
    """
    if rating == 0:
        return 0.5 if grade is None else grade
    user = 1.0 if rating > 0 else 0.0
    if grade is None:
        return user
    return round((user_weight * user + grade) / (user_weight + 1), 4)


def agreeing_signals(e: Evidence, rules: PoolRules) -> tuple[str, ...]:
    """The signals, besides the combined self-grade, that independently say "looks right".

    Log-probabilities are not among them: with the embedded model they are at chance or
    inverted (docs/benchmarks.md, grading benchmark). A reviewer's dismissal of a flag counts: a person
    looked and saw no hallucination.

    >>> agreeing_signals(Evidence(judge=9, consistency=0.5, grounding=0.4), PoolRules())
    ('judge', 'grounding')
    >>> agreeing_signals(Evidence(review="dismiss"), PoolRules())
    ('reviewer',)
    """
    out = []
    if e.judge is not None and e.judge >= rules.judge_agrees:
        out.append("judge")
    if e.consistency is not None and e.consistency >= rules.consistency_agrees:
        out.append("consistency")
    if e.grounding is not None and e.grounding >= rules.grounding_agrees:
        out.append("grounding")
    if e.review == "dismiss":
        out.append("reviewer")
    return tuple(out)


def verdict(e: Evidence, rules: PoolRules = PoolRules()) -> Verdict:
    """The pool's decision on one exchange.

    >>> verdict(Evidence(corrected=True, rating=-1)).status
    'train'
    >>> verdict(Evidence(rating=1, grade=0.1, grade_flagged=True))
    Verdict(status='train', source='human_approved', score=0.775, reason='thumbs up (the self-grade disagreed: 0.10)', agreeing=())
    >>> verdict(Evidence(rating=-1, reasons=("wrong facts",))).status
    'flagged'
    >>> verdict(Evidence(rating=-1, reasons=("too long",))).status
    'neutral'
    >>> verdict(Evidence(review="confirm", rating=1)).status
    'flagged'
    >>> verdict(Evidence(rating=1, complete=False)).status
    'neutral'

    The self-grade alone is not enough; with a second signal it is:

    >>> verdict(Evidence(grade=0.9, judge=7))
    Verdict(status='neutral', source='model_only', score=0.9, reason='self-grade 0.90 but only 0 of 1 other signals agree', agreeing=())
    >>> verdict(Evidence(grade=0.9, judge=9, consistency=0.8)).status
    'train'
    >>> verdict(Evidence(grade=0.3, grade_flagged=True)).status
    'flagged'
    """
    if e.corrected or e.review == "correct":
        return Verdict("train", "human_written", 1.0, "a person wrote this answer")
    if e.review == "confirm":
        return Verdict("flagged", "model_only", 0.0, "a reviewer confirmed a hallucination")
    score = blended(e.rating, e.grade, rules.user_weight)
    if not e.complete and e.rating >= 0:
        return Verdict(
            "neutral", "model_only", score, "the answer is incomplete (stopped or cut off)"
        )
    if e.rating < 0:
        why = ", ".join(e.reasons) or "no reason given"
        factual = not e.reasons or bool(FACTUAL & set(e.reasons))
        status = "flagged" if factual else "neutral"
        return Verdict(status, "human_approved", score, f"thumbs down ({why})")
    if e.rating > 0:
        reason = "thumbs up"
        if e.grade_flagged and e.review != "dismiss":
            reason += f" (the self-grade disagreed: {e.grade:.2f})"
        return Verdict("train", "human_approved", score, reason)
    if e.grade is None:
        return Verdict("neutral", "model_only", score, "not graded yet")
    if e.grade_flagged and e.review != "dismiss":
        return Verdict("flagged", "model_only", score, f"self-grade {e.grade:.2f} flagged it")
    agree = agreeing_signals(e, rules)
    if e.grade >= rules.train_threshold and len(agree) >= rules.min_agreement:
        return Verdict(
            "train",
            "model_only",
            score,
            f"self-grade {e.grade:.2f}, agreed by {', '.join(agree)}",
            agree,
        )
    if e.grade < rules.train_threshold:
        return Verdict(
            "neutral",
            "model_only",
            score,
            f"self-grade {e.grade:.2f} is below {rules.train_threshold}",
            agree,
        )
    return Verdict(
        "neutral",
        "model_only",
        score,
        f"self-grade {e.grade:.2f} but only {len(agree)} of {rules.min_agreement} other signals agree",
        agree,
    )


def share_allows(user_count: int, total: int, users: int, max_share: float) -> bool:
    """May one more example from a user with `user_count` of `total` join the pool?

    A pool with a single contributor is exempt: no share can be kept there.

    >>> share_allows(5, 5, users=1, max_share=0.5)
    True
    >>> share_allows(1, 3, users=2, max_share=0.5), share_allows(2, 3, users=2, max_share=0.5)
    (True, False)
    """
    if users < 2:
        return True
    return (user_count + 1) / (total + 1) <= max_share


SOURCE_RANK = {"human_written": 3, "human_approved": 2, "model_only": 1}
