"""How the signals become one score and a flag: small pure functions, each with its examples.

Owns the normalisation of each signal to 0-1 (1 = looks right), the weighted combination and the
flag rule. The weights and threshold are settings (`AUTODIDACT_GRADE_WEIGHTS`,
`AUTODIDACT_FLAG_THRESHOLD`); their defaults and how they were chosen are in docs/grading.md and docs/benchmarks.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SIGNALS = ("judge", "mean_logprob", "min_logprob", "consistency", "grounding", "agreement")

# Chosen from bench/grader_quality.py with the embedded 135M model (docs/benchmarks.md): its judge
# is at chance on facts and its log-probabilities are inverted or at chance, while evidence
# separates well: agreement with a reference (a correction, an approval, the passages an answer
# was given) best, grounding against it next. So evidence dominates when there is some, and the
# judge, weighed low, decides alone when there is none. Log-probabilities are measured and
# stored, but weigh nothing by default; an adopted calibration replaces all of this.
DEFAULT_WEIGHTS = {
    "judge": 0.5,
    "mean_logprob": 0.0,
    "min_logprob": 0.0,
    "consistency": 1.0,
    "grounding": 1.0,
    "agreement": 4.0,
}
DEFAULT_THRESHOLD = 0.55


@dataclass(frozen=True)
class Signals:
    judge: int | None = None  # 1-10
    mean_logprob: float | None = None
    min_logprob: float | None = None
    consistency: float | None = None  # 0-1
    grounding: float | None = None  # mean log-prob gain from a reference
    agreement: float | None = None  # 0-1: says what the reference says (1) or contradicts it (0)


def clamp(x: float) -> float:
    return max(0.0, min(1.0, x))


def normalize(name: str, value: float | None) -> float | None:
    """A signal on a 0-1 scale where 1 means "looks right"; None stays None.

    >>> [normalize("judge", v) for v in (1, 10)]
    [0.0, 1.0]
    >>> normalize("mean_logprob", -1.0), normalize("min_logprob", -6.0)
    (0.75, 0.5)
    >>> normalize("grounding", 0.0), round(normalize("grounding", 1.0), 3)
    (0.5, 0.881)
    >>> normalize("consistency", None) is None
    True
    """
    if value is None:
        return None
    if name == "judge":
        return clamp((value - 1) / 9)
    if name == "mean_logprob":  # a fluent answer sits near 0; -4 is noise
        return clamp((value + 4) / 4)
    if name == "min_logprob":  # one very unlikely token (-12: 1 in 160,000) is a warning sign
        return clamp((value + 12) / 12)
    if name == "grounding":
        return 1 / (1 + math.exp(-2 * value))
    return clamp(value)


def combine(signals: Signals, weights: dict[str, float]) -> float:
    """Weighted mean of the normalised signals that were measured (missing ones don't count).

    >>> combine(Signals(judge=10, mean_logprob=-1.0), {"judge": 1, "mean_logprob": 1})
    0.875
    >>> combine(Signals(judge=10, mean_logprob=-1.0), {"judge": 1, "mean_logprob": 0})
    1.0
    >>> combine(Signals(), {"judge": 1})  # nothing measured: undecided
    0.5
    """
    total, weight = 0.0, 0.0
    for name in SIGNALS:
        value = normalize(name, getattr(signals, name))
        w = weights.get(name, 0.0)
        if value is not None and w > 0:
            total += w * value
            weight += w
    return round(total / weight, 6) if weight else 0.5


def should_flag(score: float, threshold: float) -> bool:
    """Flag as a possible hallucination below the threshold.

    >>> should_flag(0.3, 0.45), should_flag(0.45, 0.45)
    (True, False)
    """
    return score < threshold


def explain(signals: Signals, judge_reason: str | None, flagged: bool) -> str:
    """One line saying why: the self-grade and its reason, then any weak uncertainty signal.

    >>> explain(Signals(judge=2, mean_logprob=-3.5), "Wrong capital.", True)
    'self-grade 2/10: Wrong capital.; low token confidence (mean log-prob -3.50)'
    >>> explain(Signals(judge=9), "Correct.", False)
    'self-grade 9/10: Correct.'
    """
    parts = []
    if signals.judge is not None:
        parts.append(f"self-grade {signals.judge}/10: {judge_reason or ''}".rstrip(": "))
    if signals.mean_logprob is not None and normalize("mean_logprob", signals.mean_logprob) < 0.25:
        parts.append(f"low token confidence (mean log-prob {signals.mean_logprob:.2f})")
    if signals.consistency is not None and signals.consistency < 0.3:
        parts.append(f"disagrees with resampled answers ({signals.consistency:.2f})")
    if signals.agreement is not None and signals.agreement < 0.4:
        parts.append(f"says what the reference does not ({signals.agreement:.2f} of its words)")
    if signals.grounding is not None and signals.grounding <= 0:
        parts.append(f"not supported by the reference (gain {signals.grounding:+.2f})")
    return "; ".join(parts) or ("flagged" if flagged else "no signal")


def reference_note(agreement: float | None, label: str, text: str, kind: str = "") -> str:
    """What the badge says about the reference an answer was graded against.

    >>> reference_note(0.2, "your correction of 12 Nov", "The seeds pass through you.")
    'contradicts your correction of 12 Nov: “The seeds pass through you.”'
    >>> reference_note(0.9, "your documents (a.pdf)", "…")
    'agrees with your documents (a.pdf)'
    >>> reference_note(0.5, "your correction of 12 Nov", "…")
    'partly supported by your correction of 12 Nov'
    >>> reference_note(0.1, "your documents (a.pdf)", "…", "documents")
    'not supported by your documents (a.pdf)'
    """
    if kind == "documents" and agreement is not None and agreement < 0.4:
        return f"not supported by {label}"
    flat = " ".join(text.split())
    quote = flat if len(flat) <= 100 else flat[:99] + "…"
    if agreement is None or agreement < 0.4:
        return (
            f"contradicts {label}: “{quote}”"
            if agreement is not None
            else f"checked against {label}"
        )
    if agreement >= 0.75:
        return f"agrees with {label}"
    return f"partly supported by {label}"
