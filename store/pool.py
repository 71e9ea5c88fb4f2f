"""Reads and writes of the training pool's rows: owns every query over pool entries.

Gathers what the curator needs to judge exchanges (in bulk, so a rebuild of 100,000 exchanges is
a few hundred queries, not a few hundred thousand), stores the verdicts, and serves the export.
The rules themselves live in feedback/pool/rules.py, the vectors in store/vectors.py. Dashboard
figures are store/dashboard.py's.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func
from sqlmodel import Session, select

from store.base import Repository, chunks, newest
from store.tables import (
    Conversation,
    Correction,
    Exchange,
    Forgotten,
    Grade,
    Message,
    PoolEntry,
    Rating,
    Review,
    utcnow,
)

CONTEXT_TURNS = 3  # earlier turns kept with an exchange in the pool


def aware(t: datetime) -> datetime:
    """SQLite hands timestamps back without their zone; they are stored in UTC."""
    return t if t.tzinfo else t.replace(tzinfo=UTC)


@dataclass
class Facts:
    """Everything stored about one exchange that bears on its place in the pool."""

    exchange: Exchange
    user_id: int
    question: str
    answer: str
    context: list[dict]
    rating: Rating | None
    correction: str | None  # the newest, by the user or a reviewer
    review: Review | None
    grade: Grade | None


def turns_before(s: Session, exchanges: list[Exchange]) -> dict[int, list[dict]]:
    """The turns shown before each exchange (user messages and the newest answer to
    each), for follow-up questions. Two queries per chunk, whatever its size."""
    conv_ids = {e.conversation_id for e in exchanges}
    messages: dict[int, list[Message]] = {}
    for m in s.exec(
        select(Message).where(Message.conversation_id.in_(conv_ids)).order_by(Message.id)
    ):
        messages.setdefault(m.conversation_id, []).append(m)
    shown: dict[int, int] = {}  # user message id -> the answer shown for it
    written: set[int] = set()  # every answer an exchange wrote, shown or replaced
    for user_msg, answer in s.exec(
        select(Exchange.user_message_id, Exchange.assistant_message_id)
        .where(Exchange.conversation_id.in_(conv_ids))
        .order_by(Exchange.id)
    ):
        if answer is not None:
            shown[user_msg] = answer
            written.add(answer)
    answers = set(shown.values())
    out: dict[int, list[dict]] = {}
    for e in exchanges:
        # An answer no exchange wrote is one of the turns an API client brought along
        # (ConversationStore.turns): the model saw it, so it stays in the context.
        turns = [
            {"role": m.role, "content": m.content}
            for m in messages.get(e.conversation_id, [])
            if m.id < e.user_message_id
            and (m.role == "user" or m.id in answers or m.id not in written)
        ]
        if turns:
            out[e.id] = turns[-CONTEXT_TURNS * 2 :]
    return out


class PoolStore(Repository):
    # what the curator judges
    def facts(self, exchange_ids: list[int]) -> list[Facts]:
        """Facts for the given exchanges that have a stored answer, in id order."""
        out: list[Facts] = []
        with self.session() as s:
            for ids in chunks(sorted(set(exchange_ids))):
                exchanges = list(
                    s.exec(
                        select(Exchange).where(
                            Exchange.id.in_(ids), Exchange.assistant_message_id.is_not(None)
                        )
                    )
                )
                if not exchanges:
                    continue
                ids = [e.id for e in exchanges]
                msg_ids = {e.user_message_id for e in exchanges}
                msg_ids |= {e.assistant_message_id for e in exchanges}
                texts = dict(
                    s.exec(select(Message.id, Message.content).where(Message.id.in_(msg_ids))).all()
                )
                conv_ids = {e.conversation_id for e in exchanges}
                owners = dict(
                    s.exec(
                        select(Conversation.id, Conversation.user_id).where(
                            Conversation.id.in_(conv_ids)
                        )
                    ).all()
                )
                ratings = newest(s, Rating, ids)
                corrections = newest(s, Correction, ids)
                reviews = newest(s, Review, ids)
                grades = newest(s, Grade, ids)
                contexts = turns_before(s, exchanges)
                for e in exchanges:
                    review = reviews.get(e.id)
                    correction = corrections.get(e.id)
                    # A reviewer's correction and a user's: the later one stands.
                    text = correction.content if correction else None
                    if (
                        review
                        and review.correction
                        and (not correction or review.created_at >= correction.created_at)
                    ):
                        text = review.correction
                    out.append(
                        Facts(
                            exchange=e,
                            user_id=owners[e.conversation_id],
                            question=texts[e.user_message_id],
                            answer=texts[e.assistant_message_id],
                            context=contexts.get(e.id, []),
                            rating=ratings.get(e.id),
                            correction=text,
                            review=review,
                            grade=grades.get(e.id),
                        )
                    )
        return out

    def regeneration_relatives(self, exchange_ids: list[int]) -> set[int]:
        """The exchanges these were regenerated from, and those regenerated from these: a
        rating on one makes a preference pair with the other, so both need pool entries."""
        out: set[int] = set()
        with self.session() as s:
            for ids in chunks(sorted(set(exchange_ids))):
                out |= {
                    i
                    for i in s.exec(
                        select(Exchange.regenerated_from_id).where(Exchange.id.in_(ids))
                    )
                    if i is not None
                }
                out |= set(s.exec(select(Exchange.id).where(Exchange.regenerated_from_id.in_(ids))))
        return out - set(exchange_ids)

    def answered_exchange_ids(self, after: int = 0) -> list[int]:
        with self.session() as s:
            return list(
                s.exec(
                    select(Exchange.id)
                    .where(Exchange.id > after, Exchange.assistant_message_id.is_not(None))
                    .order_by(Exchange.id)
                )
            )

    # entries
    def entries(self, exchange_ids: list[int]) -> dict[int, PoolEntry]:
        out = {}
        with self.session() as s:
            for ids in chunks(sorted(set(exchange_ids))):
                for entry in s.exec(select(PoolEntry).where(PoolEntry.exchange_id.in_(ids))):
                    out[entry.exchange_id] = entry
        return out

    def vouched(self, exchange_ids: list[int]) -> set[int]:
        """The exchanges a reviewer vouched for: their newest review dismissed the flag (the
        answer is fine) or wrote the correct answer. Only these are shared between users; a
        user's own thumbs up or correction approves an answer for themselves, not for others."""
        newest: dict[int, Review] = {}
        with self.session() as s:
            for ids in chunks(sorted(set(exchange_ids))):
                for review in s.exec(select(Review).where(Review.exchange_id.in_(ids))):
                    if (
                        review.exchange_id not in newest
                        or review.id > newest[review.exchange_id].id
                    ):
                        newest[review.exchange_id] = review
        return {i for i, r in newest.items() if r.decision in ("dismiss", "correct")}

    def entry(self, exchange_id: int) -> PoolEntry | None:
        return self.entries([exchange_id]).get(exchange_id)

    def save(self, entries: list[PoolEntry]) -> None:
        """Insert or replace the entries, in one transaction."""
        if not entries:
            return
        with self.session() as s:
            existing = {
                e.exchange_id: e
                for ids in chunks([e.exchange_id for e in entries])
                for e in s.exec(select(PoolEntry).where(PoolEntry.exchange_id.in_(ids)))
            }
            for entry in entries:
                old = existing.get(entry.exchange_id)
                if old is not None:
                    for name in PoolEntry.model_fields:
                        if name != "id":
                            setattr(old, name, getattr(entry, name))
                    old.updated_at = utcnow()
                    s.add(old)
                else:
                    s.add(entry)
            s.commit()

    def train_counts(self) -> dict[int, int]:
        """Entries with status `train`, per user."""
        with self.session() as s:
            rows = s.exec(
                select(PoolEntry.user_id, func.count())
                .where(PoolEntry.status == "train")
                .group_by(PoolEntry.user_id)
            )
            return dict(rows.all())

    def corrected_at(self, exchange_ids: list[int]) -> dict[int, datetime]:
        """When each exchange's newest correction was written (exchanges without one: absent)."""
        out: dict[int, datetime] = {}
        with self.session() as s:
            for ids in chunks(sorted(set(exchange_ids))):
                rows = s.exec(
                    select(Correction.exchange_id, func.max(Correction.created_at))
                    .where(Correction.exchange_id.in_(ids))
                    .group_by(Correction.exchange_id)
                )
                out.update({i: aware(at) for i, at in rows.all()})
        return out

    def taught_version(self, sources: tuple[str, ...]) -> tuple:
        """What changes whenever a `train` entry of these sources comes, goes or changes: the
        memory's keyword index is rebuilt when it does (one indexed query)."""
        with self.session() as s:
            return tuple(
                s.exec(
                    select(
                        func.count(),
                        func.max(PoolEntry.updated_at),
                        func.coalesce(func.sum(PoolEntry.exchange_id), 0),
                    ).where(PoolEntry.status == "train", PoolEntry.source.in_(sources))
                ).one()
            )

    def taught_texts(self, sources: tuple[str, ...]) -> list[tuple[int, str]]:
        """(exchange id, question and answer) of every `train` entry of these sources."""
        with self.session() as s:
            rows = s.exec(
                select(PoolEntry.exchange_id, PoolEntry.prompt, PoolEntry.completion).where(
                    PoolEntry.status == "train", PoolEntry.source.in_(sources)
                )
            )
            return [(i, f"{p}\n{c}") for i, p, c in rows.all()]

    def duplicates_of(self, exchange_ids: list[int]) -> list[int]:
        with self.session() as s:
            return list(
                s.exec(
                    select(PoolEntry.exchange_id).where(PoolEntry.duplicate_of.in_(exchange_ids))
                )
            )

    def counts(self) -> dict[tuple[str, str], int]:
        """Entries per (status, source)."""
        with self.session() as s:
            rows = s.exec(
                select(PoolEntry.status, PoolEntry.source, func.count()).group_by(
                    PoolEntry.status, PoolEntry.source
                )
            )
            return {(status, source): n for status, source, n in rows}

    def _paged(self, where, batch: int) -> Iterator[PoolEntry]:
        """Entries matching `where`, oldest first, read in batches (for export at any size)."""
        last = 0
        while True:
            with self.session() as s:
                rows = list(
                    s.exec(
                        select(PoolEntry)
                        .where(where, PoolEntry.id > last)
                        .order_by(PoolEntry.id)
                        .limit(batch)
                    )
                )
            if not rows:
                return
            yield from rows
            last = rows[-1].id

    def train_entries(self, batch: int = 1000) -> Iterator[PoolEntry]:
        """Every `train` entry, oldest first."""
        return self._paged(PoolEntry.status == "train", batch)

    def rated_entries(self, batch: int = 1000) -> Iterator[PoolEntry]:
        """Entries with a thumbs up or down, for KTO."""
        return self._paged(PoolEntry.rating != 0, batch)

    def preferred_regenerations(self) -> list[tuple[PoolEntry, PoolEntry]]:
        """(chosen, rejected) pairs: a regenerated answer the user rated above the one it
        replaced (thumbs up on the new one, or down on the old one and not down on the new)."""
        with self.session() as s:
            rows = s.exec(
                select(Exchange.id, Exchange.regenerated_from_id).where(
                    Exchange.regenerated_from_id.is_not(None)
                )
            ).all()
        entries = self.entries([i for row in rows for i in row])
        pairs = []
        for new_id, old_id in rows:
            new, old = entries.get(new_id), entries.get(old_id)
            if new is not None and old is not None and new.rating >= 0 and new.rating > old.rating:
                pairs.append((new, old))
        return pairs

    def forgotten_ids(self) -> set[int]:
        """Ids of deleted exchanges. SQLite gives a deleted row's id to the next row when it
        was the highest, so an id that now belongs to an exchange made after the deletion is
        that new exchange's, not forgotten: without this, a correction written right after
        deleting the newest conversation would silently never be trained on."""
        with self.session() as s:
            deleted: dict[int, datetime] = {}
            for ids, at in s.exec(select(Forgotten.exchange_ids, Forgotten.created_at)):
                for i in ids:
                    deleted[i] = max(at, deleted.get(i, at))
            reused = set()
            for ids in chunks(sorted(deleted)):
                for i, made in s.exec(
                    select(Exchange.id, Exchange.created_at).where(Exchange.id.in_(ids))
                ):
                    if aware(made) >= aware(deleted[i]):
                        reused.add(i)
            return set(deleted) - reused

    def superseded(self, limit: int = 50) -> list[PoolEntry]:
        """The newest corrections a newer one replaced, for the Review tab."""
        with self.session() as s:
            return list(
                s.exec(
                    select(PoolEntry)
                    .where(PoolEntry.status == "superseded")
                    .order_by(PoolEntry.updated_at.desc())
                    .limit(limit)
                )
            )

    def newest_exchange_at(self) -> datetime | None:
        with self.session() as s:
            return s.exec(select(func.max(PoolEntry.exchange_at))).one()
