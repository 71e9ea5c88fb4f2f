"""Grading one exchange: measure every signal, guard against injections, combine, explain.

Owns the order of the work and the guarantees: an empty or label-only answer scores at the floor
without asking the model; an answer (or question) that addresses the grader is graded twice, as
given and with those lines removed, and keeps the lower score, so an injection can never raise a
grade; every signal's cost in seconds is recorded. Storage and scheduling are feedback/grading/worker.py's.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace

from assistant.llm.base import ChatModel, ModelError
from feedback.grading.calibration import score as calibrated
from feedback.grading.config import GraderConfig
from feedback.grading.judge import JudgeError, judge, recent_turns
from feedback.grading.references import Reference
from feedback.grading.sanitize import injection_lines, is_contentless, without_injections
from feedback.grading.scoring import (
    Signals,
    explain,
    reference_note,
    should_flag,
)
from feedback.grading.signals import consistency, logprob_stats, resample, support

log = logging.getLogger(__name__)

# grader-2: references (corrections, approvals, documents), the agreement signal, and the
# conversation shown to the judge.
GRADER_VERSION = "grader-2"


@dataclass(frozen=True)
class GradeResult:
    signals: Signals
    judge_reason: str | None
    score: float
    flagged: bool
    reason: str
    injection: bool = False
    seconds: dict[str, float] = field(default_factory=dict)
    reference: Reference | None = None  # the evidence the reason names
    calibration_id: int | None = None  # the fitted weights that combined the signals


class Grader:
    def __init__(
        self,
        judge_model: ChatModel,
        answer_model: ChatModel | None = None,
        config: GraderConfig | None = None,
    ):
        self.judge_model = judge_model
        # Log-probabilities come from the model that answered: its own uncertainty.
        self.answer_model = answer_model or judge_model
        self.config = config or GraderConfig()
        # The adopted calibration (store.tables.Calibration) the worker hands in before each
        # job; None: the configured weights and threshold.
        self.calibration = None

    @contextmanager
    def interruptible(self, cancel: threading.Event):
        """Inside, the models stop even mid-decode when `cancel` is set (local engines only)."""
        with ExitStack() as stack:
            for model in {id(m): m for m in (self.judge_model, self.answer_model)}.values():
                stack.enter_context(model.interruptible(cancel))
            yield

    def grade(
        self,
        question: str,
        answer: str,
        reference: str | None = None,
        cancel: threading.Event | None = None,
        tag: str | None = None,
        history: list[dict] = (),
        references: list[Reference] = (),
    ) -> GradeResult:
        """Grade `answer` to `question`, after the turns in `history` ({"role", "content"}),
        against `references` (or a plain `reference` text). `tag` fixes the judge's delimiters
        (default: fresh per call); tests use it to compare two answers under identical
        conditions."""
        if is_contentless(answer):
            return self._floor("the answer is empty or says nothing")
        refs = list(references)
        if reference:
            refs.append(Reference("documents", reference, "the reference"))
        context = _Context(
            recent_turns(list(history), self.config.judge_history_chars),
            refs,
            self.config.reference_chars,
        )
        injected = bool(injection_lines(answer) or injection_lines(question))
        result = self._grade_once(question, answer, context, cancel, tag)
        if not injected:
            return result
        clean_answer = without_injections(answer)
        if is_contentless(clean_answer):
            clean = self._floor("the answer only addresses the grader")
        else:
            clean = self._grade_once(
                without_injections(question), clean_answer, context, cancel, tag
            )
        worst = min(result, clean, key=lambda r: r.score)
        seconds = {
            k: result.seconds.get(k, 0) + clean.seconds.get(k, 0)
            for k in result.seconds | clean.seconds
        }
        return replace(
            worst,
            injection=True,
            flagged=True,
            seconds=seconds,
            reason=f"tries to steer the grader; {worst.reason}",
        )

    def _floor(self, why: str) -> GradeResult:
        return GradeResult(Signals(judge=1), None, 0.0, True, why)

    def _grounding(self, question, answer, reference, mean_lp) -> float | None:
        """How much the reference raises the answer's mean log-probability (None if the
        reference and the answer together do not fit the context)."""
        grounded = [
            {
                "role": "system",
                "content": f"{self.config.system_prompt}\nUse this reference:\n{reference}",
            },
            {"role": "user", "content": question},
        ]
        try:
            with_ref, _ = logprob_stats(self.answer_model.token_logprobs(grounded, answer))
        except ModelError:
            return None
        return round(with_ref - mean_lp, 6) if with_ref is not None else None

    def _grade_once(self, question, answer, context: _Context, cancel, tag=None) -> GradeResult:
        cfg = self.config
        reference = context.text
        seconds: dict[str, float] = {}
        t = time.perf_counter()
        try:
            verdict = judge(
                self.judge_model, question, answer, cancel, tag, context.history, reference
            )
            judge_score, judge_reason = verdict.score, verdict.reason
        except JudgeError as exc:  # the other signals still grade it; the reason says so
            log.warning("the judge gave no valid verdict")
            log.debug("%s", exc)  # the judge's output, which may quote the user
            judge_score, judge_reason = None, "the judge gave no valid verdict"
        except ValueError:  # llama.cpp: the prompt does not fit the judge's context
            judge_score, judge_reason = None, "too long for the judge's context"
        seconds["judge"] = time.perf_counter() - t

        system = {"role": "system", "content": cfg.system_prompt}
        prompt = [system, {"role": "user", "content": question}]
        mean_lp = min_lp = grounding = agree = None
        t = time.perf_counter()
        try:
            mean_lp, min_lp = logprob_stats(self.answer_model.token_logprobs(prompt, answer))
            seconds["logprob"] = time.perf_counter() - t
        except ModelError:  # a server-backed model cannot score given text; the rest still counts
            pass
        if reference and mean_lp is not None:
            t = time.perf_counter()
            grounding = self._grounding(question, answer, reference, mean_lp)
            seconds["grounding"] = time.perf_counter() - t
        if cfg.consistency_samples > 0:
            t = time.perf_counter()
            samples = resample(
                self.answer_model,
                prompt,
                cfg.consistency_samples,
                cfg.consistency_temperature,
                cfg.max_tokens,
                cancel,
            )
            agree = consistency(answer, samples)
            seconds["consistency"] = time.perf_counter() - t

        agreement, best = context.agreement(answer)
        signals = Signals(judge_score, mean_lp, min_lp, agree, grounding, agreement)
        cal = self.calibration
        score = calibrated(signals, cfg.weights, cal.weights if cal else None)
        flagged = should_flag(score, cal.threshold if cal else cfg.threshold)
        reason = explain(signals, judge_reason, flagged)
        if best is not None:
            reason = f"{reference_note(agreement, best.label, best.text, best.kind)}; {reason}"
        return GradeResult(
            signals,
            judge_reason,
            score,
            flagged,
            reason,
            seconds=seconds,
            reference=best,
            calibration_id=cal.id if cal else None,
        )


@dataclass(frozen=True)
class _Context:
    """What the judge reads besides the question and the answer."""

    history: str
    references: list[Reference]

    limit: int = 3000  # characters of reference text the judge and grounding read

    @property
    def text(self) -> str | None:
        """The references as the judge and the grounding pass read them: a document can hold
        lines addressing the grader too, and they are left out like an answer's."""
        joined = "\n\n".join(r.text for r in self.references)[: self.limit]
        return without_injections(joined) if injection_lines(joined) else joined or None

    def agreement(self, answer: str) -> tuple[float | None, Reference | None]:
        """The answer's agreement with the reference it agrees with most, and that reference.
        What a person taught outranks documents: with a correction or an approval at hand,
        passages cannot outvote it."""
        human = [r for r in self.references if r.kind != "documents"]
        best, best_ref = None, None
        for ref in human or self.references:
            value = support(answer, ref.text)
            if value is not None and (best is None or value > best):
                best, best_ref = value, ref
        if best_ref is None and self.references:
            best_ref = (human or self.references)[0]
        return best, best_ref
