"""Runs are kept: every `hospital run` (embedded or distributed) that writes to a database,
and every run of a `hospital scheduler` service started by hand, leaves a row there with
its id, the whole resolved config, seed, policy, version, start and end, its KPI report,
and a copy of its ticks, applied events and decisions — in tables of their own, so that
the next run, which starts the working tables afresh, overwrites nothing.

These tables have their own metadata: the store's reset (`SqlStore._start_run`) empties
every table of the working schema's metadata and must not touch them. The Alembic migration
`0005_kept_runs` creates them; `scheduler/migrations/env.py` compares both metadata.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Connection,
    Double,
    Engine,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Text,
    delete,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from scheduler.db.basics import RUN_ID_MAX

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class KeptBase(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {str: String(64), float: Double}


class KeptRun(KeptBase):
    __tablename__ = "kept_runs"

    run_id: Mapped[str] = mapped_column(primary_key=True)
    mode: Mapped[str]  # embedded | distributed
    status: Mapped[str]  # running | finished | interrupted | failed
    policy: Mapped[str]
    seed: Mapped[int | None] = mapped_column(Integer)
    version: Mapped[str]
    config: Mapped[str] = mapped_column(Text)  # the resolved config, JSON
    duration_s: Mapped[float]
    started_at: Mapped[float]  # Unix time
    ended_at: Mapped[float | None]
    figures: Mapped[str | None] = mapped_column(Text)  # the KPI report, JSON
    label: Mapped[str | None] = mapped_column(Text)  # `hospital run --label`
    config_file: Mapped[str | None] = mapped_column(Text)  # the name of its --config


class KeptTick(KeptBase):
    __tablename__ = "kept_ticks"

    run_id: Mapped[str] = mapped_column(
        ForeignKey("kept_runs.run_id", ondelete="CASCADE"), primary_key=True
    )
    tick: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    time: Mapped[float]
    solve_ms: Mapped[float]
    n_rejected: Mapped[int]


class KeptDecision(KeptBase):
    __tablename__ = "kept_decisions"

    run_id: Mapped[str] = mapped_column(
        ForeignKey("kept_runs.run_id", ondelete="CASCADE"), primary_key=True
    )
    tick: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    position: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    payload: Mapped[str] = mapped_column(Text)


class KeptEvent(KeptBase):
    __tablename__ = "kept_events"

    run_id: Mapped[str] = mapped_column(
        ForeignKey("kept_runs.run_id", ondelete="CASCADE"), primary_key=True
    )
    event_id: Mapped[str] = mapped_column(primary_key=True)
    tick: Mapped[int]
    time: Mapped[float]
    payload: Mapped[str] = mapped_column(Text)


Bind = Engine | Connection  # a connection: the work joins the transaction it is in


@contextlib.contextmanager
def _transaction(bind: Bind) -> Iterator[Connection]:
    """A transaction of its own on an engine; on a connection, the one it is in (the
    caller's, which commits or rolls back this work with its own)."""
    if isinstance(bind, Connection):
        yield bind
        return
    with bind.begin() as db:
        yield db


def new_run_id() -> str:
    return time.strftime("run-%Y%m%d-%H%M%S-", time.gmtime()) + uuid.uuid4().hex[:6]


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("hospital-scheduler")
    except PackageNotFoundError:
        return "unknown"


def begin(
    bind: Bind,
    run_id: str,
    config: Any,
    *,
    seed: int | None,
    mode: str,
    duration_ms: int,
    label: str | None = None,
    config_file: str | None = None,
) -> None:
    """The run's row, as it starts: its config as the run used it, with the seed it drew
    its patients from (a `--seed` over the config's)."""
    from scheduler.config import to_mapping
    from scheduler.db.store import safe_url

    resolved = to_mapping(config)
    resolved["database"]["url"] = safe_url(resolved["database"]["url"])  # no password
    if seed is not None:
        resolved["arrivals"]["seed"] = seed
    with _transaction(bind) as db:
        db.execute(
            insert(KeptRun).values(
                run_id=run_id,
                mode=mode,
                status="running",
                policy=config.scheduler.policy,
                seed=config.arrivals.seed if seed is None else seed,
                version=package_version(),
                config=json.dumps(resolved, sort_keys=True, default=list),
                duration_s=duration_ms / 1000,
                started_at=time.time(),
                ended_at=None,
                figures=None,
                label=label,
                config_file=config_file,
            )
        )


def set_aside(engine: Engine, run_id: str) -> str | None:
    """A new run takes the id of a kept one (`hospital scheduler --fresh`, or an id given
    again): the kept one moves to `<id>-<its start, UTC>`, so that neither replaces the
    other (the id cut short to fit its 64 characters). Its new id (None: no run of that id
    is kept)."""
    table = KeptRun.__table__
    with engine.begin() as db:
        row = db.execute(select(table).where(KeptRun.run_id == run_id)).mappings().first()
        if row is None:
            return None
        taken = set(db.scalars(select(KeptRun.run_id)))
        started = time.strftime("%Y%m%d-%H%M%S", time.gmtime(row["started_at"]))
        n, moved = 1, _moved_id(run_id, started, 1)
        while moved in taken:
            n += 1
            moved = _moved_id(run_id, started, n)
        db.execute(insert(KeptRun).values({**row, "run_id": moved}))
        for child in (KeptDecision, KeptEvent, KeptTick):
            db.execute(update(child).where(child.run_id == run_id).values(run_id=moved))
        db.execute(delete(KeptRun).where(KeptRun.run_id == run_id))
    return moved


def _moved_id(run_id: str, started: str, n: int) -> str:
    """`<id>-<started>`, and `-<n>` after it from the second on, in 64 characters."""
    suffix = f"-{started}" + (f"-{n}" if n > 1 else "")
    return run_id[: RUN_ID_MAX - len(suffix)] + suffix


def mark(engine: Engine, run_id: str, status: str) -> None:
    """Set a kept run's status (a resumed run is `running` again)."""
    with engine.begin() as db:
        db.execute(update(KeptRun).where(KeptRun.run_id == run_id).values(status=status))


def last_tick_ms(bind: Bind) -> int:
    """The time of the last tick in the working tables (the current run), in ms; 0 if none."""
    with _transaction(bind) as db:
        last = db.scalar(text("SELECT max(time) FROM ticks"))
    return 0 if last is None else round(last * 1000)


def finish(
    bind: Bind,
    run_id: str,
    figures: dict[str, Any] | None,
    status: str = "finished",
    duration_ms: int | None = None,
) -> None:
    """Copy the run's ticks, applied events and decisions out of the working tables (the
    database's current run) and close its row (with the simulated time it reached, when
    its length was not known at its start)."""
    closing: dict[str, Any] = {} if duration_ms is None else {"duration_s": duration_ms / 1000}
    with _transaction(bind) as db:
        for table in (KeptDecision, KeptEvent, KeptTick):
            db.execute(delete(table).where(table.run_id == run_id))
        params = {"run": run_id}
        db.execute(
            text(
                "INSERT INTO kept_ticks (run_id, tick, time, solve_ms, n_rejected) "
                "SELECT :run, tick, time, solve_ms, n_rejected FROM ticks"
            ),
            params,
        )
        db.execute(
            text(
                "INSERT INTO kept_decisions (run_id, tick, position, payload) "
                "SELECT :run, tick, position, payload FROM decisions"
            ),
            params,
        )
        db.execute(
            text(
                "INSERT INTO kept_events (run_id, event_id, tick, time, payload) "
                "SELECT :run, event_id, tick, time, payload FROM inbound_events"
            ),
            params,
        )
        db.execute(
            update(KeptRun)
            .where(KeptRun.run_id == run_id)
            .values(
                status=status,
                ended_at=time.time(),
                **closing,
                figures=None if figures is None else json.dumps(figures, sort_keys=True),
            )
        )


@dataclass
class RunRow:
    run_id: str
    mode: str
    status: str
    policy: str
    seed: int | None
    version: str
    duration_s: float
    started_at: float
    ended_at: float | None
    config: dict[str, Any]
    figures: dict[str, Any] | None
    label: str | None = None
    config_file: str | None = None

    @classmethod
    def of(cls, row: KeptRun) -> RunRow:
        return cls(
            row.run_id,
            row.mode,
            row.status,
            row.policy,
            row.seed,
            row.version,
            row.duration_s,
            row.started_at,
            row.ended_at,
            json.loads(row.config),
            json.loads(row.figures) if row.figures else None,
            row.label,
            row.config_file,
        )


def runs(bind: Bind) -> list[RunRow]:
    """Every kept run, the latest first."""
    from sqlalchemy.orm import Session

    with Session(bind) as session:
        rows = session.scalars(
            select(KeptRun).order_by(KeptRun.started_at.desc(), KeptRun.run_id.desc())
        )
        return [RunRow.of(r) for r in rows]


def find(bind: Bind, run_id: str | None) -> RunRow | None:
    """A kept run by id, or the latest one (None: there is none)."""
    found = runs(bind)
    if run_id is None:
        return found[0] if found else None
    return next((r for r in found if r.run_id == run_id), None)


def history(
    engine: Engine, run_id: str
) -> Iterator[tuple[int, float, float, int, list[str], list[str]]]:
    """The kept run's ticks in order: (tick, time_s, solve_ms, rejected, events' JSON,
    decisions' JSON)."""
    with engine.connect() as db:
        where = {"run": run_id}
        events: dict[int, list[str]] = defaultdict(list)
        for tick, payload in db.execute(
            text(
                "SELECT tick, payload FROM kept_events WHERE run_id = :run "
                "ORDER BY tick, time, event_id"
            ),
            where,
        ):
            events[tick].append(payload)
        decisions: dict[int, list[str]] = defaultdict(list)
        for tick, payload in db.execute(
            text(
                "SELECT tick, payload FROM kept_decisions WHERE run_id = :run "
                "ORDER BY tick, position"
            ),
            where,
        ):
            decisions[tick].append(payload)
        ticks = db.execute(
            text(
                "SELECT tick, time, solve_ms, n_rejected FROM kept_ticks "
                "WHERE run_id = :run ORDER BY tick"
            ),
            where,
        ).all()
    for tick, time_s, solve_ms, rejected in ticks:
        yield tick, time_s, solve_ms, rejected, events.pop(tick, []), decisions.pop(tick, [])
