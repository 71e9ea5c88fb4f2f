"""Lessons: training examples the model writes from what people taught, graded against it.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "lessons",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("parent_exchange_id", sa.Integer, nullable=False),
        sa.Column("parent_key", sa.String, nullable=False),
        sa.Column("user_id", sa.Integer, nullable=False),
        sa.Column("kind", sa.String, nullable=False),
        sa.Column("status", sa.String, nullable=False),
        sa.Column("reason", sa.String, nullable=False),
        sa.Column("prompt", sa.String, nullable=False),
        sa.Column("completion", sa.String, nullable=False),
        sa.Column("score", sa.Float, nullable=True),
        sa.Column("agreement", sa.Float, nullable=True),
        sa.Column("grounding", sa.Float, nullable=True),
        sa.Column("judge_score", sa.Integer, nullable=True),
        sa.Column("similarity", sa.Float, nullable=True),
        sa.Column("model_id", sa.String, nullable=False),
        sa.Column("adapter_id", sa.String, nullable=True),
        sa.Column("grader_version", sa.String, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    for column in ("parent_exchange_id", "user_id", "status", "created_at"):
        op.create_index(f"ix_lessons_{column}", "lessons", [column])


def downgrade() -> None:
    op.drop_table("lessons")
