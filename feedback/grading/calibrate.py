"""Running a calibration: the labelled rows from the store, a fit, and its row kept.

Owns when a calibration is due (`due`, after `every` new thumbs) and one run
(`run_calibration`): every fit is stored, adopted or not, with why, so the dashboard shows what
was tried. The fitting itself is feedback/grading/calibration.py's, the rows store/calibrations.py's.
"""

from __future__ import annotations

from feedback.grading.calibration import CalibrationConfig, fit
from feedback.grading.scoring import Signals
from store.calibrations import CalibrationStore
from store.tables import Calibration, Grade


def signals_of(grade: Grade) -> Signals:
    """A stored grade's signals, as they were measured."""
    return Signals(
        judge=grade.judge_score,
        mean_logprob=grade.mean_logprob,
        min_logprob=grade.min_logprob,
        consistency=grade.consistency,
        grounding=grade.grounding,
        agreement=grade.agreement,
    )


def due(store: CalibrationStore, config: CalibrationConfig | None = None) -> bool:
    """Enough new thumbs since the last calibration (or ever) to try another."""
    return store.ratings_since_last() >= (config or CalibrationConfig()).every


def run_calibration(
    store: CalibrationStore,
    weights: dict[str, float],
    threshold: float,
    config: CalibrationConfig | None = None,
) -> Calibration:
    """Fit the thumbs given so far against the score in use (the adopted calibration, else
    `weights`); store the row, adopted or not, and return it."""
    rows = store.labelled()
    current = store.current()
    result = fit(
        [(signals_of(grade), thumb) for _, grade, thumb in rows],
        weights,
        current.threshold if current else threshold,
        config,
        current.weights if current else None,
    )
    return store.save(
        Calibration(
            ratings=result.ratings,
            auroc_before=result.auroc_before,
            auroc_after=result.auroc_after,
            weights=result.weights,
            threshold=result.threshold,
            adopted=result.adopted,
            reason=result.reason,
        )
    )


def summary(row: Calibration) -> str:
    """One line on a calibration, for the CLI.

    >>> summary(Calibration(id=2, ratings=40, threshold=0.4, adopted=True,
    ...     reason="AUROC 0.500 -> 0.910 on 5 held-out folds"))
    'Calibration 2 on 40 ratings: adopted (AUROC 0.500 -> 0.910 on 5 held-out folds; flag below 0.400).'
    >>> summary(Calibration(id=3, ratings=23, threshold=0.55, reason="23 ratings; 30 needed"))
    'Calibration 3 on 23 ratings: not adopted (23 ratings; 30 needed).'
    """
    if row.adopted:
        return (
            f"Calibration {row.id} on {row.ratings} ratings: adopted ({row.reason}; "
            f"flag below {row.threshold:.3f})."
        )
    return f"Calibration {row.id} on {row.ratings} ratings: not adopted ({row.reason})."
