"""The tables of one run: the hospital's rooms and staff, the patients and tasks derived from
the events, and every tick with the inbound events it consumed and the decisions it made.

Times are seconds since the run's start, as on the wire. The schema itself is owned by the
Alembic migrations in `scheduler/migrations`; `hospital db check` proves they agree with
these models.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Double,
    ForeignKey,
    Index,
    LargeBinary,
    MetaData,
    String,
    Text,
    func,
    select,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Named constraints, so that migrations can refer to them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

Id = String(64)
Seconds = Double  # DOUBLE PRECISION on PostgreSQL, REAL affinity on SQLite


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {str: Id, float: Seconds}


def one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


ROOM_STATUSES = ("free", "booked", "occupied", "dirty", "cleaning")
PATIENT_STATUSES = ("waiting", "admitted", "referred", "discharged")
TASK_KINDS = ("escort_in", "visit", "escort_out", "clean", "clean_terminal")
OPEN_TASK = "staff_id IS NOT NULL AND completed_at IS NULL"


class Room(Base):
    __tablename__ = "rooms"
    __table_args__ = (CheckConstraint(one_of("status", ROOM_STATUSES), name="status"),)

    room_id: Mapped[str] = mapped_column(primary_key=True)
    floor: Mapped[str]
    number: Mapped[int]
    status: Mapped[str]
    # A patient is in one room at most. NULLs do not collide, on SQLite and PostgreSQL alike.
    # `use_alter`: rooms and patients refer to each other, so this key is added last.
    current_patient_id: Mapped[str | None] = mapped_column(
        ForeignKey("patients.patient_id", use_alter=True), unique=True
    )

    current_patient: Mapped[Patient | None] = relationship(foreign_keys=[current_patient_id])


class Staff(Base):
    __tablename__ = "staff"

    staff_id: Mapped[str] = mapped_column(primary_key=True)
    role: Mapped[str]  # porter | medical | cleaner: who may do which task
    title: Mapped[str]  # porter | nurse | doctor | cleaner

    tasks: Mapped[list[Task]] = relationship(back_populates="staff")


class Patient(Base):
    __tablename__ = "patients"
    __table_args__ = (
        CheckConstraint(one_of("status", PATIENT_STATUSES), name="status"),
        CheckConstraint(
            "discharged_at IS NULL OR admitted_at <= discharged_at",
            name="discharged_after_admitted",
        ),
    )

    patient_id: Mapped[str] = mapped_column(primary_key=True)
    arrived_at: Mapped[float]
    status: Mapped[str]
    room_id: Mapped[str | None] = mapped_column(ForeignKey("rooms.room_id"))
    admitted_at: Mapped[float | None]
    discharged_at: Mapped[float | None]
    referred_at: Mapped[float | None]
    referral_reason: Mapped[str | None] = mapped_column(Text)

    room: Mapped[Room | None] = relationship(foreign_keys=[room_id])
    tasks: Mapped[list[Task]] = relationship(back_populates="patient")


class Tick(Base):
    __tablename__ = "ticks"

    tick: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    time: Mapped[float]
    policy: Mapped[str]
    solve_ms: Mapped[float]
    n_consumed: Mapped[int]
    n_decisions: Mapped[int]
    n_rejected: Mapped[int]

    decisions: Mapped[list[DecisionRow]] = relationship(back_populates="tick_row")
    inbound_events: Mapped[list[InboundEvent]] = relationship(back_populates="tick_row")


class Task(Base):
    __tablename__ = "tasks"
    __table_args__ = (
        CheckConstraint(one_of("kind", TASK_KINDS), name="kind"),
        # Nobody can do a task that was given to nobody.
        CheckConstraint("dispatched_at IS NULL OR staff_id IS NOT NULL", name="dispatched_staff"),
        CheckConstraint(
            "completed_at IS NULL OR dispatched_at IS NOT NULL", name="completed_after_dispatch"
        ),
        # A staff member is on at most one open task.
        Index(
            "uq_tasks_open_staff",
            "staff_id",
            unique=True,
            postgresql_where=text(OPEN_TASK),
            sqlite_where=text(OPEN_TASK),
        ),
    )

    task_id: Mapped[str] = mapped_column(primary_key=True)
    kind: Mapped[str]
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.patient_id"), index=True)
    room_id: Mapped[str] = mapped_column(ForeignKey("rooms.room_id"))
    staff_id: Mapped[str | None] = mapped_column(ForeignKey("staff.staff_id"))
    created_at: Mapped[float]
    dispatched_at: Mapped[float | None]
    completed_at: Mapped[float | None]
    # Indexed, as every key to `ticks` is: PostgreSQL looks them up for each tick deleted.
    created_tick: Mapped[int] = mapped_column(ForeignKey("ticks.tick"), index=True)
    dispatched_tick: Mapped[int | None] = mapped_column(ForeignKey("ticks.tick"), index=True)

    patient: Mapped[Patient] = relationship(back_populates="tasks")
    room: Mapped[Room] = relationship()
    staff: Mapped[Staff | None] = relationship(back_populates="tasks")


class DecisionRow(Base):
    """A decision, its whole event kept as canonical JSON (`Event.to_json()`)."""

    __tablename__ = "decisions"

    event_id: Mapped[str] = mapped_column(primary_key=True)
    tick: Mapped[int] = mapped_column(ForeignKey("ticks.tick"), index=True)
    position: Mapped[int]  # its place among the tick's decisions
    type: Mapped[str]
    time: Mapped[float]
    payload: Mapped[str] = mapped_column(Text)

    tick_row: Mapped[Tick] = relationship(back_populates="decisions")


class InboundEvent(Base):
    """An inbound event the scheduler applied. Its id is what lets a consumer that restarts
    skip an event it has already applied."""

    __tablename__ = "inbound_events"

    event_id: Mapped[str] = mapped_column(primary_key=True)
    tick: Mapped[int] = mapped_column(ForeignKey("ticks.tick"), index=True)
    type: Mapped[str]
    time: Mapped[float]
    payload: Mapped[str] = mapped_column(Text)

    tick_row: Mapped[Tick] = relationship(back_populates="inbound_events")


class Run(Base):
    """The run the tables hold: the clock its services share, and its end."""

    __tablename__ = "runs"

    run_id: Mapped[str] = mapped_column(primary_key=True)
    epoch_s: Mapped[float]
    speed: Mapped[float]
    # The simulated time (ms) at which the run ends, for every scheduler that takes it
    # over; None: it runs until it is stopped.
    until_ms: Mapped[int | None] = mapped_column(BigInteger)
    # Every outbox message up to this id is sent (`OutboxRow`).
    outbox_sent_up_to: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class ConsumerOffset(Base):
    """Where the scheduler resumes reading each partition: committed with the tick that
    consumed the messages before it."""

    __tablename__ = "consumer_offsets"

    topic: Mapped[str] = mapped_column(String(255), primary_key=True)
    partition: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    offset: Mapped[int] = mapped_column(BigInteger)


class OutboxRow(Base):
    """A message to send to Kafka once its tick is committed. Sent: its id is at most the
    run's `outbox_sent_up_to` (the relay sends in id order), or, sent out of that order
    (after a failed send), `published`."""

    __tablename__ = "outbox"

    outbox_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    # The tick that owes it, no key to `ticks` (written with it, in its transaction).
    tick: Mapped[int] = mapped_column(index=True)
    topic: Mapped[str] = mapped_column(String(255))
    key: Mapped[str] = mapped_column(Text)
    partition: Mapped[int | None]
    payload: Mapped[str] = mapped_column(Text)
    dead_letter: Mapped[bool] = mapped_column(Boolean)
    published: Mapped[bool] = mapped_column(Boolean)


def outbox_owed() -> tuple:
    """The conditions on `OutboxRow` of a message not sent yet."""
    sent_up_to = select(func.coalesce(func.max(Run.outbox_sent_up_to), 0)).scalar_subquery()
    return OutboxRow.outbox_id > sent_up_to, OutboxRow.published.is_(False)


class Snapshot(Base):
    """The live scheduler's state after a tick (`scheduler.snapshot`: UTF-8 JSON, checked
    when read, with no config inside): a restart replays only the ticks after it."""

    __tablename__ = "snapshots"

    tick: Mapped[int] = mapped_column(
        ForeignKey("ticks.tick"), primary_key=True, autoincrement=False
    )
    state: Mapped[bytes] = mapped_column(LargeBinary)
