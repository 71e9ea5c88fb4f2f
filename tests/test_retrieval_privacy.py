"""Retrieval across accounts: a user is shown other users' past exchanges as examples only when a
person wrote or approved the answer, always PII-masked, and never when sharing is turned off.

Two users share one database and one Chroma index on disk (real SQLite, real Chroma, the offline
embedder); their chats run on the fake model. The crash cases leave the index behind the rows on
purpose: the rows are the record, and a stale vector must never show an exchange.
"""

from __future__ import annotations

import pytest

from assistant.chat import ChatService
from assistant.wiring import build_curator
from feedback.pool.curator import evidence
from feedback.pool.rules import verdict
from tests.fakes import ask
from tests.test_pool import grade

ROUTER = "How do I reset the password on my home wifi router?"
ALICE_ASKS = "How can I reset my wifi router password?"


@pytest.fixture
def shared_settings(settings):
    # With two users the pool caps each at half of it; these tests are about who sees what.
    settings.pool_max_user_share = 1.0
    return settings


@pytest.fixture
def curator(shared_settings, store, embedder):
    return build_curator(shared_settings, store.engine, embedder)


def chat_as(name, store, settings, model, curator) -> ChatService:
    return ChatService(store, model, settings.model_copy(update={"user": name}), curator)


@pytest.fixture
def alice(store, shared_settings, fake_model, curator):
    return chat_as("alice", store, shared_settings, fake_model, curator)


@pytest.fixture
def bob(store, shared_settings, fake_model, curator):
    return chat_as("bob", store, shared_settings, fake_model, curator)


def model_only(chat, question, answer) -> int:
    """An exchange in the pool on the self-grade alone (no person approved it)."""
    final = ask(chat, question, answer)
    grade(chat.store, final.exchange_id, 0.9, judge=9)
    chat.curate(final.exchange_id)
    e = chat.curator.pool.entry(final.exchange_id)
    assert (e.status, e.source) == ("train", "model_only")
    return final.exchange_id


def approved(chat, question, answer, vouched: bool = True) -> int:
    """The owner's thumbs up and, unless `vouched` is False, a reviewer's word that the answer
    is fine: only then is it shared with other users."""
    final = ask(chat, question, answer)
    chat.rate(final.exchange_id, 1)
    assert chat.curator.pool.entry(final.exchange_id).status == "train"
    if vouched:
        vouch(chat, final.exchange_id)
    return final.exchange_id


def vouch(chat, exchange_id) -> None:
    from store.grading import GradingStore

    GradingStore(chat.store.engine).review(exchange_id, "dismiss", "rita")


def found(curator, user, question=ALICE_ASKS):
    return curator.examples(question, 4, 0.5, user_id=user.id)


def test_another_users_private_exchange_is_never_an_example(alice, bob, curator):
    private = model_only(bob, ROUTER, "Hold the reset button for ten seconds.")
    # Similar enough to be found when nobody says whose prompt it is (one user, as before).
    assert [e.exchange_id for e in curator.examples(ALICE_ASKS, 4, 0.5)] == [private]
    assert found(curator, alice.user) == []
    assert [e.exchange_id for e in found(curator, bob.user)] == [private]


def test_a_users_own_unapproved_exchanges_are_still_examples(alice, bob, curator):
    mine = model_only(alice, ROUTER, "Press the reset button on the back.")
    model_only(bob, "How do I reset my router's wifi password?", "Use the admin page.")
    [example] = found(curator, alice.user)
    assert (example.exchange_id, example.shared) == (mine, False)
    assert example.completion == "Press the reset button on the back."


