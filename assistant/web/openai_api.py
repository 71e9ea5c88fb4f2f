"""The OpenAI-compatible API: /v1/chat/completions, /v1/models and our /v1/feedback.

Owns the routes, on the FastAPI app that assistant/web/app.py serves, behind the same gate
(an API token as `Authorization: Bearer`) and door (assistant/web/door.py: the route table,
and the per-account limits, which count these requests as they count the page's messages).
A request is a chat like any other: the chat service (assistant/chat.py) validates it,
retrieves for it, stores the message before generation and the answer after (`stopped` when
the client goes away mid-stream), and the grader and the pool take it from there. What the
request's messages mean is assistant/web/openai_shapes.py's.

It streams outside Gradio's queue: a plain Starlette streaming response, so the first token
waits for no queue or polling. The model is shared safely all the same: every call into it
runs on the engine's one thread (assistant/llm/llama.py), a message announces itself so
background grading gives the model up at once (ChatService `_announce`), and the door bounds
how many requests each account has waiting.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.responses import JSONResponse, Response, StreamingResponse

from assistant.access import NEEDS
from assistant.chat import ChatService, Reply, TooFast
from assistant.prompt import ChatRefused, TooLong
from assistant.web.door import Door
from assistant.web.openai_shapes import (
    Feedback,
    Refusal,
    match_conversation,
    names_served_model,
    openai_error,
    parse_request,
    sampling_of,
    served_name,
    split_messages,
)
from store.conversations import NotFound

BODY_LIMIT = 8 * 1024 * 1024  # a whole conversation, resent each time
MATCH_WINDOW = 50  # the account's most recently updated conversations a request may continue


class Answer:
    """One request's answer in progress: the chat service's replies, and what it knows."""

    def __init__(self, replies: Iterator[Reply], first: Reply, model: str):
        self.replies, self.reply, self.model = replies, first, model
        self.id = f"chatcmpl-ad-{first.exchange_id}-{secrets.token_hex(6)}"
        self.created = int(time.time())
        self.headers = {
            "autodidact-exchange": str(first.exchange_id),
            "autodidact-conversation": str(first.conversation_id),
        }

    async def next(self) -> Reply | None:
        """The next snapshot (off the event loop: the chat service blocks), None at the end."""
        if self.reply.done:
            return None
        self.reply = await anyio.to_thread.run_sync(next, self.replies, self.reply)
        return self.reply


class OpenAIApi:
    def __init__(self, chat: ChatService, door: Door, username):
        self.chat, self.door, self.username = chat, door, username

    def router(self) -> APIRouter:
        router = APIRouter()
        router.add_api_route("/v1/models", self.models, methods=["GET"])
        router.add_api_route("/v1/chat/completions", self.completions, methods=["POST"])
        router.add_api_route("/v1/feedback", self.feedback, methods=["POST"])
        return router

    # who asks
    def caller(self, request: Request):
        account = request.scope.get("state", {}).get("account")
        if account is None:  # the gate lets no one through unidentified; this is a backstop
            raise Refusal(401, "Send the account's API token.", code="invalid_api_key")
        if not account.at_least(NEEDS["chat"]):
            raise Refusal(403, f"Only a {NEEDS['chat']} may chat; you are a {account.role}.")
        return account

    async def models(self, request: Request) -> Response:
        try:
            self.caller(request)
        except Refusal as exc:
            return refused(exc)
        model = self.chat.model
        return JSONResponse(
            {
                "object": "list",
                "data": [
                    {
                        "id": served_name(model.model_id, model.adapter_id),
                        "object": "model",
                        "created": 0,
                        "owned_by": "autodidact",
                        "base_model": model.model_id,
                        "adapter": model.adapter_id,
                        "context_window": model.context_window,
                    }
                ],
            }
        )

    async def completions(self, request: Request) -> Response:
        username, counted = self.username(request.scope), False
        try:
            account = self.caller(request)
            body = await read_json(request)
            ask = parse_request(body)
            if not names_served_model(ask.model, self.chat.model.model_id):
                raise Refusal(
                    404,
                    f"The model {ask.model!r} is not served here; ask for "
                    f"{served_name(self.chat.model.model_id, self.chat.model.adapter_id)!r} "
                    "or 'autodidact' (GET /v1/models).",
                    "model",
                    "model_not_found",
                )
            earlier, message = split_messages(ask.messages, self.chat.settings.system_prompt)
            refusal = self.door.admit_outside(account, username)
            if refusal is not None:
                return door_refusal(refusal)
            self.door.outside[username] += 1  # no await since the count: atomic on the loop
            counted = True
            answer = await anyio.to_thread.run_sync(
                self.start, account, earlier, message, sampling_of(ask)
            )
        except Refusal as exc:
            if counted:
                self.release(username)
            return refused(exc)
        except BaseException:
            if counted:
                self.release(username)
            raise
        if ask.stream:
            usage = bool((ask.stream_options or {}).get("include_usage"))
            return Stream(self, answer, usage, lambda: self.release(username))
        try:
            return await self.whole(request, answer)
        finally:
            self.release(username)

    def release(self, username: str) -> None:
        self.door.outside[username] -= 1
        if self.door.outside[username] <= 0:
            del self.door.outside[username]

    def start(self, account, earlier, message: str, sampling: dict[str, Any]) -> Answer:
        """On a worker thread: find the conversation, send the message, take the first reply
        (the exchange is stored by then)."""
        candidates = self.candidates(account) if earlier else ()
        kind, conversation_id = match_conversation(earlier, message, candidates)
        try:
            if kind == "continue":
                replies = self.chat.send(conversation_id, message, account, sampling)
            elif kind == "regenerate":
                replies = self.chat.regenerate(conversation_id, account, sampling)
            else:
                replies = self.chat.send(None, message, account, sampling, earlier)
        except TooLong as exc:
            raise Refusal(
                400,
                str(exc),
                "messages",
                "context_length_exceeded",
                prompt_tokens=exc.tokens,
                context_window=exc.context_window,
                answer_tokens=exc.answer_tokens,
            ) from exc
        except TooFast as exc:
            raise Refusal(
                429, str(exc), code="rate_limit_exceeded", retry_after=exc.retry_after
            ) from exc
        except (ChatRefused, NotFound) as exc:
            raise Refusal(400, str(exc), "messages") from exc
        first = next(replies)
        exchange = self.chat.store.exchange(first.exchange_id)
        return Answer(replies, first, served_name(exchange.model_id, exchange.adapter_id))

    def candidates(self, account) -> Iterator[tuple[int, list[tuple[str, str | None]]]]:
        """The account's conversations newest first, with their turns, read as needed; one
        answering right now is left alone (a second request would stop its answer)."""
        for conversation in self.chat.conversations(account)[:MATCH_WINDOW]:
            if self.chat.is_generating(conversation.id):
                continue
            turns = self.chat.turns(conversation.id, account)
            yield conversation.id, [(t.user, t.assistant) for t in turns]

    async def whole(self, request: Request, answer: Answer) -> Response:
        """The non-streaming answer; a client that goes away stops the model."""
        while await answer.next() is not None:
            if await request.is_disconnected():
                self.chat.stop(answer.reply.conversation_id)
        reply = answer.reply
        if reply.status == "failed":
            return openai_error(500, f"The model failed: {reply.error}", code="model_failed")
        finish, usage = self.ending(reply)
        return JSONResponse(
            {
                "id": answer.id,
                "object": "chat.completion",
                "created": answer.created,
                "model": answer.model,
                "system_fingerprint": None,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": reply.text, "refusal": None},
                        "logprobs": None,
                        "finish_reason": finish,
                    }
                ],
                "usage": usage,
                **extension(reply),
            },
            headers=answer.headers,
        )

    def ending(self, reply: Reply) -> tuple[str, dict[str, int]]:
        """The finish reason and token counts, as the stored exchange has them."""
        exchange = self.chat.store.exchange(reply.exchange_id)
        prompt, completion = exchange.prompt_tokens or 0, exchange.completion_tokens or 0
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        return ("length" if exchange.finish_reason == "length" else "stop"), usage

    async def feedback(self, request: Request) -> Response:
        """Rate or correct an answer, with the page's checks (the chat service's)."""
        try:
            account = self.caller(request)
            body = await read_json(request)
            try:
                feedback = Feedback.model_validate(body)
            except ValidationError as exc:
                raise Refusal(400, f"Send id or exchange_id, rating, reasons, comment, "
                              f"correction: {exc}") from None  # fmt: skip
            exchange_id = feedback.exchange()
            if feedback.value() is None and feedback.correction is None:
                raise Refusal(400, "Send a rating, a correction or both.", "rating")
            out = await anyio.to_thread.run_sync(self.give_feedback, account, exchange_id, feedback)
        except Refusal as exc:
            return refused(exc)
        return JSONResponse({"object": "autodidact.feedback", "exchange_id": exchange_id, **out})

    def give_feedback(self, account, exchange_id: int, feedback: Feedback) -> dict:
        out: dict[str, Any] = {"rating": None, "correction_id": None}
        try:
            if feedback.value() is not None:
                rating = self.chat.rate(
                    exchange_id, feedback.value(), feedback.reasons, feedback.comment, account
                )
                out["rating"] = {
                    "value": rating.value,
                    "reasons": rating.reasons,
                    "comment": rating.comment,
                }
            if feedback.correction is not None:
                out["correction_id"] = self.chat.correct(
                    exchange_id, feedback.correction, account
                ).id
        except NotFound as exc:
            raise Refusal(404, str(exc), "exchange_id", "not_found") from exc
        except (ValueError, TypeError) as exc:  # ChatRefused is a ValueError
            raise Refusal(400, str(exc)) from exc
        return out


class Stream(StreamingResponse):
    """Server-sent events in OpenAI's chunk shape, ended by `data: [DONE]`. However the
    response ends (the client gone mid-stream included), the model is stopped if it still
    runs (the answer is stored `stopped`) and the account's request is released."""

    def __init__(self, api: OpenAIApi, answer: Answer, usage: bool, release):
        self.api, self.answer, self.usage, self.release = api, answer, usage, release
        super().__init__(self.events(), media_type="text/event-stream", headers=answer.headers)
        self.headers["cache-control"] = "no-cache"

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self.body_iterator.aclose()
            if not self.answer.reply.done:
                self.api.chat.stop(self.answer.reply.conversation_id)
            self.release()

    def chunk(self, delta: dict, finish: str | None = None, **more) -> bytes:
        body = {
            "id": self.answer.id,
            "object": "chat.completion.chunk",
            "created": self.answer.created,
            "model": self.answer.model,
            "system_fingerprint": None,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            **more,
        }
        return sse(body)

    async def events(self) -> AsyncIterator[bytes]:
        answer, sent = self.answer, 0
        yield self.chunk({"role": "assistant", "content": ""})
        while (reply := await answer.next()) is not None:
            if len(reply.text) > sent:
                yield self.chunk({"content": reply.text[sent:]})
                sent = len(reply.text)
        reply = answer.reply
        if reply.status == "failed":
            yield sse({"error": {"message": f"The model failed: {reply.error}",
                                 "type": "server_error", "param": None, "code": "model_failed"}})  # fmt: skip
            return
        finish, usage = self.api.ending(reply)
        yield self.chunk({}, finish, **extension(reply))
        if self.usage:
            last = json.loads(self.chunk({})[6:])
            yield sse({**last, "choices": [], "usage": usage})
        yield b"data: [DONE]\n\n"


