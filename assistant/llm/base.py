"""The chat-model contract the whole project talks to, and its one error type.

Owns the `ChatModel` protocol (streaming, token counting, answer scoring, adapters, interruption
and next-token probes), the `Delta` a stream yields, and `ModelError`. It imports no backend:
the llama.cpp engine (assistant/llm/llama.py), the OpenAI-compatible client
(assistant/llm/openai_compat.py) and the tests' fake model implement it. Which one the app
uses is decided in assistant/wiring.py; which weights, in assistant/llm/weights.py.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

Messages = list[dict[str, str]]

CONTEXT_WINDOW = 4096  # tokens of context, prompt and answer, unless a setting says otherwise


def _knob(default, help: str):
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class Sampling:
    """How answers are sampled, written once: `Settings` takes these defaults and help texts,
    and every backend falls back to them for a value a caller leaves out. SmolLM2's model
    card recommends a low temperature; a mild repeat penalty stops the loops a 135M model
    falls into."""

    temperature: float = _knob(0.2, "sampling temperature")
    top_p: float = _knob(0.9, "nucleus sampling mass")
    repeat_penalty: float = _knob(1.1, "penalty on repeated tokens")
    max_tokens: int = _knob(512, "longest answer, in tokens")
    seed: int = _knob(-1, "sampling seed; -1 for a random one per answer")

    @staticmethod
    def value(sampling: dict[str, Any], name: str):
        """`sampling[name]`, or this dataclass's default for it.

        >>> Sampling.value({}, "temperature"), Sampling.value({"top_p": 0.5}, "top_p")
        (0.2, 0.5)
        """
        return sampling.get(name, getattr(DEFAULT_SAMPLING, name))


class ModelError(RuntimeError):
    """The model could not be loaded or failed while generating; the message is for users."""


@dataclass(frozen=True)
class Delta:
    """A piece of a streamed answer; the last one carries the finish reason and token counts."""

    text: str = ""
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


@runtime_checkable
class ChatModel(Protocol):
    model_id: str
    adapter_id: str | None
    context_window: int
    # Whether `set_adapter` and `next_tokens` work: a local GGUF engine, not a remote server.
    supports_adapters: bool

    def count_tokens(self, messages: Messages) -> int:
        """Tokens the prompt for `messages` takes, chat template included."""

    def stream(
        self,
        messages: Messages,
        sampling: dict[str, Any],
        cancel: threading.Event | None = None,
        json_schema: dict | None = None,
    ) -> Iterator[Delta]:
        """Generate an answer to `messages`, piece by piece; stops early when `cancel` is set.

        With `json_schema`, the output is constrained to JSON matching it (llama.cpp grammar)."""

    def token_logprobs(self, messages: Messages, answer: str) -> list[float]:
        """Log-probability of each token of `answer` as the reply to `messages`."""

    def interruptible(self, cancel: threading.Event) -> AbstractContextManager[None]:
        """Inside the block, this thread's calls stop as soon as `cancel` is set, even
        mid-decode where the backend can (background grading yields to a chat this way)."""

    def set_adapter(self, path: Path | None, adapter_id: str | None = None) -> None:
        """Serve a LoRA adapter file (None: the base weights alone) from the next call on.
        Raises ModelError where `supports_adapters` is False."""

    def close(self) -> None:
        """Stop serving: calls after this raise InterruptedError (work in flight finishes)."""

    def next_tokens(self, tokens: list[int]) -> list[int]:
        """The greedy next token after each prefix of `tokens` (teacher forcing): the probe the
        export check compares with PyTorch. Raises ModelError where unsupported."""


DEFAULT_SAMPLING = Sampling()
