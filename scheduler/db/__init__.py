"""SQL persistence of a run: typed tables (`models`), their Alembic migrations (`migrate`)
and the `SqlStore` the scheduler writes its ticks to. SQLite is the embedded default;
PostgreSQL is the same code with a `postgresql+psycopg2://` URL. (Nothing is imported here:
`scheduler.db.basics` is what a run needs of it without a database.)"""
