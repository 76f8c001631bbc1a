"""organization webhooks: default URL, signing secrets with overlaps, event type per delivery

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhook_settings",
        sa.Column("organization_id", sa.String(length=64), nullable=False),
        sa.Column("default_url", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["organization_id"], ["organizations.id"]),
        sa.PrimaryKeyConstraint("organization_id"),
    )
    op.create_table(
        "webhook_secrets",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("organization_id", sa.String(length=64), nullable=False),
        # NULL: the server-wide secret, kept signing through the overlap of a first rotation.
        sa.Column("secret", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["organization_id"], ["organizations.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_webhook_secrets_org", "webhook_secrets", ["organization_id"])
    with op.batch_alter_table("webhook_deliveries") as batch:
        batch.add_column(sa.Column("organization_id", sa.String(length=64), nullable=True))
        batch.add_column(
            sa.Column("event_type", sa.String(length=64), nullable=False, server_default="")
        )
    # Deliveries queued before this revision sign with their job's organization's secrets.
    op.execute(
        "UPDATE webhook_deliveries SET organization_id = "
        "(SELECT organization_id FROM jobs WHERE jobs.id = webhook_deliveries.job_id)"
    )


def downgrade() -> None:
    with op.batch_alter_table("webhook_deliveries") as batch:
        batch.drop_column("event_type")
        batch.drop_column("organization_id")
    op.drop_index("ix_webhook_secrets_org", table_name="webhook_secrets")
    op.drop_table("webhook_secrets")
    op.drop_table("webhook_settings")
