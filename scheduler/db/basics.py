"""What a run needs of the database layer even without a database: the store's error (the
command line catches it around any run) and a URL fit to show. Kept apart from the store,
which brings SQLAlchemy's ORM and Alembic with it: a start-up of about half a second that a
`--no-db` run would otherwise pay."""

from __future__ import annotations

import re

# What a run id may be: it is a key of the database (64 characters at most), a Kafka header
# and part of the relay's transactional id, and it is shown in logs and tables.
RUN_ID_MAX = 64
_RUN_ID = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{RUN_ID_MAX - 1}}}")
RUN_ID_RULE = (
    f"a run id is 1 to {RUN_ID_MAX} ASCII letters, digits, '.', '_' or '-', "
    "starting with a letter or a digit"
)


def run_id_problem(run_id: str) -> str | None:
    """Why `run_id` cannot name a run, in one line that shows it (escaped, cut short);
    None if it can."""
    if _RUN_ID.fullmatch(run_id):
        return None
    from scheduler.events import shown

    length = f" ({len(run_id)} characters)" if len(run_id) > RUN_ID_MAX else ""
    return f"--run-id {shown(run_id)}{length}: {RUN_ID_RULE}"


class StoreError(RuntimeError):
    """The database cannot be used; the one-line message says which and why (no password)."""


# A URL's scheme and user, as SQLAlchemy reads them: `dialect+driver://user:password@`.
_START = re.compile(r"[\w+]+://(?:[^:/]*(?P<password>:[^@]*)?@)?")


def safe_url(url: str) -> str:
    """The URL without its password (shown, logged, kept with a run)."""
    start = _START.match(url)
    if start and start["password"] is None:
        # No password: as given, without SQLAlchemy, whose import is a third of a short
        # `--no-db` run (whose report shows the configured URL).
        return url
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<invalid URL>"
