"""`SqlStore`: the run's ticks in a SQL database, with the state of rooms, patients and tasks
derived from the events.

Each `hospital run` starts a fresh run: opening a store migrates the database to the latest
schema, then empties its tables and seeds the rooms and staff of the configuration. Ticks
are buffered and written in one transaction every `flush_every` ticks, at `flush()` (a live
run calls it whenever it waits for the wall clock) and at `close()`, with bulk inserts and
updates, so that a 24 h simulation costs seconds, not minutes. Written behind (the default),
the ticks go to a process of their own (`scheduler.db.writer` is the run's side of it,
`scheduler.db.writer_process` the process), which turns them into rows and writes them while
the run goes on.
"""

from __future__ import annotations

import io
import sqlite3
import threading
from collections.abc import Callable
from operator import itemgetter
from typing import Any, cast

from sqlalchemy import (
    Engine,
    Table,
    create_engine,
    delete,
    insert,
    make_url,
    select,
    text,
    update,
)
from sqlalchemy import event as sqlalchemy_event
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session

from scheduler import events as ev
from scheduler.config import Config, staff_roster
from scheduler.db.basics import StoreError, safe_url
from scheduler.db.models import Base, DecisionRow, InboundEvent, Patient, Room, Staff, Task, Tick
from scheduler.db.writer import TickRecord, WriterProcess, record
from scheduler.engine import TickResult
from scheduler.layout import NEXT_KIND, STEP_OF_KIND, Layout

__all__ = ["SqlStore", "StoreError", "safe_url"]

Row = dict[str, Any]


def connect(url: str) -> Engine:
    """An engine whose first connection worked, or `StoreError`."""
    expected = "expected sqlite:///FILE or postgresql+psycopg2://USER@HOST/DB"
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreError(f"invalid database URL: {expected}") from None
    shown = parsed.render_as_string(hide_password=True)
    try:
        # A server that does not answer must not hang the run.
        args = {"connect_timeout": 5} if parsed.get_backend_name() == "postgresql" else {}
        engine = create_engine(parsed, connect_args=args)
    except ArgumentError:  # includes an unknown dialect
        raise StoreError(f"unsupported database URL {shown}: {expected}") from None
    except ImportError as exc:
        raise StoreError(f"no database driver for {shown}: {exc}") from None
    if engine.dialect.name == "sqlite":
        sqlalchemy_event.listen(
            engine,
            "connect",
            _sqlite_pragmas
            if parsed.database not in (None, "", ":memory:")
            else _sqlite_foreign_keys,
        )
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        engine.dispose()
        raise StoreError(f"database unreachable at {shown}: {reason(exc)}") from None
    return engine


def _sqlite_foreign_keys(dbapi_connection: Any, _record: Any) -> None:
    # SQLite checks foreign keys only when asked to, per connection; PostgreSQL always does.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_pragmas(dbapi_connection: Any, record: Any) -> None:
    """A database file: write-ahead logging, so that a commit appends to the log instead of
    rewriting pages through a rollback journal, and readers (`hospital status`) do not block
    the writer; `synchronous=NORMAL`, the setting SQLite recommends with WAL: a commit does
    not wait for the disk, and a power cut can lose the last commits but never corrupts the
    file (a crash of the program loses nothing)."""
    _sqlite_foreign_keys(dbapi_connection, record)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


# Alembic keeps its running migration in module globals: one at a time in a process (a
# region's scheduler process opens many hospitals' schemas at once, from threads).
_MIGRATING = threading.Lock()


def _migrate(url: str, shown: str) -> None:
    # Alembic is imported here, not with the module: the writer process never migrates,
    # and starts in half the time without it.
    from alembic.util import CommandError

    from scheduler.db import migrate

    try:
        with _MIGRATING:
            migrate.upgrade(url)
    except CommandError as exc:
        raise StoreError(f"cannot migrate the database at {shown}: {reason(exc)}") from None


def reason(exc: Exception) -> str:
    """The driver's own first line (never the SQL parameters that `str(exc)` carries)."""
    lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


