"""SQL persistence of a run: typed tables (`models`), their Alembic migrations (`migrate`)
and the `SqlStore` the scheduler writes its ticks to. SQLite is the embedded default;
PostgreSQL is the same code with a `postgresql+psycopg2://` URL."""

from scheduler.db.store import SqlStore, StoreError

__all__ = ["SqlStore", "StoreError"]
