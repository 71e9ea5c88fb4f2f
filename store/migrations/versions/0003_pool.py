"""The training pool: rating details, corrections, pool entries, retrieval and forgetting.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ratings") as batch:
        batch.add_column(sa.Column("reasons", sa.JSON, nullable=False, server_default="[]"))
        batch.add_column(sa.Column("comment", sa.String, nullable=True))
    with op.batch_alter_table("exchanges") as batch:
        batch.add_column(sa.Column("retrieved", sa.JSON, nullable=False, server_default="[]"))

    op.create_table(
        "corrections",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("exchange_id", sa.Integer, sa.ForeignKey("exchanges.id"), nullable=False),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("content", sa.String, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_corrections_exchange_id", "corrections", ["exchange_id"])

    op.create_table(
        "pool_entries",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("exchange_id", sa.Integer, sa.ForeignKey("exchanges.id"), nullable=False),
        sa.Column("conversation_id", sa.Integer, nullable=False),
        sa.Column("user_id", sa.Integer, nullable=False),
        sa.Column("status", sa.String, nullable=False),
        sa.Column("source", sa.String, nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("reason", sa.String, nullable=False),
        sa.Column("rating", sa.Integer, nullable=False),
        sa.Column("grade_score", sa.Float, nullable=True),
        sa.Column("context", sa.JSON, nullable=False),
        sa.Column("prompt", sa.String, nullable=False),
        sa.Column("completion", sa.String, nullable=False),
        sa.Column("original", sa.String, nullable=True),
        sa.Column("pii_masked", sa.Integer, nullable=False),
        sa.Column("duplicate_of", sa.Integer, nullable=True),
        sa.Column("model_id", sa.String, nullable=False),
        sa.Column("adapter_id", sa.String, nullable=True),
        sa.Column("grader_version", sa.String, nullable=True),
        sa.Column("exchange_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_pool_entries_exchange_id", "pool_entries", ["exchange_id"], unique=True)
    op.create_index("ix_pool_entries_status", "pool_entries", ["status"])
    op.create_index("ix_pool_entries_source", "pool_entries", ["source"])
    op.create_index("ix_pool_entries_user_id", "pool_entries", ["user_id"])
    op.create_index("ix_pool_entries_exchange_at", "pool_entries", ["exchange_at"])

    op.create_table(
        "forgotten",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("conversation_id", sa.Integer, nullable=False),
        sa.Column("exchange_ids", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_forgotten_conversation_id", "forgotten", ["conversation_id"])


def downgrade() -> None:
    for table in ("forgotten", "pool_entries", "corrections"):
        op.drop_table(table)
    with op.batch_alter_table("exchanges") as batch:
        batch.drop_column("retrieved")
    with op.batch_alter_table("ratings") as batch:
        batch.drop_column("comment")
        batch.drop_column("reasons")
