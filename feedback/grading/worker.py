"""The background grader: takes jobs from the database queue and grades them while the chat is idle.

Owns scheduling only. The chat always goes first: the worker starts a job only when no answer is
being generated, and a chat that starts mid-job preempts it (the job goes back to the queue
untouched, not counted as a failure). A job that fails is retried up to `max_attempts` times, then
kept as failed with its error. `grade_backlog` is the same loop run to the end, for the CLI.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable

from sqlalchemy.exc import IntegrityError

from feedback.grading.grader import GRADER_VERSION, Grader, GradeResult
from feedback.grading.references import ReferenceFinder
from store.calibrations import CalibrationStore
from store.grading import GradingStore
from store.restated import model_words
from store.tables import Grade

log = logging.getLogger(__name__)


def to_row(exchange_id: int, result: GradeResult, judge_model_id: str) -> Grade:
    s = result.signals
    return Grade(
        exchange_id=exchange_id,
        grader_version=GRADER_VERSION,
        judge_model_id=judge_model_id,
        judge_score=s.judge,
        judge_reason=result.judge_reason,
        grounding=s.grounding,
        mean_logprob=s.mean_logprob,
        min_logprob=s.min_logprob,
        consistency=s.consistency,
        agreement=s.agreement,
        reference=result.reference.to_json() if result.reference else None,
        calibration_id=result.calibration_id,
        injection=result.injection,
        score=result.score,
        flagged=result.flagged,
        reason=result.reason,
        seconds={k: round(v, 4) for k, v in result.seconds.items()},
    )


class GradingWorker:
    def __init__(
        self,
        grader: Grader,
        grading: GradingStore,
        chat_idle: threading.Event | None = None,
        max_attempts: int | None = None,
        on_graded: Callable[[int], None] | None = None,
        quiet_for: Callable[[], float] = lambda: math.inf,
        grace: float = 0.5,
        references: ReferenceFinder | None = None,
        calibrations: CalibrationStore | None = None,
    ):
        self.grader = grader
        # Corrections, approvals and document passages each answer is graded against.
        self.references = references
        # The adopted calibration, read before each job: a new fit applies to the next grade.
        self.calibrations = calibrations
        self.grading = grading
        self.chat_idle = chat_idle or threading.Event()
        if chat_idle is None:
            self.chat_idle.set()
        # None: the grader's configuration says (GraderConfig.max_attempts)
        self.max_attempts = max_attempts or grader.config.max_attempts
        self.on_graded = on_graded
        # Chats come in bursts (and API clients send back to back): a grade started the moment
        # one answer ends would make the next one wait for the judge's prompt evaluation.
        self.quiet_for = quiet_for
        self.grace = grace
        self._preempt = threading.Event()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # called by the chat service
    def preempt(self) -> None:
        self._preempt.set()

    def wake(self) -> None:
        self._wake.set()

    # the loop
    def start(self) -> None:
        self.grading.requeue_interrupted()
        self._thread = threading.Thread(target=self._loop, name="grader", daemon=True)
        self._thread.start()
        self.wake()

    def stop(self, timeout: float = 30) -> None:
        self._stop.set()
        self._preempt.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(timeout=5)
            self._wake.clear()
            while not self._stop.is_set():
                self.chat_idle.wait()
                quiet = self.quiet_for()
                if quiet < self.grace:
                    time.sleep(self.grace - quiet)
                    continue
                try:
                    if self._stop.is_set() or not self.run_once():
                        break
                except Exception:  # a store hiccup never ends grading for the app's lifetime
                    log.exception("grading a job failed; the worker goes on")
                    time.sleep(1)

    def run_once(self) -> bool:
        """Grade the newest pending job; False when there was none."""
        self._preempt.clear()
        job = self.grading.claim()
        if job is None:
            return False
        try:
            question, answer, history = self.grading.exchange_context(job.exchange_id)
            answer = model_words(answer)  # the model's own words are what is graded
            refs = (
                self.references.for_exchange(job.exchange_id, question)
                if self.references is not None
                else []
            )
            if self.calibrations is not None:
                self.grader.calibration = self.calibrations.current()
            with self.grader.interruptible(self._preempt):
                result = self.grader.grade(
                    question, answer, cancel=self._preempt, history=history, references=refs
                )
        except InterruptedError:
            self.grading.release(job.id)
            return True
        except Exception as exc:  # stored as a failure and retried, never lost
            self.grading.fail(job.id, f"{type(exc).__name__}: {exc}", self.max_attempts)
            return True
        try:
            self.grading.complete(
                job.id, to_row(job.exchange_id, result, self.grader.judge_model.model_id)
            )
        except IntegrityError:  # the conversation was deleted while it was being graded
            log.info("exchange %s was deleted during grading; grade dropped", job.exchange_id)
            return True
        if self.on_graded:
            try:
                self.on_graded(job.exchange_id)
            except Exception:  # curating is retried by `autodidact pool --rebuild`
                log.exception("after grading exchange %s", job.exchange_id)
        return True


def grade_backlog(worker: GradingWorker, progress: Callable[[int, int], None] | None = None) -> int:
    """Grade every pending job now; returns how many jobs were processed."""
    worker.grading.requeue_interrupted()
    total = worker.grading.counts().get("pending", 0)
    done = 0
    while worker.run_once():
        done += 1
        if progress:
            progress(done, max(total, done))
    return done
