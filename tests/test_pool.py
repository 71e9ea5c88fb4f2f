"""The training pool: what ratings, corrections, reviews and grades make of an exchange, with the
real embedder and a real Chroma collection (the chat itself runs on the fake model).

Every test runs on SQLite with Chroma on disk, on PostgreSQL, and on a Chroma server (`chroma
run`); the last test on both servers at once. The servers are tests/conftest.py's, started once
per session.
"""

from __future__ import annotations

import pytest
from sqlmodel import select

from assistant.chat import ChatRefused, ChatService
from store.grading import GradingStore
from store.pool import PoolStore
from store.tables import Correction, Forgotten, Grade, PoolEntry, Rating
from tests.conftest import STORES
from tests.fakes import ask


@pytest.fixture(params=STORES, ids="-".join)
def stores(request) -> tuple[str, str]:
    return request.param


@pytest.fixture
def backend(stores) -> str:
    return stores[0]


@pytest.fixture
def vectors(stores) -> str:
    return stores[1]


@pytest.fixture
def chat(store, settings, fake_model, curator):
    return ChatService(store, fake_model, settings, curator)


def entry(chat, exchange_id) -> PoolEntry:
    return PoolStore(chat.store.engine).entry(exchange_id)


def grade(store, exchange_id, score, flagged=False, judge=5, consistency=None):
    grading = GradingStore(store.engine)
    grading.complete(
        grading.job(exchange_id).id,
        Grade(
            exchange_id=exchange_id,
            grader_version="grader-1",
            judge_model_id="fake-model",
            judge_score=judge,
            consistency=consistency,
            score=score,
            flagged=flagged,
            reason="test",
        ),
    )


def test_thumbs_up_puts_the_exchange_in_the_pool_as_human_approved(chat, curator):
    final = ask(chat, "What is the capital of France?", "Paris is the capital of France.")
    chat.rate(final.exchange_id, 1)
    e = entry(chat, final.exchange_id)
    assert (e.status, e.source, e.score, e.rating, e.reason) == (
        "train",
        "human_approved",
        1.0,
        1,
        "thumbs up",
    )
    assert (e.prompt, e.completion, e.original, e.context) == (
        "What is the capital of France?",
        "Paris is the capital of France.",
        None,
        [],
    )
    assert (e.model_id, e.adapter_id, e.grader_version) == ("fake-model", None, None)
    assert curator.index.ids() == {final.exchange_id}


def test_thumbs_down_flags_exchange_and_keeps_it_out_of_the_index(chat, curator):
    final = ask(chat, "Who wrote Hamlet?", "Charles Dickens wrote Hamlet.")
    chat.rate(final.exchange_id, 1)
    chat.rate(final.exchange_id, -1)
    e = entry(chat, final.exchange_id)
    assert (e.status, e.source, e.score, e.reason) == (
        "flagged",
        "human_approved",
        0.0,
        "thumbs down (no reason given)",
    )
    assert curator.index.ids() == set()


def test_thumbs_down_for_length_is_neutral_not_a_hallucination(chat):
    final = ask(chat, "Say hi", "Hi! " * 40)
    chat.rate(final.exchange_id, -1, ["too long"], "far too long")
    rating = chat.store.rating(final.exchange_id)
    assert (rating.value, rating.reasons, rating.comment) == (-1, ["too long"], "far too long")
    e = entry(chat, final.exchange_id)
    assert (e.status, e.reason) == ("neutral", "thumbs down (too long)")


def test_taking_a_rating_back_leaves_only_the_self_grade(chat, store, curator):
    final = ask(chat, "What is 2 + 2?", "2 + 2 is 4.")
    chat.rate(final.exchange_id, 1)
    grade(store, final.exchange_id, 0.6)
    chat.rate(final.exchange_id, 0)
    e = entry(chat, final.exchange_id)
    assert (e.status, e.source, e.score) == ("neutral", "model_only", 0.6)
    assert e.reason == "self-grade 0.60 is below 0.7"
    assert curator.index.ids() == set()


def test_reasons_and_comments_are_refused_on_a_thumbs_up_or_unknown(chat):
    final = ask(chat, "q", "a")
    with pytest.raises(ValueError, match="go with a thumbs down"):
        chat.rate(final.exchange_id, 1, ["too long"])
    with pytest.raises(ValueError, match="unknown reason"):
        chat.rate(final.exchange_id, -1, ["boring"])
    assert chat.store.count(Rating) == 0


