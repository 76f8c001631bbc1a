"""task reuse keys: a finished chunk or audio piece is kept for a retry of its job

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: only CHUNK and AUDIO tasks have a key, and only reused ones a source.
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("reuse_key", sa.String(64), nullable=True))
        batch.add_column(sa.Column("reused_from", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("reused_from")
        batch.drop_column("reuse_key")
