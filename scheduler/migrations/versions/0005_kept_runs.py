"""Kept runs: every run's row (config, seed, policy, version, start, end, KPIs) and a copy of
its ticks, applied events and decisions, which the next run's fresh start leaves alone.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "kept_runs",
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("mode", sa.String(64), nullable=False),
        sa.Column("status", sa.String(64), nullable=False),
        sa.Column("policy", sa.String(64), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=True),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("config", sa.Text(), nullable=False),
        sa.Column("duration_s", sa.Double(), nullable=False),
        sa.Column("started_at", sa.Double(), nullable=False),
        sa.Column("ended_at", sa.Double(), nullable=True),
        sa.Column("figures", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_kept_runs")),
    )
    op.create_table(
        "kept_ticks",
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("tick", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("time", sa.Double(), nullable=False),
        sa.Column("solve_ms", sa.Double(), nullable=False),
        sa.Column("n_rejected", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["kept_runs.run_id"],
            ondelete="CASCADE",
            name=op.f("fk_kept_ticks_run_id_kept_runs"),
        ),
        sa.PrimaryKeyConstraint("run_id", "tick", name=op.f("pk_kept_ticks")),
    )
    op.create_table(
        "kept_decisions",
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("tick", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("position", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["kept_runs.run_id"],
            ondelete="CASCADE",
            name=op.f("fk_kept_decisions_run_id_kept_runs"),
        ),
        sa.PrimaryKeyConstraint("run_id", "tick", "position", name=op.f("pk_kept_decisions")),
    )
    op.create_table(
        "kept_events",
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("tick", sa.Integer(), nullable=False),
        sa.Column("time", sa.Double(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["kept_runs.run_id"],
            ondelete="CASCADE",
            name=op.f("fk_kept_events_run_id_kept_runs"),
        ),
        sa.PrimaryKeyConstraint("run_id", "event_id", name=op.f("pk_kept_events")),
    )


def downgrade() -> None:
    for table in ("kept_events", "kept_decisions", "kept_ticks", "kept_runs"):
        op.drop_table(table)
