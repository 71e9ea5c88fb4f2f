"""The OpenAI chat API's shapes, as the /v1 endpoint reads and writes them: pure functions.

Owns the request's validation (pydantic models, no `openai` package: that one belongs to the
client side, assistant/llm/openai_compat.py), what a request's messages mean for a stored
conversation (`split_messages`, `match_conversation`), the sampling a request asks for, the
error body, and the ids that carry an exchange. It runs nothing and stores nothing: the routes
are assistant/web/openai_api.py's, the chat itself assistant/chat.py's.

Parameters are read the way the OpenAI API reads them: the ones that change an answer are
honoured (temperature, top_p, max_tokens or max_completion_tokens, stop, seed, presence and
frequency penalties), the ones that only label or route a request (user, metadata, store,
service_tier...) are ignored, and the ones this server cannot honour are refused with a 400
that says so (n > 1, logprobs, tools, a response format other than text, logit_bias), never
dropped in silence.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.responses import JSONResponse

ALIAS = "autodidact"  # a model name that always means the served model
COMPLETION_ID = re.compile(r"chatcmpl-ad-(\d{1,18})-[0-9a-f]+")  # 18 digits fit SQLite's int
MAX_EARLIER_TURNS = 500


class Refusal(ValueError):
    """A request the API answers with an error: its status, message and OpenAI fields."""

    def __init__(self, status: int, message: str, param: str | None = None, code=None, **extra):
        super().__init__(message)
        self.status, self.param, self.code, self.extra = status, param, code, extra
        self.retry_after: float | None = extra.pop("retry_after", None)


def openai_error(
    status: int,
    message: str,
    param: str | None = None,
    code: str | None = None,
    retry_after: float | None = None,
    **extra,
) -> JSONResponse:
    """The OpenAI error body: `{"error": {"message", "type", "param", "code"}}`.

    >>> r = openai_error(429, "Slow down.", code="rate_limit_exceeded", retry_after=2.2)
    >>> r.status_code, r.headers["retry-after"], r.body.decode()[:60]
    (429, '3', '{"error":{"message":"Slow down.","type":"rate_limit_error","')
    """
    kind = {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        413: "invalid_request_error",
        429: "rate_limit_error",
    }.get(status, "server_error")
    body = {"message": message, "type": kind, "param": param, "code": code, **extra}
    headers = {"retry-after": str(max(int(retry_after + 0.999), 1))} if retry_after else None
    return JSONResponse({"error": body}, status_code=status, headers=headers)


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: str | list[dict[str, Any]] | None = None
    tool_calls: list[Any] | None = None


class ChatRequest(BaseModel):
    """The body of POST /v1/chat/completions. Unknown fields are ignored, as OpenAI does."""

    model_config = ConfigDict(extra="ignore")
    model: str = ALIAS
    messages: list[Message] = Field(min_length=1)
    stream: bool | None = False
    stream_options: dict[str, Any] | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    n: int | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    logit_bias: dict[str, float] | None = None
    tools: list[Any] | None = None
    functions: list[Any] | None = None
    response_format: dict[str, Any] | None = None


def parse_request(body: Any) -> ChatRequest:
    """The request, or a Refusal naming the first field that is wrong.

    >>> parse_request({"messages": [{"role": "user", "content": "hi"}]}).model
    'autodidact'
    >>> try:
    ...     parse_request({"messages": [], "temperature": 3})
    ... except Refusal as exc:
    ...     print(exc.status, exc)
    400 messages: List should have at least 1 item after validation, not 0
    """
    try:
        request = ChatRequest.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or None
        raise Refusal(400, f"{where}: {first['msg']}", param=where) from None
    refuse_unsupported(request)
    return request


def refuse_unsupported(request: ChatRequest) -> None:
    """A 400 for what would change the answer's meaning and cannot be honoured here."""
    if request.n not in (None, 1):
        raise Refusal(400, "n: this server answers with one choice per request (n=1).", "n")
    if request.logprobs or request.top_logprobs:
        raise Refusal(
            400,
            "logprobs: the local engine keeps no per-token log-probabilities while it streams "
            "(llama.cpp would need logits for every position); ask without logprobs.",
            "logprobs",
        )
    if request.logit_bias:
        raise Refusal(400, "logit_bias is not supported by this server.", "logit_bias")
    if request.tools or request.functions:
        raise Refusal(400, "tools: this server's model does not call tools.", "tools")
    kind = (request.response_format or {}).get("type", "text")
    if kind != "text":
        raise Refusal(
            400, f"response_format: only text answers are served, not {kind}.", "response_format"
        )
    stops = [request.stop] if isinstance(request.stop, str) else request.stop or []
    if len(stops) > 4 or not all(stops):
        raise Refusal(400, "stop: up to 4 sequences, none empty.", "stop")


