"""Self-grading with the real embedded model: the judge's JSON and the signals (the injection
canaries are tests/test_injection.py's)."""

from __future__ import annotations

import pytest

from feedback.grading.grader import Grader
from feedback.grading.judge import Judgement, judge
from tests.fakes import FakeModel

QUESTION = "What is the capital of France?"
ANSWER = "The capital of France is Paris."


@pytest.fixture(scope="module")
def grader(engine):
    return Grader(engine)


def test_the_judge_answers_in_the_schema(engine):
    verdict = judge(engine, QUESTION, ANSWER)
    assert isinstance(verdict, Judgement)
    assert 1 <= verdict.score <= 10 and len(verdict.reason) <= 400


def test_every_signal_is_measured_and_stored_apart(grader):
    result = grader.grade(
        QUESTION, ANSWER, reference="Paris is the capital and largest city of France."
    )
    s = result.signals
    assert 1 <= s.judge <= 10
    assert s.mean_logprob < 0 and s.min_logprob <= s.mean_logprob
    assert s.grounding is not None and s.consistency is None  # consistency is off by default
    assert 0.0 <= result.score <= 1.0
    assert set(result.seconds) == {"judge", "logprob", "grounding"}


def test_self_consistency_compares_with_resampled_answers(engine):
    from feedback.grading.grader import GraderConfig

    grader = Grader(engine, config=GraderConfig(consistency_samples=2, max_tokens=24))
    result = grader.grade(QUESTION, ANSWER)
    assert 0.0 <= result.signals.consistency <= 1.0
    assert "consistency" in result.seconds


@pytest.mark.parametrize("answer", ["", "   ", ":", "Thought process:", "..."])
def test_empty_and_label_only_answers_score_at_the_floor_without_the_model(answer):
    model = FakeModel()
    result = Grader(model).grade(QUESTION, answer)
    assert (result.score, result.flagged) == (0.0, True)
    assert model.history == []


@pytest.mark.parametrize("answer", ["", ":", "Thought process:"])
def test_contentless_answers_score_at_the_floor_with_the_real_model(grader, answer):
    assert grader.grade(QUESTION, answer).score == 0.0
