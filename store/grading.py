"""Queries for self-grading: the job queue, grades, and reviewers' decisions.

The queue lives in the database (not in memory) so a restart loses no work: a job left `running`
by a dead process goes back to `pending` on start-up, and a failing job is retried a bounded
number of times, then stays `failed` with its last error. Nothing here runs a model.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from store.base import Repository
from store.pool import turns_before
from store.tables import Exchange, Grade, GradingJob, Message, Review, utcnow


@dataclass(frozen=True)
class Flagged:
    """A flagged exchange as the Review tab lists it."""

    exchange_id: int
    question: str
    answer: str
    grade: Grade
    decision: str | None
    correction: str | None


class GradingStore(Repository):
    def enqueue(self, exchange_id: int) -> None:
        with self.session() as s:
            s.add(GradingJob(exchange_id=exchange_id))
            try:
                s.commit()
            except IntegrityError:  # already queued: grading is idempotent per exchange
                s.rollback()

    def requeue_interrupted(self) -> int:
        """Jobs a dead process left `running` go back to the queue; returns how many."""
        with self.session() as s:
            n = s.exec(
                update(GradingJob).where(GradingJob.status == "running").values(status="pending")
            ).rowcount
            s.commit()
            return n

    def claim(self) -> GradingJob | None:
        """The newest pending job, marked running (newest first: the chat on screen gets its badge)."""
        with self.session() as s:
            for _ in range(8):
                # On PostgreSQL, app processes sharing the database never claim the same job:
                # the row stays locked until the commit, and the others skip it (SQLite, one
                # writer at a time, renders no FOR UPDATE).
                job = s.exec(
                    select(GradingJob)
                    .where(GradingJob.status == "pending")
                    .order_by(GradingJob.id.desc())
                    .limit(1)
                    .with_for_update(skip_locked=True)
                ).first()
                if job is None:
                    return None
                # Only if it is still there and still pending: a conversation deleted between
                # the two statements takes its job with it (this once killed the grader thread).
                claimed = s.exec(
                    update(GradingJob)
                    .where(GradingJob.id == job.id, GradingJob.status == "pending")
                    .values(status="running", updated_at=utcnow())
                )
                s.commit()
                if claimed.rowcount == 1:
                    job.status = "running"
                    return job
                s.expunge(job)
            return None

    def release(self, job_id: int) -> None:
        """Give a job back untouched (the chat needed the model)."""
        with self.session() as s:
            s.exec(update(GradingJob).where(GradingJob.id == job_id).values(status="pending"))
            s.commit()

    def complete(self, job_id: int, grade: Grade) -> Grade:
        with self.session() as s:
            s.add(grade)
            s.exec(
                update(GradingJob)
                .where(GradingJob.id == job_id)
                .values(status="done", updated_at=utcnow())
            )
            s.commit()
            return grade

    def fail(self, job_id: int, error: str, max_attempts: int) -> GradingJob:
        with self.session() as s:
            job = s.get(GradingJob, job_id)
            job.attempts += 1
            job.last_error = error[:2000]
            job.status = "failed" if job.attempts >= max_attempts else "pending"
            job.updated_at = utcnow()
            s.add(job)
            s.commit()
            return job

    def exchange_text(self, exchange_id: int) -> tuple[str, str]:
        """The question and the answer of an exchange, as stored."""
        with self.session() as s:
            ex = s.get(Exchange, exchange_id)
            if ex is None or ex.assistant_message_id is None:
                raise LookupError(f"exchange {exchange_id} has no stored answer")
            return (
                s.get(Message, ex.user_message_id).content,
                s.get(Message, ex.assistant_message_id).content,
            )

    def exchange_context(self, exchange_id: int) -> tuple[str, str, list[dict]]:
        """The question, the answer and the turns shown before them ({"role", "content"})."""
        question, answer = self.exchange_text(exchange_id)
        with self.session() as s:
            ex = s.get(Exchange, exchange_id)
            return question, answer, turns_before(s, [ex]).get(exchange_id, [])

    def job(self, exchange_id: int) -> GradingJob | None:
        with self.session() as s:
            return s.exec(select(GradingJob).where(GradingJob.exchange_id == exchange_id)).first()

    def counts(self) -> dict[str, int]:
        with self.session() as s:
            rows = s.exec(select(GradingJob.status, func.count()).group_by(GradingJob.status))
            return dict(rows.all())

    def grade(self, exchange_id: int) -> Grade | None:
        with self.session() as s:
            return s.exec(
                select(Grade).where(Grade.exchange_id == exchange_id).order_by(Grade.id.desc())
            ).first()

    def grades(self, exchange_ids: list[int]) -> dict[int, Grade]:
        with self.session() as s:
            rows = s.exec(
                select(Grade).where(Grade.exchange_id.in_(exchange_ids)).order_by(Grade.id)
            )
            return {g.exchange_id: g for g in rows}

    def review(
        self, exchange_id: int, decision: str, reviewer: str, correction: str | None = None
    ) -> Review:
        if decision not in ("confirm", "dismiss", "correct"):
            raise ValueError(f"a review decision is confirm, dismiss or correct, not {decision!r}")
        if decision == "correct" and not (correction or "").strip():
            raise ValueError("a correction needs the correct answer")
        with self.session() as s:
            if s.get(Exchange, exchange_id) is None:
                raise LookupError(f"exchange {exchange_id} does not exist")
            row = Review(
                exchange_id=exchange_id,
                decision=decision,
                correction=correction if decision == "correct" else None,
                reviewer=reviewer,
            )
            s.add(row)
            s.commit()
            return row

    def reviews(self, exchange_id: int) -> list[Review]:
        with self.session() as s:
            return list(
                s.exec(select(Review).where(Review.exchange_id == exchange_id).order_by(Review.id))
            )

    def flagged(self, limit: int = 200) -> list[Flagged]:
        """Flagged exchanges, newest first, with their question, answer and latest review."""
        with self.session() as s:
            grades = s.exec(
                select(Grade)
                .where(Grade.flagged)
                .order_by(Grade.created_at.desc(), Grade.id.desc())
                .limit(limit)
            ).all()
            out = []
            for g in grades:
                ex = s.get(Exchange, g.exchange_id)
                if ex is None:
                    continue
                question = s.get(Message, ex.user_message_id)
                answer = (
                    s.get(Message, ex.assistant_message_id) if ex.assistant_message_id else None
                )
                last = s.exec(
                    select(Review).where(Review.exchange_id == ex.id).order_by(Review.id.desc())
                ).first()
                out.append(
                    Flagged(
                        exchange_id=ex.id,
                        question=question.content if question else "",
                        answer=answer.content if answer else "",
                        grade=g,
                        decision=last.decision if last else None,
                        correction=last.correction if last else None,
                    )
                )
            return out
