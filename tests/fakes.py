"""A fake chat model for fast unit tests of the chat flow (never the only test of a path)."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager

from assistant.llm.base import Delta, ModelError


class FakeModel:
    """Answers with queued replies word by word; an Exception in the queue is raised mid-answer."""

    model_id = "fake-model"
    adapter_id = None
    supports_adapters = False

    def __init__(self, context_window: int = 4096, delay: float = 0.0):
        self.context_window = context_window
        self.delay = delay
        self.replies: list = []
        self.history: list[list[dict]] = []

    def enqueue(self, *replies) -> None:
        self.replies.extend(replies)

    def count_tokens(self, messages) -> int:
        # One token per word plus template markup, like a real template adds.
        return sum(len(m["content"].split()) + 4 for m in messages)

    def stream(self, messages, sampling, cancel: threading.Event | None = None, json_schema=None):
        self.history.append(messages)
        reply = self.replies.pop(0) if self.replies else "ok"
        error = None
        if isinstance(reply, tuple):  # (partial text, exception)
            reply, error = reply
        words = reply.split(" ")
        for i, word in enumerate(words):
            if cancel is not None and cancel.is_set():
                break
            yield Delta(text=word if i == 0 else " " + word)
            if self.delay:
                time.sleep(self.delay)
        if error:
            raise error
        yield Delta(finish_reason="stop", completion_tokens=len(words))

    def token_logprobs(self, messages, answer):
        return [-1.0] * len(answer.split())

    @contextmanager
    def interruptible(self, cancel):
        yield

    def set_adapter(self, path, adapter_id=None):
        raise ModelError("the fake model has no adapters")

    def close(self):
        pass

    def next_tokens(self, tokens):
        raise ModelError("the fake model has no next-token probe")


def ask(chat, question: str, answer: str, conversation_id: int | None = None):
    """Send `question` through the chat service with the fake model answering `answer`;
    returns the final Reply."""
    chat.model.enqueue(answer)
    *_, final = chat.send(conversation_id, question)
    return final
