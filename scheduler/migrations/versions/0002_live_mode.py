"""The distributed mode: the run's clock, consumer offsets, the outbox, the order of a tick's
decisions, and at most one open task a staff member.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.String(length=64)
OPEN_TASK = "staff_id IS NOT NULL AND completed_at IS NULL"


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("run_id", ID, nullable=False),
        sa.Column("epoch_s", sa.Double(), nullable=False),
        sa.Column("speed", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_runs")),
    )
    op.create_table(
        "consumer_offsets",
        sa.Column("topic", sa.String(length=255), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("topic", "partition", name=op.f("pk_consumer_offsets")),
    )
    op.create_table(
        "outbox",
        sa.Column("outbox_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tick", sa.Integer(), nullable=False),
        sa.Column("topic", sa.String(length=255), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=True),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("dead_letter", sa.Boolean(), nullable=False),
        sa.Column("published", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["tick"], ["ticks.tick"], name=op.f("fk_outbox_tick_ticks")),
        sa.PrimaryKeyConstraint("outbox_id", name=op.f("pk_outbox")),
    )
    op.create_index(op.f("ix_outbox_tick"), "outbox", ["tick"])
    op.create_index(op.f("ix_outbox_published"), "outbox", ["published"])
    with op.batch_alter_table("decisions") as batch:
        batch.add_column(sa.Column("position", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("decisions") as batch:
        batch.alter_column("position", server_default=None)
    op.create_index(
        "uq_tasks_open_staff",
        "tasks",
        ["staff_id"],
        unique=True,
        postgresql_where=sa.text(OPEN_TASK),
        sqlite_where=sa.text(OPEN_TASK),
    )


def downgrade() -> None:
    op.drop_index("uq_tasks_open_staff", table_name="tasks")
    with op.batch_alter_table("decisions") as batch:
        batch.drop_column("position")
    op.drop_index(op.f("ix_outbox_published"), table_name="outbox")
    op.drop_index(op.f("ix_outbox_tick"), table_name="outbox")
    op.drop_table("outbox")
    op.drop_table("consumer_offsets")
    op.drop_table("runs")
