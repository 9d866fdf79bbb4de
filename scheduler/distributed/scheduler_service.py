"""The scheduler as a service: inbound events from Kafka, one tick at a time, with effects that
happen exactly once.

Each tick's state changes, its decisions, the ids of the events it consumed and the consumer
positions are written in one database transaction (the `Ledger`). Decisions and dead letters
go to Kafka only after that commit, from an outbox in the same database; a crash between the
two re-sends them on restart, and a crash after the broker took them but before the outbox
noted it is found out on restart by reading the tail of their partitions (`reconcile`), so
that each is published once. On start, the scheduler rebuilds its state from the latest
snapshot in the database and the ticks stored after it, replayed (checking that it makes the
same decisions again), and resumes from the stored positions.

Events already applied are dropped before they are put in ticks; what cannot be applied (a
message the parser rejects, an event stamped ahead of the clock, an event on which a tick
raises) is dead-lettered and the run goes on. At the end of the run (`until_ms`) the
scheduler reads the inbound topic to its end, applies what was stamped up to the end, and
relays everything owed before it exits. `faults.py` has the fault points the crash tests use.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

from scheduler import events as ev
from scheduler import snapshot as snapshots
from scheduler.config import Config
from scheduler.db.lease import LeaseLost
from scheduler.db.ledger import Ledger, OutboxMessage
from scheduler.db.store import StoreError
from scheduler.db.store import reason as reason_of
from scheduler.distributed import bus
from scheduler.distributed.clock import LiveClock
from scheduler.distributed.faults import Faults
from scheduler.engine import Scheduler, TickResult, canonical_order, covering_tick
from scheduler.layout import ROLE_OF_KIND
from scheduler.validator import InvariantViolation

log = logging.getLogger("hospital.scheduler")
POLL_MS = 50
RELAY_BATCH = 5000  # messages a relay sends at most, then marks sent before the next
SNAPSHOT_EVERY = 100  # ticks: what a restart replays at most, beyond the snapshot
MAX_READ = 20_000
FINAL_RELAY_S = 20  # at the end of the run: how long to retry a failing broker
# How long a relay waits for the broker to take a batch, and then to end its transaction,
# before it gives the producer up for a fresh one (a leader lost mid-send moves within 3-5 s).
RELAY_FLUSH_S = 10
END_TRANSACTION_S = 10
DATABASE_OUTAGE_S = 60  # how long to wait for a database that stopped answering, then exit 3
MAX_RECOVERIES_WITHOUT_PROGRESS = 5


class ReplayMismatch(RuntimeError):
    """The stored ticks, replayed, do not give the stored decisions."""


@dataclass
class Pending:
    """What has been read from Kafka since the last tick."""

    events: list[ev.Event]
    dead: list[OutboxMessage]
    positions: dict[tuple[str, int], int]
    foreign: int = 0  # messages of another run, skipped


def restore(
    config: Config, ledger: Ledger, make: Callable[[Config], Scheduler] = Scheduler
) -> Scheduler:
    """A scheduler in the state the stored ticks leave it in: the latest snapshot, if it
    was taken under the same config and passes its checks, then the ticks after it,
    replayed; otherwise (or if those ticks replay otherwise) every tick, replayed into a
    fresh one (`make`: a region's member hospital takes no snapshots)."""
    snapshot = ledger.latest_snapshot()
    if snapshot is not None:
        try:
            saved = snapshots.load(config, snapshot[1])
            log.info("restoring from the snapshot after tick %d", snapshot[0])
            return replay(saved, ledger, snapshot[0])
        except snapshots.ConfigMismatch:
            log.warning("the snapshot was taken under another config: replaying every tick")
        except (snapshots.SnapshotError, ReplayMismatch, InvariantViolation) as exc:
            log.warning(
                "the snapshot after tick %d is not usable (%s): replaying every tick",
                snapshot[0],
                exc,
            )
    return replay(make(config), ledger, -1)


def replay(scheduler: Scheduler, ledger: Ledger, after: int) -> Scheduler:
    """The stored ticks after `after`, replayed, each checked against its stored decisions."""
    # Read before the ticks: a standby replays while the active scheduler commits, and a
    # tick committed after the read of the history must not be counted as replayed.
    stored_last = ledger.last_tick()
    for tick, inbound, stored in ledger.history(after):
        result = scheduler.tick(tick, inbound)
        again = [d.to_json() for d in result.decisions]
        if again != stored:
            raise ReplayMismatch(
                f"tick {tick}: replaying the stored events gives other "
                f"decisions than those stored (config or version changed?)"
            )
    scheduler.last_tick = max(scheduler.last_tick, stored_last)
    return scheduler


class Follower:
    """A standby's copy of the active scheduler's state, kept up with the ticks it commits
    (replayed and checked as a restart does), so that a takeover replays a second's ticks,
    not all those since the last snapshot."""

    FOLLOW_EVERY_S = 1.0

    def __init__(self, config: Config, ledger: Ledger):
        self.config = config
        self.ledger = ledger
        self.run: tuple[str, float] | None = None  # the run followed: id and epoch
        self.scheduler: Scheduler | None = None
        self.due = 0.0

    def follow(self) -> None:
        if time.monotonic() < self.due:
            return
        self.due = time.monotonic() + self.FOLLOW_EVERY_S
        try:
            run = self.ledger.current_run()
            key = None if run is None else (run.run_id, run.epoch_s)
            if key != self.run or self.scheduler is None:
                self.run, self.scheduler = key, None
                if key is not None:
                    self.scheduler = restore(self.config, self.ledger)
                return
            for tick, inbound, stored in self.ledger.history(self.scheduler.last_tick):
                result = self.scheduler.tick(tick, inbound)
                if [d.to_json() for d in result.decisions] != stored:
                    raise ReplayMismatch(f"tick {tick}: followed otherwise than stored")
        except Exception as exc:  # noqa: BLE001 - only a head start: the takeover restores
            log.info(
                "standby: not following the active scheduler (%s: %s)", type(exc).__name__, exc
            )
            self.scheduler = None

    def take(self, run_id: str, epoch_s: float) -> Scheduler | None:
        """The state followed, if of this run (the takeover replays what came since)."""
        scheduler, self.scheduler = self.scheduler, None
        return scheduler if self.run == (run_id, epoch_s) else None


def outbox_for(
    config: Config,
    result: TickResult,
    routes: dict[tuple[str, str], tuple[str, int]] | None = None,
) -> list[OutboxMessage]:
    """Where each decision goes: all to the decisions topic, dispatches also to their role's
    work topic, on their staff member's partition (`routes`: `bus.dispatch_routes`, given
    to save computing it again); rejected events to the dead letters."""
    routes = bus.dispatch_routes(config) if routes is None else routes
    messages = []
    for decision in result.decisions:
        payload = bus.encode(decision)
        messages.append(
            OutboxMessage(config.kafka.decisions_topic, bus.key_of(decision), None, payload)
        )
        if isinstance(decision, ev.TaskDispatched):
            topic, partition = routes[ROLE_OF_KIND[decision.kind], decision.staff_id]
            messages.append(OutboxMessage(topic, decision.staff_id.encode(), partition, payload))
    for event, reason in result.rejected:
        messages.append(
            OutboxMessage(
                config.kafka.dead_letter_topic,
                bus.key_of(event),
                None,
                bus.dead_letter(bus.encode(event), reason, "scheduler"),
                dead_letter=True,
            )
        )
    return messages


def inbound_partitions(config: Config, consumer) -> list:
    from kafka import TopicPartition

    topic = config.kafka.inbound_topic
    return [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]


def begin_run(
    config: Config,
    ledger: Ledger,
    run_id: str,
    clock: LiveClock,
    consumer=None,
    until_ms: int | None = None,
) -> None:
    """Record a new run in the database: its clock, its end (None: when it is stopped), and
    where it starts in each partition of the inbound topic, after whatever earlier runs left
    there. From then on no event of the run can be missed, however late the scheduler
    starts."""
    own = consumer is None
    consumer = consumer or bus.consumer(config)
    try:
        partitions = inbound_partitions(config, consumer)
        ends = bus.end_offsets(consumer, partitions)
    finally:
        if own:
            consumer.close()
    ledger.start_run(
        run_id,
        clock.epoch_s,
        clock.speed,
        {(tp.topic, tp.partition): ends[tp] for tp in partitions},
        until_ms=until_ms,
    )


class RunChoiceError(ValueError):
    """The run asked for and the database disagree; the message says how."""


class RunChoice(NamedTuple):
    run_id: str
    clock: LiveClock
    new: bool  # True: the scheduler begins the run; False: it resumes it
    until_ms: int | None  # the run's end (None: when it is stopped)


def resolve_run(
    ledger: Ledger,
    run_id: str | None,
    epoch_s: float | None,
    speed: float | None,
    fresh: bool,
    until_ms: int | None = None,
) -> RunChoice:
    """Which run a scheduler serves, on which clock, until when, and whether it begins it
    or resumes it. Without `run_id` it resumes the run the database holds; a `run_id` the
    database does not hold begins a new run (the one it held is kept, see
    `Ledger.start_run`). A resumed run keeps the clock and the end stored with it: an
    `epoch_s`, `speed` or `until_ms` that says otherwise is an error, not silently used (a
    run stored without an end takes the `until_ms` given)."""
    current = ledger.current_run()
    if run_id is None:
        if current is None:
            raise RunChoiceError("the database holds no run to resume: give --run-id to start one")
        run_id = current.run_id
    if fresh or current is None or current.run_id != run_id:
        return RunChoice(
            run_id,
            LiveClock(time.time() if epoch_s is None else epoch_s, 1.0 if speed is None else speed),
            True,
            until_ms,
        )
    for name, given, stored in (
        ("--epoch", epoch_s, current.epoch_s),
        ("--speed", speed, current.speed),
        ("--until-ms", until_ms, current.until_ms),
    ):
        if given is not None and stored is not None and abs(given - stored) > 1e-3:
            raise RunChoiceError(
                f"run {run_id} in the database has {name} {stored!r}, not "
                f"{given!r}: leave {name} out to resume it, or give --fresh "
                f"to start it anew"
            )
    return RunChoice(
        run_id,
        LiveClock(current.epoch_s, current.speed),
        False,
        until_ms if current.until_ms is None else current.until_ms,
    )


class LiveScheduler:
    def __init__(
        self,
        config: Config,
        ledger: Ledger,
        *,
        run_id: str,
        clock: LiveClock,
        until_ms: int | None = None,
        stop: threading.Event | None = None,
        make: Callable[[Config], Scheduler] = Scheduler,
        snapshot_every: int | None = SNAPSHOT_EVERY,
        transactional_id: str | None = None,
    ):
        self.config = config
        # A region's member: its own scheduler class, events and parser, no snapshots.
        self.make = make
        self.snapshot_every = snapshot_every
        self.transactional_id = transactional_id  # several hospitals of one run: one each
        self.ledger = ledger
        self.run_id = run_id
        self.clock = clock
        self.until_ms = until_ms
        self.stop = stop or threading.Event()
        self.tick_ms = round(config.scheduler.tick_s * 1000)
        self.routes = bus.dispatch_routes(config)
        self.counters = {
            "ticks": 0,
            "dead_lettered": 0,
            "foreign": 0,
            "duplicates": 0,
            "failed_ticks": 0,
        }
        self.snapshot_at = 0
        self.owed = True  # the outbox may hold messages not yet sent
        self.faults = Faults(None)
        self.must_reconcile = False  # a send failed: check what the broker has, first
        self.must_renew = False  # the transactional producer is stuck: a fresh one, first

    # --- start ------------------------------------------------------------------------

    def start(self, fresh: bool, warm: Scheduler | None = None) -> None:
        """Connect, and start a new run or resume the stored one (from `warm`, a state a
        standby followed, if it is still good)."""
        bus.ensure_topics(self.config)
        self.consumer = bus.consumer(self.config)
        self.partitions = inbound_partitions(self.config, self.consumer)
        self.consumer.assign(self.partitions)
        if fresh or self.ledger.run(self.run_id) is None:
            begin_run(
                self.config,
                self.ledger,
                self.run_id,
                self.clock,
                self.consumer,
                until_ms=self.until_ms,
            )
        elif self.until_ms is not None:
            self.ledger.end_run_at(self.run_id, self.until_ms)  # if it had none
        stored = self.ledger.offsets()
        for tp in self.partitions:
            self.consumer.seek(tp, stored.get((tp.topic, tp.partition), 0))
        self.scheduler = (
            self.warm_up(warm)
            if warm is not None and not fresh
            else restore(self.config, self.ledger, self.make)
        )
        self.faults = Faults.from_environment(self.scheduler.last_tick)
        self.fenced = self.ledger.lease is not None
        # Before reading what the broker has: from now on a deposed scheduler's producer
        # cannot write what it still had in hand.
        self.open_producer()
        bus.learn_partitions(self.config, self.producer)
        self.reconcile()
        self.relay()
        if self.scheduler.last_tick >= 0:
            log.info("run %s: resumed after tick %d", self.run_id, self.scheduler.last_tick)
        else:
            log.info("run %s: started", self.run_id)

    def open_producer(self) -> None:
        """The relay's producer: transactional if the scheduler holds a lease, so that its
        start (`init_transactions`) fences off any older producer of the same id."""
        if self.fenced:
            self.producer = bus.producer(
                self.config,
                self.transactional_id or f"hospital-scheduler-{self.run_id}",
                batched=True,
            )
            try:
                self.producer.init_transactions()
            except Exception:
                bus.drop_producer(self.producer)
                raise
        else:
            self.producer = bus.producer(self.config, batched=True)
        self.sender = bus.Outbox(
            self.producer, bus.headers(self.run_id, "scheduler"), flush_timeout_s=RELAY_FLUSH_S
        )

    def renew_producer(self) -> None:
        """A fresh transactional producer in place of one that did not end its transaction in
        time (kafka-python can stay stuck on a transaction coordinator that was lost): its
        `init_transactions` makes the broker abort the old one's transaction and refuse its
        writes from then on, so that what the old one wrote is all in the log before
        `reconcile` reads it back. `BusError` if the broker does not answer yet."""
        from kafka.errors import KafkaError, ProducerFencedError

        bus.drop_producer(self.producer)
        try:
            self.open_producer()
        except ProducerFencedError:
            raise LeaseLost("the producer was fenced off by another scheduler") from None
        except KafkaError as exc:
            raise bus.BusError(f"a fresh producer failed: {type(exc).__name__}: {exc}") from None
        log.info("outbox relay: a fresh transactional producer took over")
        self.must_renew, self.must_reconcile = False, True

    def warm_up(self, warm: Scheduler) -> Scheduler:
        """The followed state and the ticks stored since, replayed; a restore if those do
        not replay as stored (or the run was started anew meanwhile)."""
        if self.ledger.last_tick() >= warm.last_tick:
            try:
                scheduler = replay(warm, self.ledger, warm.last_tick)
                log.info("taking over from the followed state after tick %d", warm.last_tick)
                return scheduler
            except (ReplayMismatch, InvariantViolation, ValueError) as exc:
                log.warning("the followed state does not replay (%s): restoring", exc)
        return restore(self.config, self.ledger, self.make)

    # --- the loop ---------------------------------------------------------------------

    def serve(self) -> None:
        """`run`, riding out database outages: a read or a commit that fails (the server
        restarting, the network cut) makes the scheduler wait for the database, with
        backoff, for `DATABASE_OUTAGE_S` at most, then resume from what the database holds,
        as a restart would but without leaving the process. Longer, the error is raised
        (exit 3) and the supervisor restarts the scheduler later."""
        from sqlalchemy.exc import SQLAlchemyError

        resumed_after, no_progress = None, 0
        while True:
            try:
                return self.run()
            except (StoreError, SQLAlchemyError) as exc:
                lease = getattr(self.ledger, "lease", None)
                if lease is not None and lease.lost():
                    raise LeaseLost("another scheduler took the lease") from exc
                # An error that comes back although the database answers (no tick committed
                # between two recoveries) is not an outage: after a few, it ends the process.
                no_progress = no_progress + 1 if resumed_after == self.ledger_last_tick() else 0
                if self.stop.is_set() or no_progress >= MAX_RECOVERIES_WITHOUT_PROGRESS:
                    if isinstance(exc, StoreError):
                        raise
                    raise StoreError(f"database error: {reason_of(exc)}") from None
                self.recover_database(exc)
                resumed_after = self.scheduler.last_tick

    def ledger_last_tick(self) -> int | None:
        """The last tick the database holds; None if it cannot say now."""
        try:
            return self.ledger.last_tick()
        except Exception:  # noqa: BLE001 - an unreachable database: an outage, not stuck
            return None

    def recover_database(self, error: Exception, timeout_s: float | None = None) -> None:
        """Wait for the database, then rebuild the state from it: the ticks whose commit
        failed (or is in doubt) are forgotten, the inbound topic is read again from the
        stored positions, and what the broker may have taken before the outbox noted it is
        looked for first (`reconcile`)."""
        from sqlalchemy.exc import SQLAlchemyError

        timeout_s = DATABASE_OUTAGE_S if timeout_s is None else timeout_s
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        log.warning("the database failed (%s): waiting for it (%d s at most)", reason, timeout_s)
        started = time.monotonic()
        deadline, delay = started + timeout_s, 0.25
        while True:
            self.ledger.engine.dispose()  # no connection of before the failure is reused
            try:
                self.ledger.forget_unwritten()
                stored = self.ledger.offsets()
                self.scheduler = restore(self.config, self.ledger, self.make)
                break
            except (StoreError, SQLAlchemyError):
                if self.stop.is_set() or time.monotonic() + delay > deadline:
                    raise StoreError(
                        f"the database did not come back within {timeout_s:.0f} s: {reason}"
                    ) from None
                self.stop.wait(delay)
                delay = min(2 * delay, 4.0)
        for tp in self.partitions:
            self.consumer.seek(tp, stored.get((tp.topic, tp.partition), 0))
        self.owed = self.must_reconcile = True
        self.counters["database_outages"] = self.counters.get("database_outages", 0) + 1
        log.warning(
            "the database is back after %.1f s: resumed after tick %d",
            time.monotonic() - started,
            self.scheduler.last_tick,
        )

    def run(self) -> None:
        """Tick until the end of the run (or `stop`); at the end, apply every event stamped
        up to it, however late this process came, and send everything owed."""
        pending = Pending([], [], {})
        next_tick = self.clock.now_ms() // self.tick_ms + 1
        while not self.stop.is_set():
            self.hold()
            now = self.clock.now_ms()
            if self.until_ms is not None and now > self.until_ms + self.end_grace_ms():
                break
            wait_ms = max(0, min(POLL_MS, (next_tick * self.tick_ms - now) / self.clock.speed))
            self.read(pending, timeout_ms=int(wait_ms))
            if self.clock.now_ms() >= next_tick * self.tick_ms:
                # The clock's tick now: after a slow relay `next_tick` lags it, and events
                # read since, sent on time, would be taken for events from the future.
                next_tick = max(next_tick, self.clock.now_ms() // self.tick_ms)
                if self.tick(next_tick, pending):
                    pending = Pending([], [], {})
                next_tick = max(next_tick + 1, self.clock.now_ms() // self.tick_ms)
            if self.owed and not self.relay():
                time.sleep(0.5)  # the broker is failing: do not hammer it
        if self.stop.is_set():
            # What was read and not committed is read again by the next start.
            if self.owed and not self.relay():
                log.warning(
                    "stopped with %d messages still owed to Kafka: the next start sends them",
                    self.ledger.count_unpublished(),
                )
            return
        self.finish(pending)

    def end_grace_ms(self) -> int:
        """How long past the end of the run to keep consuming: events stamped up to the end
        may still be on their way (two ticks, and at least half a second of wall time)."""
        return max(2 * self.tick_ms, round(500 * self.clock.speed))

    def finish(self, pending: Pending) -> None:
        """The end of the run: read the inbound topic to its end and apply what was stamped
        up to the end (a scheduler restarted after the end gets here at once), then relay
        everything owed. `BusError` if the broker does not take it all in time."""
        self.read_to_end(pending)
        if self.tick(covering_tick(self.until_ms or 0, self.tick_ms), pending):
            pending = Pending([], [], {})
        self.final_relay()
        log.info(
            "run %s: over at tick %d; %s",
            self.run_id,
            self.scheduler.last_tick,
            ", ".join(f"{k} {v}" for k, v in self.counters.items()),
        )

    def read_to_end(self, pending: Pending, timeout_s: float = 60) -> None:
        ends = bus.end_offsets(self.consumer, self.partitions, timeout_s)
        deadline = time.monotonic() + timeout_s
        while any(self.consumer.position(tp) < ends[tp] for tp in self.partitions):
            if time.monotonic() > deadline:
                raise bus.BusError(
                    f"could not read {self.config.kafka.inbound_topic} to its "
                    f"end within {timeout_s:.0f} s"
                )
            self.read(pending, timeout_ms=200)

    def final_relay(self, timeout_s: float | None = None) -> None:
        """Relay until nothing is owed, retrying with backoff for `timeout_s` at most."""
        timeout_s = FINAL_RELAY_S if timeout_s is None else timeout_s
        deadline, delay = time.monotonic() + timeout_s, 0.25
        while True:
            if self.relay():
                if not self.owed:
                    return
                continue  # a full batch sent: the next one
            if time.monotonic() >= deadline:
                break
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(2 * delay, 4.0)
        owed = self.ledger.count_unpublished()
        raise bus.BusError(
            f"the run is over but {owed} messages committed in the database "
            f"are still unpublished (the broker did not take them for "
            f"{timeout_s:.0f} s): start the scheduler again to send them"
        )

    def read(self, pending: Pending, timeout_ms: int) -> None:
        """Read what the inbound topic has, up to `MAX_READ` messages: a backlog read
        whole is put in ticks by the events' times across all partitions."""
        polled = self.consumer.poll(timeout_ms=timeout_ms, max_records=500)
        read = sum(len(m) for m in polled.values())
        while polled:
            self._take(pending, polled)
            if read >= MAX_READ:
                break
            polled = self.consumer.poll(timeout_ms=0, max_records=500)
            read += sum(len(m) for m in polled.values())

    def _take(self, pending: Pending, polled) -> None:
        for tp, messages in sorted(polled.items(), key=lambda kv: kv[0].partition):
            for message in messages:
                pending.positions[tp.topic, tp.partition] = message.offset + 1
                if bus.header(message, "run") != self.run_id:
                    pending.foreign += 1
                    continue
                try:
                    event = self.ledger.parse(message.value)
                except Exception as exc:  # noqa: BLE001 - whatever it is, it is not an event
                    reason = (
                        str(exc)
                        if isinstance(exc, ev.BadEvent)
                        else f"unreadable event: {type(exc).__name__}: {exc}"
                    )
                    pending.dead.append(
                        self.dead_letter(message.key or b"", message.value or b"", reason)
                    )
                    continue
                if self.until_ms is not None and event.time_ms > self.until_ms:
                    continue  # after the end of the run, as in the simulation
                pending.events.append(event)

    def dead_letter(self, key: bytes, value: bytes, reason: str) -> OutboxMessage:
        return OutboxMessage(
            self.config.kafka.dead_letter_topic,
            key,
            None,
            bus.dead_letter(value, reason, "scheduler"),
            dead_letter=True,
        )

    # --- one tick ---------------------------------------------------------------------

    def tick(self, boundary: int, pending: Pending) -> bool:
        """Consume what was read: each event by the tick that covers its time (a backlog,
        after a restart, is caught up tick by tick), one late for a tick already done by
        the next tick. Events already applied are dropped first: a re-sent backlog must not
        make ticks. The ticks, their messages and the consumer positions commit in one
        transaction. False: nothing to commit yet (what was read stays pending)."""
        events, early = self.not_ahead(self.drop_duplicates(pending), boundary)
        pending.dead += early
        groups = self.group(events)
        if not groups and not pending.dead:
            return False
        if not groups and self.scheduler.last_tick < 0:
            groups = [(boundary, [])]  # the dead letters need a tick to be filed under
        results, failed = self.run_ticks(groups)
        dead = pending.dead + [
            self.dead_letter(bus.key_of(event), bus.encode(event), reason)
            for event, reason in failed
        ]
        if not results and self.scheduler.last_tick < 0:
            pending.dead = dead  # still no tick to file them under: with the next one
            return False
        ticks = [(result, outbox_for(self.config, result, self.routes)) for result in results]
        snapshot = None
        every = self.snapshot_every
        if every is not None and self.counters["ticks"] - self.snapshot_at >= every:
            snapshot = snapshots.dump(self.scheduler)
            self.snapshot_at = self.counters["ticks"]
        # If this fails the process stops: the state in memory is ahead of the database,
        # and a restart rebuilds it from what was committed.
        with self.deposed_on_error():
            self.ledger.commit_ticks(ticks, pending.positions, snapshot, loose=dead)
        self.faults.die_if("after_commit", [result.tick for result in results])
        self.owed = True
        self.counters["dead_lettered"] += len(dead) + sum(len(r.rejected) for r in results)
        self.counters["foreign"] += pending.foreign
        return True

    def drop_duplicates(self, pending: Pending) -> list[ev.Event]:
        """The pending events not applied yet, each once; the pending list is emptied."""
        fresh, ids = [], set()
        for event in pending.events:
            if event.event_id in self.scheduler.seen or event.event_id in ids:
                self.counters["duplicates"] += 1
                continue
            ids.add(event.event_id)
            fresh.append(event)
        pending.events = []
        return fresh

    def not_ahead(
        self, events: list[ev.Event], boundary: int
    ) -> tuple[list[ev.Event], list[OutboxMessage]]:
        """The events not stamped ahead of the run's clock, and dead letters of the others:
        a tick made for a time in the future would hold back every event until then."""
        limit = boundary * self.tick_ms + self.end_grace_ms()
        ahead = [e for e in events if e.time_ms > limit]
        return [e for e in events if e.time_ms <= limit], [
            self.dead_letter(
                bus.key_of(e),
                bus.encode(e),
                f"time {e.time_ms / 1000:g} s is ahead of the run's clock "
                f"({boundary * self.tick_ms / 1000:g} s)",
            )
            for e in ahead
        ]

    def group(self, events: list[ev.Event]) -> list[tuple[int, list[ev.Event]]]:
        """Events by the tick that consumes them: the one covering their time, or the next
        tick to run if that one is done (late events wait for no one, and make no tick of
        their own)."""
        by_tick: dict[int, list[ev.Event]] = defaultdict(list)
        for event in events:
            by_tick[self.scheduler.tick_of(event.time_ms)].append(event)
        return sorted(by_tick.items())

    def run_ticks(self, groups) -> tuple[list[TickResult], list[tuple[ev.Event, str]]]:
        """The groups' ticks, and the events dead-lettered because a tick raised."""
        try:
            return [self.run_tick(tick, events) for tick, events in groups], []
        except Exception as exc:  # noqa: BLE001 - any failure of a tick: isolated below
            log.warning(
                "a tick failed (%s: %s): finding the event that makes it fail",
                type(exc).__name__,
                exc,
            )
        # The state in memory is that of a failed tick: back to the one committed.
        self.scheduler = restore(self.config, self.ledger, self.make)
        results, failed = [], []
        for tick, events in groups:
            result, culprits = self.isolate(max(tick, self.scheduler.last_tick + 1), events)
            results += [result] if result is not None else []
            failed += culprits
        self.counters["failed_ticks"] += 1
        return results, failed

    def run_tick(self, tick: int, events: list[ev.Event]) -> TickResult:
        result = self.scheduler.tick(tick, events)
        self.faults.check_tick(tick, result.consumed)
        self.counters["ticks"] += 1
        return result

    def isolate(
        self, tick: int, events: list[ev.Event]
    ) -> tuple[TickResult | None, list[tuple[ev.Event, str]]]:
        """Run one tick that may raise. If it does, the first event without which it does
        not is the culprit, dead-lettered with the error; if there is none, every event of
        the tick is, and the tick is not run. The state is as it was before each try."""
        saved = self.save_state()  # the state to go back to, as a restart would
        try:
            return self.run_tick(tick, events), []
        except Exception as exc:  # noqa: BLE001
            error = f"the tick failed: {type(exc).__name__}: {exc}"
        for culprit in canonical_order(events):
            self.scheduler = self.saved_state(saved)
            try:
                result = self.run_tick(tick, [e for e in events if e is not culprit])
            except Exception:  # noqa: BLE001, S112 - not this one alone: try the next
                continue
            log.warning("dead-lettering %s: %s", culprit.event_id, error)
            return result, [(culprit, error)]
        self.scheduler = self.saved_state(saved)
        log.warning(
            "tick %d fails whatever event is left out: dead-lettering its %d events",
            tick,
            len(events),
        )
        return None, [(event, f"{error} (with or without this event)") for event in events]

    def save_state(self) -> Any:
        if self.snapshot_every is None:  # no snapshot of this scheduler's kind: a copy
            return copy.deepcopy(self.scheduler)
        return snapshots.dump(self.scheduler)

    def saved_state(self, saved: Any) -> Scheduler:
        if self.snapshot_every is None:
            return copy.deepcopy(saved)
        return snapshots.load(self.config, saved)

    # --- the lease --------------------------------------------------------------------

    def hold(self) -> None:
        """Renew the lease when due (with a standby about). `LeaseLost` if another
        scheduler took it over: this one must stop at once, committing and sending
        nothing more."""
        if self.ledger.lease is not None:
            self.ledger.lease.renew_if_due()

    @contextlib.contextmanager
    def deposed_on_error(self) -> Iterator[None]:
        """A database error in a holder that was frozen is the server ending its idle
        transaction after another took over: `LeaseLost`, not a failure."""
        try:
            yield
        except StoreError:
            if self.ledger.lease is not None and self.ledger.lease.lost():
                raise LeaseLost(
                    f"scheduler {self.ledger.lease.holder}: the lease was taken "
                    f"over while this one was not running"
                ) from None
            raise

    def may_send(self) -> bool:
        """Whether the lease is surely held long enough to hand messages to the broker: a
        holder that cannot renew stops sending before a standby may take over."""
        return self.ledger.lease is None or self.ledger.lease.may_send()

    # --- the outbox -------------------------------------------------------------------

    def relay(self) -> bool:
        """Send a batch of what the outbox holds and mark sent what the broker has
        acknowledged; the rest stays owed, for the next try. False if a send failed."""
        if self.must_renew and self.may_send():  # not a deposed one: it would fence
            try:
                self.renew_producer()
            except bus.BusError as exc:
                log.warning("outbox relay: the broker is still failing: %s", exc)
                return False
        if self.must_renew:
            return False
        if self.must_reconcile:
            try:
                self.reconcile()  # what a failed send may have written after all
            except bus.BusError as exc:
                log.warning("outbox relay: the broker is still failing: %s", exc)
                return False
            self.must_reconcile = False
        self.hold()
        messages = self.ledger.unpublished(limit=RELAY_BATCH)
        batch = [m.outbox_id for m in messages]
        if messages and not self.may_send():
            log.warning("outbox relay: the lease was not renewed lately: not sending")
            self.owed = True
            return False
        if self.faults.reached("send_fails", [m.tick for m in messages]):
            log.warning("fault point send_fails: the relay fails once")
            messages, failed = messages[1:], messages[:1]
        else:
            failed = []
        error = None
        by_id = {m.outbox_id: m for m in messages}
        if messages and getattr(self, "fenced", False):
            self.producer.begin_transaction()
        try:
            for message in messages:
                self.sender.send(
                    message.topic,
                    message.key,
                    message.payload,
                    tag=message.outbox_id,
                    partition=message.partition,
                )
        except bus.BusError as exc:
            error = exc
        try:
            sent = self.sender.flush()
        except bus.SendFailed as exc:
            sent, error = exc.sent, error or exc
        if messages and getattr(self, "fenced", False):
            self.end_transaction(error)
        self.faults.die_if("after_publish", [by_id[i].tick for i in sent])
        with self.deposed_on_error():
            self.ledger.mark_published_ids(sent, owed=batch)
        if error is not None or failed:
            log.warning(
                "outbox relay: %d of %d sent; the rest stays owed: %s",
                len(sent),
                len(messages) + len(failed),
                error or "fault point send_fails",
            )
            self.owed = True
            self.must_reconcile = True
            return False
        self.owed = len(messages) == RELAY_BATCH  # a full batch: there may be more
        return True

    def end_transaction(self, error) -> None:
        """Commit the relay's transaction (it only fences: consumers read uncommitted, and
        what was written counts as sent either way); a fenced producer means deposed. A
        send that failed, or a transaction not ended within `END_TRANSACTION_S`, leaves
        the producer to be renewed before the next relay: an abort would first wait for
        what it has in flight to a lost leader."""
        from kafka.errors import KafkaError, ProducerFencedError

        if error is not None:
            self.must_renew = True
            return
        started = time.monotonic()
        try:
            ended = bus.commit_transaction(self.producer, END_TRANSACTION_S)
        except ProducerFencedError:
            raise LeaseLost("the producer was fenced off by another scheduler") from None
        except KafkaError as exc:
            log.warning("outbox relay: committing the transaction failed: %s", exc)
            ended = False
        if not ended:
            log.warning(
                "outbox relay: the transaction did not end in %.1f s: a fresh producer next",
                time.monotonic() - started,
            )
            self.must_renew = True

    def reconcile(self) -> None:
        """Mark published the owed messages that the broker has already: a process killed
        between the broker's acknowledgement and the database's update, or a send reported
        failed that was written after all, would otherwise send them twice. Only the first
        batch can be in that state (a relay marks each batch before sending the next); its
        messages, if written, are near the end of their partitions, carrying our run."""
        owed = self.ledger.unpublished(limit=RELAY_BATCH)
        if not owed:
            return
        found = Counter(self.published_tail(owed))
        already = []
        for message in owed:
            if found[message.topic, message.payload] > 0:
                found[message.topic, message.payload] -= 1
                already.append(message.outbox_id)
        if already:
            log.info(
                "%d owed messages were published before the restart: not sent again", len(already)
            )
            self.ledger.mark_published_ids(already, owed=[m.outbox_id for m in owed])

    def published_tail(
        self, owed: list[OutboxMessage], slack: int = 100
    ) -> list[tuple[str, bytes]]:
        """(topic, payload) of this run's messages in the last ones of each partition the
        owed messages may have gone to: as many as are owed to the topic, plus `slack`
        (what other producers, as workers' dead letters, may have written since)."""
        from kafka import TopicPartition
        from kafka.errors import KafkaError

        per_topic = Counter(m.topic for m in owed)
        consumer = bus.consumer(self.config)
        try:
            partitions = [
                TopicPartition(topic, p)
                for topic in per_topic
                for p in sorted(consumer.partitions_for_topic(topic) or ())
            ]
            consumer.assign(partitions)
            ends = bus.end_offsets(consumer, partitions, timeout_s=30)
            starts = bus.beginning_offsets(consumer, partitions, timeout_s=30)
            for tp in partitions:
                consumer.seek(tp, max(starts[tp], ends[tp] - per_topic[tp.topic] - slack))
            found, deadline = [], time.monotonic() + 30
            while any(consumer.position(tp) < ends[tp] for tp in partitions):
                if time.monotonic() > deadline:
                    raise bus.BusError("could not read back the tail of the outbox's topics")
                for tp, records in consumer.poll(timeout_ms=200).items():
                    found += [
                        (tp.topic, r.value)
                        for r in records
                        if r.offset < ends[tp] and bus.header(r, "run") == self.run_id
                    ]
            return found
        except KafkaError as exc:
            raise bus.BusError(f"could not read back the outbox's topics: {exc}") from None
        finally:
            consumer.close()

    def close(self) -> None:
        # The producer within a time limit: with the broker down, kafka-python's close()
        # would wait for ever. What it drops is still owed in the outbox, sent at the restart.
        for client, close in (
            (getattr(self, "consumer", None), lambda consumer: consumer.close()),
            (getattr(self, "producer", None), bus.close_producer),
        ):
            if client is not None:
                try:
                    close(client)
                except Exception:  # closing a client of a dead broker must not mask the exit
                    pass
        self.ledger.close()
