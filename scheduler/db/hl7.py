"""The HL7 listener's ledger, and the embedded run's inbox, in the run's database.

`hl7_messages` holds every message the listener answered for good: its sender and control
id (MSH-10, unique in a run: a message sent again is answered as before and applied once),
its answer (AA, AE, AR, with the error and reason), the event an AA made, and the text of
any other (the dead letters). In the embedded mode it is also the run's inbox: the run
takes the AA events not yet taken at each tick (`Inbox.take`), dates them with the tick's
time and marks them taken in one transaction. A listener's check-and-insert and a run's
take are transactions of one database, so they come one after the other: an update
accepted while its arrival is not taken is taken with it, in the same tick, before the
decision; once the arrival is taken it is too late, and the listener says so (AE).

`hl7_intake` says which embedded run takes messages (`hospital run --arrivals hl7`): the
run opens it when it starts and closes it with its last take, in one transaction, so a
message is either taken by the run or refused (AR: no run takes messages).

The tables have their own metadata: a run's fresh start empties the working tables, not
the record of what was answered.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Connection,
    Double,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from scheduler import events as ev
from scheduler.db.models import NAMING_CONVENTION
from scheduler.hl7.mapping import Answer, KnownArrival, Prior, Reading


class Hl7Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Hl7Message(Hl7Base):
    __tablename__ = "hl7_messages"
    __table_args__ = (
        # One answer per message: a control id sent again is found here. NULL control ids
        # (a message whose MSH cannot be read) do not collide.
        Index("uq_hl7_messages_control", "run_id", "sender", "control_id", unique=True),
        Index("ix_hl7_messages_patient", "run_id", "patient_id"),
        Index("ix_hl7_messages_inbox", "run_id", "taken_tick"),
    )

    message_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(64))
    sender: Mapped[str | None] = mapped_column(String(255))  # MSH-3^MSH-4
    control_id: Mapped[str | None] = mapped_column(String(199))  # MSH-10
    digest: Mapped[str] = mapped_column(String(64))  # sha256 of the message's text
    trigger: Mapped[str | None] = mapped_column(String(16))
    patient_id: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str | None] = mapped_column(String(16))  # arrive | update | withdraw
    code: Mapped[str] = mapped_column(String(2))  # AA | AE | AR
    error: Mapped[int | None] = mapped_column(Integer)  # HL7 table 0357
    reason: Mapped[str] = mapped_column(Text)
    event_id: Mapped[str | None] = mapped_column(String(64))
    event: Mapped[str | None] = mapped_column(Text)  # the event of an AA, as JSON
    time_ms: Mapped[int | None] = mapped_column(BigInteger)  # the event's time, once known
    taken_tick: Mapped[int | None] = mapped_column(BigInteger)  # embedded: the tick that took it
    received_at: Mapped[float] = mapped_column(Double)  # Unix time
    message: Mapped[str | None] = mapped_column(Text)  # the text of a dead letter (not AA)


class Hl7Intake(Hl7Base):
    """An embedded run that takes HL7 messages, while `open`."""

    __tablename__ = "hl7_intake"

    run_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    open: Mapped[bool] = mapped_column(Boolean)
    opened_at: Mapped[float] = mapped_column(Double)


class Hl7Outbound(Hl7Base):
    """How far the decisions of a run have been sent to a downstream system as ADT: the
    first `sent` messages of tick `tick` (and every message of the ticks before)."""

    __tablename__ = "hl7_outbound"

    run_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    destination: Mapped[str] = mapped_column(String(255), primary_key=True)
    tick: Mapped[int] = mapped_column(BigInteger)
    sent: Mapped[int] = mapped_column(Integer)


# --- the ledger: what the listener has answered in a run -------------------------------------


class SqlLedger:
    """`scheduler.hl7.mapping.Ledger` on the tables, for one batch in the caller's
    transaction: `load` reads what the batch's messages need in two queries, `record`
    keeps each answer (seen by the batch's later messages: the second knows the first),
    `write` inserts them all in one statement. `decided`: in the embedded mode an arrival
    taken by the run; in the distributed mode one the scheduler has applied (its
    `inbound_events`)."""

    def __init__(self, db: Connection, run_id: str, embedded: bool):
        self.db, self.run_id, self.embedded = db, run_id, embedded
        self.priors: dict[tuple[str, str], Prior] = {}
        self.by_patient: dict[str, list[Any]] = {}  # rows (action, event_id, time_ms, taken)
        self.rows: list[dict[str, Any]] = []

    def load(self, readings: list[Reading]) -> None:
        controls = {r.header.control_id for r in readings if r.header and r.header.control_id}
        patients = {r.request.patient_id for r in readings if r.request}
        m = Hl7Message
        if controls:
            for row in self.db.execute(
                select(m.sender, m.control_id, m.code, m.error, m.reason, m.digest).where(
                    m.run_id == self.run_id, m.control_id.in_(controls)
                )
            ):
                self.priors[row.sender, row.control_id] = Prior(
                    row.code, row.error, row.reason, row.digest
                )
        if patients:
            for known in self.db.execute(
                select(m.patient_id, m.action, m.event_id, m.time_ms, m.taken_tick)
                .where(m.run_id == self.run_id, m.patient_id.in_(patients), m.code == "AA")
                .order_by(m.message_id)
            ):
                self.by_patient.setdefault(str(known.patient_id), []).append(
                    (known.action, known.event_id, known.time_ms, known.taken_tick)
                )

    def prior(self, sender: str, control_id: str) -> Prior | None:
        return self.priors.get((sender, control_id))

    def arrival(self, patient_id: str) -> KnownArrival | None:
        rows = self.by_patient.get(patient_id, [])
        arrival = next((r for r in rows if r[0] == "arrive"), None)
        if arrival is None:
            return None
        _, event_id, time_ms, taken = arrival
        withdrawn = any(r[0] == "withdraw" for r in rows)
        decided = taken is not None if self.embedded else self._applied(event_id)
        return KnownArrival(event_id, time_ms or 0, decided, withdrawn)

    def _applied(self, event_id: str) -> bool:
        from scheduler.db.models import InboundEvent

        found = self.db.execute(
            select(InboundEvent.event_id).where(InboundEvent.event_id == event_id)
        )
        return found.first() is not None

    def record(self, reading: Reading, answer: Answer) -> None:
        """Keep the answer (not a repeat's: the first one is kept)."""
        header, request, event_ = reading.header, reading.request, answer.event
        time_ms = None if event_ is None or self.embedded else event_.time_ms
        row = {
            "run_id": self.run_id,
            "sender": header.sender if header else None,
            "control_id": (header.control_id or None) if header else None,
            "digest": reading.digest,
            "trigger": (header.trigger[:16] or None) if header else None,
            "patient_id": request.patient_id if request else None,
            "action": request.action if request else None,
            "code": answer.code,
            "error": answer.error,
            "reason": answer.text,
            "event_id": event_.event_id if event_ else None,
            "event": event_.to_json() if event_ else None,
            "time_ms": time_ms,
            "taken_tick": None,
            "received_at": time.time(),
            "message": None if answer.code == "AA" else reading.raw,
        }
        self.rows.append(row)
        if header is not None and header.control_id:
            self.priors[header.sender, header.control_id] = Prior(
                answer.code, answer.error, answer.text, reading.digest
            )
        if request is not None and answer.code == "AA":
            self.by_patient.setdefault(request.patient_id, []).append(
                (request.action, row["event_id"], time_ms, None)
            )

    def write(self) -> None:
        if self.rows:
            self.db.execute(insert(Hl7Message), self.rows)
            self.rows = []


def listener_engine(url: str) -> Engine:
    """An engine for the listener: on SQLite, a commit waits for the disk (an ACK promises
    the message is kept, power cut or not) and a write transaction takes its lock when it
    begins, not midway (no deadlock between two writers that read first)."""
    from scheduler.db.store import connect

    engine = connect(url)
    if engine.dialect.name == "sqlite":
        immediate_transactions(engine)

        @event.listens_for(engine, "connect")
        def _full_sync(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.execute("PRAGMA synchronous=FULL")

        engine.dispose()  # connections made before the listener was added
    return engine


def immediate_transactions(engine: Engine) -> None:
    """SQLite: BEGIN IMMEDIATE for every transaction of this engine (pysqlite's own BEGIN
    is off, SQLAlchemy's recipe)."""

    @event.listens_for(engine, "connect")
    def _no_pysqlite_begin(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def open_run(engine: Engine) -> str | None:
    """The embedded run that takes messages now, if any."""
    with engine.connect() as db:
        return db.execute(
            select(Hl7Intake.run_id)
            .where(Hl7Intake.open.is_(True))
            .order_by(Hl7Intake.opened_at.desc())
        ).scalar()


# --- the embedded run's side -----------------------------------------------------------------


class Inbox:
    """The messages the listener accepted for this run, taken tick by tick. Opening it
    lets the listener accept messages for the run; `close` takes the last ones and stops
    that, in one transaction."""

    def __init__(self, url: str, run_id: str):
        from scheduler.db.store import connect

        self.engine = connect(url)
        if self.engine.dialect.name == "sqlite":
            immediate_transactions(self.engine)
            self.engine.dispose()
        self.run_id = run_id
        self.taken = 0
        with self.engine.begin() as db:
            db.execute(update(Hl7Intake).where(Hl7Intake.open.is_(True)).values(open=False))
            db.execute(insert(Hl7Intake).values(run_id=run_id, open=True, opened_at=time.time()))
        self._waiting = select(func.count()).where(
            Hl7Message.run_id == run_id,
            Hl7Message.taken_tick.is_(None),
            Hl7Message.event.is_not(None),
        )

    def take(self, tick: int, time_ms: int, close: bool = False) -> list[ev.Event]:
        """The events accepted since the last take, dated `time_ms` and marked taken by
        `tick`; with `close`, the intake closes too. A read first: most ticks have none."""
        if not close:
            with self.engine.connect() as db:
                if not db.execute(self._waiting).scalar():
                    return []
        with self.engine.begin() as db:
            rows = db.execute(
                select(Hl7Message.message_id, Hl7Message.event)
                .where(
                    Hl7Message.run_id == self.run_id,
                    Hl7Message.taken_tick.is_(None),
                    Hl7Message.event.is_not(None),
                )
                .order_by(Hl7Message.message_id)
            ).all()
            if rows:
                db.execute(
                    update(Hl7Message)
                    .where(Hl7Message.message_id.in_([r.message_id for r in rows]))
                    .values(taken_tick=tick, time_ms=time_ms)
                )
            if close:
                db.execute(
                    update(Hl7Intake).where(Hl7Intake.run_id == self.run_id).values(open=False)
                )
        self.taken += len(rows)
        return [dataclasses.replace(ev.parse_json(str(r.event)), time_ms=time_ms) for r in rows]

    def close(self) -> None:
        """Stop taking messages (a run stopped early): those accepted and not taken stay
        in the ledger, untaken."""
        with self.engine.begin() as db:
            db.execute(update(Hl7Intake).where(Hl7Intake.run_id == self.run_id).values(open=False))
        self.engine.dispose()
