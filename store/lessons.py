"""Reads and writes of the lessons the model writes from what people taught (store.tables.Lesson).

Owns every query over the `lessons` table: what was written for which parent, withdrawing a
parent's lessons, the kept ones a refresh trains on, the rejected ones the Review tab shows and
the counts `autodidact pool` prints. Writing and grading lessons is feedback/synthesis's; a
deleted conversation's lessons go with it (store/conversations.py).
"""

from __future__ import annotations

from sqlalchemy import func, update
from sqlmodel import select

from store.base import Repository, chunks
from store.tables import Lesson

LIVE = ("kept", "rejected", "duplicate")  # every status but `withdrawn`


class LessonStore(Repository):
    def add(self, lessons: list[Lesson]) -> None:
        if not lessons:
            return
        with self.session() as s:
            s.add_all(lessons)
            s.commit()

    def written(self) -> dict[int, str]:
        """The parent key each parent's live lessons were written from."""
        with self.session() as s:
            rows = s.exec(
                select(Lesson.parent_exchange_id, Lesson.parent_key)
                .where(Lesson.status.in_(LIVE))
                .distinct()
            )
            return dict(rows.all())

    def withdraw(self, parent_ids: list[int], reason: str) -> int:
        """Withdraw every live lesson of these parents; returns how many."""
        n = 0
        with self.session() as s:
            for ids in chunks(sorted(set(parent_ids))):
                n += s.exec(
                    update(Lesson)
                    .where(Lesson.parent_exchange_id.in_(ids), Lesson.status.in_(LIVE))
                    .values(status="withdrawn", reason=reason)
                ).rowcount
            s.commit()
        return n

    def kept(self) -> list[Lesson]:
        """Every kept lesson, by parent then id."""
        with self.session() as s:
            return list(
                s.exec(
                    select(Lesson)
                    .where(Lesson.status == "kept")
                    .order_by(Lesson.parent_exchange_id, Lesson.id)
                )
            )

    def of(self, parent_id: int) -> list[Lesson]:
        """All lessons ever written for one parent, oldest first."""
        with self.session() as s:
            return list(
                s.exec(
                    select(Lesson).where(Lesson.parent_exchange_id == parent_id).order_by(Lesson.id)
                )
            )

    def rejected(self, limit: int = 50) -> list[Lesson]:
        """The newest lessons the grade or a check turned away, for the Review tab."""
        with self.session() as s:
            return list(
                s.exec(
                    select(Lesson)
                    .where(Lesson.status == "rejected")
                    .order_by(Lesson.id.desc())
                    .limit(limit)
                )
            )

    def counts(self) -> dict[tuple[str, str], int]:
        """Lessons per (status, kind)."""
        with self.session() as s:
            rows = s.exec(
                select(Lesson.status, Lesson.kind, func.count()).group_by(
                    Lesson.status, Lesson.kind
                )
            )
            return {(status, kind): n for status, kind, n in rows}
