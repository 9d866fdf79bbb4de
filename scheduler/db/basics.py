"""What a run needs of the database layer even without a database: the store's error (the
command line catches it around any run) and a URL fit to show. Kept apart from the store,
which brings SQLAlchemy's ORM and Alembic with it: a start-up of about half a second that a
`--no-db` run would otherwise pay."""

from __future__ import annotations

import re


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
