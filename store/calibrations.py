"""Queries for calibrating the grader: graded answers with a thumbs, and the fits made from them.

Owns reading the labelled rows (the newest grade and the newest rating of each exchange; a
rating taken back, 0, is no label) and the `calibrations` table, one row per fit, adopted or
not. Fitting is feedback/grading/calibration.py's; nothing here knows what the weights mean.
"""

from __future__ import annotations

from sqlalchemy import func
from sqlmodel import select

from store.base import Repository, chunks, newest
from store.tables import Calibration, Grade, Rating


def newest_ratings():
    return select(func.max(Rating.id)).group_by(Rating.exchange_id)


class CalibrationStore(Repository):
    def labelled(self) -> list[tuple[int, Grade, int]]:
        """(exchange id, its newest grade, its thumbs +1/-1) for every graded exchange whose
        newest rating is a thumbs, oldest exchange first."""
        with self.session() as s:
            # Two plain queries joined here: SQLite plans the join over both "newest" subqueries
            # as a nested loop (see store/dashboard.py's agreement).
            thumbs = dict(
                s.exec(
                    select(Rating.exchange_id, Rating.value).where(
                        Rating.id.in_(newest_ratings()), Rating.value != 0
                    )
                ).all()
            )
            grades = {}
            for ids in chunks(sorted(thumbs)):
                grades |= newest(s, Grade, ids)
        return [(e, grades[e], thumbs[e]) for e in sorted(grades)]

    def save(self, row: Calibration) -> Calibration:
        with self.session() as s:
            s.add(row)
            s.commit()
            return row

    def current(self) -> Calibration | None:
        """The newest adopted calibration: the one the grader uses (None: the configured weights)."""
        with self.session() as s:
            return s.exec(
                select(Calibration).where(Calibration.adopted).order_by(Calibration.id.desc())
            ).first()

    def history(self, limit: int = 20) -> list[Calibration]:
        """Every fit, adopted or not, newest first."""
        with self.session() as s:
            return list(s.exec(select(Calibration).order_by(Calibration.id.desc()).limit(limit)))

    def ratings_since_last(self) -> int:
        """Graded exchanges given a thumbs (not taken back) after the newest calibration row, or
        ever when there is none. An exchange rated twice counts once: it is one new label."""
        with self.session() as s:
            last = s.exec(select(func.max(Calibration.created_at))).one()
            query = select(func.count(func.distinct(Rating.exchange_id))).where(
                Rating.value != 0, Rating.exchange_id.in_(select(Grade.exchange_id))
            )
            if last is not None:
                query = query.where(Rating.created_at > last)
            return s.exec(query).one()
