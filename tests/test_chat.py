"""The chat flow on the fake model: what is stored, when, and what the user is told."""

from __future__ import annotations

import threading

import pytest

from assistant.chat import ChatRefused, ChatService
from store.tables import Conversation, Exchange, Message
from tests.fakes import FakeModel


def drain(stream):
    replies = list(stream)
    return replies[-1], replies


def test_answer_streams_and_the_exchange_is_stored_with_its_settings(store, settings, fake_model):
    fake_model.delay = 0.02  # slow enough that the reader sees each word on its own
    settings.stream_interval_ms = 0
    chat = ChatService(store, fake_model, settings)
    fake_model.enqueue("Paris is the capital.")
    final, replies = drain(chat.send(None, "What is the capital of France?"))
    texts = [r.text for r in replies]
    assert texts[0] == "" and texts[-1] == "Paris is the capital."
    assert all(b.startswith(a) for a, b in zip(texts, texts[1:], strict=False))
    assert texts[1:-1] == ["Paris", "Paris is", "Paris is the", "Paris is the capital."]
    assert [r.status for r in replies] == ["generating"] * (len(replies) - 1) + ["completed"]
    [conv] = chat.conversations()
    assert conv.title == "What is the capital of France?"
    [turn] = store.turns(conv.id)
    assert (turn.user, turn.assistant, turn.status) == (
        "What is the capital of France?",
        "Paris is the capital.",
        "completed",
    )
    ex = store.exchange(turn.exchange_id)
    assert ex.model_id == "fake-model"
    assert ex.sampling == {
        "temperature": 0.0,
        "top_p": 0.9,
        "repeat_penalty": 1.1,
        "max_tokens": 64,
        "seed": 7,
    }
    assert ex.finish_reason == "stop"
    assert ex.completion_tokens == 4
    assert ex.prompt_tokens == fake_model.count_tokens(fake_model.history[0])
    assert ex.latency_ms > 0 and ex.first_token_ms > 0


def test_user_message_is_stored_before_generation_starts(store, settings):
    seen = {}

    class Watching(FakeModel):
        def stream(self, messages, sampling, cancel=None):
            seen["messages"] = store.count(Message)
            seen["status"] = [t.status for t in store.turns(1)]
            yield from super().stream(messages, sampling, cancel)

    chat = ChatService(store, Watching(), settings)
    drain(chat.send(None, "hello"))
    assert seen == {"messages": 1, "status": ["generating"]}


def test_empty_and_whitespace_messages_are_refused_and_nothing_is_stored(
    store, settings, fake_model
):
    chat = ChatService(store, fake_model, settings)
    for message in ("", "   ", "\n\t \u3000"):
        with pytest.raises(ChatRefused, match="empty message"):
            chat.send(None, message)
    assert (store.count(Conversation), store.count(Message)) == (0, 0)


def test_a_message_longer_than_the_context_is_refused_and_nothing_is_stored(store, settings):
    chat = ChatService(store, FakeModel(context_window=200), settings)
    with pytest.raises(ChatRefused, match="too long for the model: it takes 163 tokens"):
        chat.send(None, "word " * 150)
    assert (store.count(Conversation), store.count(Message)) == (0, 0)


def test_a_huge_message_is_refused_before_tokenizing(store, settings, fake_model):
    chat = ChatService(store, fake_model, settings)
    with pytest.raises(ChatRefused, match="100,001 characters; the limit is 100,000"):
        chat.send(None, "x" * 100_001)
    assert fake_model.history == [] and store.count(Message) == 0


def test_older_turns_are_dropped_to_fit_the_context_with_a_notice(store, settings):
    model = FakeModel(context_window=64 + 60)  # 60 tokens for the prompt beside a 64-token answer
    chat = ChatService(store, model, settings)
    model.enqueue(*["one two three four five six seven eight nine ten"] * 4)
    conv = None
    for i in range(3):
        final, _ = drain(chat.send(conv, f"question number {i} here"))
        conv = final.conversation_id
    final, replies = drain(chat.send(conv, "last question"))
    # System 9 + new message 6 leaves 45 tokens for history; a past turn takes 8 + 14.
    assert final.history_dropped == 2
    assert replies[0].notices == (
        "2 older message(s) were left out so the conversation fits the model's 124-token context.",
    )
    sent = model.history[-1]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert [sent[1]["content"], sent[-1]["content"]] == ["question number 1 here", "last question"]
    assert store.exchange(final.exchange_id).history_dropped == 2


def test_stop_keeps_the_partial_answer_marked_stopped(store, settings):
    model = FakeModel(delay=0.05)
    model.enqueue(" ".join(["word"] * 200))
    chat = ChatService(store, model, settings)
    stream = chat.send(None, "go on")
    first = next(stream)
    for reply in stream:
        if len(reply.text.split()) >= 3:
            assert chat.stop(first.conversation_id)
            break
    final, _ = drain(stream)
    assert final.status == "stopped"
    stored = store.turns(first.conversation_id)[0]
    assert stored.status == "stopped"
    assert 3 <= len(stored.assistant.split()) < 200


def test_a_reader_that_goes_away_stops_the_model_and_the_answer_is_still_stored(store, settings):
    model = FakeModel(delay=0.05)
    model.enqueue(" ".join(["word"] * 200))
    chat = ChatService(store, model, settings)
    stream = chat.send(None, "go on")
    first = next(stream)
    next(stream)
    stream.close()  # what a disconnected browser does to the generator
    for _ in range(100):
        if store.turns(first.conversation_id)[0].status != "generating":
            break
        threading.Event().wait(0.05)
    assert store.turns(first.conversation_id)[0].status == "stopped"


