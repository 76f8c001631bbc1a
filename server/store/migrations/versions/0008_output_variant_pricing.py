"""output variant pricing: each ladder variant's estimated and actual cost

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: outputs priced before this existed, and non-adaptive ones, have none.
    with op.batch_alter_table("outputs") as batch:
        batch.add_column(sa.Column("variant_pricing", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outputs") as batch:
        batch.drop_column("variant_pricing")
