"""The scheduler as a service: inbound events from Kafka, one tick at a time, with effects that
happen exactly once.

Each tick's state changes, its decisions, the ids of the events it consumed and the consumer
positions are written in one database transaction (the `Ledger`). Decisions and dead letters
go to Kafka only after that commit, from an outbox in the same database; a crash between the
two re-sends them on restart, and every consumer ignores an event id it has already applied.
On start, the scheduler rebuilds its state from the latest snapshot in the database and the
ticks stored after it, replayed (checking that it makes the same decisions again), and
resumes from the stored positions.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from dataclasses import dataclass

from scheduler import events as ev
from scheduler import snapshot as snapshots
from scheduler.config import Config
from scheduler.db.ledger import Ledger, OutboxMessage
from scheduler.engine import Scheduler, TickResult, covering_tick
from scheduler.layout import ROLE_OF_KIND
from scheduler.services import bus
from scheduler.services.clock import LiveClock
from scheduler.validator import InvariantViolation

log = logging.getLogger("hospital.scheduler")
POLL_MS = 50
RELAY_BATCH = 1000
SNAPSHOT_EVERY = 100   # ticks: what a restart replays at most, beyond the snapshot
MAX_READ = 20_000


class ReplayMismatch(RuntimeError):
    """The stored ticks, replayed, do not give the stored decisions."""


@dataclass
class Pending:
    """What has been read from Kafka since the last tick."""

    events: list[ev.Event]
    dead: list[OutboxMessage]
    positions: dict[tuple[str, int], int]
    foreign: int = 0   # messages of another run, skipped


def restore(config: Config, ledger: Ledger) -> Scheduler:
    """A scheduler in the state the stored ticks leave it in: the latest snapshot, if it
    was taken under the same config and passes its checks, then the ticks after it,
    replayed; otherwise (or if those ticks replay otherwise) every tick, replayed."""
    snapshot = ledger.latest_snapshot()
    if snapshot is not None:
        try:
            saved = snapshots.load(config, snapshot[1])
            log.info("restoring from the snapshot after tick %d", snapshot[0])
            return replay(saved, ledger, snapshot[0])
        except snapshots.ConfigMismatch:
            log.warning("the snapshot was taken under another config: replaying every tick")
        except (snapshots.SnapshotError, ReplayMismatch, InvariantViolation) as exc:
            log.warning("the snapshot after tick %d is not usable (%s): replaying every tick",
                        snapshot[0], exc)
    return replay(Scheduler(config), ledger, -1)


def replay(scheduler: Scheduler, ledger: Ledger, after: int) -> Scheduler:
    """The stored ticks after `after`, replayed, each checked against its stored decisions."""
    for tick, inbound, stored in ledger.history(after):
        result = scheduler.tick(tick, inbound)
        again = [d.to_json() for d in result.decisions]
        if again != stored:
            raise ReplayMismatch(f"tick {tick}: replaying the stored events gives other "
                                 f"decisions than those stored (config or version changed?)")
    scheduler.last_tick = max(scheduler.last_tick, ledger.last_tick())
    return scheduler


def outbox_for(config: Config, result: TickResult) -> list[OutboxMessage]:
    """Where each decision goes: all to the decisions topic, dispatches also to their role's
    work topic, on their staff member's partition; rejected events to the dead letters."""
    messages = []
    for decision in result.decisions:
        payload = bus.encode(decision)
        messages.append(OutboxMessage(config.kafka.decisions_topic, bus.key_of(decision), None,
                                      payload))
        if isinstance(decision, ev.TaskDispatched):
            role = ROLE_OF_KIND[decision.kind]
            messages.append(OutboxMessage(
                bus.dispatch_topic(config, role), decision.staff_id.encode(),
                bus.dispatch_partition(config, decision.staff_id, role), payload))
    for event, reason in result.rejected:
        messages.append(OutboxMessage(config.kafka.dead_letter_topic, bus.key_of(event), None,
                                      bus.dead_letter(bus.encode(event), reason, "scheduler"),
                                      dead_letter=True))
    return messages


def inbound_partitions(config: Config, consumer) -> list:
    from kafka import TopicPartition

    topic = config.kafka.inbound_topic
    return [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]


def begin_run(config: Config, ledger: Ledger, run_id: str, clock: LiveClock,
              consumer=None) -> None:
    """Record a new run in the database: its clock, and where it starts in each partition
    of the inbound topic, after whatever earlier runs left there. From then on no event of
    the run can be missed, however late the scheduler starts."""
    own = consumer is None
    consumer = consumer or bus.consumer(config)
    try:
        partitions = inbound_partitions(config, consumer)
        ends = consumer.end_offsets(partitions)
    finally:
        if own:
            consumer.close()
    ledger.start_run(run_id, clock.epoch_s, clock.speed,
                     {(tp.topic, tp.partition): ends[tp] for tp in partitions})


