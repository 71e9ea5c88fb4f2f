"""The OpenAI-compatible /v1 endpoint, through the clients people use: the official `openai`
library (sync, async, streaming, a client that goes away mid-stream), LangChain's ChatOpenAI and
a raw SSE read with httpx, against the real server (embedded model, SQLite, loopback) with
four accounts. Each request must be a chat like any other: stored in its account's history and
no one else's, rated and corrected into the pool as the page's are, held by the same limits.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time

import httpx
import openai
import pytest
from gradio_client import Client
from sqlmodel import select

from store.accounts import AccountStore
from store.tables import GradingJob
from tests.raw_gradio import join
from tests.test_security import config, events


def token(app, who: str) -> str:
    return app.tokens[who]["Authorization"].split(" ", 1)[1]


def client(app, who: str = "ana", **kwargs) -> openai.OpenAI:
    return openai.OpenAI(base_url=app.url + "v1", api_key=token(app, who), max_retries=0, **kwargs)


def ask(api: openai.OpenAI, *messages: str, **kwargs):
    """A chat whose messages alternate user and assistant, as a client resends it."""
    roles = ("user", "assistant")
    history = [{"role": roles[i % 2], "content": m} for i, m in enumerate(messages)]
    return api.chat.completions.with_raw_response.create(
        model="autodidact", messages=history, **kwargs
    )


def wait_done(app, exchange_id: int, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while (status := app.store.exchange(exchange_id).status) == "generating":
        assert time.monotonic() < deadline, "the answer never finished"
        time.sleep(0.05)
    return status


def test_an_answer_is_an_exchange_in_its_accounts_history_and_no_one_elses(shared):
    raw = ask(client(shared), "What is the capital of France?")
    answer = raw.parse()
    exchange_id = int(raw.headers["autodidact-exchange"])
    assert answer.id.startswith(f"chatcmpl-ad-{exchange_id}-")
    assert answer.choices[0].message.content.strip()
    assert answer.model == shared.model.model_id  # no adapter serves in this test
    assert answer.usage.completion_tokens <= 8 and answer.usage.prompt_tokens > 0
    conversation = raw.headers["autodidact-conversation"]
    page = Client(shared.url, headers=shared.tokens["ana"], verbose=False)
    [turn] = page.predict(conversation, api_name="/history")
    assert turn["exchange_id"] == exchange_id and turn["status"] == "completed"
    assert turn["assistant"] == answer.choices[0].message.content
    bob = Client(shared.url, headers=shared.tokens["bob"], verbose=False)
    assert conversation not in {str(c["id"]) for c in bob.predict(api_name="/conversations")}
    with pytest.raises(Exception, match="does not exist"):
        bob.predict(conversation, api_name="/history")
    with shared.store.session() as s:  # graded in the background like any answer
        assert s.exec(select(GradingJob).where(GradingJob.exchange_id == exchange_id)).first()


def test_a_resent_history_continues_its_conversation_and_an_edited_one_starts_anew(shared):
    api = client(shared)
    first = ask(api, "Name a colour.")
    conv, said = first.headers["autodidact-conversation"], first.parse().choices[0].message.content
    second = ask(api, "Name a colour.", said, "And a fruit?")
    assert second.headers["autodidact-conversation"] == conv
    assert [t.user for t in shared.store.turns(int(conv))] == ["Name a colour.", "And a fruit?"]
    # the same request again: a new answer to the same message, the old one superseded
    again = ask(api, "Name a colour.", said, "And a fruit?")
    assert again.headers["autodidact-conversation"] == conv
    regenerated = shared.store.exchange(int(again.headers["autodidact-exchange"]))
    assert regenerated.regenerated_from_id == int(second.headers["autodidact-exchange"])
    # an edited earlier message: a new conversation holding the history as the client sent it
    edited = ask(api, "Name a color.", said, "And a fruit?")
    forked = int(edited.headers["autodidact-conversation"])
    assert forked != int(conv)
    turns = shared.store.turns(forked)
    assert [(t.user, t.assistant, t.exchange_id) for t in turns[:1]] == [
        ("Name a color.", said, None)  # brought by the client: no exchange, never graded
    ]
    assert turns[1].exchange_id == int(edited.headers["autodidact-exchange"])
    follow = ask(api, "Name a color.", said, "And a fruit?", turns[1].assistant, "A tree?")
    assert int(follow.headers["autodidact-conversation"]) == forked
    # another account sending Ana's exact history gets a conversation of its own
    theirs = ask(client(shared, "bob"), "Name a colour.", said, "And a fruit?")
    assert theirs.headers["autodidact-conversation"] != conv


def test_streaming_sync_and_async(shared):
    api = client(shared)
    with api.chat.completions.with_streaming_response.create(
        model="autodidact",
        messages=[{"role": "user", "content": "Say hello."}],
        stream=True,
        stream_options={"include_usage": True},
    ) as response:
        exchange_id = int(response.headers["autodidact-exchange"])
        chunks = list(response.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == shared.store.answer(exchange_id)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")
    assert chunks[-1].usage.completion_tokens > 0

    async def both():
        api = openai.AsyncOpenAI(
            base_url=shared.url + "v1", api_key=token(shared, "ana"), max_retries=0
        )
        whole = await api.chat.completions.create(
            model="autodidact", messages=[{"role": "user", "content": "Count to three."}]
        )
        stream = await api.chat.completions.create(
            model="autodidact",
            messages=[{"role": "user", "content": "Count to four."}],
            stream=True,
        )
        parts = [c.choices[0].delta.content or "" async for c in stream]
        await api.close()
        return whole, "".join(parts)

    whole, streamed = asyncio.run(both())
    assert whole.choices[0].message.content and streamed


def test_a_client_that_goes_away_mid_stream_leaves_the_answer_stopped(shared):
    api = client(shared)
    stream = api.chat.completions.create(
        model="autodidact",
        messages=[{"role": "user", "content": "Write a very long story about a dragon."}],
        stream=True,
        max_tokens=400,
    )
    exchange_id = int(stream.response.headers["autodidact-exchange"])
    for n, _ in enumerate(stream):
        if n == 3:
            break
    stream.close()
    assert wait_done(shared, exchange_id) == "stopped"
    exchange = shared.store.exchange(exchange_id)
    assert exchange.completion_tokens < 400
    assert shared.door.outside == {}  # the account's request was released


def test_langchain_chat_openai(shared):
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(
        base_url=shared.url + "v1",
        api_key=token(shared, "ana"),
        model="autodidact",
        max_tokens=8,
        max_retries=0,
    )
    said = llm.invoke("What is two plus two?")
    assert said.content and said.response_metadata["model_name"] == shared.model.model_id
    assert "".join(chunk.content for chunk in llm.stream("Name an animal."))


def test_a_raw_sse_read(shared):
    body = {"model": "autodidact", "stream": True, "messages": [{"role": "user", "content": "Hi"}]}
    with httpx.stream(
        "POST", shared.url + "v1/chat/completions", json=body, headers=shared.tokens["ana"]
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines) and lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    exchange_id = int(response.headers["autodidact-exchange"])
    assert chunks[-1]["autodidact"]["exchange_id"] == exchange_id
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == shared.store.answer(exchange_id)


def test_feedback_through_v1_lands_in_the_pool_like_the_pages(shared):
    answer = ask(client(shared), "Who wrote Hamlet?").parse()
    given = httpx.post(
        shared.url + "v1/feedback",
        headers=shared.tokens["ana"],
        json={
            "id": answer.id,
            "rating": "down",
            "reasons": ["wrong facts"],
            "comment": "not quite",
            "correction": "William Shakespeare wrote Hamlet.",
        },
    )
    assert given.status_code == 200, given.text
    exchange_id = given.json()["exchange_id"]
    assert given.json()["rating"]["value"] == -1 and given.json()["correction_id"]
    # the same feedback through the page's API, on an answer of the page
    page = Client(shared.url, headers=shared.tokens["ana"], verbose=False)
    _, conv = page.predict("Who wrote Macbeth?", "", api_name="/chat")
    [turn] = page.predict(conv, api_name="/history")
    page.predict(turn["exchange_id"], -1, ["wrong facts"], "not quite", api_name="/rate")
    page.predict(turn["exchange_id"], "William Shakespeare wrote Macbeth.", api_name="/correct")
    ours, theirs = (shared.curator.pool.entry(i) for i in (exchange_id, turn["exchange_id"]))
    assert ours is not None and (ours.status, ours.source) == (theirs.status, theirs.source)
    assert ours.completion == "William Shakespeare wrote Hamlet."
    # another account cannot rate it: it does not exist for them
    stranger = httpx.post(
        shared.url + "v1/feedback",
        headers=shared.tokens["bob"],
        json={"id": answer.id, "rating": 1},
    )
    assert stranger.status_code == 404 and stranger.json()["error"]["code"] == "not_found"
    # what an attacker tries next: an id past any integer, JSON nested past the stack
    for body in ({"id": "chatcmpl-ad-" + "9" * 30 + "-ab", "rating": 1},
                 {"exchange_id": 10**30, "rating": 1}):  # fmt: skip
        huge = httpx.post(shared.url + "v1/feedback", headers=shared.tokens["ana"], json=body)
        assert huge.status_code == 400, huge.text
    for route in ("v1/feedback", "v1/chat/completions"):
        nested = httpx.post(
            shared.url + route,
            headers={**shared.tokens["ana"], "Content-Type": "application/json"},
            content=b"[" * 100_000,
        )
        assert nested.status_code == 400 and nested.json()["error"]["message"], nested.text


def test_without_a_valid_token_the_answer_is_401(shared):
    for key in ("", "ad_not-a-token"):
        api = openai.OpenAI(base_url=shared.url + "v1", api_key=key or "x", max_retries=0)
        if not key:
            api = openai.OpenAI(
                base_url=shared.url + "v1", api_key="x", max_retries=0,
                default_headers={"Authorization": ""},
            )  # fmt: skip
        with pytest.raises(openai.AuthenticationError) as refused:
            api.models.list()
        assert refused.value.status_code == 401
        assert refused.value.body["code"] == "invalid_api_key"
    raw = httpx.post(shared.url + "v1/chat/completions", json={})
    assert raw.status_code == 401 and set(raw.json()["error"]) >= {"message", "type", "code"}


def test_a_flood_through_v1_is_held_by_the_pages_per_account_limits(shared):
    """Two of Ana's answers at once (queue_per_account) and no third, through /v1 or the page;
    Bob is not held; then the message rate limit, with Retry-After."""
    opened = []

    def hold(who):
        body = {
            "model": "autodidact",
            "stream": True,
            "max_tokens": 300,
            "messages": [{"role": "user", "content": "Write a long poem about the sea."}],
        }
        stream = httpx.stream(
            "POST", shared.url + "v1/chat/completions", json=body, headers=shared.tokens[who]
        )
        opened.append(stream)
        return stream.__enter__()

    try:
        held = [hold("ana"), hold("ana")]
        assert [r.status_code for r in held] == [200, 200]
        with pytest.raises(openai.RateLimitError) as refused:
            ask(client(shared), "One more?")
        assert "waiting for an answer" in str(refused.value)
        assert int(refused.value.response.headers["retry-after"]) >= 1
        chat = next(d["id"] for d in events(config(shared)) if d.get("api_name") == "chat")
        page = join(shared.url, chat, ["And from the page?", ""], shared.tokens["ana"])
        assert page.status == 429  # the page counts Ana's /v1 answers too
        assert ask(client(shared, "bob"), "Hello?").parse().choices  # Bob is not held
    finally:
        for stream in opened:
            stream.__exit__(None, None, None)
    deadline = time.monotonic() + 30
    while shared.door.outside and time.monotonic() < deadline:
        time.sleep(0.05)
    shared.chat.limiter.limit = 1
    ask(client(shared), "First.")
    with pytest.raises(openai.RateLimitError) as limited:
        ask(client(shared), "Second.")
    assert "too fast" in str(limited.value)
    assert int(limited.value.response.headers["retry-after"]) >= 1


def test_what_cannot_be_honoured_is_refused_clearly(shared):
    api = client(shared)
    user = [{"role": "user", "content": "Hi"}]
    for kwargs, param in (
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
    ):
        with pytest.raises(openai.BadRequestError) as refused:
            api.chat.completions.create(model="autodidact", messages=user, **kwargs)
        assert refused.value.body["param"] == param, kwargs
    with pytest.raises(openai.BadRequestError, match="system messages are not taken"):
        api.chat.completions.create(
            model="autodidact", messages=[{"role": "system", "content": "Be brief."}, *user]
        )
    with pytest.raises(openai.BadRequestError) as long:
        api.chat.completions.create(model="autodidact", messages=user, max_tokens=2047)
    error = long.value.body
    assert error["code"] == "context_length_exceeded"
    assert error["prompt_tokens"] > 1 and error["context_window"] == 2048
    with pytest.raises(openai.NotFoundError):
        api.chat.completions.create(model="gpt-4o", messages=user)
    before = AccountStore(shared.store.engine).account("ana")
    assert shared.chat.conversations(before) == []  # nothing refused was stored
    # A client's default system message that says what the server's says is taken.
    same = [{"role": "system", "content": "You are a helpful assistant."}, *user]
    taken = api.chat.completions.create(model="autodidact", messages=same, max_tokens=4)
    assert taken.choices[0].message.content is not None


def test_parameters_are_honoured_and_the_model_listed(shared):
    api = client(shared)
    [listed] = api.models.list().data
    assert listed.id == shared.model.model_id and listed.owned_by == "autodidact"
    short = ask(api, "Tell me about the moon.", max_completion_tokens=3, temperature=0).parse()
    assert short.usage.completion_tokens <= 3 and short.choices[0].finish_reason == "length"
    sampled = [
        ask(api, "Invent a name.", temperature=1.5, seed=11, max_tokens=6).parse() for _ in "ab"
    ]
    assert sampled[0].choices[0].message.content == sampled[1].choices[0].message.content
    exchange = shared.store.exchange(int(sampled[0].id.split("-")[2]))
    assert exchange.sampling["temperature"] == 1.5 and exchange.sampling["seed"] == 11


def test_two_v1_requests_at_once_share_the_model_safely(shared):
    results = []

    def one(i, who):
        results.append(ask(client(shared, who), f"Say the number {i}.").parse())

    threads = [
        threading.Thread(target=one, args=(i, who)) for i, who in enumerate(("ana", "bob", "rita"))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(results) == 3 and all(r.choices[0].message.content for r in results)
