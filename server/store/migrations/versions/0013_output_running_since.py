"""output running_since: when the output's current run started, for its ETA

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: outputs that never ran (and those that ran before this existed) have none.
    with op.batch_alter_table("outputs") as batch:
        batch.add_column(sa.Column("running_since", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outputs") as batch:
        batch.drop_column("running_since")
