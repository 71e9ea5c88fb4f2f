"""What survives a full disk, and what does not survive a deletion, read from the real files.

A full disk: a real filesystem (a small tmpfs, mounted here: the tests run as root) is filled
while the answer is being generated, with the real SQLite database and chat service on it; the
fake model stands in for generation only, since the path under test is storage. Deleting: the
raw bytes of the SQLite files (database, -wal, -shm) and of every file under the Chroma folder
are searched for the deleted text and for its vectors. The home folder's modes are read from
disk after the real CLI created it.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

from assistant.chat import ChatService
from assistant.settings import Settings
from store.conversations import ConversationStore
from store.db import checkpoint, open_database
from store.tables import Message
from tests.conftest import ROOT
from tests.fakes import FakeModel, ask

SQL_WORDS = ("INSERT", "UPDATE", "SELECT", "[SQL", "[parameters")


@pytest.fixture
def small_disk(tmp_path):
    """A real 8 MiB filesystem that a test can fill; skipped, saying why, where mounting is not
    allowed."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(folder: Path, leave: int) -> None:
    """Fill the filesystem `folder` is on, then free `leave` bytes of it again."""
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            try:
                os.write(fd, b"\0" * 65536)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
        os.ftruncate(fd, max(0, os.fstat(fd).st_size - leave))
    finally:
        os.close(fd)


class FillsTheDisk(FakeModel):
    """The fake model, filling the disk partway through its answer (`before` runs first)."""

    def __init__(self, disk: Path, leave: int, before=lambda: None):
        super().__init__()
        self.disk, self.leave, self.before = disk, leave, before

    def stream(self, messages, sampling, cancel=None, json_schema=None):
        for n, delta in enumerate(super().stream(messages, sampling, cancel, json_schema)):
            if n == 100:
                self.before()
                fill(self.disk, self.leave)
            yield delta


def service_on(disk: Path, model) -> ChatService:
    settings = Settings(home=disk / "home", grading=False, max_tokens=64, seed=7)
    settings.home_dir.mkdir()
    store = ConversationStore(open_database(settings.effective_database_url))
    return ChatService(store, model, settings)


ANSWER = ("abcdefghi " * 10_000)[:100_000]  # 100,000 characters, 10,000 words


def test_a_disk_filling_up_mid_answer_marks_it_failed_in_plain_words_and_keeps_the_text(
    small_disk,
):
    chat = service_on(small_disk, FillsTheDisk(small_disk, leave=32 * 1024))
    final = ask(chat, "Write me a long story.", ANSWER)

    assert (final.status, final.text) == ("failed", ANSWER)  # the whole text, still shown
    assert final.error == "the answer could not be saved (database or disk is full)"
    exchange = chat.store.exchange(final.exchange_id)
    assert (exchange.status, exchange.error) == ("failed", final.error)  # at once, not at restart
    assert exchange.assistant_message_id is None and exchange.finished_at is not None
    assert chat.store.count(Message) == 1  # the question; no half-stored answer
    from assistant.web.chat_tab import note_for

    note = note_for(final)
    assert note.startswith("ℹ️ The answer could not be saved (database or disk is full).")
    assert "copy it" in note and "is saved" not in note
    assert not any(word in final.error + note for word in SQL_WORDS)

    (small_disk / "filler").unlink()  # space again: the next answer is stored as usual
    again = ask(chat, "And a short one?", "Once upon a time.", final.conversation_id)
    assert again.status == "completed" and chat.store.answer(again.exchange_id)


def test_when_not_even_the_failure_fits_the_next_start_marks_the_exchange_failed(small_disk):
    model = FillsTheDisk(small_disk, leave=0)
    chat = service_on(small_disk, model)
    # An empty write-ahead log and not one free byte: nothing at all can be written.
    model.before = lambda: checkpoint(chat.store.engine)
    final = ask(chat, "Write me a long story.", ANSWER)

    assert (final.status, final.text) == ("failed", ANSWER)
    assert final.error == "the answer could not be saved (database or disk is full)"
    assert chat.store.exchange(final.exchange_id).status == "generating"

    (small_disk / "filler").unlink()
    restarted = ConversationStore(open_database(chat.settings.effective_database_url))
    assert restarted.recover_interrupted() == 1
    exchange = restarted.exchange(final.exchange_id)
    assert exchange.status == "failed" and exchange.error.startswith("interrupted")


