"""Running the synthesis stage over the pool: parents in, graded lessons out, resumable.

Owns which parents get lessons (every `train` entry a person wrote or approved whose lessons
are missing or were written from other text), withdrawing the lessons of parents that changed
or left the pool, and the order of the work for one parent: write candidates, check them, grade
the survivors against the parent with the product's grader, keep what passes. Each parent's
lessons are stored as soon as it is done, so a stopped run resumes at the next parent. The rules
are feedback/synthesis/rules.py's, the prompts feedback/synthesis/writer.py's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from assistant.llm.base import ChatModel
from feedback.grading.grader import GRADER_VERSION, Grader
from feedback.grading.references import Reference
from feedback.synthesis.memo import Memo
from feedback.synthesis.rules import (
    SynthesisConfig,
    answer_problem,
    graded_verdict,
    measured_index,
    measured_problem,
    neighbour_problem,
    parent_key,
    question_problem,
    reason_group,
    words,
)
from feedback.synthesis.writer import (
    neighbour_messages,
    restate_messages,
    reword_messages,
    sample,
)
from store.lessons import LessonStore
from store.pool import PoolStore
from store.tables import Lesson, PoolEntry

HUMAN = ("human_written", "human_approved")  # the only parents: never a lesson, never model-only


@dataclass
class Report:
    """What one run of the stage did."""

    parents: int = 0  # eligible parents in the pool
    todo: int = 0  # parents that needed lessons
    done: int = 0
    withdrawn: int = 0
    written: int = 0  # candidates the model wrote
    graded: int = 0
    kept: int = 0
    reasons: dict[str, int] = field(default_factory=dict)  # why the others went
    seconds: float = 0.0
    write_seconds: float = 0.0  # of which writing candidates
    grade_seconds: float = 0.0  # and grading them

    @property
    def pass_rate(self) -> float | None:
        """Kept lessons per written candidate."""
        return round(self.kept / self.written, 4) if self.written else None

    def to_json(self) -> dict:
        return {**self.__dict__, "pass_rate": self.pass_rate}


class Synthesizer:
    def __init__(
        self,
        pool: PoolStore,
        lessons: LessonStore,
        model: ChatModel,
        grader: Grader,
        embed: Callable[[list[str]], np.ndarray],
        config: SynthesisConfig | None = None,
        memo: Memo | None = None,
    ):
        self.pool, self.lessons, self.model, self.grader = pool, lessons, model, grader
        self.embed = embed
        self.config = config or SynthesisConfig()
        self.memo = memo or Memo(None)  # without a file: kept for this process only

    def parents(self) -> dict[int, PoolEntry]:
        """Every entry lessons may be written from: human text in the pool, not deleted."""
        forgotten = self.pool.forgotten_ids()
        return {
            e.exchange_id: e
            for e in self.pool.train_entries()
            if e.source in HUMAN and e.exchange_id not in forgotten
        }

    def plan(self) -> tuple[dict[int, PoolEntry], list[PoolEntry], dict[int, str]]:
        """(eligible parents, those needing lessons, why each stale parent's lessons go)."""
        parents = self.parents()
        written = self.lessons.written()
        stale = {}
        for pid, key in written.items():
            e = parents.get(pid)
            if e is None:
                stale[pid] = "its parent left the training pool (deleted, rejected or replaced)"
            elif parent_key(e.prompt, e.completion) != key:
                stale[pid] = "its parent was corrected again"
        todo = [e for pid, e in parents.items() if pid not in written or pid in stale]
        return parents, todo, stale

    def run(
        self,
        progress: Callable[[int, int, str], None] | None = None,
        dry_run: bool = False,
        limit: int | None = None,
        skip: set[int] = frozenset(),
    ) -> Report:
        """Withdraw stale lessons, then write lessons for each parent that needs them (at most
        `limit` parents; none for those in `skip`, the refresh's held-out split). With
        `dry_run`, only count: nothing is written or withdrawn."""
        t = time.monotonic()
        parents, todo, stale = self.plan()
        todo = [e for e in todo if e.exchange_id not in skip]
        todo = todo[:limit] if limit is not None else todo
        report = Report(parents=len(parents), todo=len(todo))
        if dry_run:
            return report
        forgotten = self.pool.forgotten_ids() if stale else set()
        deleted = [p for p in stale if p in forgotten]
        report.withdrawn += self.lessons.delete(deleted)  # nothing of them is kept
        for reason in set(stale.values()):
            report.withdrawn += self.lessons.withdraw(
                [p for p, r in stale.items() if r == reason and p not in deleted], reason
            )
        for n, parent in enumerate(todo):
            if progress:
                progress(n, len(todo), f"parent {parent.exchange_id}: {parent.prompt[:50]}")
            self.lessons.add(self.lessons_for(parent, report))
            report.done += 1
        if progress:
            progress(len(todo), len(todo), "done")
        report.seconds = round(time.monotonic() - t, 2)
        return report

    def rehearse(
        self,
        prompts: list[str],
        system: str | None,
        sampling: dict,
        progress: Callable[[int, int, str], None] | None = None,
        enough: int | None = None,
    ) -> tuple[list[dict], dict]:
        """The model (as it is served: the caller sets its adapter) answers general prompts;
        the answers the grade does not flag come back as training records, with the figures;
        it stops once it has `enough` of them (the prompts left are counted as `unasked`).
        Rehearsal keeps a refresh practising what the model could already do."""
        t, hits = time.monotonic(), self.memo.hits
        head = [{"role": "system", "content": system}] if system else []
        records, flagged, asked = [], 0, 0
        model = self.memo.over(self.model)  # the base model's answers from before are kept
        for n, prompt in enumerate(prompts):
            if enough is not None and len(records) >= enough:
                break
            asked += 1
            if progress:
                progress(n, len(prompts), f"rehearsal {n + 1}/{len(prompts)}")
            messages = head + [{"role": "user", "content": prompt}]
            answer = "".join(d.text for d in model.stream(messages, sampling)).strip()
            result = self.grader.grade(prompt, answer)
            if result.flagged or not answer:
                flagged += 1
                continue
            records.append({"messages": messages + [{"role": "assistant", "content": answer}]})
        self.memo.save()
        figures = {
            "remembered": self.memo.hits - hits,
            "prompts": len(prompts),
            "unasked": len(prompts) - asked,
            "kept": len(records),
            "flagged": flagged,
            "seconds": round(time.monotonic() - t, 2),
        }
        return records, figures

    def neighbours(
        self,
        parents: list[PoolEntry],
        progress: Callable[[int, int, str], None] | None = None,
        measured: Sequence[str] = (),
        enough: int | None = None,
    ) -> tuple[list[str], dict]:
        """One question like each parent's about another, named subject: the first of at most
        `neighbours` written that the checks pass, no other parent's repeats and none of the
        `measured` questions (the gate's, every taught one) asks; at most `enough` in all; with
        the figures. Answered by the base model they are rehearsal that holds what it says next
        to a fact while the fact is learnt: a taught teacher's name should not become every
        painting's painter."""
        t, c, hits = time.monotonic(), self.config, self.memo.hits
        kept, seen, written, reasons = [], set(), 0, {}
        measured = measured_index(list(measured))  # read once, not per candidate
        model = self.memo.over(self.model)  # what the base model wrote before is kept
        for n, parent in enumerate(parents if c.neighbours else []):
            if enough is not None and len(kept) >= enough:
                break
            if progress:
                progress(n, len(parents), f"a neighbour of {parent.exchange_id}")
            for i in range(c.neighbours):
                tried = replace(c, seed=c.seed + i)
                text = next(iter(sample(model, neighbour_messages(parent.prompt), 1, tried)), "")
                written += 1
                problem = neighbour_problem(text, parent.prompt, parent.completion)
                problem = problem or measured_problem(text, measured)
                if problem is None and words(text) in seen:
                    problem = "the same words as another neighbour"
                key = reason_group(problem) if problem else "kept"
                reasons[key] = reasons.get(key, 0) + 1
                if problem is None:
                    seen.add(words(text))
                    kept.append(text)
                    break
        self.memo.save()
        figures = {"parents": len(parents) if c.neighbours else 0, "written": written,
                   "kept": len(kept), "reasons": reasons, "remembered": self.memo.hits - hits,
                   "seconds": round(time.monotonic() - t, 2)}  # fmt: skip
        return kept, figures

    def lessons_for(self, parent: PoolEntry, report: Report) -> list[Lesson]:
        """Every candidate for one parent, each with its verdict."""
        c, q, a = self.config, parent.prompt, parent.completion
        t = time.monotonic()
        candidates = [
            ("question", text, a, question_problem(text, q, a))
            for text in sample(self.model, reword_messages(q), c.questions, c)
        ] + [
            ("answer", q, text, answer_problem(text, q, a))
            for text in sample(self.model, restate_messages(q, a), c.answers, c)
        ]
        report.written += len(candidates)
        report.write_seconds = round(report.write_seconds + time.monotonic() - t, 2)
        seen = {(words(q), words(a))}
        out = []
        for kind, prompt, completion, problem in candidates:
            lesson = Lesson(
                parent_exchange_id=parent.exchange_id,
                parent_key=parent_key(q, a),
                user_id=parent.user_id,
                kind=kind,
                status="rejected",
                reason=problem or "",
                prompt=prompt,
                completion=completion,
                model_id=self.model.model_id,
                adapter_id=self.model.adapter_id,
            )
            if problem is None and (words(prompt), words(completion)) in seen:
                lesson.status, lesson.reason = "duplicate", "the same words as a kept lesson"
            elif problem is None:
                self._grade(lesson, parent, report)
                if lesson.status == "kept":
                    seen.add((words(prompt), words(completion)))
            key = reason_group(lesson.reason) if lesson.status == "rejected" else lesson.status
            report.reasons[key] = report.reasons.get(key, 0) + 1
            out.append(lesson)
        report.kept += sum(lesson.status == "kept" for lesson in out)
        return out

    def _grade(self, lesson: Lesson, parent: PoolEntry, report: Report) -> None:
        """The product's grader, with the parent's answer as the reference it must agree with;
        a reworded question must also mean what the parent's does."""
        reference = Reference(
            "correction" if parent.source == "human_written" else "approved",
            parent.completion,
            "the answer it was written from",
            exchange_id=parent.exchange_id,
        )
        t = time.monotonic()
        result = self.grader.grade(
            lesson.prompt, lesson.completion, history=parent.context, references=[reference]
        )
        report.graded += 1
        report.grade_seconds = round(report.grade_seconds + time.monotonic() - t, 2)
        s = result.signals
        lesson.score, lesson.agreement, lesson.grounding = result.score, s.agreement, s.grounding
        lesson.judge_score, lesson.grader_version = s.judge, GRADER_VERSION
        if lesson.kind == "question":
            v = self.embed([lesson.prompt, parent.prompt])
            lesson.similarity = round(float(np.dot(v[0], v[1])), 4)
        why = graded_verdict(result.flagged, s.agreement, lesson.similarity, self.config)
        lesson.status, lesson.reason = ("rejected", why) if why else ("kept", result.reason)
