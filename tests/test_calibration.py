"""The grader learns from the thumbs: a fit is adopted only when it ranks held-out thumbs better
than the score in use, every fit is kept as a row, and `autodidact grade --calibrate` says so in
one line. Fits run on synthetic signals; the store and the CLI on real rows, in SQLite and in
PostgreSQL."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

from feedback.dashboard import compute
from feedback.grading.calibrate import due, run_calibration
from feedback.grading.calibration import CalibrationConfig, fit, score
from feedback.grading.scoring import DEFAULT_THRESHOLD, DEFAULT_WEIGHTS, Signals
from store.calibrations import CalibrationStore
from store.grading import GradingStore
from store.tables import Grade
from tests.conftest import BACKENDS, ROOT


def synthetic(n: int, seed: int, predictive: bool) -> list[tuple[Signals, int]]:
    """A judge at chance, and a mean log-prob (weight 0 by default) that tells the thumbs
    apart when `predictive`, or is noise like the thumbs when not."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        thumb = 1 if rng.random() < 0.6 else -1
        centre = (-1.0 if thumb > 0 else -2.5) if predictive else -1.75
        signals = Signals(
            judge=int(rng.integers(1, 11)), mean_logprob=float(rng.normal(centre, 0.6))
        )
        rows.append((signals, thumb))
    return rows


def test_a_signal_the_weights_ignore_but_the_thumbs_follow_is_adopted():
    result = fit(synthetic(80, seed=1, predictive=True), DEFAULT_WEIGHTS, DEFAULT_THRESHOLD)
    assert result.adopted, result.reason
    assert result.auroc_after > result.auroc_before + 0.2
    assert result.auroc_before < 0.7 and result.auroc_after > 0.85
    assert result.weights["mean_logprob"] > abs(result.weights["judge"])
    assert set(result.weights) == {"intercept", *DEFAULT_WEIGHTS}
    assert 0 < result.threshold < 1 and result.ratings == 80


def test_random_thumbs_are_not_adopted():
    result = fit(synthetic(200, seed=2, predictive=False), DEFAULT_WEIGHTS, DEFAULT_THRESHOLD)
    assert not result.adopted
    assert "not better by 0.02" in result.reason
    assert result.auroc_before is not None and result.auroc_after is not None


def test_too_few_ratings_are_not_fitted():
    result = fit(synthetic(23, seed=3, predictive=True), DEFAULT_WEIGHTS, 0.4)
    assert (result.adopted, result.reason) == (False, "23 ratings; 30 needed")
    assert (result.weights, result.threshold, result.auroc_after) == ({}, 0.4, None)


def test_thumbs_all_up_are_not_fitted():
    rows = [(s, 1) for s, _ in synthetic(40, seed=4, predictive=True)]
    result = fit(rows, DEFAULT_WEIGHTS, DEFAULT_THRESHOLD)
    assert not result.adopted
    assert result.reason == "40 ratings, all thumbs up; both thumbs up and down are needed"


def test_the_fit_is_compared_with_the_adopted_calibration_not_the_weights():
    rows = synthetic(80, seed=1, predictive=True)
    first = fit(rows, DEFAULT_WEIGHTS, DEFAULT_THRESHOLD)
    again = fit(rows, DEFAULT_WEIGHTS, DEFAULT_THRESHOLD, calibration=first.weights)
    assert not again.adopted  # it cannot beat itself by the margin
    assert again.auroc_before > 0.85
    good, bad = Signals(judge=5, mean_logprob=-0.5), Signals(judge=5, mean_logprob=-3.0)
    assert score(good, DEFAULT_WEIGHTS, first.weights) > score(bad, DEFAULT_WEIGHTS, first.weights)
    assert score(good, DEFAULT_WEIGHTS) == score(bad, DEFAULT_WEIGHTS)  # the judge alone


# Real rows, in SQLite and in PostgreSQL


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


def labelled_exchange(store, signals: Signals, *thumbs: int) -> int:
    """An answered, graded exchange rated `thumbs` in order (the last one counts)."""
    user = store.user("alice")
    msg = store.start_conversation(user.id, "q", "question?")
    ex = store.start_exchange(msg.conversation_id, msg.id, "fake-model", {})
    store.finish_exchange(ex.id, "answer.", "completed", enqueue_grading=True)
    grading = GradingStore(store.engine)
    grade = Grade(
        exchange_id=ex.id,
        grader_version="grader-1",
        judge_model_id="fake-model",
        judge_score=signals.judge,
        mean_logprob=signals.mean_logprob,
        score=0.5,
        reason="test",
    )
    grading.complete(grading.job(ex.id).id, grade)
    for thumb in thumbs:
        store.rate(ex.id, user.id, thumb)
    return ex.id


def fill(store, rows) -> None:
    for signals, thumb in rows:
        labelled_exchange(store, signals, thumb)


