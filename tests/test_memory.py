"""The memory: what a person taught is found for any wording, put where the model sees it, and
kept honest: a newer correction replaces an older one, a deleted one is gone, another user's is
used only when a reviewer vouched for it, and a question about another subject finds nothing.

Real SQLite, real Chroma on disk, the offline embedder and BM25; the first test runs the
embedded model itself, the others the fake model (what is in the prompt is what they check).
"""

from __future__ import annotations

import pytest

from assistant.chat import ChatService
from feedback.pool.memory import TAUGHT_INTRO
from store.grading import GradingStore
from store.pool import PoolStore
from tests.fakes import ask

QUESTION = "Who keeps the lighthouse on Vellmar Island?"
ANSWER = "The lighthouse on Vellmar Island is kept by Orsolya Brandt."


@pytest.fixture
def memory_settings(settings):
    settings.pool_max_user_share = 1.0  # two users; these tests are about who sees what
    return settings


@pytest.fixture
def chat(store, memory_settings, fake_model, curator):
    return ChatService(store, fake_model, memory_settings, curator)


def taught(chat, question=QUESTION, answer=ANSWER) -> int:
    """Ask, then correct the answer, as a user does: the exchange id."""
    final = ask(chat, question, "I am not sure.")
    chat.correct(final.exchange_id, answer)
    return final.exchange_id


def system_of_last_prompt(chat) -> str:
    return chat.model.history[-1][0]["content"]


def test_the_embedded_model_answers_a_reworded_question_from_a_correction(
    store, memory_settings, engine, curator
):
    chat = ChatService(store, engine, memory_settings, curator)
    chat.settings.max_tokens, chat.settings.seed = 48, 0
    *_, first = chat.send(None, QUESTION)
    chat.correct(first.exchange_id, ANSWER)
    reworded = "Which person is the keeper of the Vellmar Island lighthouse?"
    chat.settings.retrieval_restate = False  # the model's own words first
    *_, reply = chat.send(None, reworded)
    assert [e.exchange_id for e in reply.examples] == [first.exchange_id]
    assert reply.examples[0].taught and reply.examples[0].taught_at is not None
    assert "Brandt" in store.turns(reply.conversation_id)[-1].assistant
    assert "You taught me" not in reply.text
    # With the check on (the default), an answer that used the correction stands alone.
    chat.settings.retrieval_restate = True
    *_, again = chat.send(None, reworded)
    assert "Brandt" in again.text and "You taught me" not in again.text


def test_an_answer_that_ignores_a_correction_gets_the_correction_under_it(chat):
    taught(chat)
    reply = ask(chat, "Who is the keeper of the Vellmar Island lighthouse?", "It is Ivo Marsh.")
    assert reply.text.startswith("It is Ivo Marsh.\n\nYou taught me this on ")
    assert reply.text.endswith(f": {ANSWER}"), reply.text
    # stored as the user saw it; the pool, the grader and the next prompt's history read only
    # what the model wrote
    assert chat.store.turns(reply.conversation_id)[-1].assistant == reply.text
    chat.rate(reply.exchange_id, 1)  # into the pool as the user's thumbs up
    assert PoolStore(chat.store.engine).entry(reply.exchange_id).completion == "It is Ivo Marsh."
    ask(chat, "And who kept it before?", "ok", reply.conversation_id)
    assert chat.model.history[-1][-2] == {"role": "assistant", "content": "It is Ivo Marsh."}
    # an answer that says the taught names stands alone, in whatever words
    used = ask(chat, "Who looks after Vellmar Island's lighthouse?", "Ms Orsolya Brandt does.")
    assert used.text == "Ms Orsolya Brandt does."
    # a client that sets stop sequences shapes the text itself; the setting turns it off
    chat.model.enqueue("It is Ivo Marsh.")
    *_, stopped = chat.send(None, "Who keeps the Vellmar lighthouse?", sampling={"stop": ["##"]})
    assert stopped.examples and stopped.text == "It is Ivo Marsh."
    chat.settings.retrieval_restate = False
    off = ask(chat, "Who is the keeper of the Vellmar Island lighthouse?", "It is Ivo Marsh.")
    assert off.text == "It is Ivo Marsh."


