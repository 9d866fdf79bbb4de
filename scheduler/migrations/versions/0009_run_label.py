"""A kept run's label (`hospital run --label`) and the name of its config file, so that
`hospital runs` tells two runs of one hospital apart. NULL: none given, and the runs kept
before this migration.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("kept_runs", sa.Column("label", sa.Text(), nullable=True))
    op.add_column("kept_runs", sa.Column("config_file", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("kept_runs") as batch:  # SQLite before 3.35 cannot drop a column
        batch.drop_column("config_file")
        batch.drop_column("label")