def sampling_of(request: ChatRequest) -> dict[str, Any]:
    """The sampling overrides a request asks for (what it leaves out: the server's settings).

    >>> sampling_of(parse_request({"messages": [{"role": "user", "content": "x"}],
    ...     "temperature": 0, "max_tokens": 9, "max_completion_tokens": 5, "stop": "END"}))
    {'temperature': 0.0, 'max_tokens': 5, 'stop': ['END']}
    """
    out: dict[str, Any] = {}
    for name in ("temperature", "top_p", "presence_penalty", "frequency_penalty"):
        value = getattr(request, name)
        if value is not None:
            out[name] = float(value)
    longest = request.max_completion_tokens or request.max_tokens
    if longest is not None:
        out["max_tokens"] = int(longest)
    if request.stop:
        out["stop"] = [request.stop] if isinstance(request.stop, str) else list(request.stop)
    if request.seed is not None:
        out["seed"] = request.seed % 2**31  # llama.cpp takes a 32-bit seed; -1 means random
    return out


def text_of(message: Message, index: int) -> str:
    """A message's text: a string, or its text parts joined (an image or audio part: 400)."""
    where = f"messages.{index}.content"
    if isinstance(message.content, str):
        return message.content
    if message.content is None:
        raise Refusal(400, f"{where}: a message needs text content.", where)
    parts = []
    for part in message.content:
        if part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise Refusal(400, f"{where}: only text parts are understood.", where)
        parts.append(part["text"])
    return "".join(parts)


def split_messages(
    messages: list[Message], system_prompt: str | None = None
) -> tuple[list[tuple[str, str]], str]:
    """(earlier turns as (user, answer) pairs, the new message): messages must alternate
    user and assistant, from a user message to the last one. A leading system (or developer)
    message is taken when it says what the server's own `system_prompt` says (many clients
    send "You are a helpful assistant." by default); any other is refused, never ignored.

    >>> split_messages([Message(role="user", content="a"), Message(role="assistant",
    ...     content="b"), Message(role="user", content=[{"type": "text", "text": "c"}])])
    ([('a', 'b')], 'c')
    >>> split_messages([Message(role="system", content=" Be kind. "),
    ...     Message(role="user", content="hi")], "Be kind.")
    ([], 'hi')
    """
    if (
        messages
        and messages[0].role in ("system", "developer")
        and system_prompt is not None
        and isinstance(messages[0].content, str)
        and messages[0].content.strip() == system_prompt.strip()
    ):
        messages = messages[1:]
    for index, message in enumerate(messages):
        if message.role in ("system", "developer"):
            raise Refusal(
                400,
                f"messages.{index}: {message.role} messages are not taken unless they say "
                "what this server's own system prompt says (the system_prompt setting), so "
                "answers stay comparable and fit for its training pool.",
                f"messages.{index}.role",
            )
        expected = "user" if index % 2 == 0 else "assistant"
        if message.role != expected or message.tool_calls:
            raise Refusal(
                400,
                f"messages.{index}: expected a {expected} message; the conversation must "
                "alternate user and assistant messages and end with a user message.",
                f"messages.{index}.role",
            )
    if len(messages) % 2 == 0:
        raise Refusal(400, "messages: the last message must be the user's.", "messages")
    texts = [text_of(m, i) for i, m in enumerate(messages)]
    earlier = list(zip(texts[0:-1:2], texts[1:-1:2], strict=True))
    if len(earlier) > MAX_EARLIER_TURNS:
        raise Refusal(400, f"messages: at most {MAX_EARLIER_TURNS} earlier turns.", "messages")
    return earlier, texts[-1]