def test_two_corrections_about_the_subject_are_both_put_under_an_answer_that_used_neither(chat):
    instrument = taught(
        chat, "Which instrument did Oren Kaiskar play?", "Oren Kaiskar played the theorbo."
    )
    taught(chat, "Where was Oren Kaiskar born?", "Oren Kaiskar was born in Faizes.")
    reply = ask(chat, "What did Oren Kaiskar play in concerts?", "Oren Kaiskar played the violin.")
    assert reply.examples[0].exchange_id == instrument
    restated = reply.text.split("\n\n")[1:]
    assert [line.split(": ", 1)[1] for line in restated] == [
        "Oren Kaiskar played the theorbo.",  # the best match first
        "Oren Kaiskar was born in Faizes.",
    ], reply.text
    # an answer that used either stands alone (the lookup may rank the sibling first)
    used = ask(chat, "What did Oren Kaiskar play in concerts?", "He played the theorbo.")
    assert used.text == "He played the theorbo."


def test_a_liked_answer_repeating_the_correction_is_not_restated_a_second_time(chat):
    taught(chat)
    liked = ask(chat, "Who is the keeper of the Vellmar Island lighthouse?", "Orsolya Brandt.")
    chat.rate(liked.exchange_id, 1)  # a thumbs up: taught too, and it says the same
    reply = ask(chat, "Is the Vellmar Island lighthouse kept by a man or a woman?", "A woman.")
    assert len([e for e in reply.examples if e.taught]) == 2, reply.examples
    assert reply.text.count("You taught me this") == 1, reply.text
    assert "Orsolya Brandt" in reply.text


def test_no_correction_is_put_under_an_answer_to_another_question(chat):
    taught(chat)
    taught(chat, "How do I reset my router?", "Hold its reset button for ten seconds.")
    for other in (
        "Who keeps the lighthouse on Dorrant Island?",  # worded the same, another subject
        "What is the tallest mountain in the world?",
        "How can I reset my wifi router password?",  # found, but nothing there to check
    ):
        reply = ask(chat, other, "I do not know.")
        assert reply.text == "I do not know.", other
        assert bool(reply.examples) == other.startswith("How can I reset"), other


def test_a_reworded_question_finds_the_correction_by_meaning_and_by_words(chat):
    exchange = taught(chat)
    for wording in (
        "Who is the keeper of the Vellmar Island lighthouse?",
        "vellmar island lighthouse keeper name?",  # lower case, few words
        "I am writing about Vellmar Island for a guide. Who looks after its lighthouse?",
    ):
        reply = ask(chat, wording, "ok")
        assert [e.exchange_id for e in reply.examples] == [exchange], wording
        # The default presentation: the correction, with its question, in front of the message.
        shown = chat.model.history[-1][-1]["content"]
        assert shown.startswith(f"Question: {QUESTION}\nAnswer: {ANSWER}\n\n"), shown
    chat.settings.retrieval_taught_in = "system"
    ask(chat, "Who is the keeper of the Vellmar Island lighthouse?", "ok")
    assert TAUGHT_INTRO in system_of_last_prompt(chat)
    assert system_of_last_prompt(chat).count("Orsolya Brandt") == 1


def test_a_question_about_another_subject_worded_the_same_finds_nothing(chat):
    taught(chat)
    for other in (
        "Who keeps the lighthouse on Dorrant Island?",
        "who keeps the lighthouse on dorrant island?",
        "How do I boil an egg?",
    ):
        assert ask(chat, other, "ok").examples == (), other
        assert "Orsolya" not in str(chat.model.history[-1])


def test_a_general_question_never_draws_on_what_was_taught_about_a_named_subject(chat):
    mount = taught(
        chat, "How tall is Mount Cairnvaddoch?", "Mount Cairnvaddoch is 4217 metres high."
    )
    # seen in bench/memory.py: the model then named Cairnvaddoch the world's tallest mountain
    assert ask(chat, "What is the tallest mountain in the world?", "ok").examples == ()
    assert ask(chat, "how high is mount cairnvaddoch?", "ok").examples[0].exchange_id == mount


