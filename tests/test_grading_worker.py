"""The grading queue: jobs in the database, a restart loses none, failures are bounded, chat first.

The queue's tests run on SQLite and on PostgreSQL; the two with the real model on SQLite only.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from assistant.chat import ChatService
from feedback.grading.grader import Grader
from feedback.grading.worker import GradingWorker, grade_backlog
from store.grading import GradingStore
from store.tables import Conversation
from tests.conftest import BACKENDS, ROOT
from tests.fakes import FakeModel


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


def answer(chat, text="What is 2 + 2?"):
    return list(chat.send(None, text))[-1]


class JudgeFake(FakeModel):
    """A fake whose judge calls return fixed JSON, optionally slowly or failing."""

    def __init__(self, verdict='{"reason": "fine", "score": 8}', fail=0, delay=0.0):
        super().__init__(delay=delay)
        self.verdict, self.fail = verdict, fail

    def stream(self, messages, sampling, cancel=None, json_schema=None):
        if json_schema is None:
            yield from super().stream(messages, sampling, cancel)
            return
        if self.fail:
            self.fail -= 1
            raise RuntimeError("judge crashed")
        for ch in self.verdict:
            if cancel is not None and cancel.is_set():
                return
            if self.delay:
                time.sleep(self.delay)
            yield type(next(super().stream([], {})))(text=ch)


def test_every_finished_answer_is_queued_and_graded_with_its_signals(store, settings):
    model = FakeModel()
    chat = ChatService(store, model, settings)
    reply = answer(chat)
    grading = GradingStore(store.engine)
    assert grading.job(reply.exchange_id).status == "pending"
    worker = GradingWorker(Grader(JudgeFake(), model), grading)
    assert worker.run_once() and not worker.run_once()
    grade = grading.grade(reply.exchange_id)
    assert (grade.judge_score, grade.judge_reason, grade.flagged) == (8, "fine", False)
    assert grade.mean_logprob == -1.0 and grade.grader_version == "grader-2"
    assert grading.job(reply.exchange_id).status == "done"


def test_failed_and_empty_answers_are_not_queued(store, settings):
    model = FakeModel()
    model.enqueue(("", RuntimeError("boom")))
    chat = ChatService(store, model, settings)
    reply = answer(chat)
    assert reply.status == "failed"
    assert GradingStore(store.engine).job(reply.exchange_id) is None


def test_a_failing_grade_is_retried_then_kept_as_failed(store, settings):
    chat = ChatService(store, FakeModel(), settings)
    reply = answer(chat)
    grading = GradingStore(store.engine)
    worker = GradingWorker(Grader(JudgeFake(fail=10)), grading, max_attempts=3)
    assert grade_backlog(worker) == 3
    job = grading.job(reply.exchange_id)
    assert (job.status, job.attempts, job.last_error) == (
        "failed",
        3,
        "RuntimeError: judge crashed",
    )
    assert grading.grade(reply.exchange_id) is None


def test_a_job_running_when_the_process_died_is_graded_after_restart(store, settings):
    chat = ChatService(store, FakeModel(), settings)
    reply = answer(chat)
    grading = GradingStore(store.engine)
    assert grading.claim().exchange_id == reply.exchange_id  # then the process "dies"
    assert grading.counts() == {"running": 1}
    worker = GradingWorker(Grader(JudgeFake()), GradingStore(store.engine))
    assert grade_backlog(worker) == 1
    assert grading.grade(reply.exchange_id).judge_score == 8


def test_a_chat_preempts_grading_and_the_job_goes_back_untouched(store, settings):
    chat = ChatService(store, FakeModel(), settings)
    reply = answer(chat)
    grading = GradingStore(store.engine)
    judge = JudgeFake(delay=0.05)  # about 2 s of judging
    worker = GradingWorker(Grader(judge), grading, chat.idle)
    chat.on_generation_start.append(worker.preempt)
    done = threading.Event()
    threading.Thread(target=lambda: (worker.run_once(), done.set())).start()
    time.sleep(0.2)
    second = answer(chat, "another question")  # the chat starts: the grader steps aside
    assert done.wait(2)
    assert grading.job(reply.exchange_id).status == "pending"
    assert grading.job(reply.exchange_id).attempts == 0
    assert second.status == "completed"


@pytest.mark.parametrize("backend", ["sqlite"])  # the real model: once is enough
def test_the_background_worker_grades_while_the_app_is_idle(settings, engine):
    from assistant.web.app import create_app

    settings.grading = True
    app = create_app(settings, model=engine)
    try:
        reply = answer(app.chat, "What is the capital of France?")
        deadline = time.time() + 60
        while app.grading.grade(reply.exchange_id) is None:
            assert time.time() < deadline, app.grading.counts()
            time.sleep(0.2)
        grade = app.grading.grade(reply.exchange_id)
        assert 1 <= grade.judge_score <= 10 and grade.mean_logprob < 0
        assert grade.judge_model_id == "SmolLM2-135M-Instruct.Q4_1.gguf"
    finally:
        app.close()


@pytest.mark.parametrize("backend", ["sqlite"])
def test_grade_backlog_cli_grades_everything_waiting(store, settings, engine):
    chat = ChatService(store, engine, settings)
    for q in ("What is the capital of France?", "Name a primary colour."):
        answer(chat, q)
    done = subprocess.run(
        [sys.executable, "-m", "assistant.cli", "grade", "--backlog"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert "Graded 2 job(s): 2 done, 0 failed, 0 pending" in done.stdout
    assert GradingStore(store.engine).counts() == {"done": 2}


def test_a_conversation_deleted_mid_grade_drops_the_grade_and_the_worker_goes_on(store, settings):
    model = FakeModel()
    chat = ChatService(store, model, settings)
    gone, kept = answer(chat, "first?"), answer(chat, "second?")
    grading = GradingStore(store.engine)

    class DeletingJudge(JudgeFake):
        def stream(self, messages, sampling, cancel=None, json_schema=None):
            grading_gone = "first?" in str(messages)
            if json_schema is not None and grading_gone and store.count(Conversation) == 2:
                chat.delete(gone.conversation_id)  # the user deletes it while it is graded
            yield from super().stream(messages, sampling, cancel, json_schema)

    worker = GradingWorker(Grader(DeletingJudge(), model), grading)
    assert worker.run_once()  # the newest first: "second?", graded as usual
    assert worker.run_once()  # "first?": deleted mid-grade, its grade dropped, no crash
    assert not worker.run_once()
    assert grading.grade(gone.exchange_id) is None
    assert grading.grade(kept.exchange_id) is not None


def test_the_worker_goes_on_after_a_job_it_could_not_claim(store, settings):
    """Seen in a learning run: a conversation deleted while its job was being claimed raised
    in the grader thread, and nothing was graded again until a restart."""
    from sqlalchemy.orm.exc import StaleDataError

    model = FakeModel()
    chat = ChatService(store, model, settings)
    grading = GradingStore(store.engine)
    claims, real = [], grading.claim

    def flaky():
        claims.append(1)
        if len(claims) == 1:
            raise StaleDataError("the job's row went away meanwhile")
        return real()

    grading.claim = flaky
    done = answer(chat)
    worker = GradingWorker(Grader(JudgeFake(), model), grading)
    worker.start()
    try:
        deadline = time.monotonic() + 30
        while grading.grade(done.exchange_id) is None and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        worker.stop()
    assert len(claims) >= 2 and grading.grade(done.exchange_id) is not None
