"""origins: an organization's own buckets and HTTP servers, and the jobs that use them

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "origins",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column(
            "organization_id", sa.String(64), sa.ForeignKey("organizations.id"), nullable=False
        ),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("use", sa.String(32), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("sealed_secret", sa.Text(), nullable=False, server_default=""),
        sa.Column("secret_fingerprint", sa.String(200), nullable=False, server_default=""),
        sa.Column("public_base_url", sa.Text(), nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('s3', 'gcs', 'http')", name="ck_origins_kind"),
        sa.CheckConstraint("use IN ('input', 'output', 'input_and_output')", name="ck_origins_use"),
    )
    op.create_index("ix_origins_org_created", "origins", ["organization_id", "created_at", "id"])
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(
            sa.Column("input_origin_id", sa.String(64), nullable=False, server_default="")
        )
        batch.add_column(sa.Column("input_path", sa.Text(), nullable=False, server_default=""))
        batch.add_column(
            sa.Column("output_origin_id", sa.String(64), nullable=False, server_default="")
        )
        batch.add_column(
            sa.Column("output_path_prefix", sa.Text(), nullable=False, server_default="")
        )
    with op.batch_alter_table("outputs") as batch:
        batch.add_column(sa.Column("origin", sa.Text(), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("outputs") as batch:
        batch.drop_column("origin")
    with op.batch_alter_table("jobs") as batch:
        for column in ("output_path_prefix", "output_origin_id", "input_path", "input_origin_id"):
            batch.drop_column(column)
    op.drop_index("ix_origins_org_created", table_name="origins")
    op.drop_table("origins")
