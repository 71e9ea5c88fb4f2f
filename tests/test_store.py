"""The database: migrations, WAL mode, and the rows the chat flow writes, each test on SQLite
and on a real PostgreSQL server (tests/postgres.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, inspect, text
from sqlmodel import SQLModel, select

from store.conversations import ConversationStore
from store.db import connect, migrate, open_database, schema_revision, sqlite_url
from store.grading import GradingStore
from store.tables import Conversation, Exchange, Message, Rating, User
from tests.conftest import BACKENDS

HEAD = "0007"  # the newest migration
TABLES = {
    "users",
    "api_tokens",
    "login_sessions",
    "calibrations",
    "documents",
    "document_chunks",
    "exchange_sources",
    "conversations",
    "messages",
    "exchanges",
    "ratings",
    "grades",
    "grading_jobs",
    "reviews",
    "corrections",
    "pool_entries",
    "forgotten",
    "refresh_runs",
    "trained_on",
    "lessons",
    "heldout",
    "alembic_version",
}


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture
def url(settings) -> str:
    """The test's own empty database: a SQLite file in its home, or a new PostgreSQL database."""
    return settings.effective_database_url


def sequences_past_explicit_ids(conn) -> None:
    """Rows inserted with their ids, as the upgrade tests do, leave PostgreSQL's id sequences
    behind (SQLite takes the largest id + 1): move each one where the old app's own inserts
    would have left it, so the upgraded app can go on writing."""
    if conn.dialect.name != "postgresql":
        return
    for table in inspect(conn).get_table_names():
        if table != "alembic_version":
            conn.execute(
                text(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"coalesce(max(id), 0) + 1, false) FROM {table}"
                )
            )


def test_blank_database_migrates_to_exactly_the_models(url):
    engine = open_database(url)
    assert set(inspect(engine).get_table_names()) == TABLES
    assert schema_revision(engine) == HEAD
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert diff == []


def test_downgrade_then_upgrade_restores_the_schema(url):
    engine = open_database(url)
    migrate(engine, "base")
    assert set(inspect(engine).get_table_names()) == {"alembic_version"}
    assert schema_revision(engine) is None
    migrate(engine)
    assert set(inspect(engine).get_table_names()) == TABLES


def test_reopening_a_database_keeps_its_rows(url):
    store = ConversationStore(open_database(url))
    user = store.user("ana")
    store.create_conversation(user.id, "kept")
    again = ConversationStore(open_database(url))
    assert [c.title for c in again.conversations(user.id)] == ["kept"]


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path):
    engine = connect(sqlite_url(tmp_path / "wal.db"))
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1


def test_a_turn_is_stored_in_order_and_shown_with_its_newest_answer(store):
    user = store.user("local")
    conv = store.create_conversation(user.id, "t")
    msg = store.add_user_message(conv.id, "question")
    first = store.start_exchange(conv.id, msg.id, "m", {"temperature": 0.0})
    assert store.turns(conv.id)[0].status == "generating"
    store.finish_exchange(first.id, "old answer", "completed", completion_tokens=2)
    second = store.start_exchange(conv.id, msg.id, "m", {}, regenerated_from_id=first.id)
    store.finish_exchange(second.id, "new answer", "stopped")
    [turn] = store.turns(conv.id)
    assert (turn.user, turn.assistant, turn.exchange_id, turn.status) == (
        "question",
        "new answer",
        second.id,
        "stopped",
    )
    assert store.exchange(second.id).regenerated_from_id == first.id
    assert store.count(Message) == 3


def test_deleting_a_conversation_removes_all_its_rows(store):
    user = store.user("local")
    keep = store.create_conversation(user.id, "keep")
    gone = store.create_conversation(user.id, "gone")
    for conv in (keep, gone):
        msg = store.add_user_message(conv.id, "q")
        ex = store.start_exchange(conv.id, msg.id, "m", {})
        store.finish_exchange(ex.id, "a", "completed")
        store.rate(ex.id, user.id, 1)
    assert store.delete_conversation(gone.id) == {
        "pool_entries": 0,
        "training_examples": 0,
        "ratings": 1,
        "exchanges": 1,
        "messages": 2,
    }
    assert [c.id for c in store.conversations(user.id)] == [keep.id]
    assert (
        store.count(Conversation),
        store.count(Exchange),
        store.count(Message),
        store.count(Rating),
    ) == (1, 1, 2, 1)


