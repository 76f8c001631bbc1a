"""request fingerprint for idempotency; CHECK constraints on every status column

Revision ID: 0004
Revises: 0003

The statuses listed here mirror the transition tables in server/domain/states.py; a test
compares the two so they cannot drift apart.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

JOB_STATUSES = (
    "PENDING",
    "PROBING",
    "AWAITING_CONFIRMATION",
    "PROCESSING",
    "COMPLETED",
    "PARTIAL",
    "FAILED",
    "REJECTED",
    "CANCELED",
)
OUTPUT_STATUSES = ("PENDING", "PROCESSING", "COMPLETED", "FAILED", "CANCELED")
TASK_STATUSES = ("QUEUED", "LEASED", "DONE", "CANCELED")
TASK_KINDS = ("PROBE", "TRANSCODE")
DELIVERY_STATUSES = ("PENDING", "DELIVERED", "FAILED")

# (table, constraint name, column, allowed values)
CHECKS = (
    ("jobs", "ck_jobs_status", "status", JOB_STATUSES),
    ("outputs", "ck_outputs_status", "status", OUTPUT_STATUSES),
    ("tasks", "ck_tasks_status", "status", TASK_STATUSES),
    ("tasks", "ck_tasks_kind", "kind", TASK_KINDS),
    ("webhook_deliveries", "ck_webhook_deliveries_status", "status", DELIVERY_STATUSES),
)


def _in_list(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(value) for value in values)})"


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        # sha256 of the request a job was created from: the same idempotency key with a
        # different request is refused instead of silently answered with the first job.
        batch_op.add_column(sa.Column("request_hash", sa.String(length=64), nullable=True))
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        # Lease tokens become random 62-bit numbers (unguessable fencing tokens).
        batch_op.alter_column("lease_token", type_=sa.BigInteger(), existing_type=sa.Integer())
    for table, name, column, values in CHECKS:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.create_check_constraint(name, _in_list(column, values))


def downgrade() -> None:
    for table, name, _column, _values in reversed(CHECKS):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(name, type_="check")
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.alter_column("lease_token", type_=sa.Integer(), existing_type=sa.BigInteger())
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("request_hash")
