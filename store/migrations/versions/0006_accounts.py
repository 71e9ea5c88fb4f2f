"""Accounts: a password hash and a role per user, API tokens and login sessions.

Existing users keep their data and get no password: on loopback the app still runs as the single
local user without a login; on any other host an account must be given a password first
(`autodidact user add NAME`). The local user becomes an admin, since it owned everything before.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD/DROP COLUMN, not a batch copy: other tables point at users, and SQLite's
    # copy-and-rename would break their foreign keys.
    op.add_column("users", sa.Column("password_hash", sa.String, nullable=True))
    op.add_column(
        "users", sa.Column("role", sa.String, nullable=False, server_default=sa.text("'user'"))
    )
    op.add_column("users", sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE users SET role = 'admin'")
    for table in ("api_tokens", "login_sessions"):
        op.create_table(
            table,
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
            sa.Column("secret_hash", sa.String, nullable=False),
            sa.Column("name", sa.String, nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
            sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        )
        op.create_index(f"ix_{table}_user_id", table, ["user_id"])
        op.create_index(f"ix_{table}_secret_hash", table, ["secret_hash"], unique=True)


def downgrade() -> None:
    for table in ("login_sessions", "api_tokens"):
        op.drop_table(table)
    for column in ("disabled_at", "role", "password_hash"):
        op.drop_column("users", column)
