"""The outbox's relay progress as one number: every message up to `runs.outbox_sent_up_to`
is sent, beyond it only those flagged `published` (sent out of order, after a failed send).
Marking a relayed batch then updates one row instead of rewriting thousands; the index on
`published`, which only found the rows still owed, goes. So does the outbox's key to `ticks`:
its rows are written with their tick, in its transaction, and read by the relay alone, and
the check of that key on each row was half the cost of a backlog's COPY into the outbox.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # 0 for a run in progress: its rows keep their flags, which still say what was sent.
    op.add_column(
        "runs",
        sa.Column("outbox_sent_up_to", sa.BigInteger(), server_default="0", nullable=False),
    )
    op.drop_index(op.f("ix_outbox_published"), table_name="outbox")
    # SQLite cannot drop a constraint: batch mode copies the table, its indexes included.
    with op.batch_alter_table("outbox", recreate="auto") as batch:
        batch.drop_constraint(op.f("fk_outbox_tick_ticks"), type_="foreignkey")


def downgrade() -> None:
    with op.batch_alter_table("outbox", recreate="auto") as batch:
        batch.create_foreign_key(op.f("fk_outbox_tick_ticks"), "ticks", ["tick"], ["tick"])
    op.execute(
        "UPDATE outbox SET published = true WHERE outbox_id <= "
        "(SELECT coalesce(max(outbox_sent_up_to), 0) FROM runs)"
    )
    op.create_index(op.f("ix_outbox_published"), "outbox", ["published"])
    with op.batch_alter_table("runs") as batch:  # SQLite before 3.35 cannot drop a column
        batch.drop_column("outbox_sent_up_to")
