"""What every repository shares: the engine, a session per transaction, and chunked id queries.

Owns the one `session()` (objects stay readable after commit, so callers get plain rows back)
and the helpers that keep bulk queries within SQLite's variable limit. The tables are
store/tables.py's; each aggregate's queries live in its own repository module.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import Engine, func
from sqlmodel import Session, select

CHUNK = 500  # ids per IN (...) query: well under SQLite's variable limit


def chunks(ids: list[int], size: int = CHUNK) -> Iterator[list[int]]:
    """
    >>> [len(c) for c in chunks(list(range(1200)))]
    [500, 500, 200]
    """
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def newest(session: Session, table, ids: list[int]) -> dict[int, Any]:
    """The newest row of `table` per exchange id."""
    latest = (
        select(func.max(table.id)).where(table.exchange_id.in_(ids)).group_by(table.exchange_id)
    )
    return {row.exchange_id: row for row in session.exec(select(table).where(table.id.in_(latest)))}


class Repository:
    """Base of the repositories: one engine, one transaction per public method."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)