# deleting


def has_vector(data: bytes, vector: np.ndarray, tol: float = 1e-4) -> bool:
    """Whether `vector` (as given, or unit length as the cosine index keeps it) is in `data`
    as float32: its first 8 components, each within `tol`, at any byte offset."""
    for v in (vector, vector / np.linalg.norm(vector)):
        head = v[:8].astype(np.float32)
        for offset in range(4):
            n = (len(data) - offset) // 4
            if n < 8:
                continue
            floats = np.frombuffer(data, dtype=np.float32, count=n, offset=offset)
            with np.errstate(invalid="ignore"):
                starts = np.flatnonzero(np.abs(floats[: n - 7] - head[0]) < tol)
                if any(np.all(np.abs(floats[i : i + 8] - head) < tol) for i in starts):
                    return True
    return False


def files_of(settings) -> dict[str, bytes]:
    """The raw bytes of the SQLite files and of every file under the Chroma folder."""
    home = settings.home_dir
    paths = [home / f"autodidact.db{end}" for end in ("", "-wal", "-shm")]
    paths += [p for p in (home / "chroma").rglob("*") if p.is_file()]
    return {str(p.relative_to(home)): p.read_bytes() for p in paths if p.exists()}


def traces(settings, marker: str, vectors) -> list[str]:
    """Every file that still holds the marker or one of the vectors."""
    found = []
    for name, data in files_of(settings).items():
        if marker.encode() in data:
            found.append(f"{name}: text")
        found += [f"{name}: vector {i}" for i, v in enumerate(vectors) if has_vector(data, v)]
    return found


def test_a_deleted_conversation_leaves_no_copy_in_sqlite_or_chroma_files(
    store, settings, fake_model, curator
):
    chat = ChatService(store, fake_model, settings, curator)
    marker = f"okapi-{uuid.uuid4().hex}"
    kept = ask(chat, "What is the capital of Peru?", "Lima is the capital of Peru.")
    chat.rate(kept.exchange_id, 1)
    gone = ask(chat, f"What does {marker} mean?", f"{marker} is a made-up word.")
    chat.rate(gone.exchange_id, 1)
    chat.correct(gone.exchange_id, f"{marker} means nothing at all.")
    index = curator.index
    key = [str(gone.exchange_id)]
    vectors = [
        np.asarray(c.get(ids=key, include=["embeddings"])["embeddings"][0])
        for c in (index.exchanges, index.prompts)
    ]
    before = traces(settings, marker, vectors)  # the search finds them while they are there
    assert any(t.endswith("text") for t in before) and any("chroma" in t for t in before)

    chat.delete(gone.conversation_id)

    assert traces(settings, marker, vectors) == []
    assert index.ids() == {kept.exchange_id}  # what was not deleted is all still there
    again = ask(chat, "Capital of Peru?", "Lima.")
    assert store.exchange(again.exchange_id).retrieved == [kept.exchange_id]


def test_a_removed_document_leaves_no_copy_in_sqlite_or_chroma_files(
    store, settings, curator, embedder
):
    from assistant.wiring import build_library

    library = build_library(settings, store.engine, embedder, curator.index.chroma)
    user_id = store.user(settings.user).id
    marker = f"quokka-{uuid.uuid4().hex}"
    kept = library.add_bytes("kept.md", b"Lima is the capital of Peru.\n", user_id)
    text = f"The {marker} lives on Rottnest Island and is famous for smiling.\n" * 40
    gone = library.add_bytes("gone.md", text.encode(), user_id)
    ids = library.store.chunk_ids(gone.document_id)
    got = library.index.chunks.get(ids=[str(i) for i in ids], include=["embeddings"])
    vectors = [np.asarray(v) for v in got["embeddings"]]
    assert any(t.endswith("text") for t in traces(settings, marker, vectors))

    library.remove(gone.document_id)

    assert traces(settings, marker, vectors) == []
    assert library.index.ids() == set(library.store.chunk_ids(kept.document_id))
    assert [h.document for h in library.search("capital of Peru", user_id=user_id)] == ["kept.md"]


