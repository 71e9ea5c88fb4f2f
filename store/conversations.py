"""The conversations repository: users, conversations, messages, exchanges, ratings, corrections.

Each public method is one transaction, so a crash between two calls leaves whole rows only. The
chat flow writes in a fixed order that never loses a turn: the user's message first (before the
model runs), then an exchange in status `generating`, then the answer and the final status in one
transaction. When that last write fails (a full disk, a locked database), a one-row update marks the
exchange failed with the reason in plain words; should even that fail, the next start-up's
`recover_interrupted` does. Deleting a conversation empties SQLite's write-ahead log afterwards
(store/db.py `checkpoint`), so no copy of it stays on disk. Nothing here knows about models or the
UI.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, update
from sqlmodel import select

from store.base import Repository
from store.db import checkpoint
from store.tables import (
    Conversation,
    Correction,
    DocumentChunk,
    Exchange,
    ExchangeSource,
    Forgotten,
    Grade,
    GradingJob,
    Heldout,
    Lesson,
    Message,
    PoolEntry,
    Rating,
    Review,
    TrainedOn,
    User,
    utcnow,
)


@dataclass(frozen=True)
class Turn:
    """A user message and the answer the conversation currently shows for it (the newest one)."""

    user_message_id: int
    user: str
    exchange_id: int | None
    assistant: str | None
    status: str | None


class NotFound(LookupError):
    pass


log = logging.getLogger(__name__)
NOT_SAVED = "the answer could not be saved"


class AnswerNotSaved(RuntimeError):
    """Storing an answer failed; the message says why in plain words, never with SQL in it."""


def plain_reason(exc: BaseException, limit: int = 300) -> str:
    """Why a database call failed, for a person: the driver's own words (first line), without
    the SQL statement and parameters SQLAlchemy appends to them.

    >>> from sqlalchemy.exc import OperationalError
    >>> full = Exception("database or disk is full")
    >>> plain_reason(OperationalError("INSERT INTO message (content) VALUES (?)", ("x",), full))
    'database or disk is full'
    >>> plain_reason(RuntimeError("(sqlite3.OperationalError) locked [SQL: UPDATE exchange]"))
    '(sqlite3.OperationalError) locked'
    >>> plain_reason(KeyError())
    'KeyError'
    """
    text = str(getattr(exc, "orig", None) or exc).split("[SQL:", 1)[0].strip()
    first = text.splitlines()[0].strip() if text else ""
    return (first or type(exc).__name__)[:limit]


# The chips a thumbs down offers; "wrong facts" marks a likely hallucination.
RATING_REASONS = ("wrong facts", "didn't follow instructions", "too long", "unsafe", "other")
MAX_COMMENT = 2000


class ConversationStore(Repository):
    # users and conversations
    def user(self, name: str) -> User:
        with self.session() as s:
            found = s.exec(select(User).where(User.name == name)).first()
            if found:
                return found
            user = User(name=name)
            s.add(user)
            s.commit()
            return user

    def create_conversation(self, user_id: int, title: str) -> Conversation:
        with self.session() as s:
            conv = Conversation(user_id=user_id, title=title)
            s.add(conv)
            s.commit()
            return conv

    def conversation(self, conversation_id: int) -> Conversation:
        with self.session() as s:
            conv = s.get(Conversation, conversation_id)
            if conv is None:
                raise NotFound(f"conversation {conversation_id} does not exist")
            return conv

    def conversations(self, user_id: int) -> list[Conversation]:
        with self.session() as s:
            query = select(Conversation).where(Conversation.user_id == user_id)
            return list(
                s.exec(query.order_by(Conversation.updated_at.desc(), Conversation.id.desc()))
            )

    def rename_conversation(self, conversation_id: int, title: str) -> Conversation:
        with self.session() as s:
            conv = s.get(Conversation, conversation_id)
            if conv is None:
                raise NotFound(f"conversation {conversation_id} does not exist")
            conv.title = title
            s.add(conv)
            s.commit()
            return conv

    def delete_conversation(self, conversation_id: int) -> dict[str, int]:
        """Delete a conversation and everything in it, its training pool entries included;
        returns how many rows of each kind went. The exchange ids are kept in `forgotten` so
        that no future training set, nor a rebuilt index, can bring them back."""
        with self.session() as s:
            if s.get(Conversation, conversation_id) is None:
                raise NotFound(f"conversation {conversation_id} does not exist")
            exchange_ids = select(Exchange.id).where(Exchange.conversation_id == conversation_id)
            ids = list(s.exec(exchange_ids))
            if ids:
                s.add(Forgotten(conversation_id=conversation_id, exchange_ids=ids))
            pool = s.exec(
                select(PoolEntry.status, func.count())
                .where(PoolEntry.exchange_id.in_(exchange_ids))
                .group_by(PoolEntry.status)
            ).all()
            for table in (
                Grade,
                GradingJob,
                Review,
                Correction,
                PoolEntry,
                ExchangeSource,
                Heldout,
                TrainedOn,  # else an id SQLite hands out again would count as trained before
            ):
                s.exec(delete(table).where(table.exchange_id.in_(exchange_ids)))
            # The lessons the model wrote from these exchanges go with them.
            s.exec(delete(Lesson).where(Lesson.parent_exchange_id.in_(exchange_ids)))
            counts = {
                "pool_entries": sum(n for _, n in pool),
                "training_examples": sum(n for status, n in pool if status == "train"),
                "ratings": s.exec(
                    delete(Rating).where(Rating.exchange_id.in_(exchange_ids))
                ).rowcount,
                # Regenerations point at older exchanges of the same conversation.
                "exchanges": s.exec(
                    delete(Exchange).where(Exchange.conversation_id == conversation_id)
                ).rowcount,
                "messages": s.exec(
                    delete(Message).where(Message.conversation_id == conversation_id)
                ).rowcount,
            }
            s.exec(delete(Conversation).where(Conversation.id == conversation_id))
            s.commit()
        checkpoint(self.engine)  # the write-ahead log still holds the rows as they were
        return counts

    # the chat flow
    def start_conversation(
        self, user_id: int, title: str, content: str, earlier: list[tuple[str, str]] = ()
    ) -> Message:
        """A new conversation and its first user message, in one transaction. `earlier`:
        turns (user, answer) a client brought from elsewhere (the OpenAI-compatible API), kept
        as plain messages before it: shown and given to the model, but no exchange of this
        server's, so never graded, rated or trained on."""
        with self.session() as s:
            conv = Conversation(user_id=user_id, title=title)
            s.add(conv)
            s.flush()
            for user, answer in earlier:
                s.add(Message(conversation_id=conv.id, role="user", content=user))
                s.add(Message(conversation_id=conv.id, role="assistant", content=answer))
            msg = Message(conversation_id=conv.id, role="user", content=content)
            s.add(msg)
            s.commit()
            return msg

    def add_user_message(self, conversation_id: int, content: str) -> Message:
        with self.session() as s:
            msg = Message(conversation_id=conversation_id, role="user", content=content)
            s.add(msg)
            s.exec(
                update(Conversation)
                .where(Conversation.id == conversation_id)
                .values(updated_at=msg.created_at)
            )
            s.commit()
            return msg

    def start_exchange(
        self,
        conversation_id: int,
        user_message_id: int,
        model_id: str,
        sampling: dict[str, Any],
        adapter_id: str | None = None,
        regenerated_from_id: int | None = None,
        history_dropped: int = 0,
        prompt_tokens: int | None = None,
        retrieved: list[int] | None = None,
        sources: list[tuple[int, int, float]] = (),
    ) -> Exchange:
        """A new exchange, with the document passages (chunk id, number, similarity) its
        prompt holds, in one transaction."""
        with self.session() as s:
            ex = Exchange(
                conversation_id=conversation_id,
                user_message_id=user_message_id,
                model_id=model_id,
                adapter_id=adapter_id,
                sampling=sampling,
                regenerated_from_id=regenerated_from_id,
                history_dropped=history_dropped,
                prompt_tokens=prompt_tokens,
                retrieved=list(retrieved or []),
            )
            s.add(ex)
            s.flush()
            # A passage whose document was removed since the search is not recorded.
            live = set(
                s.exec(
                    select(DocumentChunk.id).where(DocumentChunk.id.in_([c for c, _, _ in sources]))
                )
            )
            s.add_all(
                ExchangeSource(exchange_id=ex.id, chunk_id=c, number=n, similarity=round(sim, 4))
                for c, n, sim in sources
                if c in live
            )
            s.commit()
            return ex

    def finish_exchange(
        self,
        exchange_id: int,
        answer: str,
        status: str,
        error: str | None = None,
        finish_reason: str | None = None,
        prompt_tokens: int | None = None,
        completion_tokens: int | None = None,
        first_token_ms: float | None = None,
        latency_ms: float | None = None,
        enqueue_grading: bool = False,
    ) -> Exchange:
        """Store the answer (possibly partial) and the final status in one transaction, with
        its grading job when asked, so no answer can be stored without being queued.

        Any failure raises AnswerNotSaved with the reason in plain words, after marking the
        exchange failed with it (`_mark_failed`)."""
        try:
            with self.session() as s:
                ex = s.get(Exchange, exchange_id)
                if ex is None:
                    raise NotFound(f"exchange {exchange_id} does not exist")
                msg = Message(conversation_id=ex.conversation_id, role="assistant", content=answer)
                s.add(msg)
                s.flush()
                ex.assistant_message_id = msg.id
                ex.status = status
                ex.error = error
                ex.finish_reason = finish_reason
                if prompt_tokens is not None:
                    ex.prompt_tokens = prompt_tokens
                ex.completion_tokens = completion_tokens
                ex.first_token_ms = first_token_ms
                ex.latency_ms = latency_ms
                ex.finished_at = utcnow()
                s.add(ex)
                if enqueue_grading:
                    s.add(GradingJob(exchange_id=ex.id))
                s.commit()
                return ex
        except Exception as exc:
            reason = f"{NOT_SAVED} ({plain_reason(exc)})"
            self._mark_failed(exchange_id, reason)
            raise AnswerNotSaved(reason) from exc

    def _mark_failed(self, exchange_id: int, reason: str) -> bool:
        """Mark a `generating` exchange failed with `reason`: one small row update in its own
        transaction, which still fits where the answer did not (SQLite rewrites one page or
        two). False if even that failed: the exchange stays `generating` until the next
        start-up's `recover_interrupted` marks it failed."""
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    update(Exchange)
                    .where(Exchange.id == exchange_id, Exchange.status == "generating")
                    .values(status="failed", error=reason, finished_at=utcnow())
                )
            return True
        except Exception as exc:
            log.error("exchange %s stays `generating` until restart: %s", exchange_id, exc)
            return False

    def recover_interrupted(self) -> int:
        """Mark exchanges left `generating` by a process that died as failed; returns how many."""
        with self.session() as s:
            result = s.exec(
                update(Exchange)
                .where(Exchange.status == "generating")
                .values(status="failed", error="interrupted: the app stopped during generation")
            )
            s.commit()
            return result.rowcount

    def owner(self, conversation_id: int) -> int | None:
        """The user id a conversation belongs to (None: there is no such conversation)."""
        with self.session() as s:
            conv = s.get(Conversation, conversation_id)
            return conv.user_id if conv else None

    def exchange_owner(self, exchange_id: int) -> int | None:
        """The user id an exchange's conversation belongs to (None: no such exchange)."""
        with self.session() as s:
            query = (
                select(Conversation.user_id)
                .join(Exchange, Exchange.conversation_id == Conversation.id)
                .where(Exchange.id == exchange_id)
            )
            return s.exec(query).first()

    def exchange(self, exchange_id: int) -> Exchange:
        with self.session() as s:
            ex = s.get(Exchange, exchange_id)
            if ex is None:
                raise NotFound(f"exchange {exchange_id} does not exist")
            return ex

    def turns(self, conversation_id: int) -> list[Turn]:
        """The conversation as shown: each user message with its newest answer."""
        with self.session() as s:
            messages = s.exec(
                select(Message)
                .where(Message.conversation_id == conversation_id)
                .order_by(Message.id)
            ).all()
            users = [m for m in messages if m.role == "user"]
            newest: dict[int, Exchange] = {}
            written: set[int] = set()
            for ex in s.exec(
                select(Exchange)
                .where(Exchange.conversation_id == conversation_id)
                .order_by(Exchange.id)
            ):
                newest[ex.user_message_id] = ex
                written.add(ex.assistant_message_id)
        answers = {m.id: m.content for m in messages if m.role == "assistant"}
        # A client's earlier turns (start_conversation's `earlier`): an assistant message no
        # exchange wrote answers the user message before it.
        brought, last_user = {}, None
        for m in messages:
            if m.role == "user":
                last_user = m.id
            elif m.id not in written and last_user is not None:
                brought.setdefault(last_user, m.content)
        turns = []
        for msg in users:
            ex = newest.get(msg.id)
            turns.append(
                Turn(
                    user_message_id=msg.id,
                    user=msg.content,
                    exchange_id=ex.id if ex else None,
                    assistant=answers.get(ex.assistant_message_id) if ex else brought.get(msg.id),
                    status=ex.status if ex else None,
                )
            )
        return turns

    def exchange_ids(self, conversation_id: int) -> list[int]:
        with self.session() as s:
            query = select(Exchange.id).where(Exchange.conversation_id == conversation_id)
            return list(s.exec(query.order_by(Exchange.id)))

    # ratings and corrections
    def rate(
        self,
        exchange_id: int,
        user_id: int,
        value: int,
        reasons: list[str] | tuple[str, ...] = (),
        comment: str | None = None,
    ) -> Rating:
        """Store a thumbs (+1/-1) or take it back (0). Reasons and a comment go with a thumbs
        down only; the newest row is the rating that counts."""
        if value not in (-1, 0, 1):
            raise ValueError(f"a rating is -1, 0 or +1, not {value!r}")
        unknown = set(reasons) - set(RATING_REASONS)
        if unknown:
            raise ValueError(
                f"unknown reason(s) {sorted(unknown)}; choose from {', '.join(RATING_REASONS)}"
            )
        comment = (comment or "").strip() or None
        if comment and len(comment) > MAX_COMMENT:
            raise ValueError(f"a comment is at most {MAX_COMMENT:,} characters")
        if value != -1 and (reasons or comment):
            raise ValueError("reasons and comments go with a thumbs down")
        with self.session() as s:
            if s.get(Exchange, exchange_id) is None:
                raise NotFound(f"exchange {exchange_id} does not exist")
            rating = Rating(
                exchange_id=exchange_id,
                user_id=user_id,
                value=value,
                reasons=list(dict.fromkeys(reasons)),
                comment=comment,
            )
            s.add(rating)
            s.commit()
            return rating

    def rating(self, exchange_id: int) -> Rating | None:
        with self.session() as s:
            return s.exec(
                select(Rating).where(Rating.exchange_id == exchange_id).order_by(Rating.id.desc())
            ).first()

    def current_rating(self, exchange_id: int) -> int:
        rating = self.rating(exchange_id)
        return rating.value if rating else 0

    def correct(self, exchange_id: int, user_id: int, content: str) -> Correction:
        """Store a better answer beside the model's; the model's answer is never overwritten."""
        if not isinstance(content, str) or not content.strip():
            raise ValueError("a correction cannot be empty")
        with self.session() as s:
            ex = s.get(Exchange, exchange_id)
            if ex is None:
                raise NotFound(f"exchange {exchange_id} does not exist")
            if ex.assistant_message_id is None:
                raise ValueError("only a finished answer can be corrected")
            correction = Correction(exchange_id=exchange_id, user_id=user_id, content=content)
            s.add(correction)
            s.commit()
            return correction

    def correction(self, exchange_id: int) -> Correction | None:
        with self.session() as s:
            return s.exec(
                select(Correction)
                .where(Correction.exchange_id == exchange_id)
                .order_by(Correction.id.desc())
            ).first()

    def answer(self, exchange_id: int) -> str | None:
        with self.session() as s:
            ex = s.get(Exchange, exchange_id)
            if ex is None:
                raise NotFound(f"exchange {exchange_id} does not exist")
            msg = s.get(Message, ex.assistant_message_id) if ex.assistant_message_id else None
            return msg.content if msg else None

    def count(self, model) -> int:
        with self.session() as s:
            return s.exec(select(func.count()).select_from(model)).one()
