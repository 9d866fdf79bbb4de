"""The scheduler's lease: which of several schedulers of one database is the active one.

One row holds the lease: its holder (a scheduler id), the holder's host and pid, and a
fencing epoch, incremented at each takeover. The holder renews its expiry every
`RENEW_EVERY_S`; a standby polls the row and takes the lease once it has expired (its holder
was killed, or its machine stopped answering). Every tick's transaction checks the epoch
(`fence`): a holder that was frozen (SIGSTOP, a lost machine that comes back) and woke up
deposed finds the epoch moved on, its commit rolls back, and it steps down. An advisory lock
alone would not do that: the frozen holder's session stays open and keeps the lock.

Times are the database's clock, so that schedulers on machines whose clocks differ agree on
when a lease expires. The tables have their own metadata: a run's fresh start, which empties
the working tables, leaves the lease alone.
"""

from __future__ import annotations

import os
import socket
import time
from typing import NamedTuple, cast

from sqlalchemy import (
    BigInteger,
    CursorResult,
    Double,
    Engine,
    Integer,
    MetaData,
    String,
    delete,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from scheduler.db.models import NAMING_CONVENTION
from scheduler.db.store import StoreError, reason

LEASE_S = 2.5  # a holder that has not renewed for this long is taken over
POLL_S = 0.2  # how often a standby looks at the lease
RENEW_EVERY_S = 0.5  # how often the holder renews (each commit renews too)
SEND_MARGIN_S = 1.0  # the holder sends to Kafka only while it holds the lease this much longer
LEASE_NAME = "scheduler"
IDLE_IN_TRANSACTION_MS = 1500


class LeaseBase(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class LeaseRow(LeaseBase):
    __tablename__ = "scheduler_lease"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(64))
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    epoch: Mapped[int] = mapped_column(BigInteger)
    since: Mapped[float] = mapped_column(Double)  # when this holder took it (Unix s)
    expires_at: Mapped[float] = mapped_column(Double)


class StandbyRow(LeaseBase):
    """A scheduler waiting for the lease, as it last said so."""

    __tablename__ = "scheduler_standbys"

    holder: Mapped[str] = mapped_column(String(64), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    seen_at: Mapped[float] = mapped_column(Double)


class Holder(NamedTuple):
    holder: str
    host: str
    pid: int
    epoch: int


class LeaseLost(RuntimeError):
    """Another scheduler took the lease: this one must not commit or send anything more."""


class LeaseHeld(RuntimeError):
    """Another live scheduler holds the lease (and this one was not started as a standby)."""


def db_now(session: Session) -> float:
    """The database's clock, Unix seconds."""
    if session.get_bind().dialect.name == "postgresql":
        return float(session.scalar(text("SELECT extract(epoch FROM clock_timestamp())")))
    return float(session.scalar(text("SELECT (julianday('now') - 2440587.5) * 86400.0")))


def short_idle(session: Session) -> None:
    """On PostgreSQL, a transaction left idle for a while is ended by the server: a holder
    frozen in the middle of one (SIGSTOP) must not keep the rows it locked (the lease row,
    the outbox's) from the scheduler that takes over."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text(f"SET LOCAL idle_in_transaction_session_timeout = '{IDLE_IN_TRANSACTION_MS}ms'")
        )


def default_scheduler_id() -> str:
    return socket.gethostname()[:64]


def process_alive(pid: int) -> bool:
    """Whether a process of this pid lives on this machine (a zombie, dead and not yet
    reaped by its parent, does not)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)  # no signal sent: only whether it exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            state = stat.read().rpartition(")")[2].split()[0]  # after "pid (name)"
    except (OSError, IndexError):
        return True  # no /proc to tell: alive, as far as can be known
    return state != "Z"


class Lease:
    def __init__(self, engine: Engine, holder: str, lease_s: float = LEASE_S):
        self.engine = engine
        self.holder = holder
        self.host = socket.gethostname()[:255]
        self.pid = os.getpid()
        self.lease_s = lease_s
        self.epoch: int | None = None  # the epoch held, if held
        self.renewed = 0.0  # time.monotonic() before the last renewal

    # --- taking it --------------------------------------------------------------------

    def try_acquire(self, take_own: bool) -> Holder | None:
        """Take the lease if it is free or expired, or (`take_own`) held under this
        scheduler's id by an earlier process of it that is gone (`earlier_self`), with the
        next epoch. None if taken; else the row of the live holder."""
        started = time.monotonic()
        try:
            with Session(self.engine) as session, session.begin():
                short_idle(session)
                now = db_now(session)
                row = session.scalars(
                    select(LeaseRow).where(LeaseRow.name == LEASE_NAME).with_for_update()
                ).first()
                values = {
                    "holder": self.holder,
                    "host": self.host,
                    "pid": self.pid,
                    "since": now,
                    "expires_at": now + self.lease_s,
                }
                if row is None:
                    session.add(LeaseRow(name=LEASE_NAME, epoch=1, **values))
                    epoch = 1
                elif row.expires_at <= now or (take_own and self.earlier_self(row)):
                    epoch = row.epoch + 1
                    taken = session.execute(
                        update(LeaseRow)
                        .where(LeaseRow.name == LEASE_NAME, LeaseRow.epoch == row.epoch)
                        .values(epoch=epoch, **values)
                    )
                    if cast(CursorResult, taken).rowcount != 1:
                        return Holder(row.holder, row.host, row.pid, row.epoch)
                else:
                    return Holder(row.holder, row.host, row.pid, row.epoch)
                session.execute(delete(StandbyRow).where(StandbyRow.holder == self.holder))
        except IntegrityError:  # another took it in the same instant
            return Holder("?", "?", 0, 0)
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot take the scheduler's lease: {reason(exc)}") from None
        self.epoch, self.renewed = epoch, started
        return None

    def earlier_self(self, row: LeaseRow) -> bool:
        """Whether the lease's holder is this scheduler's own earlier process, gone: its
        id, on this host, and a pid that is this process or no longer alive (a restart
        after a crash). A live process under the same id is another scheduler; so may be
        one on another host, whose pid cannot be looked at: its lease must run out."""
        return (
            row.holder == self.holder
            and row.host == self.host
            and (row.pid == self.pid or not process_alive(row.pid))
        )

    def wait(self, standby: bool, stop, idle=None) -> bool:
        """Hold the lease: at once, or as a standby once it expires (calling `idle` between
        polls). False if `stop` was set first. `LeaseHeld` if another live scheduler holds
        it and this one is not a standby, or holds it under this one's id."""
        holder = self.try_acquire(take_own=True)
        if holder is not None and (not standby or holder.holder == self.holder):
            raise LeaseHeld(self.held_by(holder))
        while holder is not None:
            self.register()
            if idle is not None:
                idle()
            if stop.wait(POLL_S):
                return False
            holder = self.try_acquire(take_own=False)
        return True

    def held_by(self, holder: Holder) -> str:
        """Why this scheduler cannot be active while `holder` is, and what to do."""
        active = (
            f"scheduler {holder.holder} ({holder.host}, pid {holder.pid}) is active "
            f"(lease epoch {holder.epoch})"
        )
        if holder.holder != self.holder:
            return (
                f"{active}: start this one with --standby to take over when it stops, "
                f"or give it another --scheduler-id"
            )
        if holder.host == self.host:
            return (
                f"{active}, a live process under this one's id: give this one another "
                f"--scheduler-id (and --standby to take over when that one stops)"
            )
        return (
            f"{active} on another host under this one's id: give this one another "
            f"--scheduler-id, or start it again once that one has stopped (its lease runs "
            f"out {self.lease_s:g} s after)"
        )

    def register(self) -> None:
        """Say that this scheduler is a standby (`hospital status` lists it)."""
        try:
            with Session(self.engine) as session, session.begin():
                now = db_now(session)
                row = session.get(StandbyRow, self.holder)
                if row is None:
                    session.add(
                        StandbyRow(holder=self.holder, host=self.host, pid=self.pid, seen_at=now)
                    )
                else:
                    row.host, row.pid, row.seen_at = self.host, self.pid, now
        except SQLAlchemyError:
            pass  # only for `hospital status`; the next poll tries again

    # --- holding it -------------------------------------------------------------------

    def fence(self, session: Session) -> None:
        """In a transaction that commits the holder's work: check that the lease is still
        this epoch's, and renew it. `LeaseLost` (the transaction rolls back) if not."""
        if self.epoch is None:
            return
        started = time.monotonic()
        short_idle(session)
        now = db_now(session)
        renewed = session.execute(
            update(LeaseRow)
            .where(
                LeaseRow.name == LEASE_NAME,
                LeaseRow.epoch == self.epoch,
                LeaseRow.holder == self.holder,
            )
            .values(expires_at=now + self.lease_s)
        )
        if cast(CursorResult, renewed).rowcount != 1:
            lost = self.epoch
            self.epoch = None
            raise LeaseLost(
                f"scheduler {self.holder}: the lease of epoch {lost} was taken "
                f"over by another scheduler"
            )
        self.renewed = started

    def renew(self) -> None:
        with Session(self.engine) as session, session.begin():
            self.fence(session)

    def renew_if_due(self) -> None:
        """Renew every `RENEW_EVERY_S`. `LeaseLost` if another took it; a database error is
        logged by the caller's next commit, not here: the lease just runs out."""
        if self.epoch is None or time.monotonic() - self.renewed < RENEW_EVERY_S:
            return
        try:
            self.renew()
        except SQLAlchemyError:
            pass

    def may_send(self) -> bool:
        """Whether this holder certainly holds the lease for `SEND_MARGIN_S` more: it
        renewed less than `lease_s - SEND_MARGIN_S` ago (by its own clock, from before the
        renewal), and nobody takes an unexpired lease."""
        return (
            self.epoch is not None
            and time.monotonic() - self.renewed < self.lease_s - SEND_MARGIN_S
        )

    def lost(self) -> bool:
        """After a database error in the holder's work: whether another scheduler took the
        lease meanwhile (the error was the server ending a frozen holder's transaction)."""
        if self.epoch is None:
            return True
        for _ in range(2):  # the first try may meet the connection the server ended
            try:
                with Session(self.engine) as session:
                    epoch = session.scalar(
                        select(LeaseRow.epoch).where(LeaseRow.name == LEASE_NAME)
                    )
            except SQLAlchemyError:
                continue
            if epoch != self.epoch:
                self.epoch = None
                return True
            return False
        return False

    def release(self) -> None:
        """Let a standby take over at once (a clean stop or the end of the run)."""
        if self.epoch is None:
            return
        try:
            with Session(self.engine) as session, session.begin():
                session.execute(
                    update(LeaseRow)
                    .where(
                        LeaseRow.name == LEASE_NAME,
                        LeaseRow.epoch == self.epoch,
                        LeaseRow.holder == self.holder,
                    )
                    .values(expires_at=0.0)
                )
        except SQLAlchemyError:
            pass  # it expires by itself
        self.epoch = None

    def close(self) -> None:
        self.engine.dispose()


def lease_status(session: Session) -> dict | None:
    """The lease and the standbys seen lately, for `hospital status`; None if no scheduler
    ever took the lease."""
    row = session.get(LeaseRow, LEASE_NAME)
    if row is None:
        return None
    now = db_now(session)
    standbys = session.scalars(
        select(StandbyRow)
        .where(StandbyRow.seen_at > now - 10, StandbyRow.holder != row.holder)
        .order_by(StandbyRow.holder)
    ).all()
    return {
        "holder": row.holder,
        "host": row.host,
        "pid": row.pid,
        "epoch": row.epoch,
        "since": row.since,
        "expires_in": row.expires_at - now,
        "standbys": [(s.holder, s.host, s.pid, now - s.seen_at) for s in standbys],
    }