def test_another_users_approved_exchanges_are_shared_with_pii_masked(alice, bob, curator):
    liked = approved(
        bob,
        "My email is bob@example.com; how do I reset the password on my home wifi router?",
        "Hold reset for ten seconds, then log in; a reset link goes to bob@example.com.",
    )
    corrected = ask(bob, "How do I reset my router's wifi password?", "I don't know.")
    bob.correct(corrected.exchange_id, "Call your provider at (415) 555-2671 to reset it.")
    # Bob's own correction approves it for Bob; other users see it once a reviewer vouches.
    assert {e.exchange_id for e in found(curator, alice.user)} == {liked}
    vouch(bob, corrected.exchange_id)
    examples = {e.exchange_id: e for e in found(curator, alice.user)}
    assert set(examples) == {liked, corrected.exchange_id}
    assert all(e.shared for e in examples.values())
    assert examples[liked].prompt == (
        "My email is [EMAIL]; how do I reset the password on my home wifi router?"
    )
    assert "[EMAIL]" in examples[liked].completion
    assert examples[corrected.exchange_id].completion == (
        "Call your provider at [PHONE] to reset it."
    )
    text = " ".join(e.prompt + e.completion for e in examples.values())
    assert "bob@example.com" not in text and "555-2671" not in text


def test_a_pool_row_stored_unmasked_still_reaches_another_user_masked(alice, bob, curator):
    """A row written before masking, or under other rules, is masked again on the way out."""
    liked = approved(bob, ROUTER, "Hold reset for ten seconds.")
    row = curator.pool.entry(liked)
    row.prompt = "I'm bob@example.com. " + ROUTER
    row.completion = "Hold reset; then mail bob@example.com or call (415) 555-2671."
    curator.pool.save([row])
    [example] = found(curator, alice.user)
    assert example.prompt == "I'm [EMAIL]. " + ROUTER
    assert example.completion == "Hold reset; then mail [EMAIL] or call [PHONE]."
    [own] = found(curator, bob.user)  # the owner gets the row as it is: it is their own text
    assert own.shared is False


def test_with_sharing_off_only_the_users_own_exchanges_are_examples(
    alice, bob, store, shared_settings, embedder
):
    settings = shared_settings.model_copy(update={"retrieval_share_approved": False})
    curator = build_curator(settings, store.engine, embedder)
    assert curator.config.retrieval.share_approved is False
    liked = approved(bob, ROUTER, "Hold reset for ten seconds.")
    mine = model_only(alice, "How can I reset my router's wifi password?", "Use the admin page.")
    assert [e.exchange_id for e in found(curator, alice.user)] == [mine]
    assert [e.exchange_id for e in found(curator, bob.user)] == [liked]


def test_a_vector_left_behind_by_a_deleted_conversation_is_not_an_example(
    alice, bob, store, curator
):
    liked = approved(bob, ROUTER, "Hold reset for ten seconds.")
    # The rows go, but the process dies before the index hears of it (no curator.forget).
    store.delete_conversation(store.exchange(liked).conversation_id)
    assert liked in curator.index.ids()
    assert found(curator, alice.user) == []
    assert found(curator, bob.user) == []


def test_a_vector_still_marked_approved_after_the_approval_was_taken_back_is_not_shared(
    alice, bob, store, curator
):
    liked = approved(bob, ROUTER, "Hold reset for ten seconds.")
    # Bob takes his thumbs up back; the row is judged again, the index update is lost.
    store.rate(liked, bob.user.id, 0)
    [facts] = curator.pool.facts([liked])
    curator.pool.save([curator.entry_for(facts, verdict(evidence(facts)))])
    assert curator.pool.entry(liked).status != "train"
    assert found(curator, alice.user) == []


def test_a_vector_whose_metadata_says_the_wrong_owner_cannot_leak(alice, bob, curator):
    private = model_only(bob, ROUTER, "Hold the reset button for ten seconds.")
    for collection in (curator.index.exchanges, curator.index.prompts):
        collection.update(
            ids=[str(private)], metadatas=[{"user_id": alice.user.id, "source": "model_only"}]
        )
    assert found(curator, alice.user) == []


def test_rebuild_writes_owner_and_source_into_vectors_that_lack_them(alice, curator):
    mine = model_only(alice, ROUTER, "Press the reset button on the back.")
    index = curator.index
    for collection in (index.exchanges, index.prompts):  # an index from before the metadata
        got = collection.get(ids=[str(mine)], include=["embeddings"])
        collection.delete(ids=[str(mine)])
        collection.add(ids=got["ids"], embeddings=got["embeddings"], metadatas=[{"old": True}])
    assert found(curator, alice.user) == []  # filtered out in Chroma: missed, never leaked
    curator.rebuild()
    assert [e.exchange_id for e in found(curator, alice.user)] == [mine]
    assert index.prompts.get(ids=[str(mine)])["metadatas"][0]["user_id"] == alice.user.id


