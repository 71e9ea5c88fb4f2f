"""The app's HTTP API end to end, with gradio_client, the real model and a real SQLite file."""

from __future__ import annotations

import json

import pytest
from gradio_client.exceptions import AppError

from store.tables import Conversation, Exchange, Message
from tests.conftest import DATA


def test_chat_streams_the_answer_and_stores_the_exchange(client, running_app):
    # The embedded model's greedy answer to this is the same on every CPU build (tests/test_engine.py)
    job = client.submit("What is the capital of Japan?", "", api_name="/chat")
    outputs = list(job)
    answer, conversation_id = job.result()
    # Streamed, not one final blob: the first token goes out on its own, before the rest.
    partial = [o[0] for o in outputs if o[0] != answer]
    assert partial and all(answer.startswith(p) for p in partial)
    assert outputs[-1] == (answer, conversation_id) or list(outputs[-1]) == [
        answer,
        conversation_id,
    ]
    assert "Tokyo" in answer
    store = running_app.store
    [turn] = store.turns(int(conversation_id))
    assert (turn.user, turn.assistant, turn.status) == (
        "What is the capital of Japan?",
        answer,
        "completed",
    )
    ex = store.exchange(turn.exchange_id)
    assert ex.model_id == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert ex.prompt_tokens > 10 and 0 < ex.completion_tokens <= 64


def test_a_second_message_continues_the_conversation(client, running_app):
    _, conv = client.predict("My name is Ada.", "", api_name="/chat")
    _, again = client.predict("What is my name?", conv, api_name="/chat")
    assert again == conv
    history = client.predict(conv, api_name="/history")
    assert [h["user"] for h in history] == ["My name is Ada.", "What is my name?"]
    assert all(h["status"] == "completed" and h["exchange_id"] for h in history)
    assert [c["id"] for c in client.predict(api_name="/conversations")] == [int(conv)]


def test_rate_and_correct_endpoints_store_the_feedback(client, running_app):
    _, conv = client.predict("Hi", "", api_name="/chat")
    [turn] = client.predict(conv, api_name="/history")
    ex = turn["exchange_id"]
    assert client.predict(ex, 1, api_name="/rate") == {
        "exchange_id": ex,
        "value": 1,
        "reasons": [],
        "comment": None,
    }
    assert client.predict(ex, -1, ["too long"], "shorter please", api_name="/rate") == {
        "exchange_id": ex,
        "value": -1,
        "reasons": ["too long"],
        "comment": "shorter please",
    }
    assert running_app.store.current_rating(ex) == -1
    with pytest.raises(AppError, match="unknown reason"):
        client.predict(ex, -1, ["boring"], "", api_name="/rate")
    done = client.predict(ex, "Hello! How can I help?", api_name="/correct")
    assert done["exchange_id"] == ex
    assert running_app.store.correction(ex).content == "Hello! How can I help?"
    assert running_app.curator.pool.entry(ex).source == "human_written"
    with pytest.raises(AppError, match="cannot be empty"):
        client.predict(ex, " ", api_name="/correct")


@pytest.mark.parametrize(
    "message, error",
    [
        ("", "empty message"),
        ("  \n ", "empty message"),
        ("word " * 5000, "too long for the model"),
    ],
)
def test_refused_messages_get_a_clear_error_and_store_nothing(client, running_app, message, error):
    with pytest.raises(AppError, match=error):
        client.predict(message, "", api_name="/chat")
    assert running_app.store.count(Message) == 0
    assert running_app.store.count(Conversation) == 0


def test_an_unknown_conversation_is_an_error_not_a_new_chat(client, running_app):
    with pytest.raises(AppError, match="conversation 999 does not exist"):
        client.predict("hello", "999", api_name="/chat")
    with pytest.raises(AppError, match="not a conversation id"):
        client.predict("hello", "abc", api_name="/chat")
    with pytest.raises(AppError, match="conversation 999 does not exist"):
        client.predict("999", api_name="/history")
    assert running_app.store.count(Message) == 0


@pytest.mark.slow
@pytest.mark.timeout(1500)  # 515 real answers; slower when other work shares the 2 cores
def test_every_naughty_string_is_stored_and_shown_back_byte_for_byte(settings, engine):
    """All 515 strings of the Big List of Naughty Strings through the API (answers cut to 1 token)."""
    from gradio_client import Client

    from assistant.web.app import create_app, launch
    from tests.conftest import free_port

    strings = json.loads((DATA / "blns" / "blns.json").read_text())
    settings.max_tokens = 1
    settings.port = free_port()
    app = create_app(settings, model=engine)
    launch(app, block=False)
    try:
        client = Client(f"http://127.0.0.1:{settings.port}/", verbose=False)
        _, conv = client.predict("start", "", api_name="/chat")
        refused, sent = [], []
        for s in strings:
            if not s.strip():
                with pytest.raises(AppError, match="empty message"):
                    client.predict(s, conv, api_name="/chat")
                refused.append(s)
                continue
            # One conversation per string keeps each prompt short (no growing history).
            _, c = client.predict(s, "", api_name="/chat")
            sent.append((s, c))
        assert refused == ["", " "]
        for s, c in sent:
            [turn] = client.predict(c, api_name="/history")
            assert turn["user"] == s
            assert turn["status"] == "completed"
        stored = {m.content for m in _all_user_messages(app.store)}
        assert stored == {s for s, _ in sent} | {"start"}
        assert app.store.count(Exchange) == len(sent) + 1
    finally:
        app.close()


def _all_user_messages(store):
    from sqlmodel import select

    with store.session() as s:
        return list(s.exec(select(Message).where(Message.role == "user")))