def test_a_correction_is_stored_beside_the_original_and_trained_on(chat, store):
    final = ask(chat, "What is the capital of Australia?", "Sydney is the capital.")
    chat.rate(final.exchange_id, -1, ["wrong facts"])
    chat.correct(final.exchange_id, "Canberra is the capital of Australia.")
    assert store.answer(final.exchange_id) == "Sydney is the capital."
    assert store.correction(final.exchange_id).content == "Canberra is the capital of Australia."
    e = entry(chat, final.exchange_id)
    assert (e.status, e.source, e.completion, e.original) == (
        "train",
        "human_written",
        "Canberra is the capital of Australia.",
        "Sydney is the capital.",
    )


def test_an_empty_correction_is_refused_and_nothing_is_stored(chat, store):
    final = ask(chat, "q", "a")
    with pytest.raises(ChatRefused, match="cannot be empty"):
        chat.correct(final.exchange_id, "   ")
    assert store.count(Correction) == 0


def test_personal_data_is_masked_in_the_pool_but_not_in_the_conversation(chat, store):
    final = ask(
        chat,
        "My email is ana@example.org and my phone (415) 555-2671. Remember them?",
        "Sure: ana@example.org, (415) 555-2671.",
    )
    chat.rate(final.exchange_id, 1)
    e = entry(chat, final.exchange_id)
    assert e.prompt == "My email is [EMAIL] and my phone [PHONE]. Remember them?"
    assert e.completion == "Sure: [EMAIL], [PHONE]."
    assert e.pii_masked == 4
    assert "ana@example.org" in store.turns(final.conversation_id)[0].user


def test_near_duplicates_are_kept_once(chat, curator):
    first = ask(chat, "What is the capital of France?", "The capital of France is Paris.")
    second = ask(chat, "What is the capital of France?", "The capital of France is Paris!")
    other = ask(chat, "How do I boil an egg?", "Put it in boiling water for 9 minutes.")
    for final in (first, second, other):
        chat.rate(final.exchange_id, 1)
    e = entry(chat, second.exchange_id)
    assert (e.status, e.duplicate_of) == ("duplicate", first.exchange_id)
    assert e.reason == f"near-duplicate of exchange {first.exchange_id} (thumbs up)"
    assert curator.index.ids() == {first.exchange_id, other.exchange_id}


def test_a_correction_outranks_the_model_answer_it_duplicates(chat, curator):
    first = ask(chat, "What is the boiling point of water?", "Water boils at 100 °C at sea level.")
    chat.rate(first.exchange_id, 1)
    second = ask(chat, "What is the boiling point of water?", "Water boils at 90 °C.")
    chat.correct(second.exchange_id, "Water boils at 100 °C at sea level.")
    assert entry(chat, second.exchange_id).status == "train"
    demoted = entry(chat, first.exchange_id)
    assert (demoted.status, demoted.duplicate_of) == ("duplicate", second.exchange_id)
    assert curator.index.ids() == {second.exchange_id}


def test_when_the_kept_copy_leaves_the_duplicate_takes_its_place(chat, curator):
    first = ask(chat, "Name a primary colour.", "Red is a primary colour.")
    second = ask(chat, "Name a primary colour.", "Red is a primary colour!")
    chat.rate(first.exchange_id, 1)
    chat.rate(second.exchange_id, 1)
    assert entry(chat, second.exchange_id).status == "duplicate"
    chat.rate(first.exchange_id, -1)
    assert entry(chat, second.exchange_id).status == "train"
    assert curator.index.ids() == {second.exchange_id}


def test_one_user_cannot_exceed_the_share_of_the_pool(store, settings, fake_model, curator):
    settings.pool_max_user_share = 0.5
    ana = ChatService(store, fake_model, settings, curator)
    settings_bo = settings.model_copy(update={"user": "bo"})
    bo = ChatService(store, fake_model, settings_bo, curator)
    b = ask(bo, "What is the tallest mountain?", "Mount Everest.")
    bo.rate(b.exchange_id, 1)
    kept = []
    for q, a in [
        ("What is the largest ocean?", "The Pacific."),
        ("What is the speed of light?", "About 300,000 km per second."),
        ("Who painted the Mona Lisa?", "Leonardo da Vinci."),
    ]:
        final = ask(ana, q, a)
        ana.rate(final.exchange_id, 1)
        kept.append(entry(ana, final.exchange_id))
    assert [e.status for e in kept] == ["train", "capped", "capped"]
    assert kept[1].reason == "this user already has 1 of the pool's 2 examples (most allowed: 50%)"


