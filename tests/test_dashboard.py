"""The dashboard's figures, computed from real rows: each plot's data asserted exactly, on SQLite
and on PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from assistant.chat import ChatService
from feedback.dashboard import compute
from store.grading import GradingStore
from store.tables import Grade
from tests.conftest import BACKENDS
from tests.fakes import ask as answered


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture
def chat(store, settings, fake_model, curator):
    return ChatService(store, fake_model, settings, curator)


def ask(chat, question, answer):
    return answered(chat, question, answer).exchange_id


def grade(store, exchange_id, score, flagged):
    grading = GradingStore(store.engine)
    grading.complete(
        grading.job(exchange_id).id,
        Grade(
            exchange_id=exchange_id,
            grader_version="grader-1",
            judge_model_id="fake-model",
            judge_score=5,
            score=score,
            flagged=flagged,
            reason="test",
        ),
    )


def test_dashboard_figures_follow_the_rows(chat, store, curator):
    today = pd.Timestamp(datetime.now(UTC).date())  # rows are stamped in UTC
    a = ask(chat, "What is the capital of France?", "Paris is the capital of France.")
    b = ask(chat, "Who wrote Hamlet?", "Charles Dickens wrote Hamlet.")
    c = ask(chat, "How many legs does a spider have?", "Spiders have eight legs.")
    grade(store, a, 0.81, flagged=False)
    grade(store, b, 0.32, flagged=True)
    grade(store, c, 0.35, flagged=True)
    chat.rate(a, 1)  # agrees with the grade
    chat.rate(b, -1, ["wrong facts"])  # agrees
    chat.rate(c, 1)  # disagrees: flagged, but the user liked it
    chat.correct(b, "William Shakespeare wrote Hamlet.")
    d = compute(store.engine, curator.index)
    assert d.exchanges_per_day.to_dict("records") == [{"day": today, "exchanges": 3}]
    assert d.score_histogram["score"].tolist()[:2] == ["0.0", "0.1"]
    assert d.score_histogram["answers"].tolist() == [0, 0, 0, 2, 0, 0, 0, 0, 1, 0]
    [flags] = d.flag_rate.to_dict("records")
    assert (flags["day"], round(flags["flag rate"], 4), flags["graded"]) == (today, 0.6667, 3)
    assert sorted(map(tuple, d.pool_by_source[["source", "examples"]].values.tolist())) == [
        ("human_approved", 2),
        ("human_written", 1),
        ("model_only", 0),
    ]
    shares = dict(d.human_share[["kind", "share"]].values.tolist())
    assert shares == {"human-written": 0.3333, "human (written or approved)": 1.0}
    [agreement] = d.agreement.to_dict("records")
    assert (round(agreement["agreement"], 4), agreement["rated"]) == (0.6667, 3)
    measures = dict(d.diversity.values.tolist())
    assert set(measures) == {"distinct-1", "distinct-2", "embedding spread"}
    assert 0 < measures["embedding spread"] < 1 and measures["distinct-2"] == 1.0
    assert d.totals["statuses"] == {"train": 3}
    assert (d.totals["flagged"], d.totals["agreement"], d.totals["rated"]) == (0.667, 0.667, 3)


def test_an_empty_database_gives_empty_plots_not_errors(store):
    d = compute(store.engine)
    assert d.exchanges_per_day.empty and d.pool_by_source.empty and d.agreement.empty
    assert d.score_histogram["answers"].sum() == 0
    assert d.totals["exchanges"] == 0 and d.totals["agreement"] is None