class SqlStore:
    """The `Store` on a SQL database (see the module's docstring). Raises `StoreError` when
    the database cannot be opened, migrated or written."""

    def __init__(
        self,
        url: str,
        config: Config,
        policy: str,
        flush_every: int = 500,
        fresh: bool = True,
        write_behind: bool = True,
        migrate: bool = True,
    ):
        self.url = safe_url(url)
        self.policy = policy
        self.flush_every = flush_every
        self.config = config
        self._queued: set[str] = set()  # tasks written as waiting, not yet dispatched
        self.engine = connect(url)
        self._sqlite = self.engine.dialect.name == "sqlite"
        # An in-memory SQLite database is one per connection: no writer process for it.
        self.write_behind = write_behind and not (
            self._sqlite and self.engine.url.database in (None, "", ":memory:")
        )
        self._url = url  # with its password: the writer process connects with it
        self._writer: WriterProcess | None = None  # started by the first batch written behind
        self._records: list[TickRecord] = []  # ticks for the writer, not sent yet
        try:
            if migrate:
                _migrate(url, self.url)
            if fresh:
                self.reset()
            else:
                self.transaction(self._load_queued)
        except SQLAlchemyError as exc:
            self.engine.dispose()
            raise StoreError(f"cannot migrate the database at {self.url}: {reason(exc)}") from None
        except StoreError:
            self.engine.dispose()
            raise
        self._clear()
        self._closed = False

    def reset(
        self,
        before: Callable[[Session], None] | None = None,
        after: Callable[[Session], None] | None = None,
    ) -> None:
        """Start a new run: empty tables, seeded with the rooms and staff of the config;
        with the work `before` and `after` it in the same transaction, if given."""
        self._stop_writer()  # its idea of the tables would be out of date
        self._records.clear()  # ticks of the run before, not handed to it

        def start(session: Session) -> None:
            if before is not None:
                before(session)
            self._start_run(session, self.config)
            if after is not None:
                after(session)

        self.transaction(start)
        self._queued.clear()

    def _load_queued(self, session: Session) -> None:
        rows = session.execute(select(Task.task_id).where(Task.staff_id.is_(None)))
        self._queued = {task_id for (task_id,) in rows}

    # --- the Store protocol ------------------------------------------------------------

    def save_tick(self, result: TickResult) -> None:
        if self.write_behind:
            self._records.append(record(result))
            if len(self._records) >= self.flush_every:
                self._send_behind()
            return
        self.add_tick(*record(result))
        if len(self.ticks) >= self.flush_every:
            self.flush()

    def add_tick(
        self,
        tick: int,
        time_ms: int,
        solve_ms: float,
        consumed: list[ev.Event],
        decided: list[ev.Decision],
        n_rejected: int,
    ) -> None:
        """Turn one tick into rows, buffered until the next flush."""
        now = time_ms / 1000
        born: dict[tuple[str, str], float] = {}
        inbound, new_tasks = self.inbound, self.new_tasks
        for event in consumed:
            at = event.time_ms / 1000
            inbound.append((event.event_id, tick, event.TYPE, at, event.to_json()))
            if isinstance(event, ev.PatientArrived):  # a region's transfer arriving too
                self.new_patients[event.patient_id] = {
                    "patient_id": event.patient_id,
                    "arrived_at": at,
                    "status": "waiting",
                    "room_id": None,
                    "admitted_at": None,
                    "discharged_at": None,
                    "referred_at": None,
                    "referral_reason": None,
                }
                born["escort_in", event.patient_id] = at
                continue
            if not isinstance(event, ev.COMPLETIONS + ev.ARRIVAL_CHANGES):
                continue  # a region's transfer offer: kept in the inbound rows, no state
            if isinstance(event, ev.ARRIVAL_CHANGES):  # of an arrival of this tick
                if type(event) is ev.PatientWithdrawn:  # as if it never came
                    del self.new_patients[event.patient_id], born["escort_in", event.patient_id]
                continue
            assert isinstance(event, ev.COMPLETIONS)  # the other inbound events close a task
            row = new_tasks.get(event.task_id)  # mostly: created since the last flush
            if row is not None:
                row["completed_at"] = at
            else:
                self._change_task(event.task_id, {"completed_at": at})
            # The completion creates the next task of the lifecycle: born now.
            kind = event.task_kind
            if kind in NEXT_KIND:
                born[NEXT_KIND[kind], getattr(event, "patient_id", "")] = at  # not a cleaning
            if kind == "escort_in":
                self._room(event.room_id, {"status": "occupied"})
        decisions, decide = self.decisions, self._DECIDE
        for position, d in enumerate(decided):
            decisions.append((d.event_id, d.tick, position, d.TYPE, d.time_ms / 1000, d.to_json()))
            decide.get(type(d), _no_change)(self, d, now, born)
        self.ticks.append(
            (tick, now, self.policy, solve_ms, len(consumed), len(decided), n_rejected)
        )

    def close(self) -> None:
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._closed = True
            try:
                self._stop_writer()
            finally:
                self.engine.dispose()

    def __enter__(self) -> SqlStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- from decisions to rows ----------------------------------------------------------

    def _admitted(self, d: ev.PatientAdmitted, now: float, born: Any) -> None:
        self._change_patient(
            d.patient_id, {"status": "admitted", "room_id": d.room_id, "admitted_at": now}
        )
        self._room(d.room_id, {"status": "booked", "current_patient_id": d.patient_id})

    def _referred(self, d: ev.PatientReferred, now: float, born: Any) -> None:
        self._change_patient(
            d.patient_id, {"status": "referred", "referred_at": now, "referral_reason": d.reason}
        )

    def _discharged(self, d: ev.PatientDischarged, now: float, born: Any) -> None:
        self._change_patient(d.patient_id, {"status": "discharged", "discharged_at": now})
        self._room(d.room_id, {"status": "dirty", "current_patient_id": None})

    def _available(self, d: ev.RoomAvailable, now: float, born: Any) -> None:
        self._room(d.room_id, {"status": "free"})

    def _queued_task(self, d: ev.TaskQueued, now: float, born: Any) -> None:
        self._new_task(d, born.get((STEP_OF_KIND.get(d.kind, d.kind), d.patient_id), now))
        self._queued.add(d.task_id)

    def _dispatched(self, d: ev.TaskDispatched, now: float, born: Any) -> None:
        kind = STEP_OF_KIND.get(d.kind, d.kind)
        if d.task_id in self._queued:
            self._queued.discard(d.task_id)
            self._change_task(
                d.task_id, {"staff_id": d.staff_id, "dispatched_at": now, "dispatched_tick": d.tick}
            )
        else:  # created and dispatched in this tick: one row with both
            row = self._new_task(d, born.get((kind, d.patient_id), now))
            row["staff_id"], row["dispatched_at"], row["dispatched_tick"] = (
                d.staff_id,
                now,
                d.tick,
            )
        if kind == "clean":
            self._room(d.room_id, {"status": "cleaning"})

    # A region's transfer decisions are not here: kept in the decisions table, no row changes.
    _DECIDE: dict[type, Callable[..., None]] = {
        ev.PatientAdmitted: _admitted,
        ev.PatientReferred: _referred,
        ev.PatientDischarged: _discharged,
        ev.RoomAvailable: _available,
        ev.TaskQueued: _queued_task,
        ev.TaskDispatched: _dispatched,
        # Known to the decisions table; no row of the hospital's state changes.
        ev.StaffOffDuty: lambda self, d, now, born: None,
        ev.StaffOnDuty: lambda self, d, now, born: None,
        ev.TaskEscalated: lambda self, d, now, born: None,
        ev.StaffHeld: lambda self, d, now, born: None,
        ev.RoomHeld: lambda self, d, now, born: None,
    }

    def _new_task(self, d: ev.TaskQueued | ev.TaskDispatched, created_at: float) -> Row:
        row = self.new_tasks[d.task_id] = {
            "task_id": d.task_id,
            "kind": d.kind,
            "patient_id": d.patient_id,
            "room_id": d.room_id,
            "staff_id": None,
            "created_at": created_at,
            "dispatched_at": None,
            "completed_at": None,
            "created_tick": d.tick,
            "dispatched_tick": None,
        }
        return row

    def _change_patient(self, patient_id: str, values: Row) -> None:
        _change(self.new_patients, self.patient_updates, "patient_id", patient_id, values)

    def _change_task(self, task_id: str, values: Row) -> None:
        _change(self.new_tasks, self.task_updates, "task_id", task_id, values)

    def _room(self, room_id: str, values: Row) -> None:
        row = self.room_updates.get(room_id)
        if row is None:
            row = self.room_updates[room_id] = {"room_id": room_id}
        row.update(values)

    # --- writing -------------------------------------------------------------------------

    def flush(
        self,
        extra: Callable[[Session], None] | None = None,
        fence: Callable[[Session], None] | None = None,
    ) -> None:
        """Write the buffered ticks in one transaction, parents before children, with
        `extra` work in the same transaction: one executemany per table and per set of
        changed columns. On SQLite they go straight to the driver's cursor (the statements
        are compiled once); on PostgreSQL with COPY. `fence` runs first in the transaction:
        it may refuse the whole of it by raising.

        Written behind, once a full batch has started the writer process, the ticks go to it
        and `flush` waits until it has committed them. Until then they are written here: a
        live run, which flushes whenever it waits for the clock, and a short run never
        start the writer (nor wait the half second it takes to start)."""
        if self.write_behind:
            if extra is not None or fence is not None:
                raise ValueError("extra work in a tick's transaction needs write_behind=False")
            if self._writer is not None:
                if self._records:
                    self._send_behind()
                self._writer.wait()
                return
            # Everything written here before the writer starts: it reads the tables afresh.
            for kept in self._records:
                self.add_tick(*kept)
            self._records = []
        if not self.ticks and extra is None:
            return
        self.transaction(lambda session: self._write(session, extra, fence))
        self._clear()

    def _send_behind(self) -> None:
        """Hand the ticks so far to the writer process, started by the first of them, and
        go on with the run (`WriterProcess.send` waits only when too many are in flight)."""
        if self._writer is None:
            self._writer = WriterProcess(self._url, self.config, self.policy, self.url)
        records, self._records = self._records, []
        self._writer.send(records)

    def _stop_writer(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()

    def _write(
        self,
        session: Session,
        extra: Callable[[Session], None] | None,
        fence: Callable[[Session], None] | None,
    ) -> None:
        """The buffered rows, parents before children, in the session's transaction."""
        if fence is not None:
            fence(session)
        writer = _Writer(session, self._sqlite)
        writer.insert(Tick, _TICK_COLUMNS, self.ticks)
        writer.upsert(Patient, "patient_id", self.new_patients, self.patient_updates)
        writer.upsert(Task, "task_id", self.new_tasks, self.task_updates)
        writer.update(Room, "room_id", self.room_updates.values())
        writer.insert(DecisionRow, _DECISION_COLUMNS, self.decisions)
        writer.insert(InboundEvent, _INBOUND_COLUMNS, self.inbound)
        if extra is not None:
            extra(session)

    def _clear(self) -> None:
        self.ticks: list[tuple] = []
        self.decisions: list[tuple] = []
        self.inbound: list[tuple] = []
        self.new_patients: dict[str, Row] = {}
        self.patient_updates: dict[str, Row] = {}
        self.new_tasks: dict[str, Row] = {}
        self.task_updates: dict[str, Row] = {}
        self.room_updates: dict[str, Row] = {}

    def transaction(self, work: Callable[[Session], object]) -> None:
        """Run `work` in one transaction; a database error becomes a one-line `StoreError`."""
        try:
            with Session(self.engine) as session, session.begin():
                work(session)
        except SQLAlchemyError as exc:
            raise StoreError(f"database write failed at {self.url}: {reason(exc)}") from None
        except sqlite3.Error as exc:  # the driver's own, from the SQLite fast path
            raise StoreError(f"database write failed at {self.url}: {reason(exc)}") from None

    @staticmethod
    def _start_run(session: Session, config: Config) -> None:
        """Empty every table (rooms first let go of their patients), then seed the rooms
        and staff of this configuration."""
        session.execute(update(Room).values(current_patient_id=None))
        for table in reversed(Base.metadata.sorted_tables):
            session.execute(delete(table))
        session.execute(
            insert(Room),
            [
                {
                    "room_id": room.room_id,
                    "floor": config.hospital.floors[room.floor_index - 1],
                    "number": room.number,
                    "status": "free",
                    "current_patient_id": None,
                }
                for room in Layout(config).rooms.values()
            ],
        )
        roster = staff_roster(config)
        if roster:
            session.execute(
                insert(Staff),
                [
                    {"staff_id": staff_id, "role": role, "title": staff_id.rsplit("-", 1)[0]}
                    for staff_id, role in roster
                ],
            )


_TICK_COLUMNS = ("tick", "time", "policy", "solve_ms", "n_consumed", "n_decisions", "n_rejected")
_DECISION_COLUMNS = ("event_id", "tick", "position", "type", "time", "payload")
_INBOUND_COLUMNS = ("event_id", "tick", "type", "time", "payload")


def _no_change(_store: SqlStore, _decision: Any, _now: float, _born: Any) -> None:
    pass


def _change(new: dict[str, Row], updates: dict[str, Row], key: str, id_: str, values: Row) -> None:
    """Change a row still to be inserted, or else remember the update of a written one."""
    row = new.get(id_)
    if row is None:
        row = updates.get(id_)
        if row is None:
            row = updates[id_] = {key: id_}
    row.update(values)


def copy_rows(session: Session, table: str, columns: tuple[str, ...], rows: Any) -> None:
    """Insert rows into a PostgreSQL table with one COPY, in the session's transaction: a
    backlog's ticks write tens of thousands of rows, which COPY takes in one stream where
    INSERTs are parsed and planned a page of rows at a time. Rows keep their order (and a
    serial column its numbering)."""
    buffer = io.StringIO()
    buffer.writelines("\t".join(map(_copy_text, row)) + "\n" for row in rows)
    buffer.seek(0)
    statement = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
    connection = session.connection()
    cursor = connection.connection.cursor()
    try:
        cursor.copy_expert(statement, buffer)
    except connection.dialect.loaded_dbapi.Error as exc:  # as SQLAlchemy's own would be
        raise DBAPIError(statement, None, exc) from None
    finally:
        cursor.close()


def _copy_text(value: Any) -> str:
    """A value in COPY's text format: \\N for NULL, a float exactly (repr), a string with
    its backslashes, tabs and line ends escaped (by `replace`: a `translate` table costs ten
    times as much on the JSON payloads that a backlog's commit writes by the thousand)."""
    if value is None:
        return "\\N"
    if isinstance(value, str):
        return (
            value.replace("\\", "\\\\")
            .replace("\t", "\\t")
            .replace("\n", "\\n")
            .replace("\r", "\\r")
        )
    return repr(value)


class _Writer:
    """The statements of one flush, in one session's transaction."""

    def __init__(self, session: Session, sqlite: bool):
        self.session = session
        self.cursor = (
            cast(sqlite3.Cursor, session.connection().connection.cursor()) if sqlite else None
        )

    def insert(self, model: type[Base], columns: tuple[str, ...], rows: list[tuple]) -> None:
        if not rows:
            return
        table = cast(Table, model.__table__)
        if self.cursor is not None:
            self.cursor.executemany(
                f"INSERT INTO {table.name} ({', '.join(columns)}) "
                f"VALUES ({', '.join('?' * len(columns))})",
                rows,
            )
        else:
            copy_rows(self.session, table.name, columns, rows)

    def update(self, model: type[Base], key: str, rows: Any) -> None:
        """UPDATE by primary key: one executemany per set of changed columns, in the order
        of those sets sorted (completions, `completed_at`, before dispatches)."""
        groups: dict[tuple[str, ...], list[Row]] = {}
        for row in rows:
            groups.setdefault(tuple(sorted(row)), []).append(row)
        table = cast(Table, model.__table__)
        for names in sorted(groups):
            columns = [name for name in names if name != key]
            if self.cursor is not None:
                sql = (
                    f"UPDATE {table.name} SET {', '.join(f'{c} = ?' for c in columns)} "
                    f"WHERE {key} = ?"
                )
                self.cursor.executemany(sql, map(itemgetter(*columns, key), groups[names]))
            else:
                self.session.execute(update(model), groups[names])

    def upsert(
        self, model: type[Base], key: str, new: dict[str, Row], updates: dict[str, Row]
    ) -> None:
        # Updates first: a completion closes a staff member's task before the insert of the
        # next task given to them, which the one-open-task-a-staff-member index would refuse.
        if updates:
            self.update(model, key, updates.values())
        if new:
            rows = list(new.values())
            columns = tuple(rows[0])
            self.insert(model, columns, list(map(itemgetter(*columns), rows)))
