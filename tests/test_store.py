"""The database: migrations, WAL mode, and the rows the chat flow writes."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlmodel import SQLModel

from store.conversations import ConversationStore
from store.db import connect, migrate, open_database, schema_revision, sqlite_url
from store.grading import GradingStore
from store.tables import Conversation, Exchange, Message, Rating

TABLES = {
    "users",
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
    "heldout",
    "alembic_version",
}


def test_blank_database_migrates_to_exactly_the_models(tmp_path):
    engine = open_database(sqlite_url(tmp_path / "blank.db"))
    assert set(inspect(engine).get_table_names()) == TABLES
    assert schema_revision(engine) == "0005"
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert diff == []


def test_downgrade_then_upgrade_restores_the_schema(tmp_path):
    engine = open_database(sqlite_url(tmp_path / "db.db"))
    migrate(engine, "base")
    assert set(inspect(engine).get_table_names()) == {"alembic_version"}
    assert schema_revision(engine) is None
    migrate(engine)
    assert set(inspect(engine).get_table_names()) == TABLES


def test_reopening_a_database_keeps_its_rows(tmp_path):
    url = sqlite_url(tmp_path / "db.db")
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


def test_upgrading_a_0001_database_keeps_its_rows_and_queues_its_answers_for_grading(tmp_path):
    from store.grading import GradingStore

    url = sqlite_url(tmp_path / "old.db")
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
    engine = open_database(url)
    assert schema_revision(engine) == "0005"
    store = ConversationStore(engine)
    assert [(t.user, t.assistant) for t in store.turns(1)] == [("q", "a"), ("q2", None)]
    grading = GradingStore(engine)
    assert grading.counts() == {"pending": 1}
    assert grading.job(1).status == "pending" and grading.job(2) is None
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), SQLModel.metadata) == []


def test_upgrading_a_0002_database_keeps_ratings_and_starts_an_empty_pool(tmp_path):
    from store.tables import PoolEntry

    url = sqlite_url(tmp_path / "old.db")
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
    engine = open_database(url)
    assert schema_revision(engine) == "0005"
    store = ConversationStore(engine)
    rating = store.rating(1)
    assert (rating.value, rating.reasons, rating.comment) == (-1, [], None)
    assert store.exchange(1).retrieved == []
    assert store.count(PoolEntry) == 0
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), SQLModel.metadata) == []


def test_upgrading_a_0004_database_keeps_grades_with_no_reference_and_an_empty_library(tmp_path):
    from store.knowledge import KnowledgeStore

    url = sqlite_url(tmp_path / "old.db")
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
                "VALUES (1, 1, 'grader-1', 'm', 7, 0, 0.7, 0, 'fine', '{}', '2026-01-01')"
            )
        )
    engine = open_database(url)
    assert schema_revision(engine) == "0005"
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
