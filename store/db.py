"""Database connection and schema upgrades: owns how a URL becomes a ready SQLAlchemy engine.

SQLite files get WAL mode (readers never block the writer, and a killed process cannot leave a
half-written transaction), a busy timeout and enforced foreign keys. Any other SQLAlchemy URL
(PostgreSQL for scale) is used as given. The schema is always brought to the newest migration on
open. Queries live in the repositories (store/base.py and one module per aggregate), not here.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, create_engine, event

MIGRATIONS = Path(__file__).parent / "migrations"


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
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


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