@pytest.mark.parametrize("share", [True, False])
def test_another_users_correction_grades_an_answer_only_when_sharing_is_on(
    share, alice, bob, curator, shared_settings, store
):
    from assistant.wiring import build_references

    shared_settings.retrieval_share_approved = share
    references = build_references(shared_settings, store.engine, curator)
    theirs = ask(bob, ROUTER, "Unplug it.")
    bob.correct(theirs.exchange_id, "Hold the reset button for ten seconds, then log in.")
    mine = ask(alice, ALICE_ASKS, "Unplug it.")
    assert references.for_exchange(mine.exchange_id, ALICE_ASKS) == []  # nobody vouched yet
    vouch(bob, theirs.exchange_id)
    found = references.for_exchange(mine.exchange_id, ALICE_ASKS)
    assert [r.exchange_id for r in found] == ([theirs.exchange_id] if share else [])
    # Bob's own answers are always graded against his own correction.
    again = ask(bob, ALICE_ASKS, "Unplug it.")
    assert [r.exchange_id for r in references.for_exchange(again.exchange_id, ALICE_ASKS)] == [
        theirs.exchange_id
    ]


def test_an_owners_own_thumbs_up_shares_nothing_until_a_reviewer_vouches(alice, bob, curator):
    """The probe: Ana likes an answer that repeats her locker code; Bob must not see it."""
    liked = approved(bob, "My locker code is QUOKKA-7781, how do I reset my router?", "Ok.", False)
    # (a question naming a rare word the taught answer lacks, "wifi", finds nothing of it:
    # the memory's names check, tests/test_memory.py)
    asks = "How can I reset my router password?"
    assert found(curator, alice.user, asks) == []
    assert [e.exchange_id for e in found(curator, bob.user, asks)] == [liked]
    vouch(bob, liked)
    assert [e.exchange_id for e in found(curator, alice.user, asks)] == [liked]


def test_the_vector_search_filters_the_same_whether_chroma_or_the_curator_applies_it(tmp_path):
    """The index asks Chroma unfiltered first and filters the metadata itself, falling back to
    Chroma's filter when too few pass: both paths must show a user the same exchanges."""
    import numpy as np

    from store.vectors import VectorIndex, pool_where

    rng = np.random.default_rng(1)
    query = rng.standard_normal(384).astype(np.float32)
    query /= np.linalg.norm(query)

    def near(n, spread):
        v = query + spread * rng.standard_normal((n, 384)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    index = VectorIndex.open(tmp_path / "chroma")
    # Bob's unshared answers crowd the neighbourhood; Alice has one of her own further off, and
    # Bob has one correction, shareable, far off too.
    index.add(list(range(1, 41)), near(40, 0.01), near(40, 0.01),
              [{"user_id": 2, "source": "model_only"}] * 40)  # fmt: skip
    index.add([100], near(1, 0.2), near(1, 0.2), [{"user_id": 1, "source": "model_only"}])
    index.add([200], near(1, 0.3), near(1, 0.3), [{"user_id": 2, "source": "human_written"}])
    shared = ("human_written", "human_approved")
    alice = [
        n.exchange_id for n in index.nearest_prompts(query, 2, user_id=1, shared_sources=shared)
    ]
    assert alice == [100, 200]  # too few passed the unfiltered ask: Chroma's filter found them
    assert [n.exchange_id for n in index.nearest_prompts(query, 1, user_id=1)] == [100]
    bob = [n.exchange_id for n in index.nearest_prompts(query, 2, user_id=2)]
    assert len(bob) == 2 and 100 not in bob  # plenty passed: filtered here
    filtered = index.prompts.query(query_embeddings=query[None, :], n_results=2,
                                   where=pool_where((), 2, ()), include=["distances"])  # fmt: skip
    assert bob == [int(i) for i in filtered["ids"][0]]
