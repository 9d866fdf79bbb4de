"""Terminal cleans: a task may be a `clean_terminal` (after an isolation patient).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KINDS = ("escort_in", "visit", "escort_out", "clean")


def _kinds(kinds: tuple[str, ...]) -> str:
    return f"kind IN ({', '.join(repr(k) for k in kinds)})"


def _replace_check(kinds: tuple[str, ...]) -> None:
    # SQLite cannot alter a constraint: batch mode copies the table, its indexes included.
    with op.batch_alter_table("tasks", recreate="auto") as batch:
        batch.drop_constraint(op.f("ck_tasks_kind"), type_="check")
        batch.create_check_constraint(op.f("ck_tasks_kind"), _kinds(kinds))


def upgrade() -> None:
    _replace_check((*KINDS, "clean_terminal"))


def downgrade() -> None:
    _replace_check(KINDS)
