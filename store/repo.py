"""Reads and writes of conversation rows: owns every query the app makes against the tables.

Each public method is one transaction, so a crash between two calls leaves whole rows only. The
chat flow writes in a fixed order that never loses a turn: the user's message first (before the
model runs), then an exchange in status `generating`, then the answer and the final status in one
transaction. Nothing here knows about models or the UI.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, delete, func, update
from sqlmodel import Session, select

from store.models import (
    Conversation,
    Exchange,
    Grade,
    GradingJob,
    Message,
    Rating,
    Review,
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


class Store:
    def __init__(self, engine: Engine):
        self.engine = engine

    def session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

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
        """Delete a conversation and everything in it; returns how many rows of each kind went."""
        with self.session() as s:
            if s.get(Conversation, conversation_id) is None:
                raise NotFound(f"conversation {conversation_id} does not exist")
            exchange_ids = select(Exchange.id).where(Exchange.conversation_id == conversation_id)
            for table in (Grade, GradingJob, Review):
                s.exec(delete(table).where(table.exchange_id.in_(exchange_ids)))
            counts = {
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
            return counts

    # the chat flow
    def start_conversation(self, user_id: int, title: str, content: str) -> Message:
        """A new conversation and its first user message, in one transaction."""
        with self.session() as s:
            conv = Conversation(user_id=user_id, title=title)
            s.add(conv)
            s.flush()
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
    ) -> Exchange:
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
            )
            s.add(ex)
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
        its grading job when asked, so no answer can be stored without being queued."""
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

    def exchange(self, exchange_id: int) -> Exchange:
        with self.session() as s:
            ex = s.get(Exchange, exchange_id)
            if ex is None:
                raise NotFound(f"exchange {exchange_id} does not exist")
            return ex

    def turns(self, conversation_id: int) -> list[Turn]:
        """The conversation as shown: each user message with its newest answer."""
        with self.session() as s:
            users = s.exec(
                select(Message)
                .where(Message.conversation_id == conversation_id, Message.role == "user")
                .order_by(Message.id)
            ).all()
            newest: dict[int, Exchange] = {}
            for ex in s.exec(
                select(Exchange)
                .where(Exchange.conversation_id == conversation_id)
                .order_by(Exchange.id)
            ):
                newest[ex.user_message_id] = ex
            answer_ids = [
                ex.assistant_message_id for ex in newest.values() if ex.assistant_message_id
            ]
            answers = {
                m.id: m.content for m in s.exec(select(Message).where(Message.id.in_(answer_ids)))
            }
        turns = []
        for msg in users:
            ex = newest.get(msg.id)
            turns.append(
                Turn(
                    user_message_id=msg.id,
                    user=msg.content,
                    exchange_id=ex.id if ex else None,
                    assistant=answers.get(ex.assistant_message_id) if ex else None,
                    status=ex.status if ex else None,
                )
            )
        return turns

    # ratings
    def rate(self, exchange_id: int, user_id: int, value: int) -> Rating:
        if value not in (-1, 0, 1):
            raise ValueError(f"a rating is -1, 0 or +1, not {value!r}")
        with self.session() as s:
            if s.get(Exchange, exchange_id) is None:
                raise NotFound(f"exchange {exchange_id} does not exist")
            rating = Rating(exchange_id=exchange_id, user_id=user_id, value=value)
            s.add(rating)
            s.commit()
            return rating

    def current_rating(self, exchange_id: int) -> int:
        with self.session() as s:
            rating = s.exec(
                select(Rating).where(Rating.exchange_id == exchange_id).order_by(Rating.id.desc())
            ).first()
            return rating.value if rating else 0

    def count(self, model) -> int:
        with self.session() as s:
            return s.exec(select(func.count()).select_from(model)).one()