def test_the_newest_rating_counts_and_can_be_taken_back(store):
    user = store.user("local")
    conv = store.create_conversation(user.id, "t")
    msg = store.add_user_message(conv.id, "q")
    ex = store.start_exchange(conv.id, msg.id, "m", {})
    store.rate(ex.id, user.id, 1)
    store.rate(ex.id, user.id, -1)
    assert store.current_rating(ex.id) == -1
    store.rate(ex.id, user.id, 0)
    assert store.current_rating(ex.id) == 0
    assert store.count(Rating) == 3


def test_exchanges_left_generating_by_a_dead_process_are_marked_failed(store):
    user = store.user("local")
    conv = store.create_conversation(user.id, "t")
    msg = store.add_user_message(conv.id, "q")
    ex = store.start_exchange(conv.id, msg.id, "m", {})
    assert store.recover_interrupted() == 1
    stored = store.exchange(ex.id)
    assert (stored.status, stored.error) == (
        "failed",
        "interrupted: the app stopped during generation",
    )


def test_times_are_kept_in_utc_whatever_the_servers_timezone(store):
    """tests/postgres.py runs its server at +14:00: a late-evening UTC time there is tomorrow."""
    late = datetime(2026, 1, 1, 23, 30, tzinfo=UTC)
    with store.session() as s:
        s.add(User(name="late", created_at=late))
        s.commit()
    again = ConversationStore(store.engine).user("late")
    assert again.created_at == late and again.created_at.utcoffset() == timedelta(0)
    with store.session() as s:
        day = s.exec(select(func.date(User.created_at)).where(User.name == "late")).one()
    assert str(day) == "2026-01-01"


def test_passage_ids_are_never_reused_after_the_newest_document_goes(store):
    """SQLite needs AUTOINCREMENT for this (`sqlite_autoincrement`); PostgreSQL's sequences never
    go back. A vector a crash left behind must never point at another passage's text."""
    from store.knowledge import KnowledgeStore
    from store.tables import Document

    knowledge = KnowledgeStore(store.engine)
    user = store.user("ana").id

    def add(name):
        doc = Document(user_id=user, name=name, kind="txt", sha256=name, size_bytes=1)
        return doc, knowledge.add(doc, [("one", None), ("two", 1)])

    first, old = add("a.txt")
    knowledge.remove(first.id)
    second, new = add("b.txt")
    assert second.id > first.id and min(new) > max(old)


def test_refresh_runs_their_mixes_and_the_held_out_split_round_trip(store):
    from store.runs import RunStore

    runs = RunStore(store.engine)
    first = runs.start(adapter_id="a1", base_model="m", dry_run=True, data={"mix": [1, 2]})
    runs.record_mix(first.id, [1, 2, 3])
    runs.finish(first.id, "promoted", metrics={"train": {"loss": 0.5}})
    second = runs.start(adapter_id="a2", base_model="m", parent_adapter_id="a1")
    runs.record_mix(second.id, [4])
    runs.hold_out(list(range(10, 1210)))  # more ids than one IN (...) takes
    assert runs.recover_interrupted() == 1
    assert runs.trained_ids() == {1, 2, 3}
    assert runs.trained_ids(("promoted", "interrupted")) == {1, 2, 3, 4}
    assert len(runs.heldout_ids()) == 1200
    promoted = runs.last_promoted()
    assert (promoted.adapter_id, promoted.dry_run, promoted.forced) == ("a1", True, False)
    assert (promoted.data, promoted.metrics) == ({"mix": [1, 2]}, {"train": {"loss": 0.5}})
    assert promoted.finished_at > promoted.started_at
    interrupted = runs.run("a2")
    assert (interrupted.status, interrupted.step) == ("interrupted", "select")
    assert [r.adapter_id for r in runs.runs()] == ["a1", "a2"]


def test_upgrading_a_0001_database_keeps_its_rows_and_queues_its_answers_for_grading(url):
    from store.grading import GradingStore

    engine = connect(url)
    migrate(engine, "0001")
    assert "grades" not in inspect(engine).get_table_names()
    with engine.begin() as conn:  # rows as the 0001 app wrote them
        conn.execute(
            text("INSERT INTO users (id, name, created_at) VALUES (1, 'ana', '2026-01-01')")
        )
        conn.execute(
            text("INSERT INTO conversations VALUES (1, 1, 't', '2026-01-01', '2026-01-01')")
        )
        conn.execute(
            text(
                "INSERT INTO messages VALUES (1, 1, 'user', 'q', '2026-01-01'), (2, 1, 'assistant', 'a', '2026-01-01'), (3, 1, 'user', 'q2', '2026-01-01')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO exchanges (id, conversation_id, user_message_id, assistant_message_id, status, model_id, sampling, history_dropped, created_at) "
                "VALUES (1, 1, 1, 2, 'completed', 'm', '{}', 0, '2026-01-01'), (2, 1, 3, NULL, 'failed', 'm', '{}', 0, '2026-01-01')"
            )
        )
        sequences_past_explicit_ids(conn)
    engine = open_database(url)
    assert schema_revision(engine) == HEAD
    store = ConversationStore(engine)
    assert [(t.user, t.assistant) for t in store.turns(1)] == [("q", "a"), ("q2", None)]
    grading = GradingStore(engine)
    assert grading.counts() == {"pending": 1}
    assert grading.job(1).status == "pending" and grading.job(2) is None
    new = store.add_user_message(1, "q3")  # and the upgraded app goes on writing
    assert new.id == 4 and store.user("bo").id == 2
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), SQLModel.metadata) == []


