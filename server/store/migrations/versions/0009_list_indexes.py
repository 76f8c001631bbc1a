"""list indexes: List's order (and its status filter) read straight from an index

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # List orders by (created_at, id) newest first within an organization: with `id` in the
    # index a page is a backward index scan that stops after the page, no sort, however
    # many jobs the organization has. The status filter gets its own, for the same reason.
    op.create_index("ix_jobs_org_created_id", "jobs", ["organization_id", "created_at", "id"])
    op.create_index(
        "ix_jobs_org_status_created_id", "jobs", ["organization_id", "status", "created_at", "id"]
    )
    op.drop_index("ix_jobs_org_created", table_name="jobs")


def downgrade() -> None:
    op.create_index("ix_jobs_org_created", "jobs", ["organization_id", "created_at"])
    op.drop_index("ix_jobs_org_status_created_id", table_name="jobs")
    op.drop_index("ix_jobs_org_created_id", table_name="jobs")
