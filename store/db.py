"""Database connection and schema upgrades: owns how a URL becomes a ready SQLAlchemy engine.

SQLite files get WAL mode (readers never block the writer, and a killed process cannot leave a
half-written transaction), a busy timeout, enforced foreign keys and `secure_delete` (a deleted
row's bytes are overwritten with zeros, not left in free pages); `checkpoint` empties the
write-ahead log after a deletion, so no old copy stays in the -wal file either. Any other SQLAlchemy URL
(PostgreSQL for scale) is used as given, with each PostgreSQL session set to UTC (times are
stored as UTC, and a day is a UTC day whatever the server's timezone). The schema is always brought to the newest migration on
open. Queries live in the repositories (store/base.py and one module per aggregate), not here.
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, create_engine, event

MIGRATIONS = Path(__file__).parent / "migrations"
log = logging.getLogger(__name__)


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def connect(url: str) -> Engine:
    """An engine for `url`, with SQLite tuned for a chat app's concurrent reads and writes."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA secure_delete=ON")
            cur.close()

        return engine
    engine = create_engine(url, pool_pre_ping=True)
    if engine.dialect.name == "postgresql":
        # A SET, not a startup option: connection poolers such as pgbouncer refuse those.
        @event.listens_for(engine, "connect")
        def _utc(dbapi_conn, _record):
            autocommit = dbapi_conn.autocommit
            dbapi_conn.autocommit = True
            dbapi_conn.cursor().execute("SET TIME ZONE 'UTC'")
            dbapi_conn.autocommit = autocommit

    return engine


def checkpoint(engine: Engine) -> bool:
    """Copy SQLite's write-ahead log into the database file and truncate the log to zero bytes:
    after a deletion, the log still holds the pages as they were before it. Returns False when a
    reader kept the log from being emptied (the next checkpoint catches up); True otherwise, and
    for databases other than SQLite, which have no such file here."""
    if engine.dialect.name != "sqlite":
        return True
    with engine.connect() as conn:
        busy, _, _ = conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one()
    if busy:
        log.warning("the database's write-ahead log could not be emptied: a reader is busy")
    return not busy


def alembic_config(connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def migrate(engine: Engine, revision: str = "head") -> None:
    """Upgrade (or downgrade) the schema to `revision`."""
    with engine.begin() as conn:
        cfg = alembic_config(conn)
        current = MigrationContext.configure(conn).get_current_revision()
        if revision == "base" or (current and revision != "head" and revision < current):
            command.downgrade(cfg, revision)
        else:
            command.upgrade(cfg, revision)


def schema_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def open_database(url: str) -> Engine:
    """Connect and upgrade to the newest schema: the only way the app opens a database."""
    engine = connect(url)
    migrate(engine)
    return engine