def test_upgrading_a_0002_database_keeps_ratings_and_starts_an_empty_pool(url):
    from store.tables import PoolEntry

    engine = connect(url)
    migrate(engine, "0002")
    assert "pool_entries" not in inspect(engine).get_table_names()
    with engine.begin() as conn:  # rows as the 0002 app wrote them
        conn.execute(
            text("INSERT INTO users (id, name, created_at) VALUES (1, 'ana', '2026-01-01')")
        )
        conn.execute(
            text("INSERT INTO conversations VALUES (1, 1, 't', '2026-01-01', '2026-01-01')")
        )
        conn.execute(
            text(
                "INSERT INTO messages VALUES (1, 1, 'user', 'q', '2026-01-01'), (2, 1, 'assistant', 'a', '2026-01-01')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO exchanges (id, conversation_id, user_message_id, assistant_message_id, status, model_id, sampling, history_dropped, created_at) "
                "VALUES (1, 1, 1, 2, 'completed', 'm', '{}', 0, '2026-01-01')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO ratings (id, exchange_id, user_id, value, created_at) VALUES (1, 1, 1, -1, '2026-01-01')"
            )
        )
        sequences_past_explicit_ids(conn)
    engine = open_database(url)
    assert schema_revision(engine) == HEAD
    store = ConversationStore(engine)
    rating = store.rating(1)
    assert (rating.value, rating.reasons, rating.comment) == (-1, [], None)
    assert store.exchange(1).retrieved == []
    assert store.count(PoolEntry) == 0
    assert store.rate(1, 1, 1).id == 2
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), SQLModel.metadata) == []


def test_upgrading_a_0004_database_keeps_grades_with_no_reference_and_an_empty_library(url):
    from store.knowledge import KnowledgeStore

    engine = connect(url)
    migrate(engine, "0004")
    with engine.begin() as conn:  # a graded exchange as the 0004 app wrote it
        conn.execute(
            text("INSERT INTO users (id, name, created_at) VALUES (1, 'ana', '2026-01-01')")
        )
        conn.execute(
            text("INSERT INTO conversations VALUES (1, 1, 't', '2026-01-01', '2026-01-01')")
        )
        conn.execute(
            text(
                "INSERT INTO messages VALUES (1, 1, 'user', 'q', '2026-01-01'), (2, 1, 'assistant', 'a', '2026-01-01')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO exchanges (id, conversation_id, user_message_id, assistant_message_id, status, model_id, sampling, history_dropped, created_at, retrieved) "
                "VALUES (1, 1, 1, 2, 'completed', 'm', '{}', 0, '2026-01-01', '[]')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO grades (id, exchange_id, grader_version, judge_model_id, judge_score, injection, score, flagged, reason, seconds, created_at) "
                "VALUES (1, 1, 'grader-1', 'm', 7, false, 0.7, false, 'fine', '{}', '2026-01-01')"
            )
        )
    engine = open_database(url)
    assert schema_revision(engine) == HEAD
    grade = GradingStore(engine).grade(1)
    assert (grade.judge_score, grade.agreement, grade.reference, grade.calibration_id) == (
        7,
        None,
        None,
        None,
    )
    knowledge = KnowledgeStore(engine)
    assert knowledge.documents() == [] and knowledge.sources([1]) == {1: []}
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), SQLModel.metadata) == []
    migrate(engine, "0004")  # and back down: the new tables go, the grade stays
    assert "documents" not in inspect(engine).get_table_names()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT judge_score FROM grades")).scalar() == 7


def test_upgrading_a_0006_database_keeps_its_pool_and_starts_with_no_lessons(url):
    from store.lessons import LessonStore

    engine = connect(url)
    migrate(engine, "0006")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO users (id, name, role, created_at) VALUES (1, 'ana', 'admin', '2026-01-01')"
            )
        )
    engine = open_database(url)
    assert schema_revision(engine) == HEAD
    assert LessonStore(engine).counts() == {}
    assert ConversationStore(engine).user("ana").role == "admin"
