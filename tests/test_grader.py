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


# The embedded judge, greedy, writes a raw newline into its reason for this answer; llama-cpp-python's
# JSON grammar lets it through, and strict JSON refused the whole verdict (CI, stop 33).
RAMBLING = (
    "L'Arc de Tripoli, le Grand Bassin de la Lance (The Black Island) is the capital of France. "
    "It's located at the mouth of the River Seine in Paris and serves as a strategic military "
    "base during medieval times. The town has a rich history of trade and exploration with "
    "numerous"
)


def test_a_verdict_whose_reason_holds_a_raw_newline_still_counts():
    model = FakeModel()
    model.enqueue('{ "reason": "not the answer is the\n<</" ,"score": 2}')
    result = Grader(model).grade(QUESTION, RAMBLING)
    assert result.signals.judge == 2 and result.judge_reason == "not the answer is the <</"


class Recording:
    """The engine, with the text of every answer it streamed on record."""

    def __init__(self, engine):
        self.engine, self.texts = engine, []

    def stream(self, messages, sampling, cancel=None, json_schema=None):
        deltas = list(self.engine.stream(messages, sampling, cancel, json_schema=json_schema))
        self.texts.append("".join(d.text for d in deltas))
        yield from deltas


@pytest.fixture
def fresh_engine(embedded_path):
    """An engine with nothing cached: a greedy answer this close to a tie depends on what the
    session's engine evaluated before (llama.cpp reuses the cached prompt prefix)."""
    from assistant.llm.llama import LlamaEngine

    engine = LlamaEngine(embedded_path, context_window=2048, threads=2)
    yield engine
    engine.close()


def test_the_real_judge_gives_a_verdict_on_an_answer_it_once_broke_its_json_on(fresh_engine):
    model = Recording(fresh_engine)
    verdict = judge(model, QUESTION, RAMBLING, tag="abc123")
    [raw] = model.texts
    assert any(ord(c) < 0x20 for c in raw), raw  # the grammar let a raw control character in
    assert 1 <= verdict.score <= 10 and all(ord(c) >= 0x20 for c in verdict.reason)


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
