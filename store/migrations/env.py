"""Alembic environment: runs migrations on the connection store/db.py hands over.

Never reads alembic.ini or configures logging: the app owns both.

Every migration runs on SQLite and on PostgreSQL (tests/test_store.py runs both). Two rules keep
them alike: a time column is `sa.DateTime(timezone=True)`, as SQLModel declares `datetime`
fields (timestamptz on PostgreSQL; SQLite stores the same text either way), and a SQL literal
for a boolean is `true`/`false`, never 1/0, which PostgreSQL refuses.
"""

from alembic import context
from sqlmodel import SQLModel

import store.tables  # noqa: F401  (registers the tables on SQLModel.metadata)

connection = context.config.attributes["connection"]
# Batch mode lets later migrations ALTER tables on SQLite, which lacks most ALTER TABLE forms.
context.configure(connection=connection, target_metadata=SQLModel.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
