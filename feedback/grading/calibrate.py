"""Running a calibration: the labelled rows from the store, a fit, and its row kept.

Owns when a calibration is due (`due`, after `every` new thumbs), one run (`run_calibration`):
every fit is stored, adopted or not, with why, so the dashboard shows what was tried; and the
`Calibrator` the app and `autodidact grade --calibrate` run it through (in the background after
enough thumbs, one at a time). The fitting itself is feedback/grading/calibration.py's, the rows
store/calibrations.py's; which weights, threshold and config come from the settings is
assistant/wiring.py's (`build_calibrator`).
"""

from __future__ import annotations

import logging
import threading

from feedback.grading.calibration import CalibrationConfig, fit
from feedback.grading.scoring import Signals
from store.calibrations import CalibrationStore
from store.tables import Calibration, Grade

log = logging.getLogger(__name__)


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


class Calibrator:
    """Refits the grading weights to the thumbs once `config.every` new ones arrived: run off
    the request thread, one at a time; the worker picks the adopted fit up at its next job.
    `weights` and `threshold` are the score in use before any calibration is adopted."""

    def __init__(
        self,
        store: CalibrationStore,
        weights: dict[str, float],
        threshold: float,
        config: CalibrationConfig | None = None,
    ):
        self.store, self.weights, self.threshold = store, weights, threshold
        self.config = config or CalibrationConfig()
        self._lock = threading.Lock()

    def run(self) -> Calibration:
        """One fit now, stored adopted or not (`autodidact grade --calibrate`)."""
        with self._lock:
            return run_calibration(self.store, self.weights, self.threshold, self.config)

    def maybe(self, _exchange_id=None) -> None:
        """After a thumbs: a fit in the background when one is due and none is running."""
        if self.config.every <= 0 or self._lock.locked() or not due(self.store, self.config):
            return
        threading.Thread(target=self._run_once, name="calibrate", daemon=True).start()

    def _run_once(self) -> None:
        """One background fit; a second thread started meanwhile finds it due no more."""
        if not self._lock.acquire(blocking=False):
            return
        try:
            if not due(self.store, self.config):
                return
            row = run_calibration(self.store, self.weights, self.threshold, self.config)
            log.info("calibration %s: adopted=%s (%s)", row.id, row.adopted, row.reason)
        except Exception:  # the thumbs are stored; `autodidact grade --calibrate` retries
            log.exception("calibration failed")
        finally:
            self._lock.release()
