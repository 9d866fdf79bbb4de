"""Alembic migrations of the run database (`scheduler.db.migrate` runs them)."""