class LiveScheduler:
    def __init__(self, config: Config, ledger: Ledger, *, run_id: str, clock: LiveClock,
                 until_ms: int | None = None, stop: threading.Event | None = None):
        self.config = config
        self.ledger = ledger
        self.run_id = run_id
        self.clock = clock
        self.until_ms = until_ms
        self.stop = stop or threading.Event()
        self.tick_ms = round(config.scheduler.tick_s * 1000)
        self.counters = {"ticks": 0, "dead_lettered": 0, "foreign": 0}
        self.snapshot_at = 0
        self.owed = True   # the outbox may hold messages not yet sent

    # --- start ------------------------------------------------------------------------

    def start(self, fresh: bool) -> None:
        """Connect, and start a new run or resume the stored one."""
        bus.ensure_topics(self.config)
        self.consumer = bus.consumer(self.config)
        self.partitions = inbound_partitions(self.config, self.consumer)
        self.consumer.assign(self.partitions)
        if fresh or self.ledger.run(self.run_id) is None:
            begin_run(self.config, self.ledger, self.run_id, self.clock, self.consumer)
        stored = self.ledger.offsets()
        for tp in self.partitions:
            self.consumer.seek(tp, stored.get((tp.topic, tp.partition), 0))
        self.scheduler = restore(self.config, self.ledger)
        self.producer = bus.producer(self.config)
        self.sender = bus.Outbox(self.producer, bus.headers(self.run_id, "scheduler"))
        self.relay()
        if self.scheduler.last_tick >= 0:
            log.info("run %s: resumed after tick %d", self.run_id, self.scheduler.last_tick)
        else:
            log.info("run %s: started", self.run_id)

    # --- the loop ---------------------------------------------------------------------

    def run(self) -> None:
        pending = Pending([], [], {})
        next_tick = self.clock.now_ms() // self.tick_ms + 1
        while not self.stop.is_set():
            now = self.clock.now_ms()
            if self.until_ms is not None and now > self.until_ms + self.end_grace_ms():
                break
            wait_ms = max(0, min(POLL_MS, (next_tick * self.tick_ms - now) / self.clock.speed))
            self.read(pending, timeout_ms=int(wait_ms))
            if self.clock.now_ms() >= next_tick * self.tick_ms:
                if pending.events or pending.dead:
                    self.tick(next_tick, pending)
                    pending = Pending([], [], {})
                next_tick = max(next_tick + 1, self.clock.now_ms() // self.tick_ms)
            if self.owed:
                self.relay()

    def end_grace_ms(self) -> int:
        """How long past the end of the run to keep consuming: events stamped up to the end
        may still be on their way (two ticks, and at least half a second of wall time)."""
        return max(2 * self.tick_ms, round(500 * self.clock.speed))

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
                    event = ev.parse_json(message.value)
                    if self.until_ms is not None and event.time_ms > self.until_ms:
                        continue   # after the end of the run, as in the simulation
                    pending.events.append(event)
                except ev.BadEvent as exc:
                    pending.dead.append(OutboxMessage(
                        self.config.kafka.dead_letter_topic, message.key or b"", None,
                        bus.dead_letter(message.value or b"", str(exc), "scheduler"),
                        dead_letter=True))

    def tick(self, boundary: int, pending: Pending) -> list[TickResult]:
        """Consume what was read: each event by the tick that covers its time (a backlog,
        after a restart, is caught up tick by tick), none before a tick already done. The
        ticks, their messages and the consumer positions commit in one transaction."""
        by_tick: dict[int, list[ev.Event]] = defaultdict(list)
        for event in pending.events:
            by_tick[covering_tick(event.time_ms, self.tick_ms)].append(event)
        ticks = []
        for tick, events in sorted(by_tick.items()) or [(boundary, [])]:
            result = self.scheduler.tick(max(tick, self.scheduler.last_tick + 1), events)
            ticks.append((result, outbox_for(self.config, result)))
            self.counters["ticks"] += 1
            self.counters["dead_lettered"] += len(result.rejected)
        last_result, last_outbox = ticks[-1]
        ticks[-1] = (last_result, pending.dead + last_outbox)
        snapshot = None
        if self.counters["ticks"] - self.snapshot_at >= SNAPSHOT_EVERY:
            snapshot = snapshots.dump(self.scheduler)
            self.snapshot_at = self.counters["ticks"]
        # If this fails the process stops: the state in memory is ahead of the database,
        # and a restart rebuilds it from what was committed.
        self.ledger.commit_ticks(ticks, pending.positions, snapshot)
        self.owed = True
        self.counters["dead_lettered"] += len(pending.dead)
        self.counters["foreign"] += pending.foreign
        return [result for result, _ in ticks]

    def relay(self) -> None:
        """Send what the outbox holds, then mark it sent once the broker has acknowledged
        all of it. A broker that is down leaves it in the outbox for the next try."""
        messages = self.ledger.unpublished(limit=RELAY_BATCH)
        try:
            for message in messages:
                self.sender.send(message.topic, message.key, message.payload,
                                 partition=message.partition)
            self.sender.flush()
        except bus.BusError as exc:
            log.warning("outbox relay failed, will retry: %s", exc)
            time.sleep(0.5)
            return
        if messages:
            self.ledger.mark_published(messages[-1].outbox_id)
        self.owed = len(messages) == RELAY_BATCH   # a full batch: there may be more

    def close(self) -> None:
        for client in (getattr(self, "consumer", None), getattr(self, "producer", None)):
            if client is not None:
                try:
                    client.close()
                except Exception:  # closing a client of a dead broker must not mask the exit
                    pass
        self.ledger.close()