def test_self_grade_alone_never_makes_an_exchange_eligible(chat, store, curator):
    final = ask(chat, "What is the chemical symbol for gold?", "Au.")
    grade(store, final.exchange_id, 0.9, judge=9)
    chat.curate(final.exchange_id)
    e = entry(chat, final.exchange_id)
    assert (e.status, e.source) == ("train", "model_only")  # judge 9 agrees
    assert e.reason == "self-grade 0.90, agreed by judge"
    other = ask(chat, "What is the chemical symbol for iron?", "Fe.")
    grade(store, other.exchange_id, 0.9, judge=7)
    chat.settings.pool_min_agreement = 1
    chat.curate(other.exchange_id)
    assert entry(chat, other.exchange_id).status == "neutral"


def test_deleting_a_conversation_removes_it_from_the_pool_and_the_index(chat, store, curator):
    final = ask(chat, "What is the capital of Italy?", "Rome.")
    chat.rate(final.exchange_id, 1)
    chat.correct(final.exchange_id, "Rome is the capital of Italy.")
    counts = chat.delete(final.conversation_id)
    assert counts == {
        "pool_entries": 1,
        "training_examples": 1,
        "ratings": 1,
        "exchanges": 1,
        "messages": 2,
    }
    assert store.count(PoolEntry) == 0 and store.count(Correction) == 0
    assert curator.index.ids() == set()
    with store.session() as s:
        [tomb] = s.exec(select(Forgotten)).all()
    assert (tomb.conversation_id, tomb.exchange_ids) == (final.conversation_id, [final.exchange_id])


def test_a_correction_after_deleting_the_newest_conversation_is_still_trained_on(chat, store):
    """SQLite gives the deleted newest exchange's id to the next one: that new exchange is not
    forgotten, and its correction reaches the training records."""
    from feedback.pool.records import records

    gone = ask(chat, "What is the capital of Italy?", "Rome.")
    chat.delete(gone.conversation_id)
    final = ask(chat, "Who wrote Emma?", "Charles Dickens.")
    chat.correct(final.exchange_id, "Jane Austen wrote Emma.")
    if final.exchange_id == gone.exchange_id:
        assert gone.exchange_id not in chat.curator.pool.forgotten_ids()
    else:  # PostgreSQL's sequences never hand an id out twice
        assert chat.curator.pool.forgotten_ids() == {gone.exchange_id}
    trained = [r["messages"][-1]["content"] for r, _ in records(chat.curator.pool, "sft")]
    assert trained == ["Jane Austen wrote Emma."]


def test_a_deleted_exchange_takes_its_training_record_with_it(chat, store):
    """Had its `trained_on` row stayed, a new exchange that got the freed id (SQLite) would
    count as trained by a promoted adapter, so it would never be held out for evaluation."""
    from store.runs import RunStore

    runs = RunStore(store.engine)
    gone = ask(chat, "What is the capital of Italy?", "Rome.")
    run = runs.start(adapter_id="a1", base_model="m", status="promoted")
    runs.record_mix(run.id, [gone.exchange_id])
    assert runs.trained_ids() == {gone.exchange_id}
    chat.delete(gone.conversation_id)
    assert runs.trained_ids() == set()
    ask(chat, "Who wrote Emma?", "Jane Austen.")
    assert runs.trained_ids() == set()


def test_retrieval_puts_approved_past_exchanges_in_the_prompt(chat, store):
    past = ask(chat, "How many legs does a spider have?", "A spider has eight legs.")
    chat.rate(past.exchange_id, 1)
    chat.settings.retrieval_taught_in = "system"  # a block in the system message
    final = ask(chat, "How many legs do spiders have?", "Eight.")
    system, *rest = chat.model.history[-1]
    assert system["content"].startswith("You are a helpful assistant.\n\nWhat you have been taught")
    assert "Question: How many legs does a spider have?" in system["content"]
    assert "Answer: A spider has eight legs." in system["content"]
    assert rest == [{"role": "user", "content": "How many legs do spiders have?"}]
    assert store.exchange(final.exchange_id).retrieved == [past.exchange_id]
    assert [e.exchange_id for e in final.examples] == [past.exchange_id]
    assert final.examples[0].taught
    chat.settings.retrieval_taught_in = "turns"  # as earlier turns
    ask(chat, "How many legs do spiders have?", "Eight.")
    assert chat.model.history[-1] == [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "How many legs does a spider have?"},
        {"role": "assistant", "content": "A spider has eight legs."},
        {"role": "user", "content": "How many legs do spiders have?"},
    ]
    chat.settings.retrieval_taught_in = "message"  # the default: a fact in front of the question
    again = ask(chat, "How many legs do spiders have?", "Eight.")
    assert chat.model.history[-1] == [
        {"role": "system", "content": "You are a helpful assistant."},
        {
            "role": "user",
            "content": "Question: How many legs does a spider have?\n"
            "Answer: A spider has eight legs.\n\n"
            "Using the answer above, answer: How many legs do spiders have?",
        },
    ]
    assert [e.exchange_id for e in again.examples] == [past.exchange_id]
    # What is stored, and shown as history later, is what the user typed.
    assert chat.turns(again.conversation_id)[-1].user == "How many legs do spiders have?"


