"""worker speeds: each worker's measured encode speed per kind of output, for ETAs

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: a worker announced before this has measured nothing yet.
    with op.batch_alter_table("workers") as batch:
        batch.add_column(sa.Column("speeds", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("workers") as batch:
        batch.drop_column("speeds")
