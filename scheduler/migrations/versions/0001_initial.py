"""The tables of a run: rooms, staff, patients, tasks, ticks, decisions, inbound events.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.String(length=64)


def upgrade() -> None:
    op.create_table(
        "rooms",
        sa.Column("room_id", ID, nullable=False),
        sa.Column("floor", ID, nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("status", ID, nullable=False),
        sa.Column("current_patient_id", ID, nullable=True),
        sa.CheckConstraint(
            "status IN ('free', 'booked', 'occupied', 'dirty', 'cleaning')",
            name=op.f("ck_rooms_status"),
        ),
        sa.PrimaryKeyConstraint("room_id", name=op.f("pk_rooms")),
        sa.UniqueConstraint("current_patient_id", name=op.f("uq_rooms_current_patient_id")),
    )
    op.create_table(
        "staff",
        sa.Column("staff_id", ID, nullable=False),
        sa.Column("role", ID, nullable=False),
        sa.Column("title", ID, nullable=False),
        sa.PrimaryKeyConstraint("staff_id", name=op.f("pk_staff")),
    )
    op.create_table(
        "ticks",
        sa.Column("tick", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("time", sa.Double(), nullable=False),
        sa.Column("policy", ID, nullable=False),
        sa.Column("solve_ms", sa.Double(), nullable=False),
        sa.Column("n_consumed", sa.Integer(), nullable=False),
        sa.Column("n_decisions", sa.Integer(), nullable=False),
        sa.Column("n_rejected", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("tick", name=op.f("pk_ticks")),
    )
    for table in ("decisions", "inbound_events"):
        op.create_table(
            table,
            sa.Column("event_id", ID, nullable=False),
            sa.Column("tick", sa.Integer(), nullable=False),
            sa.Column("type", ID, nullable=False),
            sa.Column("time", sa.Double(), nullable=False),
            sa.Column("payload", sa.Text(), nullable=False),
            sa.ForeignKeyConstraint(["tick"], ["ticks.tick"], name=op.f(f"fk_{table}_tick_ticks")),
            sa.PrimaryKeyConstraint("event_id", name=op.f(f"pk_{table}")),
        )
        op.create_index(op.f(f"ix_{table}_tick"), table, ["tick"])
    op.create_table(
        "patients",
        sa.Column("patient_id", ID, nullable=False),
        sa.Column("arrived_at", sa.Double(), nullable=False),
        sa.Column("status", ID, nullable=False),
        sa.Column("room_id", ID, nullable=True),
        sa.Column("admitted_at", sa.Double(), nullable=True),
        sa.Column("discharged_at", sa.Double(), nullable=True),
        sa.Column("referred_at", sa.Double(), nullable=True),
        sa.Column("referral_reason", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "status IN ('waiting', 'admitted', 'referred', 'discharged')",
            name=op.f("ck_patients_status"),
        ),
        sa.CheckConstraint(
            "discharged_at IS NULL OR admitted_at <= discharged_at",
            name=op.f("ck_patients_discharged_after_admitted"),
        ),
        sa.ForeignKeyConstraint(
            ["room_id"], ["rooms.room_id"], name=op.f("fk_patients_room_id_rooms")
        ),
        sa.PrimaryKeyConstraint("patient_id", name=op.f("pk_patients")),
    )
    # rooms and patients refer to each other: the room's key to its patient comes last
    # (on SQLite, batch mode rebuilds the still empty table with it).
    with op.batch_alter_table("rooms") as batch:
        batch.create_foreign_key(
            op.f("fk_rooms_current_patient_id_patients"),
            "patients",
            ["current_patient_id"],
            ["patient_id"],
        )
    op.create_table(
        "tasks",
        sa.Column("task_id", ID, nullable=False),
        sa.Column("kind", ID, nullable=False),
        sa.Column("patient_id", ID, nullable=False),
        sa.Column("room_id", ID, nullable=False),
        sa.Column("staff_id", ID, nullable=True),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("dispatched_at", sa.Double(), nullable=True),
        sa.Column("completed_at", sa.Double(), nullable=True),
        sa.Column("created_tick", sa.Integer(), nullable=False),
        sa.Column("dispatched_tick", sa.Integer(), nullable=True),
        sa.CheckConstraint(
            "kind IN ('escort_in', 'visit', 'escort_out', 'clean')", name=op.f("ck_tasks_kind")
        ),
        sa.CheckConstraint(
            "dispatched_at IS NULL OR staff_id IS NOT NULL", name=op.f("ck_tasks_dispatched_staff")
        ),
        sa.CheckConstraint(
            "completed_at IS NULL OR dispatched_at IS NOT NULL",
            name=op.f("ck_tasks_completed_after_dispatch"),
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patients.patient_id"], name=op.f("fk_tasks_patient_id_patients")
        ),
        sa.ForeignKeyConstraint(
            ["room_id"], ["rooms.room_id"], name=op.f("fk_tasks_room_id_rooms")
        ),
        sa.ForeignKeyConstraint(
            ["staff_id"], ["staff.staff_id"], name=op.f("fk_tasks_staff_id_staff")
        ),
        sa.ForeignKeyConstraint(
            ["created_tick"], ["ticks.tick"], name=op.f("fk_tasks_created_tick_ticks")
        ),
        sa.ForeignKeyConstraint(
            ["dispatched_tick"], ["ticks.tick"], name=op.f("fk_tasks_dispatched_tick_ticks")
        ),
        sa.PrimaryKeyConstraint("task_id", name=op.f("pk_tasks")),
    )
    for column in ("patient_id", "created_tick", "dispatched_tick"):
        op.create_index(op.f(f"ix_tasks_{column}"), "tasks", [column])


def downgrade() -> None:
    op.drop_table("tasks")
    with op.batch_alter_table("rooms") as batch:
        batch.drop_constraint(op.f("fk_rooms_current_patient_id_patients"), type_="foreignkey")
    op.drop_table("patients")
    op.drop_table("inbound_events")
    op.drop_table("decisions")
    op.drop_table("ticks")
    op.drop_table("staff")
    op.drop_table("rooms")
