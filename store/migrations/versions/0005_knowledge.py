"""Knowledge documents and their chunks, the sources each answer used, grading references and
calibrations fitted to the user's thumbs.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("grades") as batch:
        batch.add_column(sa.Column("agreement", sa.Float, nullable=True))
        batch.add_column(sa.Column("reference", sa.JSON, nullable=True))
        batch.add_column(sa.Column("calibration_id", sa.Integer, nullable=True))
    op.create_table(
        "calibrations",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("ratings", sa.Integer, nullable=False),
        sa.Column("auroc_before", sa.Float, nullable=True),
        sa.Column("auroc_after", sa.Float, nullable=True),
        sa.Column("weights", sa.JSON, nullable=False),
        sa.Column("threshold", sa.Float, nullable=False),
        sa.Column("adopted", sa.Boolean, nullable=False),
        sa.Column("reason", sa.String, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_calibrations_adopted", "calibrations", ["adopted"])
    op.create_index("ix_calibrations_created_at", "calibrations", ["created_at"])
    op.create_table(
        "documents",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("name", sa.String, nullable=False),
        sa.Column("kind", sa.String, nullable=False),
        sa.Column("sha256", sa.String, nullable=False),
        sa.Column("size_bytes", sa.Integer, nullable=False),
        sa.Column("chunks", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_documents_user_id", "documents", ["user_id"])
    op.create_index("ix_documents_name", "documents", ["name"])
    op.create_index("ix_documents_sha256", "documents", ["sha256"])
    op.create_table(
        "document_chunks",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("document_id", sa.Integer, sa.ForeignKey("documents.id"), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("text", sa.String, nullable=False),
        sa.Column("page", sa.Integer, nullable=True),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_document_chunks_document_id", "document_chunks", ["document_id"])
    op.create_table(
        "exchange_sources",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("exchange_id", sa.Integer, sa.ForeignKey("exchanges.id"), nullable=False),
        sa.Column("chunk_id", sa.Integer, sa.ForeignKey("document_chunks.id"), nullable=False),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("similarity", sa.Float, nullable=False),
    )
    op.create_index("ix_exchange_sources_exchange_id", "exchange_sources", ["exchange_id"])
    op.create_index("ix_exchange_sources_chunk_id", "exchange_sources", ["chunk_id"])


def downgrade() -> None:
    for table in ("exchange_sources", "document_chunks", "documents", "calibrations"):
        op.drop_table(table)
    with op.batch_alter_table("grades") as batch:
        batch.drop_column("calibration_id")
        batch.drop_column("reference")
        batch.drop_column("agreement")
