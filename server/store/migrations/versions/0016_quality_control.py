"""quality control: a job's qc_policy and each output's judged QC report

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # 0 is QC_POLICY_UNSPECIFIED, which means REPORT: jobs made before this keep reporting.
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("qc_policy", sa.Integer(), nullable=False, server_default="0"))
    # Nullable: outputs finished before this, pictures and custom commands have no report.
    with op.batch_alter_table("outputs") as batch:
        batch.add_column(sa.Column("qc", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outputs") as batch:
        batch.drop_column("qc")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("qc_policy")
