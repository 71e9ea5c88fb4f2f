"""Knowledge documents end to end on real components: SQLite or PostgreSQL, Chroma on disk or as
a server (every test runs on conftest.STORES: each server beside the other's default), the real
embedder.

Adding, re-adding, replacing and removing documents; the passages a question finds; the chat
putting them into the prompt, numbered, and recording them; the grader grading against them and
against the user's corrections. The chat's model is the fake here (the prompt is what is under
test); tests/test_browser.py drives the same path with the real model in a real browser.
"""

from __future__ import annotations

import pytest

from assistant.chat import ChatService
from assistant.wiring import build_library
from tests.conftest import STORES
from tests.fakes import ask

HANDBOOK = """Orbital Tea Company staff handbook.

The Orbital Tea Company was founded in 1987 by Marisol Quenby in the harbour town of Vellacourt.
Its flagship blend is called Copper Lantern and it is smoked over cedar for nine days.

Holiday policy: every employee receives thirty-one days of paid leave per year, and the office
closes for the Festival of Kites on the second Monday of May.
"""

ROBOTS = """Maintenance notes for the Brindle-7 warehouse robot.

The Brindle-7 charges on a violet induction pad and must be recalibrated every 400 hours.
Its left gripper is rated for eleven kilograms.
"""


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
def library(settings, store, embedder, curator):
    return build_library(settings, store.engine, embedder, curator.index.chroma)


@pytest.fixture
def chat(store, fake_model, settings, curator, library):
    return ChatService(store, fake_model, settings, curator, library)


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_a_question_finds_the_passage_that_answers_it_and_not_the_other_document(
    library, store, tmp_path
):
    user = store.user("local").id
    results = library.add_paths(
        [write(tmp_path, "handbook.md", HANDBOOK), write(tmp_path, "robot.txt", ROBOTS)], user
    )
    assert [r.status for r in results] == ["added", "added"]
    hits = library.search("Who founded the Orbital Tea Company?")
    assert hits and hits[0].document == "handbook.md"
    assert "Marisol Quenby" in hits[0].text
    assert all(h.document != "robot.txt" for h in hits)
    assert library.search("What is the capital of Peru?") == []  # nothing similar enough


def test_re_adding_the_same_bytes_changes_nothing_and_changed_bytes_replace_the_passages(
    library, store, tmp_path
):
    user = store.user("local").id
    path = write(tmp_path, "handbook.md", HANDBOOK)
    first = library.add_file(path, user)
    again = library.add_file(path, user)
    assert (again.status, again.document_id) == ("unchanged", first.document_id)
    before = library.store.chunk_ids(first.document_id)
    write(tmp_path, "handbook.md", HANDBOOK.replace("1987", "1991"))
    replaced = library.add_file(path, user)
    assert (replaced.status, replaced.document_id) == ("replaced", first.document_id)
    after = library.store.chunk_ids(first.document_id)
    assert not set(before) & set(after)
    assert library.index.ids() == set(after)  # old vectors gone, new ones in
    hits = library.search("When was the Orbital Tea Company founded?")
    assert "1991" in hits[0].text and all("1987" not in h.text for h in hits)
    assert len(library.documents()) == 1


def test_a_copy_under_another_name_is_not_added_twice(library, store, tmp_path):
    user = store.user("local").id
    library.add_file(write(tmp_path, "a.md", HANDBOOK), user)
    copy = library.add_file(write(tmp_path, "b.md", HANDBOOK), user)
    assert copy.status == "unchanged" and "same content as a.md" in copy.line()


def test_a_refused_file_adds_nothing_and_the_rest_of_the_folder_still_goes_in(
    library, store, tmp_path
):
    user = store.user("local").id
    folder = tmp_path / "docs"
    folder.mkdir()
    write(folder, "empty.txt", "")
    (folder / "binary.txt").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8)
    write(folder, "handbook.md", HANDBOOK)
    seen = []
    results = library.add_paths([folder], user, lambda n, total, r: seen.append((n, total)))
    by_name = {r.name: r for r in results}
    assert by_name["handbook.md"].status == "added"
    assert by_name["empty.txt"].status == "refused" and "empty" in by_name["empty.txt"].line()
    assert by_name["binary.txt"].status == "refused"
    assert all("\n" not in r.line() and "Traceback" not in r.line() for r in results)
    assert [d.name for d in library.documents()] == ["handbook.md"]
    assert seen[-1] == (3, 3)
    # Running it again resumes: what is in stays unchanged, nothing is added twice.
    again = library.add_paths([folder], user)
    assert {r.name: r.status for r in again}["handbook.md"] == "unchanged"


def test_the_answer_is_given_numbered_passages_and_records_them(chat, library, store, tmp_path):
    user = store.user("local").id
    library.add_file(write(tmp_path, "handbook.md", HANDBOOK), user)
    reply = ask(chat, "Who founded the Orbital Tea Company?", "Marisol Quenby founded it [1].")
    system = chat.model.history[-1][0]["content"]
    assert "[1] handbook.md:" in system and "Marisol Quenby" in system
    assert reply.sources and reply.sources[0].number == 1
    assert reply.sources[0].document == "handbook.md"
    stored = chat.sources([reply.exchange_id])[reply.exchange_id]
    assert [s.chunk_id for s in stored] == [s.chunk_id for s in reply.sources]


