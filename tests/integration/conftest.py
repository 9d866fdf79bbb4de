"""Fixtures of the integration tests that follow a run from PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="module")
def own_database_url() -> Iterator[str]:
    """A database of the test module's own on the PostgreSQL server DATABASE_URL names,
    dropped at the end (its tables or schemas are made by the test)."""
    from tests.e2e.conftest import new_database

    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgresql"):
        pytest.fail("DATABASE_URL does not name a PostgreSQL server (scripts/backing-services env)")
    with new_database({"DATABASE_URL": url}) as database:
        yield database.url