def test_a_model_failure_stores_what_came_marked_failed(store, settings, fake_model):
    chat = ChatService(store, fake_model, settings)
    fake_model.enqueue(("half an", RuntimeError("out of memory")))
    final, _ = drain(chat.send(None, "hi"))
    assert (final.status, final.text, final.error) == (
        "failed",
        "half an",
        "RuntimeError: out of memory",
    )
    ex = store.exchange(final.exchange_id)
    assert (ex.status, ex.error) == ("failed", "RuntimeError: out of memory")
    assert store.turns(final.conversation_id)[0].assistant == "half an"


def test_regenerate_adds_a_new_exchange_that_supersedes_the_last(store, settings, fake_model):
    chat = ChatService(store, fake_model, settings)
    fake_model.enqueue("first answer", "second answer")
    final, _ = drain(chat.send(None, "q"))
    again, _ = drain(chat.regenerate(final.conversation_id))
    [turn] = store.turns(final.conversation_id)
    assert (turn.assistant, turn.exchange_id) == ("second answer", again.exchange_id)
    assert store.exchange(again.exchange_id).regenerated_from_id == final.exchange_id
    assert store.count(Exchange) == 2
    # The regenerated prompt is the same question, not the question twice.
    assert fake_model.history[0] == fake_model.history[1]


def test_rename_and_delete_conversations(store, settings, fake_model):
    chat = ChatService(store, fake_model, settings)
    final, _ = drain(chat.send(None, "q"))
    chat.rename(final.conversation_id, "  My   chat ")
    assert [c.title for c in chat.conversations()] == ["My chat"]
    with pytest.raises(ChatRefused):
        chat.rename(final.conversation_id, " ")
    chat.delete(final.conversation_id)
    assert chat.conversations() == [] and store.count(Message) == 0


def test_a_rating_is_stored_against_the_exchange(store, settings, fake_model):
    chat = ChatService(store, fake_model, settings)
    final, _ = drain(chat.send(None, "q"))
    rating = chat.rate(final.exchange_id, 1)
    assert (rating.exchange_id, rating.user_id, rating.value) == (
        final.exchange_id,
        chat.user.id,
        1,
    )


def test_a_full_disk_refuses_the_message_with_a_clear_reason(settings, tmp_path, fake_model):
    from sqlalchemy import event, text

    from store.conversations import ConversationStore
    from store.db import open_database, sqlite_url

    url = sqlite_url(tmp_path / "full.db")
    engine = open_database(url)
    with engine.connect() as conn:
        pages = conn.execute(text("PRAGMA page_count")).scalar()
    engine.dispose()

    @event.listens_for(engine, "connect")
    def _cap(dbapi_conn, _record):  # the database may not grow: what a full disk looks like
        dbapi_conn.execute(f"PRAGMA max_page_count = {pages}")

    store = ConversationStore(engine)
    chat = ChatService(store, fake_model, settings)
    with pytest.raises(ChatRefused, match=r"could not be saved \(database or disk is full\)"):
        for _ in range(200):  # fill the last free pages first
            drain(chat.send(None, "some words to store " * 20))
    assert fake_model.history, "some messages went through before the disk filled"
    sent = len(fake_model.history)
    # Nothing half-stored: every conversation has its whole turn, the refused one left no row.
    assert (store.count(Conversation), store.count(Message)) == (sent, 2 * sent)


def test_a_random_seed_is_drawn_per_answer_and_stored(store, settings, fake_model):
    settings.seed = -1
    chat = ChatService(store, fake_model, settings)
    a, _ = drain(chat.send(None, "one"))
    b, _ = drain(chat.send(None, "two"))
    seeds = [store.exchange(r.exchange_id).sampling["seed"] for r in (a, b)]
    assert all(0 <= s < 2**31 for s in seeds) and seeds[0] != seeds[1]


def test_tokens_arriving_within_the_stream_interval_share_one_update(store, settings):
    model = FakeModel(delay=0.01)
    model.enqueue(" ".join(f"w{i}" for i in range(40)))  # about 400 ms of tokens
    settings.stream_interval_ms = 100
    chat = ChatService(store, model, settings)
    final, replies = drain(chat.send(None, "go"))
    texts = [r.text for r in replies if r.text]
    assert texts[0] == "w0"  # the first token is not held back
    assert 3 <= len(texts) <= 10  # about one update per 100 ms, not one per token
    assert final.text == " ".join(f"w{i}" for i in range(40))


def test_background_work_is_preempted_before_the_prompt_is_built(store, fake_model, settings):
    """A grader holding the cores would slow retrieval and prompt building too: it is told to
    stop as soon as a message arrives, and again when generation starts."""
    chat = ChatService(store, fake_model, settings)
    order = []
    chat.on_generation_start.append(lambda: order.append("preempt"))
    build = chat.build_prompt
    chat.build_prompt = lambda *a, **k: (order.append("prompt"), build(*a, **k))[1]
    fake_model.enqueue("Hello.")
    list(chat.send(None, "Hi"))
    assert order == ["preempt", "prompt", "preempt"]
    assert chat.quiet_for() < 1.0
