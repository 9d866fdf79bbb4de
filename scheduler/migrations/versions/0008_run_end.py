"""The run's end (`runs.until_ms`), stored with the run as its clock is, so that every
scheduler that takes the run over (a standby, a restart) ends it at the same time, whatever
its own `--until-ms`. NULL: a run that goes on until it is stopped, and a run begun before
this migration (the next scheduler that resumes it with `--until-ms` gives it its end).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("until_ms", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:  # SQLite before 3.35 cannot drop a column
        batch.drop_column("until_ms")
