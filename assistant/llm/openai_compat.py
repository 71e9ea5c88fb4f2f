"""A `ChatModel` backed by an OpenAI-compatible server (llama.cpp's server, vLLM, ...).

Owns the HTTP side: streaming chat completions through the `openai` client and counting tokens
with the server's tokenizer endpoint when it has one. It is the path for users who outgrow one
machine. It does not score answers' log-probabilities: chat endpoints only report them for
tokens the server generated itself, so self-grading needs a local GGUF model.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import openai

from assistant.llm.base import CONTEXT_WINDOW, Delta, Messages, ModelError, Sampling

# Chat templates add a few tokens of markup per message; servers do not say how many.
PER_MESSAGE_OVERHEAD = 8


class OpenAIChatModel:
    supports_adapters = False  # the server serves what it serves

    def __init__(
        self,
        base_url: str,
        model: str = "default",
        api_key: str = "not-needed",
        context_window: int = CONTEXT_WINDOW,
        timeout: float = 600.0,
    ):
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.model_id = f"{model}@{self.base_url}"
        self.adapter_id = None
        self.context_window = context_window
        self.client = openai.OpenAI(base_url=self.base_url, api_key=api_key, timeout=timeout)
        self._http = httpx.Client(timeout=30.0)
        self._tokenize_url: str | None | bool = False  # False: not probed yet; None: no endpoint
        self._schema_form: str | None = None  # "json_schema" or "json_object": see _create

    def _server_root(self) -> str:
        return self.base_url[: -len("/v1")] if self.base_url.endswith("/v1") else self.base_url

    def _count_text(self, text: str) -> int:
        if self._tokenize_url is False:
            self._tokenize_url = None
            root = self._server_root()
            # llama-cpp-python's server, then vLLM's and llama.cpp's native server.
            for url, body in (
                (f"{root}/extras/tokenize", {"input": "a"}),
                (f"{root}/tokenize", {"content": "a", "prompt": "a", "model": self.model}),
            ):
                try:
                    if self._http.post(url, json=body).status_code == 200:
                        self._tokenize_url = url
                        break
                except httpx.HTTPError:
                    continue
        if self._tokenize_url:
            body = (
                {"input": text}
                if self._tokenize_url.endswith("/extras/tokenize")
                else {"content": text, "prompt": text, "model": self.model}
            )
            try:
                res = self._http.post(self._tokenize_url, json=body).json()
                tokens = res.get("tokens")
                if isinstance(tokens, list):
                    return len(tokens)
                if "count" in res:
                    return int(res["count"])
            except (httpx.HTTPError, ValueError):
                pass
        # No tokenizer endpoint: a deliberately high estimate, so prompts are trimmed early
        # rather than rejected by the server.
        return len(text.encode("utf-8")) // 3 + 1

    def count_tokens(self, messages: Messages) -> int:
        return sum(self._count_text(m["content"]) + PER_MESSAGE_OVERHEAD for m in messages)

    def stream(
        self,
        messages: Messages,
        sampling: dict[str, Any],
        cancel: threading.Event | None = None,
        json_schema: dict | None = None,
    ) -> Iterator[Delta]:
        cancel = cancel or threading.Event()
        request = dict(
            model=self.model,
            messages=messages,
            stream=True,
            temperature=Sampling.value(sampling, "temperature"),
            top_p=Sampling.value(sampling, "top_p"),
            max_tokens=Sampling.value(sampling, "max_tokens"),
            seed=sampling.get("seed"),
            # Not an OpenAI parameter; llama.cpp's and vLLM's servers read it from the body.
            extra_body={"repeat_penalty": Sampling.value(sampling, "repeat_penalty")},
        )
        if sampling.get("stop"):
            request["stop"] = list(sampling["stop"])
        for name in ("presence_penalty", "frequency_penalty"):
            if sampling.get(name):
                request[name] = sampling[name]
        try:
            response = self._create(request, json_schema)
        except openai.APIConnectionError as exc:
            raise ModelError(f"cannot reach the model server at {self.base_url}") from exc
        except openai.APIError as exc:
            raise ModelError(f"the model server at {self.base_url} refused: {exc}") from exc
        parts: list[str] = []
        finish_reason = None
        try:
            for chunk in response:
                if cancel.is_set():
                    finish_reason = "stopped"
                    break
                if not chunk.choices:
                    continue
                choice = chunk.choices[0]
                if choice.delta and choice.delta.content:
                    parts.append(choice.delta.content)
                    yield Delta(text=choice.delta.content)
                finish_reason = choice.finish_reason or finish_reason
        finally:
            response.close()
        completion = "".join(parts)
        yield Delta(
            finish_reason=finish_reason,
            prompt_tokens=self.count_tokens(messages),
            completion_tokens=self._count_text(completion) if completion else 0,
        )

    def _create(self, request: dict[str, Any], json_schema: dict | None):
        """Start a completion, its output held to `json_schema` where one is given.

        OpenAI's form of a schema (`json_schema`) is what vLLM, llama.cpp's native server and
        OpenAI enforce; llama-cpp-python's server refuses it (an HTTP 500 naming
        `response_format`) and takes only its own (`json_object` with a `schema`), which vLLM
        would accept and ignore. So the first request tries OpenAI's form, without the client's
        retries, and the form the server takes is kept from then on."""
        if not json_schema:
            return self.client.chat.completions.create(**request)
        if self._schema_form != "json_object":
            probing = self._schema_form is None
            client = self.client.with_options(max_retries=0) if probing else self.client
            try:
                response = client.chat.completions.create(
                    **request,
                    response_format={
                        "type": "json_schema",
                        "json_schema": {"name": "answer", "schema": json_schema},
                    },
                )
            except openai.APIStatusError:
                if not probing:
                    raise
            else:
                self._schema_form = "json_schema"
                return response
        response = self.client.chat.completions.create(
            **request, response_format={"type": "json_object", "schema": json_schema}
        )
        self._schema_form = "json_object"
        return response

    def token_logprobs(self, messages: Messages, answer: str) -> list[float]:
        raise ModelError(
            "token log-probabilities of a given answer need a local GGUF model "
            "(an OpenAI-compatible chat endpoint only scores tokens it generated)"
        )

    @contextmanager
    def interruptible(self, cancel: threading.Event):
        """Nothing to install: a remote request is stopped between streamed chunks."""
        yield

    def set_adapter(self, path: Path | None, adapter_id: str | None = None) -> None:
        raise ModelError("an OpenAI-compatible server chooses its own weights; adapters are local")

    def close(self) -> None:
        self._http.close()
        self.client.close()

    def next_tokens(self, tokens: list[int]) -> list[int]:
        raise ModelError("next-token probes need a local GGUF model")
