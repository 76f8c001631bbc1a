"""chunked outputs: CHUNK, AUDIO and MERGE tasks, their ranges, results and progress

Revision ID: 0010
Revises: 0009

The task kinds listed here mirror server/domain/states.py (TaskKind); a test compares them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

TASK_KINDS = ("PROBE", "TRANSCODE", "CHUNK", "AUDIO", "MERGE")
OLD_TASK_KINDS = ("PROBE", "TRANSCODE")


def _in_list(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(value) for value in values)})"


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.drop_constraint("ck_tasks_kind", type_="check")
        batch.create_check_constraint("ck_tasks_kind", _in_list("kind", TASK_KINDS))
        batch.add_column(sa.Column("chunk_index", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("chunk", sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column("result", sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column("progress", sa.Float(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.execute("DELETE FROM tasks WHERE kind IN ('CHUNK', 'AUDIO', 'MERGE')")
    with op.batch_alter_table("tasks") as batch:
        for column in ("finished_at", "progress", "result", "chunk", "chunk_index"):
            batch.drop_column(column)
        batch.drop_constraint("ck_tasks_kind", type_="check")
        batch.create_check_constraint("ck_tasks_kind", _in_list("kind", OLD_TASK_KINDS))
