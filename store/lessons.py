"""Reads and writes of the lessons the model writes from what people taught (store.tables.Lesson).

Owns every query over the `lessons` table: what was written for which parent, withdrawing a
parent's lessons, the kept ones a refresh trains on, the rejected ones the Review tab shows and
the counts `autodidact pool` prints. Writing and grading lessons is feedback/synthesis's; a
deleted conversation's lessons go with it (store/conversations.py).
"""

from __future__ import annotations

import hashlib

from sqlalchemy import delete, func, update
from sqlmodel import select

from store.base import Repository, chunks
from store.tables import Exchange, Lesson

LIVE = ("kept", "rejected", "duplicate")  # every status but `withdrawn`


def parent_key(question: str, answer: str) -> str:
    """What a parent's lessons were written from: a corrected parent gets new ones.

    >>> parent_key("q", "a") == parent_key("q", "a"), parent_key("q", "a") == parent_key("q", "b")
    (True, False)
    """
    return hashlib.sha256(f"{question}\x00{answer}".encode()).hexdigest()[:16]


def written_from(lesson, parent) -> bool:
    """Whether `lesson` was written from `parent`'s current question and answer."""
    return lesson.parent_key == parent_key(parent.prompt, parent.completion)


class LessonStore(Repository):
    def add(self, lessons: list[Lesson]) -> int:
        """Store lessons whose parent exchange still exists, in one transaction: a conversation
        deleted while its lessons were being written takes them with it. Returns how many."""
        if not lessons:
            return 0
        with self.session() as s:
            ids = sorted({x.parent_exchange_id for x in lessons})
            alive = set(s.exec(select(Exchange.id).where(Exchange.id.in_(ids))))
            kept = [x for x in lessons if x.parent_exchange_id in alive]
            s.add_all(kept)
            s.commit()
        return len(kept)

    def delete(self, parent_ids: list[int]) -> int:
        """Delete every lesson of these parents (their conversation was deleted)."""
        n = 0
        with self.session() as s:
            for ids in chunks(sorted(set(parent_ids))):
                n += s.exec(delete(Lesson).where(Lesson.parent_exchange_id.in_(ids))).rowcount
            s.commit()
        return n

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