def sse(body: dict) -> bytes:
    return b"data: " + json.dumps(body, ensure_ascii=False).encode() + b"\n\n"


def extension(reply: Reply) -> dict:
    """Our fields beside OpenAI's: where the answer is stored, to rate it (POST /v1/feedback)."""
    return {
        "autodidact": {
            "exchange_id": reply.exchange_id,
            "conversation_id": reply.conversation_id,
            "status": reply.status,
        }
    }


async def read_json(request: Request) -> Any:
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > BODY_LIMIT:
        raise Refusal(413, "The request is too large.")
    body = b""
    async for part in request.stream():
        body += part
        if len(body) > BODY_LIMIT:
            raise Refusal(413, "The request is too large.")
    try:
        return json.loads(body or b"null")
    except (ValueError, RecursionError):  # RecursionError: [[[[... nested past the stack
        raise Refusal(400, "Send a JSON body.") from None


def refused(exc: Refusal) -> Response:
    return openai_error(
        exc.status, str(exc), exc.param, exc.code, retry_after=exc.retry_after, **exc.extra
    )


def door_refusal(response: Response) -> Response:
    """The door's 429 (the page's words and Retry-After) in OpenAI's error shape."""
    detail = json.loads(response.body)["detail"]
    wait = response.headers.get("retry-after")
    return openai_error(
        response.status_code,
        detail,
        code="rate_limit_exceeded",
        retry_after=float(wait) if wait else None,
    )
