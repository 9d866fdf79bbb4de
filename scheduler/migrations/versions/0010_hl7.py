"""The HL7 listener's ledger of messages (also the embedded run's inbox), which embedded run
takes messages, and how far a run's decisions have been sent downstream as ADT.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "hl7_messages",
        sa.Column("message_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("sender", sa.String(255), nullable=True),
        sa.Column("control_id", sa.String(199), nullable=True),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=True),
        sa.Column("patient_id", sa.String(64), nullable=True),
        sa.Column("action", sa.String(16), nullable=True),
        sa.Column("code", sa.String(2), nullable=False),
        sa.Column("error", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("event_id", sa.String(64), nullable=True),
        sa.Column("event", sa.Text(), nullable=True),
        sa.Column("time_ms", sa.BigInteger(), nullable=True),
        sa.Column("taken_tick", sa.BigInteger(), nullable=True),
        sa.Column("received_at", sa.Double(), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("message_id", name=op.f("pk_hl7_messages")),
    )
    op.create_index(
        "uq_hl7_messages_control", "hl7_messages", ["run_id", "sender", "control_id"], unique=True
    )
    op.create_index("ix_hl7_messages_patient", "hl7_messages", ["run_id", "patient_id"])
    op.create_index("ix_hl7_messages_inbox", "hl7_messages", ["run_id", "taken_tick"])
    op.create_table(
        "hl7_intake",
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("open", sa.Boolean(), nullable=False),
        sa.Column("opened_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_hl7_intake")),
    )
    op.create_table(
        "hl7_outbound",
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("destination", sa.String(255), nullable=False),
        sa.Column("tick", sa.BigInteger(), nullable=False),
        sa.Column("sent", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "destination", name=op.f("pk_hl7_outbound")),
    )


def downgrade() -> None:
    op.drop_table("hl7_outbound")
    op.drop_table("hl7_intake")
    op.drop_index("ix_hl7_messages_inbox", table_name="hl7_messages")
    op.drop_index("ix_hl7_messages_patient", table_name="hl7_messages")
    op.drop_index("uq_hl7_messages_control", table_name="hl7_messages")
    op.drop_table("hl7_messages")
