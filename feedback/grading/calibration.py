"""Fitting the grading signals to the user's thumbs: a logistic regression, adopted only when it
ranks held-out thumbs better than the score in use.

Owns the pure part of calibration: the model's inputs (each signal normalised by
feedback/grading/scoring.py, a missing one at 0.5), the cross-validated comparison, the flag
threshold of a fit, and `score`, the one function the grader calls to turn signals into a score
with or without an adopted calibration. Reading ratings and storing fits is
feedback/grading/calibrate.py's; nothing here touches the database or a model.

How a fit is judged: the rows are split into stratified folds (5, fewer when a thumb is rare;
a fixed seed, so the same rows give the same verdict). On each held-out fold both the score in
use (the configured weighted mean, or the adopted calibration) and a model trained on the other
folds rank the answers; the two mean AUROCs are compared on exactly the same rows, and the fit
is adopted only when it wins by `margin`. The stored weights are then refitted on every row.

Inputs are kept simple: the normalised signal, with 0.5 ("undecided", as `combine` treats
nothing measured) for a missing one, and no "was it measured" indicator. A signal that is never
measured (grounding in the app) is then a constant column, and the L2 penalty leaves its
coefficient at 0 (the unpenalised intercept does the same job). An indicator would help only
when a signal is measured for some answers and not others and its absence itself predicts the
thumbs, which needs more ratings than one user gives.

The threshold is Youden's J on the out-of-fold probabilities (the cut where thumbs-up kept
minus thumbs-down kept is largest), not the cut that flags as often as users gave a thumbs down:
people rate mostly when something is off, so the thumbs-down share among rated answers overstates
the share among all answers, and matching it would flag too much. Youden's J does not depend on
that share, and out-of-fold probabilities are the ones the model had not seen.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from feedback.config import option
from feedback.grading.scoring import SIGNALS, Signals, combine, normalize

SEED = 0  # fixed folds: the same ratings always give the same verdict
UNDECIDED = 0.5  # a signal that was not measured


@dataclass
class CalibrationConfig:
    """When the grader refits its weights to the thumbs, and what a fit must show to be adopted."""

    min_ratings: int = option(30, "graded answers with a thumbs before a fit is tried")
    every: int = option(30, "new thumbs since the last calibration that start one automatically")
    folds: int = option(5, "cross-validation folds (fewer when a thumb is rare)")
    margin: float = option(0.02, "AUROC a fit must gain on held-out thumbs to be adopted")


@dataclass(frozen=True)
class Fit:
    weights: dict[str, float]  # "intercept" and one coefficient per signal; {} when not fitted
    threshold: float  # fitted probability below which an answer is flagged
    ratings: int
    auroc_before: float | None  # the score in use, mean over the held-out folds
    auroc_after: float | None  # the fitted model, on the same folds
    adopted: bool
    reason: str


def features(signals: Signals) -> list[float]:
    """The model's inputs: every signal on its 0-1 scale, a missing one at 0.5.

    >>> features(Signals(judge=10, consistency=0.25))
    [1.0, 0.5, 0.5, 0.25, 0.5, 0.5]
    """
    out = []
    for name in SIGNALS:
        value = normalize(name, getattr(signals, name))
        out.append(UNDECIDED if value is None else value)
    return out


def calibrated_score(signals: Signals, weights: dict[str, float]) -> float:
    """P(thumbs up) under a fit: sigmoid(intercept + sum of coefficient x normalised signal).

    >>> calibrated_score(Signals(judge=10), {"intercept": -2.0, "judge": 4.0})
    0.880797
    >>> calibrated_score(Signals(), {"intercept": 0.0, "judge": 4.0})  # judge missing: 0.5
    0.880797
    """
    z = weights.get("intercept", 0.0)
    for name, value in zip(SIGNALS, features(signals), strict=True):
        z += weights.get(name, 0.0) * value
    return round(1 / (1 + math.exp(-z)), 6)


def score(
    signals: Signals, weights: dict[str, float], calibration: dict[str, float] | None = None
) -> float:
    """The score the grader stores: the adopted calibration's (its `weights`) when there is
    one, else the configured weighted mean.

    >>> score(Signals(judge=10, mean_logprob=-1.0), {"judge": 1.0, "mean_logprob": 1.0})
    0.875
    >>> score(Signals(judge=10), {"judge": 1.0}, {"intercept": -2.0, "judge": 4.0})
    0.880797
    """
    if calibration:
        return calibrated_score(signals, calibration)
    return combine(signals, weights)


def youden_threshold(thumbs: Sequence[int], probabilities: Sequence[float]) -> float:
    """The cut (flag below it) maximising TPR - FPR for "looks right" (thumbs up = 1).

    >>> youden_threshold([0, 0, 1, 1, 1], [0.1, 0.6, 0.5, 0.8, 0.9])
    0.8
    >>> youden_threshold([0, 1, 0, 1, 1], [0.2, 0.3, 0.25, 0.9, 0.7])
    0.3
    """
    from sklearn.metrics import roc_curve

    fpr, tpr, cuts = roc_curve(thumbs, probabilities)
    best = max(range(1, len(cuts)), key=lambda i: tpr[i] - fpr[i])  # cuts[0] is +inf
    return round(float(cuts[best]), 6)


def refusal(thumbs: Sequence[int], config: CalibrationConfig) -> str | None:
    """Why these thumbs (1 up, 0 down) cannot be fitted, or None when they can.

    >>> refusal([1] * 23, CalibrationConfig())
    '23 ratings; 30 needed'
    >>> refusal([1] * 40, CalibrationConfig())
    '40 ratings, all thumbs up; both thumbs up and down are needed'
    >>> refusal([1] * 39 + [0], CalibrationConfig())
    '40 ratings, one thumbs down; cross-validation needs at least 2 of each'
    >>> refusal([1] * 20 + [0] * 20, CalibrationConfig()) is None
    True
    """
    n, up = len(thumbs), sum(thumbs)
    if n < config.min_ratings:
        return f"{n} ratings; {config.min_ratings} needed"
    if up in (0, n):
        side = "up" if up else "down"
        return f"{n} ratings, all thumbs {side}; both thumbs up and down are needed"
    if min(up, n - up) < 2:
        side = "down" if up > n - up else "up"
        return f"{n} ratings, one thumbs {side}; cross-validation needs at least 2 of each"
    return None


def fit(
    rows: Sequence[tuple[Signals, int]],
    weights: dict[str, float],
    threshold: float,
    config: CalibrationConfig | None = None,
    calibration: dict[str, float] | None = None,
) -> Fit:
    """Fit the signals to the thumbs (+1/-1) and compare with the score in use (`weights`, or
    the adopted `calibration`) on the same held-out folds; `threshold` is kept when no fit
    is tried."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    config = config or CalibrationConfig()
    thumbs = np.array([1 if thumb > 0 else 0 for _, thumb in rows])
    why = refusal(thumbs.tolist(), config)
    if why:
        return Fit({}, threshold, len(rows), None, None, False, why)
    x = np.array([features(s) for s, _ in rows])
    in_use = np.array([score(s, weights, calibration) for s, _ in rows])
    k = max(2, min(config.folds, int(thumbs.sum()), int(len(thumbs) - thumbs.sum())))
    held_out = np.zeros(len(rows))
    before, after = [], []
    for train, test in StratifiedKFold(k, shuffle=True, random_state=SEED).split(x, thumbs):
        model = LogisticRegression().fit(x[train], thumbs[train])
        held_out[test] = model.predict_proba(x[test])[:, 1]
        before.append(roc_auc_score(thumbs[test], in_use[test]))
        after.append(roc_auc_score(thumbs[test], held_out[test]))
    final = LogisticRegression().fit(x, thumbs)
    fitted = {"intercept": round(float(final.intercept_[0]), 6)}
    fitted |= {n: round(float(c), 6) for n, c in zip(SIGNALS, final.coef_[0], strict=True)}
    auroc_before, auroc_after = round(float(np.mean(before)), 4), round(float(np.mean(after)), 4)
    adopted = auroc_after - auroc_before > config.margin
    reason = f"AUROC {auroc_before:.3f} -> {auroc_after:.3f} on {k} held-out folds"
    if not adopted:
        reason += f", not better by {config.margin}"
    cut = youden_threshold(thumbs.tolist(), held_out.tolist())
    return Fit(fitted, cut, len(rows), auroc_before, auroc_after, adopted, reason)
