"""Self-grading: grades, grading jobs and reviews.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "grades",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("exchange_id", sa.Integer, sa.ForeignKey("exchanges.id"), nullable=False),
        sa.Column("grader_version", sa.String, nullable=False),
        sa.Column("judge_model_id", sa.String, nullable=False),
        sa.Column("judge_score", sa.Integer, nullable=True),
        sa.Column("judge_reason", sa.String, nullable=True),
        sa.Column("grounding", sa.Float, nullable=True),
        sa.Column("mean_logprob", sa.Float, nullable=True),
        sa.Column("min_logprob", sa.Float, nullable=True),
        sa.Column("consistency", sa.Float, nullable=True),
        sa.Column("injection", sa.Boolean, nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("flagged", sa.Boolean, nullable=False),
        sa.Column("reason", sa.String, nullable=False),
        sa.Column("seconds", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_grades_exchange_id", "grades", ["exchange_id"])
    op.create_index("ix_grades_flagged", "grades", ["flagged"])
    op.create_index("ix_grades_created_at", "grades", ["created_at"])

    op.create_table(
        "grading_jobs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("exchange_id", sa.Integer, sa.ForeignKey("exchanges.id"), nullable=False),
        sa.Column("status", sa.String, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_error", sa.String, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_grading_jobs_exchange_id", "grading_jobs", ["exchange_id"], unique=True)
    op.create_index("ix_grading_jobs_status", "grading_jobs", ["status"])

    op.create_table(
        "reviews",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("exchange_id", sa.Integer, sa.ForeignKey("exchanges.id"), nullable=False),
        sa.Column("decision", sa.String, nullable=False),
        sa.Column("correction", sa.String, nullable=True),
        sa.Column("reviewer", sa.String, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_reviews_exchange_id", "reviews", ["exchange_id"])

    # Exchanges answered before grading existed join the backlog.
    op.execute(
        "INSERT INTO grading_jobs (exchange_id, status, attempts, created_at, updated_at) "
        "SELECT id, 'pending', 0, created_at, created_at FROM exchanges "
        "WHERE status IN ('completed', 'stopped')"
    )


def downgrade() -> None:
    for table in ("reviews", "grading_jobs", "grades"):
        op.drop_table(table)