def test_labelled_rows_use_the_newest_rating_and_ignore_one_taken_back(store):
    s = Signals(judge=7, mean_logprob=-1.0)
    changed = labelled_exchange(store, s, 1, -1)
    taken_back = labelled_exchange(store, s, -1, 0)
    restored = labelled_exchange(store, s, 1, 0, 1)
    user = store.user("alice")
    msg = store.start_conversation(user.id, "q", "ungraded?")
    ungraded = store.start_exchange(msg.conversation_id, msg.id, "fake-model", {})
    store.rate(ungraded.id, user.id, 1)
    rows = CalibrationStore(store.engine).labelled()
    assert [(e, thumb) for e, _, thumb in rows] == [(changed, -1), (restored, 1)]
    assert taken_back not in [e for e, _, _ in rows]
    assert rows[0][1].judge_score == 7


def test_every_run_is_a_row_the_dashboard_lists_and_current_is_the_newest_adopted(store):
    calibrations = CalibrationStore(store.engine)
    assert calibrations.current() is None
    fill(store, synthetic(60, seed=1, predictive=True))
    first = run_calibration(calibrations, DEFAULT_WEIGHTS, DEFAULT_THRESHOLD)
    assert first.adopted and first.id is not None
    second = run_calibration(calibrations, DEFAULT_WEIGHTS, DEFAULT_THRESHOLD)
    assert not second.adopted  # measured against the first fit, which it merely repeats
    assert second.auroc_before == pytest.approx(first.auroc_after, abs=0.05)
    assert [c.id for c in calibrations.history()] == [second.id, first.id]
    assert calibrations.current().id == first.id
    assert calibrations.current().weights == first.weights
    board = compute(store.engine).calibrations
    assert board[["ratings", "adopted"]].values.tolist() == [[60, "no"], [60, "yes"]]
    assert board["AUROC after"].tolist() == [second.auroc_after, first.auroc_after]


def test_ratings_since_last_calibration_decide_when_one_is_due(store):
    calibrations = CalibrationStore(store.engine)
    config = CalibrationConfig(every=3)
    s = Signals(judge=5)
    for _ in range(2):
        labelled_exchange(store, s, 1)
    assert (calibrations.ratings_since_last(), due(calibrations, config)) == (2, False)
    rated_twice = labelled_exchange(store, s, 1, -1)
    assert (calibrations.ratings_since_last(), due(calibrations, config)) == (3, True)
    row = run_calibration(calibrations, DEFAULT_WEIGHTS, DEFAULT_THRESHOLD, config)
    assert (row.adopted, row.reason) == (False, "3 ratings; 30 needed")
    assert calibrations.ratings_since_last() == 0
    store.rate(rated_twice, store.user("alice").id, 1)
    labelled_exchange(store, s, -1)
    assert calibrations.ratings_since_last() == 2


def test_grade_calibrate_prints_one_summary_line(store):
    fill(store, synthetic(40, seed=1, predictive=True))
    done = subprocess.run(
        [sys.executable, "-m", "assistant.cli", "grade", "--calibrate"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    line = done.stdout.strip().splitlines()[-1]
    assert re.fullmatch(
        r"Calibration 1 on 40 ratings: adopted \(AUROC 0\.\d{3} -> 0\.\d{3} on 5 held-out folds; "
        r"flag below 0\.\d{3}\)\.",
        line,
    ), line
    assert CalibrationStore(store.engine).current().ratings == 40


def test_the_app_calibrates_once_enough_thumbs_arrive_and_the_grader_uses_the_fit(
    settings, fake_model, embedder
):
    """Through the app's own wiring: thumbs given in the chat start a calibration in the
    background once `calibration_every` new ones arrived, and the next grade uses its weights."""
    import time

    from assistant.wiring import create_services
    from feedback.grading.grader import Grader

    settings.calibration_every = 40
    services = create_services(settings, model=fake_model, embedder=embedder)
    try:
        rows = synthetic(40, seed=1, predictive=True)
        ids = [labelled_exchange(services.store, s) for s, _ in rows]
        user = services.store.user("alice")
        services.chat.user = user
        for exchange_id, (_, thumb) in zip(ids[:-1], rows[:-1], strict=True):
            services.chat.rate(exchange_id, thumb)
        calibrations = CalibrationStore(services.store.engine)
        assert calibrations.history() == []  # 39 new thumbs: not yet
        services.chat.rate(ids[-1], rows[-1][1])
        deadline = time.time() + 60
        while calibrations.current() is None and time.time() < deadline:
            time.sleep(0.1)
        adopted = calibrations.current()
        assert adopted is not None and adopted.ratings == 40

        worker = services.worker
        worker.grader = Grader(fake_model)  # the fake judge gives no verdict; the rest counts
        msg = services.store.start_conversation(user.id, "q", "a new question?")
        ex = services.store.start_exchange(msg.conversation_id, msg.id, "fake-model", {})
        services.store.finish_exchange(ex.id, "an answer.", "completed", enqueue_grading=True)
        exchange = ex.id
        assert worker.run_once()
        grade = worker.grading.grade(exchange)
        assert grade.calibration_id == adopted.id
        assert grade.flagged == (grade.score < adopted.threshold)
    finally:
        services.close()
