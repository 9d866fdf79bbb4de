"""Alembic's entry point. The URL comes from the code that runs the migrations
(`config.attributes["url"]`, see `scheduler.db.migrate`), else from `sqlalchemy.url`, else
from the project's configuration (`config.toml` / `DATABASE_URL`)."""

from alembic import context
from sqlalchemy import create_engine, pool, text

from scheduler import config as project_config
from scheduler.db.hl7 import Hl7Base
from scheduler.db.kept_runs import KeptBase
from scheduler.db.lease import LeaseBase
from scheduler.db.models import Base

config = context.config
# The working tables of the current run, and the kept runs' own (apart, so that a run's
# fresh start, which empties every table of the first, leaves the kept runs alone).
# The scheduler's lease is apart too: it outlives runs.
target_metadata = [Base.metadata, KeptBase.metadata, LeaseBase.metadata, Hl7Base.metadata]


def database_url() -> str:
    return (
        config.attributes.get("url")
        or config.get_main_option("sqlalchemy.url")
        or project_config.load().database.url
    )


def run_migrations_offline() -> None:
    url = database_url()
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=url.startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        engine = create_engine(database_url(), poolclass=pool.NullPool)
        with engine.connect() as connection:
            run_with(connection)
        engine.dispose()
    else:
        run_with(connection)


def run_with(connection) -> None:
    # SQLite cannot ALTER most things: batch mode copies the table instead.
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Two services that start together (an active scheduler and its standby) must
            # not both create the tables: the second waits, then finds them made.
            connection.execute(text("SELECT pg_advisory_xact_lock(4242424242)"))
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