def test_a_removed_document_is_gone_from_old_answers_and_never_cited_again(
    chat, library, store, tmp_path
):
    user = store.user("local").id
    added = library.add_file(write(tmp_path, "handbook.md", HANDBOOK), user)
    first = ask(chat, "Who founded the Orbital Tea Company?", "Marisol Quenby [1].")
    assert first.sources
    library.remove(added.document_id)
    assert chat.sources([first.exchange_id])[first.exchange_id] == []
    assert library.index.count() == 0
    second = ask(chat, "Who founded the Orbital Tea Company?", "I do not know.")
    assert second.sources == ()
    assert "Marisol" not in chat.model.history[-1][0]["content"]


def test_passages_stay_within_their_token_budget(chat, library, store, tmp_path, settings):
    user = store.user("local").id
    long_doc = "\n\n".join(
        f"Orbital Tea Company fact {i}: the founder Marisol Quenby liked blend number {i}. " * 6
        for i in range(30)
    )
    library.add_file(write(tmp_path, "facts.md", long_doc), user)
    settings.knowledge_max_tokens = 120
    ask(chat, "What did Marisol Quenby of the Orbital Tea Company like?", "Tea.")
    system = chat.model.history[-1][0]["content"]
    base = chat.model.count_tokens([{"role": "system", "content": settings.system_prompt}])
    used = chat.model.count_tokens([{"role": "system", "content": system}]) - base
    assert 0 < used <= 120
    assert "[1]" in system


def test_knowledge_off_means_no_passages(chat, library, store, tmp_path, settings):
    library.add_file(write(tmp_path, "handbook.md", HANDBOOK), store.user("local").id)
    settings.knowledge = False
    reply = ask(chat, "Who founded the Orbital Tea Company?", "No idea.")
    assert reply.sources == () and "Marisol" not in chat.model.history[-1][0]["content"]


def test_a_document_whose_vectors_were_lost_in_a_crash_is_indexed_again_when_re_added(
    library, store, tmp_path
):
    user = store.user("local").id
    path = write(tmp_path, "handbook.md", HANDBOOK)
    first = library.add_file(path, user)
    # What a kill between the rows and the vectors leaves: rows, no vectors.
    library.index.remove(library.store.chunk_ids(first.document_id))
    assert library.search("Who founded the Orbital Tea Company?") == []
    again = library.add_file(path, user)
    assert again.status == "reindexed"
    assert library.store.chunk_ids(first.document_id) == library.store.chunk_ids(again.document_id)
    assert library.search("Who founded the Orbital Tea Company?")[0].document == "handbook.md"


def test_a_replacement_that_cannot_be_indexed_leaves_the_old_version_whole(
    library, store, tmp_path, monkeypatch
):
    user = store.user("local").id
    path = write(tmp_path, "handbook.md", HANDBOOK)
    first = library.add_file(path, user)
    before = library.store.chunk_ids(first.document_id)

    def broken(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(library.index, "add", broken)
    write(tmp_path, "handbook.md", HANDBOOK.replace("1987", "1991"))
    result = library.add_file(path, user)
    assert result.status == "refused" and "No space left on device" in result.line()
    assert "\n" not in result.line()
    [doc] = library.documents()
    assert doc.sha256 == first_sha(library, first.document_id)
    assert library.store.chunk_ids(doc.id) == before
    monkeypatch.undo()
    assert "1987" in library.search("When was the Orbital Tea Company founded?")[0].text


def first_sha(library, document_id):
    return library.store.document(document_id).sha256


def test_a_user_finds_only_their_own_documents(library, store, tmp_path):
    alice, bob = store.user("alice").id, store.user("bob").id
    library.add_file(write(tmp_path, "handbook.md", HANDBOOK), alice)
    question = "Who founded the Orbital Tea Company?"
    assert library.search(question, user_id=alice)
    assert library.search(question, user_id=bob) == []


def test_a_document_removed_while_an_answer_starts_is_not_recorded_as_its_source(
    chat, library, store, tmp_path
):
    added = library.add_file(write(tmp_path, "handbook.md", HANDBOOK), store.user("local").id)
    hits = chat.passages_for("Who founded the Orbital Tea Company?")
    assert hits
    library.remove(added.document_id)  # between the search and the answer's first write
    prompt = chat.build_prompt([], "Who founded the Orbital Tea Company?", [], hits)
    msg = store.start_conversation(chat.user.id, "t", "Who founded the Orbital Tea Company?")
    ex = store.start_exchange(
        msg.conversation_id,
        msg.id,
        "fake-model",
        {},
        sources=[(s.chunk_id, s.number, s.similarity) for s in prompt.sources],
    )
    assert chat.sources([ex.id])[ex.id] == []
