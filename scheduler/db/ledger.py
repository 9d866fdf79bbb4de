"""The live scheduler's unit of work: one tick, one transaction.

A tick's rows (through `SqlStore`), the consumer positions after the messages it consumed and
the messages it wants sent (the outbox) are committed together, so that after a crash the
database says exactly which events were applied and which messages are still owed.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import cast

from sqlalchemy import Connection, Table, delete, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from scheduler import events as ev
from scheduler.config import Config
from scheduler.db.basics import run_id_problem
from scheduler.db.lease import Lease, short_idle
from scheduler.db.models import (
    ConsumerOffset,
    DecisionRow,
    InboundEvent,
    OutboxRow,
    Run,
    Snapshot,
    Tick,
    outbox_owed,
)
from scheduler.db.store import SqlStore, StoreError, copy_rows, reason
from scheduler.engine import TickResult


@dataclass(frozen=True)
class OutboxMessage:
    topic: str
    key: bytes
    partition: int | None
    payload: bytes
    outbox_id: int = 0
    dead_letter: bool = False
    tick: int = -1


def _inbound_event(text: str | bytes) -> ev.Event:
    return ev.parse_json(text)  # looked up at each call: a test may put another in its place


class Ledger:
    def __init__(self, url: str, config: Config, policy: str):
        self.store = SqlStore(
            url, config, policy, flush_every=1 << 62, fresh=False, write_behind=False
        )
        self.engine = self.store.engine
        # When several schedulers share the database: the lease every commit is fenced by.
        self.lease: Lease | None = None
        # How a stored or read inbound event is parsed (a region's member has its own events).
        self.parse: Callable[[str | bytes], ev.Event] = _inbound_event

    def reload(self) -> None:
        """Forget what this process knew of the tables: another scheduler wrote them since
        (a standby that takes over)."""
        self.store._clear()
        self.store.transaction(self.store._load_queued)

    # --- the run --------------------------------------------------------------------------

    def run(self, run_id: str) -> Run | None:
        with Session(self.engine) as session:
            return session.get(Run, run_id)

    def current_run(self) -> Run | None:
        """The run the working tables hold (one at a time), if any."""
        with Session(self.engine) as session:
            return session.scalars(select(Run).limit(1)).first()

    def start_run(
        self,
        run_id: str,
        epoch_s: float,
        speed: float,
        offsets: dict[tuple[str, int], int],
        until_ms: int | None = None,
    ) -> None:
        """Empty the working tables for a new run that reads each partition from `offsets`
        and ends at `until_ms` (None: when it is stopped), after keeping the run they held
        (if another) among the kept runs. All in one transaction: a failure leaves the run
        they held as it was, to be resumed. `ValueError` (and nothing changed) for a run id
        that cannot be kept."""
        problem = run_id_problem(run_id)
        if problem is not None:
            raise ValueError(problem)

        def keep_the_current_run(session: Session) -> None:
            current = session.scalars(select(Run).limit(1)).first()
            if current is not None and current.run_id != run_id:
                self.keep_aside(session.connection(), current)

        def begin(session: Session) -> None:
            session.add(Run(run_id=run_id, epoch_s=epoch_s, speed=speed, until_ms=until_ms))
            session.add_all(
                ConsumerOffset(topic=t, partition=p, offset=o)
                for (t, p), o in sorted(offsets.items())
            )

        self.store.reset(before=keep_the_current_run, after=begin)

    def end_run_at(self, run_id: str, until_ms: int) -> None:
        """Give the run its end at `until_ms`, if it has none yet (begun without one, or
        before the end was stored with the run)."""
        with self.engine.begin() as db:
            db.execute(
                update(Run)
                .where(Run.run_id == run_id, Run.until_ms.is_(None))
                .values(until_ms=until_ms)
            )

    def keep_aside(self, db: Connection, run: Run) -> None:
        """Copy a run out of the working tables before a new run replaces it, unless it is
        kept already (`hospital run --kafka` keeps its run at the end), in the transaction
        `db` is in. A run kept here was never closed: its status says `replaced`, and its
        config is the one in use now."""
        from scheduler.db import kept_runs

        kept = kept_runs.find(db, run.run_id)
        if kept is not None and kept.status != "running":
            return
        if kept is None:
            tick_ms = round(self.store.config.scheduler.tick_s * 1000)
            last_tick = db.scalar(select(func.max(Tick.tick))) or 0
            kept_runs.begin(
                db,
                run.run_id,
                self.store.config,
                seed=None,
                mode="distributed",
                duration_ms=last_tick * tick_ms,
            )
        kept_runs.finish(db, run.run_id, None, "interrupted" if kept is not None else "replaced")
        db.execute(
            update(kept_runs.KeptRun)
            .where(kept_runs.KeptRun.run_id == run.run_id)
            .values(started_at=run.epoch_s)
        )

    def offsets(self) -> dict[tuple[str, int], int]:
        with Session(self.engine) as session:
            return {
                (r.topic, r.partition): r.offset for r in session.scalars(select(ConsumerOffset))
            }

    def last_tick(self) -> int:
        with Session(self.engine) as session:
            return session.scalar(select(func.max(Tick.tick))) or -1

    def solve_times(self) -> dict[int, float]:
        with Session(self.engine) as session:
            return dict(session.execute(select(Tick.tick, Tick.solve_ms)).all())

    def latest_snapshot(self) -> tuple[int, bytes] | None:
        with Session(self.engine) as session:
            row = session.execute(
                select(Snapshot.tick, Snapshot.state).order_by(Snapshot.tick.desc()).limit(1)
            ).first()
            return (row.tick, row.state) if row else None

    def history(self, after: int = -1) -> Iterator[tuple[int, list[ev.Event], list[str]]]:
        """Every stored tick after `after`: the inbound events it applied and its
        decisions, in order."""
        with Session(self.engine) as session:
            # The ticks first, and their rows only: a standby reads while the active
            # scheduler commits, and each statement sees the commits made before it.
            ticks = list(
                session.scalars(select(Tick.tick).where(Tick.tick > after).order_by(Tick.tick))
            )
            last = ticks[-1] if ticks else after
            inbound: dict[int, list[ev.Event]] = defaultdict(list)
            query = select(InboundEvent.tick, InboundEvent.payload).where(
                InboundEvent.tick > after, InboundEvent.tick <= last
            )
            for row in session.execute(query):
                inbound[row.tick].append(self.parse(row.payload))
            decisions: dict[int, list[str]] = defaultdict(list)
            query = (
                select(DecisionRow.tick, DecisionRow.payload)
                .where(DecisionRow.tick > after, DecisionRow.tick <= last)
                .order_by(DecisionRow.tick, DecisionRow.position)
            )
            for row in session.execute(query):
                decisions[row.tick].append(row.payload)
        for tick in ticks:
            yield tick, inbound.get(tick, []), decisions.get(tick, [])

    def export(
        self,
        events_path=None,
        decisions_path=None,
        header: tuple[dict, int] | None = None,
        **more_header,
    ) -> tuple[int, int]:
        """Write the applied inbound events (each with its tick) and the decisions as JSONL,
        for `hospital solve`, either or both; the events after a `run.header` of `header`'s
        config and seed (and `more_header`), if given. Returns how many of each."""
        from scheduler import jsonl
        from scheduler.engine import canonical_order

        events = decisions = 0
        with contextlib.ExitStack() as files:
            events_file = files.enter_context(open(events_path, "w")) if events_path else None
            if events_file and header is not None:
                jsonl.write_header(events_file, *header, **more_header)
            out_file = files.enter_context(open(decisions_path, "w")) if decisions_path else None
            for tick, inbound, stored in self.history():
                if events_file:
                    jsonl.write(events_file, canonical_order(inbound), tick=tick)
                if out_file:
                    out_file.writelines(line + "\n" for line in stored)
                events, decisions = events + len(inbound), decisions + len(stored)
        return events, decisions

    # --- one tick -------------------------------------------------------------------------

    def commit_ticks(
        self,
        ticks: list[tuple[TickResult, list[OutboxMessage]]],
        positions: dict[tuple[str, int], int],
        snapshot: bytes | None = None,
        loose: Sequence[OutboxMessage] = (),
    ) -> None:
        """Commit some ticks, each with the messages it owes, the consumer positions after
        the messages they consumed and, if given, the state after the last tick (replacing
        the older snapshot), in one transaction. `loose` messages (dead letters) belong to
        no tick: they are filed under the last one, given or stored, which must exist.
        With a lease, the transaction first checks that it still holds it (`LeaseLost`, and
        nothing is written, if another scheduler took over)."""
        for result, _ in ticks:
            self.store.save_tick(result)

        def extra(session: Session) -> None:
            for (topic, partition), offset in sorted(positions.items()):
                session.execute(_upsert_offset(self.engine.dialect.name, topic, partition, offset))
            owed = [(result.tick, m) for result, outbox in ticks for m in outbox]
            if loose:
                last = ticks[-1][0].tick if ticks else session.scalar(select(func.max(Tick.tick)))
                if last is None:
                    raise ValueError("dead letters to file, and no tick to file them under")
                owed += [(last, m) for m in loose]
            if owed:
                # In bulk, not as ORM objects: a backlog's ticks owe thousands of messages.
                # Rows keep their order, and so do their ids.
                rows = [
                    (
                        tick,
                        m.topic,
                        m.key.decode(),
                        m.partition,
                        m.payload.decode(),
                        m.dead_letter,
                        False,
                    )
                    for tick, m in owed
                ]
                columns = (
                    "tick",
                    "topic",
                    "key",
                    "partition",
                    "payload",
                    "dead_letter",
                    "published",
                )
                if self.engine.dialect.name == "postgresql":
                    copy_rows(session, "outbox", columns, rows)
                else:
                    session.execute(
                        insert(cast(Table, OutboxRow.__table__)),
                        [dict(zip(columns, row)) for row in rows],
                    )
            if snapshot is not None:
                session.flush()  # the tick row first: the snapshot refers to it
                session.execute(delete(Snapshot))
                session.add(Snapshot(tick=ticks[-1][0].tick, state=snapshot))

        self.store.flush(extra, fence=self.lease.fence if self.lease is not None else None)

    # --- the outbox -----------------------------------------------------------------------

    def unpublished(self, limit: int = 1000) -> list[OutboxMessage]:
        """The first `limit` messages owed, in id order (the order they were committed in)."""
        try:
            o = OutboxRow
            with self.engine.connect() as db:  # plain rows: no ORM objects to build
                rows = db.execute(
                    select(
                        o.topic, o.key, o.partition, o.payload, o.outbox_id, o.dead_letter, o.tick
                    )
                    .where(*outbox_owed())
                    .order_by(o.outbox_id)
                    .limit(limit)
                )
                return [
                    OutboxMessage(
                        topic,
                        key.encode(),
                        partition,
                        payload.encode(),
                        outbox_id,
                        dead_letter,
                        tick,
                    )
                    for topic, key, partition, payload, outbox_id, dead_letter, tick in rows
                ]
        except Exception as exc:
            raise StoreError(f"database read failed at {self.store.url}: {reason(exc)}") from None

    def count_unpublished(self) -> int:
        with Session(self.engine) as session:
            owed = select(func.count()).select_from(OutboxRow).where(*outbox_owed())
            return session.scalar(owed) or 0

    def mark_published(self, up_to: int) -> None:
        """Every message up to `up_to` is sent."""

        def mark(session: Session) -> None:
            if not _sent_up_to(session, up_to):
                session.execute(
                    update(OutboxRow).where(OutboxRow.outbox_id <= up_to).values(published=True)
                )

        self.store.transaction(mark)

    def mark_published_ids(self, ids: Sequence[int], owed: Sequence[int] = ()) -> None:
        """Mark these messages sent: those the broker acknowledged, whatever became of the
        others of their batch. `owed`, if given, is the batch they are from, as
        `unpublished` gave it: the messages before the first of it not sent are marked by
        moving the run's `outbox_sent_up_to` (one row, however many), the others one by one
        (sent out of order: a send failed before them)."""
        sent = set(ids)
        up_to = 0
        for id_ in owed:
            if id_ not in sent:
                break
            up_to = id_

        def mark(session: Session) -> None:
            short_idle(session)
            beyond = sorted(sent)
            if up_to and _sent_up_to(session, up_to):
                beyond = [id_ for id_ in beyond if id_ > up_to]
            if not beyond:
                return
            # A batch's ids are mostly one run (numbered in order at its commit): a BETWEEN
            # each is cheaper than an IN of thousands; many runs (sends failing here and
            # there) stay an IN, as an OR of thousands is too deep for SQLite.
            runs = id_runs(beyond)
            within = (
                or_(*(OutboxRow.outbox_id.between(lo, hi) for lo, hi in runs))
                if len(runs) <= 16
                else OutboxRow.outbox_id.in_(beyond)
            )
            session.execute(update(OutboxRow).where(within).values(published=True))

        if sent:
            self.store.transaction(mark)

    def dead_letters(self) -> int:
        with Session(self.engine) as session:
            return (
                session.scalar(
                    select(func.count())
                    .select_from(OutboxRow)
                    .where(OutboxRow.dead_letter.is_(True))
                )
                or 0
            )

    def forget_unwritten(self) -> None:
        """After a commit that failed (or may have): drop the rows buffered for it and
        reload what the store tracks from the database, which must answer, as a restart
        would. The caller rebuilds its state from the database too (`restore`)."""
        self.store._clear()
        with Session(self.engine) as session:
            self.store._load_queued(session)

    def close(self) -> None:
        self.engine.dispose()


def _sent_up_to(session: Session, up_to: int) -> bool:
    """Record that every message up to `up_to` is sent, unless more is recorded already.
    False if there is no run to record it in."""
    if session.scalar(select(Run.run_id).limit(1)) is None:
        return False
    session.execute(
        update(Run).where(Run.outbox_sent_up_to < up_to).values(outbox_sent_up_to=up_to)
    )
    return True


def id_runs(ids: Sequence[int]) -> list[tuple[int, int]]:
    """The ids as (first, last) runs of consecutive ids, in order: [1, 2, 3, 7] gives
    [(1, 3), (7, 7)]."""
    runs: list[tuple[int, int]] = []
    for id_ in sorted(set(ids)):
        if runs and id_ == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], id_)
        else:
            runs.append((id_, id_))
    return runs


def _upsert_offset(dialect: str, topic: str, partition: int, offset: int):
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(ConsumerOffset).values(topic=topic, partition=partition, offset=offset)
    return statement.on_conflict_do_update(
        index_elements=["topic", "partition"], set_={"offset": offset}
    )
