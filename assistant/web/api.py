"""The stable HTTP API: what programs (gradio_client, any HTTP caller) may rely on.

Owns the endpoint signatures and their error messages; each is a thin call into the chat
service, on behalf of the caller's account (an API token: `autodidact user token NAME`, sent as
`Authorization: Bearer ...`). Declared with `gr.api` inside the Blocks that
assistant/web/page.py builds.
"""

from __future__ import annotations

from collections.abc import Iterator

import gradio as gr

from assistant.chat import ChatRefused, ChatService
from assistant.web.common import MODEL
from assistant.web.gate import Guard
from store.conversations import NotFound


class Api:
    """The endpoints, each a thin call into the chat service."""

    def __init__(self, chat: ChatService, guard: Guard):
        self.chat, self.guard = chat, guard

    def chat_endpoint(
        self, message: str, conversation_id: str = "", request: gr.Request = None
    ) -> Iterator[tuple[str, str]]:
        """Send `message` to a conversation (empty id: a new one). Streams (answer so far,
        conversation id); raises an error with a readable message if the message is refused."""
        account = self.guard.account(request)
        try:
            conv = int(conversation_id) if str(conversation_id or "").strip() else None
        except ValueError as exc:
            raise gr.Error(f"not a conversation id: {conversation_id!r}") from exc
        try:
            stream = self.chat.send(conv, message, account)
        except (ChatRefused, NotFound) as exc:
            raise gr.Error(str(exc)) from exc
        for reply in stream:
            if reply.text or reply.done:
                yield reply.text, str(reply.conversation_id)
            if reply.status == "failed" and reply.error.startswith("the answer could not"):
                raise gr.Error(f"{reply.error}; it was: {reply.text[:2000]}")
            if reply.status == "failed":
                raise gr.Error(f"the model failed: {reply.error}")

    def history_endpoint(self, conversation_id: str, request: gr.Request = None) -> list[dict]:
        """Every turn of a conversation: user message, shown answer, its exchange id and status."""
        account = self.guard.account(request)
        try:
            conv = self.chat.conversation(int(conversation_id), account)
        except (TypeError, ValueError) as exc:
            raise gr.Error(f"not a conversation id: {conversation_id!r}") from exc
        except NotFound as exc:  # an empty list would look like an empty conversation
            raise gr.Error(str(exc)) from exc
        turns = self.chat.turns(conv.id, account)
        return [
            {
                "user": t.user,
                "assistant": t.assistant,
                "exchange_id": t.exchange_id,
                "status": t.status,
            }
            for t in turns
        ]

    def conversations_endpoint(self, request: gr.Request = None) -> list[dict]:
        """Your conversations, newest first: id and title."""
        account = self.guard.account(request)
        return [{"id": c.id, "title": c.title} for c in self.chat.conversations(account)]

    def rate_endpoint(
        self,
        exchange_id: int,
        value: int,
        reasons: list[str] | None = None,
        comment: str = "",
        request: gr.Request = None,
    ) -> dict:
        """Rate an answer: +1 (thumbs up), -1 (thumbs down) or 0 (take the rating back). A
        thumbs down may name reasons (wrong facts, didn't follow instructions, too long,
        unsafe, other) and a comment."""
        account = self.guard.account(request)
        try:
            rating = self.chat.rate(
                int(exchange_id), int(value), reasons or [], comment or None, account
            )
        except (ValueError, TypeError, NotFound) as exc:
            raise gr.Error(str(exc)) from exc
        return {
            "exchange_id": rating.exchange_id,
            "value": rating.value,
            "reasons": rating.reasons,
            "comment": rating.comment,
        }

    def correct_endpoint(self, exchange_id: int, answer: str, request: gr.Request = None) -> dict:
        """Store a better answer for an exchange, beside the model's own."""
        account = self.guard.account(request)
        try:
            correction = self.chat.correct(int(exchange_id), answer, account)
        except (ValueError, TypeError, NotFound) as exc:
            raise gr.Error(str(exc)) from exc
        return {"exchange_id": correction.exchange_id, "correction_id": correction.id}


def add_api(chat: ChatService, guard: Guard) -> None:
    """The stable HTTP API, for gradio_client and any HTTP caller."""
    api = Api(chat, guard)
    gr.api(api.chat_endpoint, api_name="chat", **MODEL)
    gr.api(api.history_endpoint, api_name="history")
    gr.api(api.conversations_endpoint, api_name="conversations")
    gr.api(api.rate_endpoint, api_name="rate")
    gr.api(api.correct_endpoint, api_name="correct")
