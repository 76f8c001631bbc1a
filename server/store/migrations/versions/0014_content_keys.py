"""content keys: the sealed keys of encrypted outputs, and each output's current key ids

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "content_keys",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "output_id",
            sa.String(64),
            sa.ForeignKey("outputs.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("first_segment", sa.Integer(), nullable=False),
        sa.Column("sealed_key", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("output_id", "generation", "key_id", name="uq_content_keys_output_key"),
    )
    # Nullable: only encrypted outputs that started have key ids.
    with op.batch_alter_table("outputs") as batch:
        batch.add_column(sa.Column("content_key_ids", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outputs") as batch:
        batch.drop_column("content_key_ids")
    op.drop_table("content_keys")
