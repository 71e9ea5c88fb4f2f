"""The promotion gates: why a trained candidate must not replace the served model.

Owns the rules of step 7 (feedback/refresh/rules.py lists the steps) as small pure functions
over the figures the evaluate step measured (feedback/refresh/evaluation.py): the losses
against the served and the base model, the judge's and the relevance sign tests, the sampled
answers' diversity, and what could not be measured this time. Measuring is not theirs, nor is
the known-answers gate (feedback/refresh/known.py).
"""

from __future__ import annotations

import math

from feedback.refresh.config import RefreshConfig
from feedback.refresh.rules import diversity_drop


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