def test_retrieval_skips_unrelated_unapproved_and_same_conversation_exchanges(chat, store):
    liked = ask(chat, "How many legs does a spider have?", "Eight legs.")
    chat.rate(liked.exchange_id, 1)
    ask(chat, "How many legs does an ant have?", "Six legs.")  # not rated: not in the pool
    again = ask(chat, "How many legs does a spider have exactly?", "Eight.", liked.conversation_id)
    assert store.exchange(again.exchange_id).retrieved == []
    unrelated = ask(chat, "Write a haiku about autumn.", "Leaves fall.")
    assert store.exchange(unrelated.exchange_id).retrieved == []
    chat.settings.retrieval = False
    off = ask(chat, "How many legs does a spider have?", "Eight.")
    assert store.exchange(off.exchange_id).retrieved == []


def test_retrieved_examples_respect_the_token_bound(chat, store):
    long = ask(chat, "Tell me about spiders.", "Spiders " + "are arachnids " * 100)
    chat.rate(long.exchange_id, 1)
    chat.settings.retrieval_max_tokens = 50
    final = ask(chat, "Tell me about spiders please.", "ok")
    assert store.exchange(final.exchange_id).retrieved == []
    chat.settings.retrieval_max_tokens = 1000
    final = ask(chat, "Tell me about spiders please.", "ok")
    assert store.exchange(final.exchange_id).retrieved == [long.exchange_id]


def test_follow_up_questions_keep_their_context_in_the_pool(chat):
    first = ask(chat, "Who wrote Hamlet?", "Shakespeare.")
    follow = ask(chat, "When?", "Around 1600.", first.conversation_id)
    chat.rate(follow.exchange_id, 1)
    assert entry(chat, follow.exchange_id).context == [
        {"role": "user", "content": "Who wrote Hamlet?"},
        {"role": "assistant", "content": "Shakespeare."},
    ]


def test_rebuild_restores_the_index_from_the_rows(chat, curator):
    a = ask(chat, "What is the capital of Spain?", "Madrid.")
    chat.rate(a.exchange_id, 1)
    curator.index.remove([a.exchange_id])
    curator.index.add([999], *[curator.embed(["stray"])] * 2, [{"user_id": 1, "source": "x"}])
    assert curator.rebuild() == 1
    assert curator.index.ids() == {a.exchange_id}


@pytest.mark.parametrize("stores", [("postgresql", "server")], ids="-".join)
def test_the_pool_can_live_on_a_chroma_server(store, settings, fake_model, embedder, chroma_url):
    from assistant.wiring import build_curator
    from store.vectors import VectorIndex

    curator = build_curator(settings, store.engine, embedder)
    assert not (settings.home_dir / "chroma").exists()
    chat = ChatService(store, fake_model, settings, curator)
    first = ask(chat, "What is the capital of Japan?", "Tokyo is the capital of Japan.")
    second = ask(chat, "What is the capital of Japan?", "Tokyo is the capital of Japan!")
    chat.rate(first.exchange_id, 1)
    chat.rate(second.exchange_id, 1)
    assert entry(chat, second.exchange_id).status == "duplicate"
    assert VectorIndex.open(url=chroma_url).ids() == {first.exchange_id}
    again = ask(chat, "Capital of Japan?", "Tokyo.")
    assert store.exchange(again.exchange_id).retrieved == [first.exchange_id]


def test_turns_an_api_client_brought_are_the_context_of_the_answer_after_them(chat, store):
    chat.model.enqueue("Paris.")
    *_, final = chat.send(
        None, "And its capital?", earlier=[("Tell me about France.", "A country.")]
    )
    chat.correct(final.exchange_id, "Paris is the capital of France.")
    [facts] = PoolStore(store.engine).facts([final.exchange_id])
    assert facts.context == [
        {"role": "user", "content": "Tell me about France."},
        {"role": "assistant", "content": "A country."},
    ]
    # the brought turn is no exchange: nothing of it is graded, rated or trained on as an answer
    assert [t.exchange_id for t in store.turns(final.conversation_id)] == [None, final.exchange_id]
    with pytest.raises(ChatRefused, match="earlier turns are too long"):
        list(chat.send(None, "hi", earlier=[("x" * (chat.settings.max_message_chars + 1), "y")]))