def _same(stored: Iterable[tuple[str, str | None]], sent: list[tuple[str, str]]) -> bool:
    stored = [(u.strip(), (a or "").strip()) for u, a in stored]
    return stored == [(u.strip(), a.strip()) for u, a in sent]


def match_conversation(
    earlier: list[tuple[str, str]],
    message: str,
    candidates: Iterable[tuple[int, list[tuple[str, str | None]]]],
) -> tuple[str, int | None]:
    """What a request continues, given the account's conversations newest first, each as
    (id, [(user message, shown answer), ...]). Texts compare with surrounding whitespace
    stripped; an answer that never came compares as empty.

    - `("new", None)` when the request has no earlier turns: a first message always starts a
      new conversation.
    - `("continue", id)` for the newest conversation whose turns are exactly the earlier ones.
    - `("regenerate", id)` for the newest conversation whose turns are the earlier ones plus
      this same message (a client asking again: a new answer, the old kept as superseded).
    - `("new", None)` otherwise (an edited earlier message, a history from elsewhere): a new
      conversation that starts with the request's earlier turns.

    >>> convs = [(7, [("hi", "hello"), ("bye", "ciao")]), (3, [("hi", "hello")])]
    >>> match_conversation([("hi", "hello")], "how are you?", convs)
    ('continue', 3)
    >>> match_conversation([("hi", "hello")], "bye", convs)
    ('regenerate', 7)
    >>> match_conversation([("hi", "HELLO")], "bye", convs), match_conversation([], "hi", convs)
    (('new', None), ('new', None))
    """
    if not earlier:
        return "new", None
    for conversation_id, turns in candidates:
        if len(turns) == len(earlier) and _same(turns, earlier):
            return "continue", conversation_id
        if (
            len(turns) == len(earlier) + 1
            and turns[-1][0].strip() == message.strip()
            and _same(turns[:-1], earlier)
        ):
            return "regenerate", conversation_id
    return "new", None


def served_name(model_id: str, adapter_id: str | None) -> str:
    """The model name a client sees: the base model, and the adapter serving on it.

    >>> served_name("SmolLM2.gguf", None), served_name("SmolLM2.gguf", "run-4")
    ('SmolLM2.gguf', 'SmolLM2.gguf:run-4')
    """
    return f"{model_id}:{adapter_id}" if adapter_id else model_id


def names_served_model(name: str, model_id: str) -> bool:
    """Whether a request's `model` means the served model: the alias, the base model, or the
    base model with any adapter (a client that listed the models before a refresh).

    >>> [names_served_model(n, "m.gguf") for n in ("autodidact", "m.gguf:run-1", "gpt-4o")]
    [True, True, False]
    """
    return name in (ALIAS, model_id) or name.split(":", 1)[0] == model_id


def exchange_of(completion_id: str) -> int | None:
    """The exchange a completion id carries.

    >>> exchange_of("chatcmpl-ad-42-9f0c1a2b3c4d"), exchange_of("chatcmpl-xyz")
    (42, None)
    """
    found = COMPLETION_ID.fullmatch(str(completion_id))
    return int(found.group(1)) if found else None


class Feedback(BaseModel):
    """The body of POST /v1/feedback, this server's extension."""

    model_config = ConfigDict(extra="forbid")
    id: str | None = None  # a completion id, chatcmpl-ad-<exchange>-...
    exchange_id: int | None = Field(default=None, ge=1, le=2**63 - 1)
    rating: Literal[1, -1, 0, "up", "down", "none"] | None = None
    reasons: list[str] = Field(default_factory=list)
    comment: str | None = None
    correction: str | None = None

    def exchange(self) -> int:
        found = self.exchange_id if self.exchange_id is not None else exchange_of(self.id or "")
        if found is None:
            raise Refusal(400, "Name the answer: id (its completion id) or exchange_id.", "id")
        return found

    def value(self) -> int | None:
        return {"up": 1, "down": -1, "none": 0}.get(self.rating, self.rating)