def test_forgotten_vectors_leave_no_copy_in_chromas_index_files(tmp_path):
    from store.vectors import KnowledgeIndex

    # Past 1,000 writes Chroma persists its HNSW index files, which keep deleted vectors.
    vectors = np.random.default_rng(7).standard_normal((1200, 384)).astype(np.float32)
    index = KnowledgeIndex.open(tmp_path / "chroma")
    index.add(list(range(1, 1201)), vectors, document_id=1, user_id=1)
    hnsw = [p for p in (tmp_path / "chroma").rglob("data_level0.bin")]
    assert hnsw and has_vector(hnsw[0].read_bytes(), vectors[0])

    index.forget([1, 2])

    leftovers = [
        f"{p.name}: vector {i}"
        for p in (tmp_path / "chroma").rglob("*")
        if p.is_file()
        for i in (0, 1)
        if has_vector(p.read_bytes(), vectors[i])
    ]
    assert leftovers == []
    assert index.count() == 1198 and index.nearest(vectors[5], 1)[0].exchange_id == 6
    reopened = KnowledgeIndex.open(tmp_path / "chroma")  # what the next start finds
    assert reopened.ids() == set(range(3, 1201))


def test_an_index_opened_before_a_purge_elsewhere_finds_the_new_collection(tmp_path):
    from store.vectors import KnowledgeIndex

    vectors = np.random.default_rng(7).standard_normal((3, 384)).astype(np.float32)
    serving = KnowledgeIndex.open(tmp_path / "chroma")
    serving.add([1, 2, 3], vectors, document_id=1, user_id=1)
    # What `autodidact knowledge remove` does while the app runs, with its own index.
    KnowledgeIndex.open(tmp_path / "chroma").forget([3])
    assert serving.nearest(vectors[1], 1)[0].exchange_id == 2
    assert serving.ids() == {1, 2}


def test_deleting_while_another_thread_writes_and_searches_keeps_chroma_intact(tmp_path):
    """A user deletes conversations while the grader adds pool vectors and looks up
    references: before the purge and collection calls shared a lock, this left "database disk
    image is malformed" in chroma.sqlite3 and every later call failed."""
    import threading

    from store.vectors import VectorIndex

    rng = np.random.default_rng(0)

    def unit(n):
        v = rng.standard_normal((n, 384)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    index = VectorIndex.open(tmp_path / "chroma")
    index.add(list(range(1, 21)), unit(20), unit(20), [{"user_id": 1, "source": "x"}] * 20)
    stop, errors, added = threading.Event(), [], []

    def grader():
        i = 1000
        while not stop.is_set():
            try:
                index.add([i], unit(1), unit(1), [{"user_id": 1, "source": "model_only"}])
                index.nearest_prompts(unit(1)[0], 2)
                added.append(i)
            except Exception as exc:  # noqa: BLE001 - every failure is the finding
                errors.append(f"{type(exc).__name__}: {exc}")
            i += 1

    worker = threading.Thread(target=grader)
    worker.start()
    try:
        for i in range(1, 11):
            index.forget([i])
    finally:
        stop.set()
        worker.join()
    assert errors == []
    assert index.ids() == set(range(11, 21)) | set(added)
    assert VectorIndex.open(tmp_path / "chroma").ids() == set(range(11, 21)) | set(added)


# the home folder


def test_the_home_folder_is_created_private_and_an_open_one_is_tightened(settings, caplog):
    from assistant.wiring import private_home

    home = settings.home_dir / "fresh"
    fresh = Settings(home=home)
    assert stat.S_IMODE(private_home(fresh).stat().st_mode) == 0o700
    home.chmod(0o755)
    with caplog.at_level(logging.WARNING, logger="assistant.wiring"):
        private_home(fresh)
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert "was open to other users (mode 755); made it private" in caplog.text


def test_what_the_cli_writes_in_the_home_folder_is_its_owners_alone(home):
    env = {**os.environ, "AUTODIDACT_HOME": str(home)}
    done = subprocess.run(
        [sys.executable, "-m", "assistant.cli", "history"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=lambda: os.umask(0o022),  # a typical login's umask
    )
    assert done.returncode == 0, done.stderr[-2000:]
    written = [home, *home.rglob("*")]
    assert home / "autodidact.db" in written and home / "chroma" / "chroma.sqlite3" in written
    open_to_others = {
        str(p.relative_to(home)): oct(stat.S_IMODE(p.stat().st_mode))
        for p in written
        if p.stat().st_mode & 0o077
    }
    assert open_to_others == {}
