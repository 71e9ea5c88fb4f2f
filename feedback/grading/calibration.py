"""Fitting the grading signals to the user's thumbs: a logistic regression, adopted only when it
ranks held-out thumbs better than the score in use.

Owns the pure part of calibration: the model's inputs (each signal normalised by
feedback/grading/scoring.py, a missing one at 0.5), the cross-validated comparison, the flag
threshold of a fit, and `score`, the one function the grader calls to turn signals into a score
with or without an adopted calibration. Reading ratings and storing fits is
feedback/grading/calibrate.py's; nothing here touches the database or a model.

How a fit is judged: the rows are split into stratified folds (5, fewer when a thumb is rare;
a fixed seed, so the same rows give the same verdict), and each row gets its probability from a
model trained on the other folds. That out-of-fold ranking and the score in use (the configured
weighted mean, or the adopted calibration) are scored by AUROC on the same rows. The fit is
adopted only when it wins by more than `margin` and the gain is not luck of the sample: its 5th
percentile over bootstrap resamples of the rows must be above 0. Without that bound, thumbs
that are pure noise were adopted about one time in three at 200 ratings (a chance correlation
in the sample survives cross-validation); with it, about one in thirty. The stored weights are
then refitted on every row.

Inputs are kept simple: the normalised signal, with 0.5 ("undecided", as `combine` treats
nothing measured) for a missing one, and no "was it measured" indicator. A signal that is never
measured (self-consistency, off by default) is then a constant column, and the L2 penalty leaves its
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

from assistant.options import option
from feedback.grading.scoring import SIGNALS, Signals, combine, normalize

SEED = 0  # fixed folds: the same ratings always give the same verdict
UNDECIDED = 0.5  # a signal that was not measured
CONFIDENCE = 0.95  # how sure a gain must be, over bootstrap resamples of the rated rows


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
    auroc_before: float | None  # the score in use, on every rated row
    auroc_after: float | None  # the fitted model's out-of-fold probabilities, on the same rows
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


def gain_bound(
    thumbs: Sequence[int], before: Sequence[float], after: Sequence[float], resamples: int = 1000
) -> float:
    """A lower bound on AUROC(after) - AUROC(before): the 5th percentile over bootstrap
    resamples of the rows (thumbs up and down resampled apart, so each keeps its count).

    >>> gain_bound([0, 1] * 20, [0.5] * 40, [0.2, 0.8] * 20)  # a perfect ranking against none
    0.5
    >>> gain_bound([0, 1] * 20, [0.2, 0.8] * 20, [0.2, 0.8] * 20)
    0.0
    """
    import numpy as np

    y = np.asarray(thumbs)
    rng = np.random.default_rng(SEED)
    up, down = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    rows = np.hstack(
        [rng.choice(up, (resamples, len(up))), rng.choice(down, (resamples, len(down)))]
    )
    labels = np.r_[np.ones(len(up)), np.zeros(len(down))]
    gains = auroc(labels, np.asarray(after)[rows]) - auroc(labels, np.asarray(before)[rows])
    return round(float(np.percentile(gains, 100 * (1 - CONFIDENCE))), 4)


def auroc(labels, scores):
    """AUROC of each row of `scores` (Mann-Whitney: the mean rank of the thumbs up).

    >>> auroc([0, 0, 1, 1], [[0.1, 0.4, 0.35, 0.8], [0.5, 0.5, 0.5, 0.5]]).tolist()
    [0.75, 0.5]
    """
    import numpy as np
    from scipy.stats import rankdata

    labels = np.asarray(labels, dtype=bool)
    ranks = rankdata(scores, axis=-1)
    up, down = labels.sum(), (~labels).sum()
    return (ranks[..., labels].sum(axis=-1) - up * (up + 1) / 2) / (up * down)


def held_out_probabilities(x, thumbs, folds: int):
    """Each row's P(thumbs up) from a model fitted on the other folds (stratified, fixed seed)."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    out = np.zeros(len(thumbs))
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=SEED).split(x, thumbs):
        out[test] = LogisticRegression().fit(x[train], thumbs[train]).predict_proba(x[test])[:, 1]
    return out


def fit(
    rows: Sequence[tuple[Signals, int]],
    weights: dict[str, float],
    threshold: float,
    config: CalibrationConfig | None = None,
    calibration: dict[str, float] | None = None,
) -> Fit:
    """Fit the signals to the thumbs (+1/-1) and compare with the score in use (`weights`, or
    the adopted `calibration`) on the same held-out rows; `threshold` is kept when no fit is
    tried."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    config = config or CalibrationConfig()
    thumbs = np.array([1 if thumb > 0 else 0 for _, thumb in rows])
    why = refusal(thumbs.tolist(), config)
    if why:
        return Fit({}, threshold, len(rows), None, None, False, why)
    x = np.array([features(s) for s, _ in rows])
    in_use = np.array([score(s, weights, calibration) for s, _ in rows])
    k = max(2, min(config.folds, int(thumbs.sum()), int(len(thumbs) - thumbs.sum())))
    held_out = held_out_probabilities(x, thumbs, k)
    before = round(float(auroc(thumbs, in_use)), 4)
    after = round(float(auroc(thumbs, held_out)), 4)
    bound = gain_bound(thumbs, in_use, held_out)
    reason = f"AUROC {before:.3f} -> {after:.3f} on {k} held-out folds"
    if after - before <= config.margin:
        reason += f", not better by {config.margin}"
    elif bound <= 0:
        reason += f", a gain within chance ({CONFIDENCE:.0%} bound {bound:+.3f})"
    final = LogisticRegression().fit(x, thumbs)
    fitted = {"intercept": round(float(final.intercept_[0]), 6)}
    fitted |= {n: round(float(c), 6) for n, c in zip(SIGNALS, final.coef_[0], strict=True)}
    cut = youden_threshold(thumbs.tolist(), held_out.tolist())
    adopted = after - before > config.margin and bound > 0
    return Fit(fitted, cut, len(rows), before, after, adopted, reason)
