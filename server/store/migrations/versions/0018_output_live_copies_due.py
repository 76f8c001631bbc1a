"""output live_copies_due_at: when a chunked MPEG-TS ladder's live copies may be removed

Revision ID: 0018
Revises: 0017
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: set only on an output with live copies to remove once its job completed, and
    # cleared once they are gone. Outputs completed before this keep theirs (no time set).
    with op.batch_alter_table("outputs") as batch:
        batch.add_column(sa.Column("live_copies_due_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_index("ix_outputs_live_copies_due_at", ["live_copies_due_at"])


def downgrade() -> None:
    with op.batch_alter_table("outputs") as batch:
        batch.drop_index("ix_outputs_live_copies_due_at")
        batch.drop_column("live_copies_due_at")
