"""The fine-tune refresh: runs, what each trained on, the held-out split.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "refresh_runs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("adapter_id", sa.String, nullable=False),
        sa.Column("base_model", sa.String, nullable=False),
        sa.Column("parent_adapter_id", sa.String, nullable=True),
        sa.Column("status", sa.String, nullable=False),
        sa.Column("step", sa.String, nullable=False),
        sa.Column("reason", sa.String, nullable=True),
        sa.Column("dry_run", sa.Boolean, nullable=False),
        sa.Column("forced", sa.Boolean, nullable=False),
        sa.Column("data", sa.JSON, nullable=False),
        sa.Column("metrics", sa.JSON, nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_refresh_runs_status", "refresh_runs", ["status"])
    op.create_index("ix_refresh_runs_adapter_id", "refresh_runs", ["adapter_id"], unique=True)
    op.create_table(
        "trained_on",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("refresh_runs.id"), nullable=False),
        sa.Column("exchange_id", sa.Integer, nullable=False),
    )
    op.create_index("ix_trained_on_run_id", "trained_on", ["run_id"])
    op.create_index("ix_trained_on_exchange_id", "trained_on", ["exchange_id"])
    op.create_table(
        "heldout",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("exchange_id", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_heldout_exchange_id", "heldout", ["exchange_id"], unique=True)


def downgrade() -> None:
    for table in ("heldout", "trained_on", "refresh_runs"):
        op.drop_table(table)