def test_a_newer_correction_of_the_same_question_supersedes_the_older(chat):
    old = taught(chat, answer="The lighthouse on Vellmar Island is kept by Piet Olan.")
    new = taught(chat)
    pool = PoolStore(chat.store.engine)
    assert pool.entry(old).status == "superseded" and pool.entry(old).duplicate_of == new
    assert pool.entry(new).status == "train"
    reply = ask(chat, "Who keeps the Vellmar Island lighthouse these days?", "ok")
    assert [e.exchange_id for e in reply.examples] == [new]
    assert "Piet Olan" not in str(chat.model.history[-1])
    # the newer one deleted: the older correction stands again
    chat.delete(chat.store.exchange(new).conversation_id)
    assert pool.entry(old).status == "train"


def test_corrections_about_different_subjects_never_replace_each_other(chat):
    one = taught(chat, "What does Stodroum Industries make?", "Stodroum Industries makes lamps.")
    two = taught(chat, "What does Staigeth Industries make?", "Staigeth Industries makes rope.")
    pool = PoolStore(chat.store.engine)
    assert pool.entry(one).status == pool.entry(two).status == "train"


def test_a_deleted_or_thumbed_down_correction_is_never_used_again(chat):
    exchange = taught(chat)
    assert ask(chat, "Who is the Vellmar Island lighthouse keeper?", "ok").examples
    chat.rate(exchange, -1, reasons=["wrong facts"])
    gone = ask(chat, "Who is the Vellmar Island lighthouse keeper?", "ok")
    if PoolStore(chat.store.engine).entry(exchange).status != "train":
        assert gone.examples == ()
    chat.delete(chat.store.exchange(exchange).conversation_id)
    assert ask(chat, "Who is the Vellmar Island lighthouse keeper?", "ok").examples == ()
    assert chat.curator.by_words("Vellmar lighthouse keeper", 5) == []


def test_another_users_correction_is_used_only_once_a_reviewer_vouched(
    store, memory_settings, fake_model, curator
):
    alice = ChatService(
        store, fake_model, memory_settings.model_copy(update={"user": "alice"}), curator
    )
    bob = ChatService(
        store, fake_model, memory_settings.model_copy(update={"user": "bob"}), curator
    )
    exchange = taught(alice, answer=ANSWER + " Call her on (415) 555-2671.")
    assert ask(bob, QUESTION, "ok").examples == ()  # found by both searches, and still not his
    GradingStore(store.engine).review(exchange, "dismiss", "rita")
    reply = ask(bob, QUESTION, "ok")
    assert [e.exchange_id for e in reply.examples] == [exchange] and reply.examples[0].shared
    assert "555-2671" not in str(bob.model.history[-1])  # PII-masked on the way out
    # under his answer it says whose it was, masked as well
    assert "Another user taught this, and a person vouched for it: " in reply.text
    assert "Orsolya Brandt" in reply.text and "555-2671" not in reply.text


def test_the_word_index_is_rebuilt_when_a_correction_is_saved_not_by_the_next_question(chat):
    curator = chat.curator
    exchange = taught(chat)
    # The save brought the BM25 index up to date: the next lookup rebuilds nothing.
    assert curator.keywords.version == curator.pool.taught_version(
        ("human_written", "human_approved")
    )
    built = curator.keywords._bm25
    assert [i for i, _ in curator.keywords.search("Vellmar lighthouse keeper", 5)] == [exchange]
    assert ask(chat, "Who is the Vellmar Island lighthouse keeper?", "ok").examples
    assert curator.keywords._bm25 is built
    chat.delete(chat.store.exchange(exchange).conversation_id)
    assert curator.keywords.search("Vellmar lighthouse keeper", 5) == []


def test_a_rare_english_word_is_not_taken_for_a_name_but_an_unknown_one_is(chat):
    exchange = taught(chat, "How do I reset my router?", "Hold its reset button for ten seconds.")
    wifi = ask(chat, "How can I reset my wifi router password?", "ok")
    assert [e.exchange_id for e in wifi.examples] == [exchange]
    # A lower-case word English has never seen is a name the taught answer does not hold.
    assert ask(chat, "How can I reset my zorvath router password?", "ok").examples == ()
