"""A worker of the distributed mode: one process doing the tasks dispatched to one role.

It reads `task.dispatched` from the role's dispatch topic as a member of the role's consumer
group (several workers of a role share its partitions, one staff member's work stays on one
partition), and reports each task's completion to the inbound topic when the run's clock
reaches the completion's time (`simulation.completion`). The treatments and cleanings are
the run's draws (`scheduler/demand.py`, keyed by the run's seed and the patient), so a
distributed run's patients take exactly as long as an in-process run's.

Delivery is at least once. A dispatch's offset is committed only after its completion is
acknowledged by the broker, and never past an unfinished task of the same partition, so a
crash re-reads every unfinished task. A task seen twice is done once; a worker that loses a
partition in a rebalance leaves its unfinished tasks to the new owner. A completion sent twice
(after a crash, or a commit lost in a rebalance) is harmless, since the scheduler drops an
event_id it has applied. A message that is not a task of this role goes to the dead-letter topic.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field

from kafka import ConsumerRebalanceListener, OffsetAndMetadata, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import MemberState

from scheduler import events as ev
from scheduler.config import Config
from scheduler.demand import Demand
from scheduler.distributed import bus
from scheduler.distributed.bus import Outbox
from scheduler.distributed.clock import LiveClock
from scheduler.layout import ROLE_OF_KIND, Layout
from scheduler.simulation import completion

log = logging.getLogger(__name__)

MAX_POLL_MS = 200  # poll at least this often: completions on time, heartbeats going
GRACE_MS = 60_000  # simulated time past `until_ms` allowed for pending completions
COMMIT_TIMEOUT_MS = 10_000
# A member that stops heartbeating (a worker SIGKILLed, or cut off from the broker) holds its
# partitions until its session times out, and a rebalance waits for it as long: kafka-python's
# default, 45 s, leaves a killed worker's tasks undone that long. 10 s (the broker's floor is 6).
SESSION_TIMEOUT_MS = 10_000
HEARTBEAT_MS = 2_000
BROKER_OUTAGE_S = 60  # how long a worker waits for a broker that stopped answering, then exit 4

Source = tuple[TopicPartition, int]  # where a dispatch was read: partition, offset


@dataclass
class WorkerStats:
    tasks_done: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    task_ids: list[str] = field(default_factory=list)  # in the order completed


@dataclass(order=True)
class _Pending:
    """A completion waiting for its time, and the dispatch messages that asked for it."""

    due_ms: int
    order: int
    event: ev.Completion = field(compare=False)
    sources: list[Source] = field(compare=False)


class _Offsets:
    """Per partition: offsets read but unfinished, the next one to read, the last committed.
    A partition's commit position is its lowest unfinished offset (else the next to read)."""

    def __init__(self) -> None:
        self.unfinished: dict[TopicPartition, set[int]] = defaultdict(set)
        self.next: dict[TopicPartition, int] = {}
        self.committed: dict[TopicPartition, int] = {}

    def read(self, tp: TopicPartition, offset: int) -> None:
        self.unfinished[tp].add(offset)
        self.next[tp] = max(self.next.get(tp, 0), offset + 1)

    def finish(self, tp: TopicPartition, offset: int) -> None:
        if tp in self.unfinished:
            self.unfinished[tp].discard(offset)

    def keep_only(self, assigned: set[TopicPartition]) -> None:
        """Forget the partitions this member lost: if it gets one back, it reads from the
        group's committed offset again (kafka-python keeps the position only of a partition
        that stays assigned through a rebalance)."""
        for table in (self.unfinished, self.next, self.committed):
            for tp in set(table) - assigned:
                del table[tp]

    def to_commit(self) -> dict[TopicPartition, OffsetAndMetadata]:
        offsets = {}
        for tp, next_offset in self.next.items():
            position = min(self.unfinished[tp], default=next_offset)
            if position != self.committed.get(tp):
                offsets[tp] = OffsetAndMetadata(position, "", -1)
        return offsets


class _RebalanceLog(ConsumerRebalanceListener):
    """Logs the member's partitions as they change. (kafka-python 3 calls it on its IO
    thread, so it does nothing else: the worker's loop reads `consumer.assignment()`.)"""

    def __init__(self, worker_id: str):
        self.worker_id = worker_id

    def on_partitions_revoked(self, revoked) -> None:
        if revoked:
            log.info("worker %s: partitions revoked %s", self.worker_id, _names(revoked))

    def on_partitions_assigned(self, assigned) -> None:
        log.info("worker %s: partitions assigned %s", self.worker_id, _names(assigned))


def _names(tps) -> str:
    return ", ".join(sorted(f"{tp.topic}[{tp.partition}]" for tp in tps)) or "none"


class _Worker:
    def __init__(
        self,
        config: Config,
        role: str,
        run_id: str,
        clock: LiveClock,
        worker_id: str,
        consumer,
        producer,
        seed: int | None = None,
    ):
        self.config, self.role, self.run_id = config, role, run_id
        self.clock, self.worker_id = clock, worker_id
        self.consumer = consumer
        self.layout = Layout(config)
        self.demand = Demand(config, seed)
        self.outbox = Outbox(producer, bus.headers(run_id, worker_id))
        self.offsets = _Offsets()
        self.pending: list[_Pending] = []  # a heap, by due time
        self.pending_by_task: dict[str, _Pending] = {}
        self.finished: set[str] = set()
        self.order = itertools.count()
        self.stats = WorkerStats()
        self.failed_commits = 0  # in a row

    def step(self) -> None:
        """One round: read new dispatches, send the completions now due, commit."""
        batches = self.consumer.poll(timeout_ms=self.poll_timeout_ms())
        # After a rebalance, offsets are tracked, and tasks done, only for the partitions
        # still ours: the new owner of a partition reads its unfinished tasks again (their
        # offsets were never committed) and does them, so that each is done once.
        assigned = self.consumer.assignment()
        self.offsets.keep_only(assigned)
        self.drop_lost(assigned)
        for records in batches.values():
            for record in records:
                self.handle(record)
        self.send_due()
        self.settle_sent()
        self.commit()

    def drop_lost(self, assigned: set[TopicPartition]) -> None:
        lost = [item for item in self.pending if not any(tp in assigned for tp, _ in item.sources)]
        if not lost:
            return
        log.info(
            "worker %s: %d pending tasks left to the new owner of their partitions",
            self.worker_id,
            len(lost),
        )
        for item in lost:
            del self.pending_by_task[item.event.task_id]
        gone = {id(item) for item in lost}
        self.pending = [item for item in self.pending if id(item) not in gone]
        heapq.heapify(self.pending)

    def poll_timeout_ms(self) -> int:
        if not self.pending:
            return MAX_POLL_MS
        wait_s = self.clock.wall_seconds_until(self.pending[0].due_ms)
        return min(MAX_POLL_MS, math.ceil(wait_s * 1000))

    def handle(self, record) -> None:
        source = (TopicPartition(record.topic, record.partition), record.offset)
        self.offsets.read(*source)
        if bus.header(record, "run") != self.run_id:
            self.offsets.finish(*source)  # another run's: not ours to do
            return
        try:
            task, done = self.task_of(record.value)
        except ev.BadEvent as exc:
            log.warning(
                "worker %s: dead-lettering %s@%d: %s",
                self.worker_id,
                record.topic,
                record.offset,
                exc,
            )
            self.outbox.send(
                self.config.kafka.dead_letter_topic,
                record.key,
                bus.dead_letter(record.value or b"", str(exc), self.worker_id),
                tag=(None, [source]),
            )
            return
        if task.task_id in self.pending_by_task or task.task_id in self.finished:
            self.stats.duplicates += 1
            self.on_duplicate(task.task_id, source)
            return
        item = _Pending(done.time_ms, next(self.order), done, [source])
        heapq.heappush(self.pending, item)
        self.pending_by_task[task.task_id] = item

    def on_duplicate(self, task_id: str, source: Source) -> None:
        item = self.pending_by_task.get(task_id)
        if item is not None:
            item.sources.append(source)  # committed once the completion is sent
        else:
            self.offsets.finish(*source)  # already completed

    def task_of(self, value: bytes | None) -> tuple[ev.TaskDispatched, ev.Completion]:
        """The task in a message and its completion; `BadEvent` if it is not ours to do."""
        event = ev.parse_json(value or b"", ev.DECISIONS)
        if not isinstance(event, ev.TaskDispatched):
            raise ev.BadEvent(f"expected task.dispatched, got {event.TYPE}")
        if ROLE_OF_KIND[event.kind] != self.role:
            raise ev.BadEvent(f"a {event.kind} task is not for {self.role} workers")
        try:
            return event, completion(self.layout, self.demand, event)
        except KeyError as exc:
            raise ev.BadEvent(f"{event.TYPE}: unknown place {exc}") from None

    def send_due(self) -> None:
        now = self.clock.now_ms()
        while self.pending and self.pending[0].due_ms <= now:
            item = heapq.heappop(self.pending)
            self.outbox.send_event(
                self.config.kafka.inbound_topic, item.event, tag=(item.event.task_id, item.sources)
            )

    def settle_sent(self) -> None:
        """What the broker acknowledged is done: count it and let its offsets commit. If
        some sends failed, the worker stops (restarted, it redoes the unfinished tasks)."""
        try:
            acknowledged, failure = self.outbox.flush(), None
        except bus.SendFailed as exc:
            acknowledged, failure = exc.sent, exc
        for task_id, sources in acknowledged:
            if task_id is None:
                self.stats.dead_lettered += 1
            else:
                del self.pending_by_task[task_id]
                self.finished.add(task_id)
                self.stats.tasks_done += 1
                self.stats.task_ids.append(task_id)
                log.info("worker %s: %s done", self.worker_id, task_id)
            for source in sources:
                self.offsets.finish(*source)
        if failure is not None:
            raise failure

    def commit(self) -> None:
        offsets = self.offsets.to_commit()
        if not offsets:
            return
        try:
            self.consumer.commit(offsets, timeout_ms=COMMIT_TIMEOUT_MS)
        except KafkaError as exc:
            # Typically a rebalance in progress: retried next round, or left to the new owner.
            # Said once a streak: a rebalance refuses the commit of every round until it ends.
            self.failed_commits += 1
            if self.failed_commits == 1:
                log.warning("worker %s: commit failed, will retry: %s", self.worker_id, exc)
            return
        if self.failed_commits:
            log.info(
                "worker %s: committed, after %d failed tries", self.worker_id, self.failed_commits
            )
            self.failed_commits = 0
        self.offsets.committed.update({tp: meta.offset for tp, meta in offsets.items()})

    def should_exit(self, until_ms: int | None, stop: threading.Event) -> bool:
        if stop.is_set():
            return True
        if until_ms is None:
            return False
        now = self.clock.now_ms()
        return (now > until_ms and not self.pending) or now > until_ms + GRACE_MS


def run_worker(
    config: Config,
    role: str,
    *,
    run_id: str,
    clock: LiveClock,
    worker_id: str,
    until_ms: int | None = None,
    stop: threading.Event | None = None,
    group_id: str | None = None,
    seed: int | None = None,
) -> WorkerStats:
    """Do the role's dispatched tasks until `stop` is set or the run is over (`until_ms`,
    simulated). `group_id` defaults to the role's group; tests pass their own. `seed` is
    the run's (default: the config's): the treatments and cleanings are drawn from it."""
    if role not in bus.ROLES:
        raise ValueError(f"unknown role {role!r}: expected one of {', '.join(bus.ROLES)}")
    stop = stop or threading.Event()
    topic = bus.dispatch_topic(config, role)
    group_id = group_id or bus.worker_group(config, role)
    bus.ensure_topics(config)
    producer = bus.producer(config)
    # The consumer must know the topic's partitions before it joins the group: a leader
    # that assigns without them assigns nothing and rejoins at the next metadata update,
    # and kafka-python 3.0.12 can leave such a rejoin unfinished when poll() times out
    # during it (the member then never gets partitions). So: the broker first, then us.
    _wait_for_metadata(producer, topic)
    try:
        consumer = _group_consumer(config, topic, group_id, worker_id)
    except bus.BusError:
        bus.close_producer(producer)
        raise
    worker = _Worker(config, role, run_id, clock, worker_id, consumer, producer, seed)
    watch = _StallWatch(config, group_id, worker_id)
    log.info("worker %s started: %s in group %s, run %s", worker_id, topic, group_id, run_id)
    failing_since: float | None = None
    try:
        while not worker.should_exit(until_ms, stop):
            try:
                worker.step()
                failing_since = None
            except KafkaError as exc:
                # kafka-python 3.0's poll raises when the group's coordinator cannot be
                # reached (the broker restarting, the network cut). Nothing was half done:
                # poll again, as long as the outage lasts; the pending tasks wait.
                now = time.monotonic()
                failing_since = failing_since or now
                if now - failing_since > BROKER_OUTAGE_S:
                    raise bus.BusError(
                        f"the broker did not answer for {BROKER_OUTAGE_S} s: "
                        f"{type(exc).__name__}: {exc}"
                    ) from None
                log.warning(
                    "worker %s: the broker fails (%s): polling again", worker_id, type(exc).__name__
                )
                stop.wait(1.0)
                continue
            if watch.stalled(worker.consumer):
                worker.consumer.close(autocommit=False)
                worker.consumer = _group_consumer(config, topic, group_id, worker_id)
    finally:
        worker.consumer.close(autocommit=False)  # leaves the group: the others rebalance now
        bus.close_producer(producer)
    stats = worker.stats
    log.info(
        "worker %s finished: %d done, %d duplicates, %d dead-lettered, %d left pending",
        worker_id,
        stats.tasks_done,
        stats.duplicates,
        stats.dead_lettered,
        len(worker.pending),
    )
    return stats


class _StallWatch:
    """Rarely, under load, kafka-python 3.0.12 leaves a member half through a rebalance: when
    poll() times out after the member has sent SyncGroup and before the answer, the answer's
    assignment is never taken up. The broker then counts the member in a stable group, holding
    partitions, while the member has none and waits for a rebalance that is over: the worker
    would idle for the rest of the run. The watch asks the broker (every CHECK_S while the
    member lacks partitions) and gives the worker a new consumer as soon as it sees that.
    A group the broker shows still rebalancing may rightly wait for a dead member's session
    to time out; only after STALL_S of it does the worker get a new consumer."""

    CHECK_S = 2.0
    # Longer than a rebalance may rightly take: one waits for a dead member's session to time
    # out (SESSION_TIMEOUT_MS), and a new consumer made meanwhile starts the wait over (its
    # predecessor, gone mid-join, is such a member): a watch faster than that never lets the
    # worker back in (seen after a broker restart, and a worker killed and started again).
    STALL_S = 2.5 * SESSION_TIMEOUT_MS / 1000

    def __init__(self, config: Config, group_id: str, worker_id: str):
        self.config, self.group_id, self.worker_id = config, group_id, worker_id
        self.since: float | None = None  # when the member was last seen without partitions
        self.next_check = 0.0

    def stalled(self, consumer) -> bool:
        member = consumer.group_metadata()
        if member.state == MemberState.STABLE and consumer.assignment():
            self.since = None
            return False
        now = time.monotonic()
        if self.since is None:
            self.since, self.next_check = now, now + self.CHECK_S
        if now < self.next_check:
            return False
        self.next_check = now + self.CHECK_S
        broker = self.broker_view(member.member_id)
        waited_out = now - self.since >= self.STALL_S
        if broker is None or broker[0] != "Stable":  # no answer, or still rebalancing
            stuck = waited_out
        elif broker[1]:
            stuck = True  # the broker gave it partitions it never took up
        else:
            stuck = member.state != MemberState.STABLE and waited_out
            if not stuck:  # more workers than partitions: nothing for this one, rightly
                self.next_check = now + self.STALL_S
        if stuck:
            log.warning(
                "worker %s: stuck in its group (%s, partitions %s, the broker says %s): "
                "reconnecting",
                self.worker_id,
                member.state,
                _names(consumer.assignment()),
                broker,
            )
            self.since = None
        return stuck

    def broker_view(self, member_id: str) -> tuple[str, bool] | None:
        """The group's state at the broker, and whether it assigns this member partitions;
        None when the broker cannot tell."""
        from kafka.admin import KafkaAdminClient

        try:
            admin = KafkaAdminClient(**bus.client_options(self.config), request_timeout_ms=5000)
            try:
                group = admin.describe_groups([self.group_id])[self.group_id]
            finally:
                admin.close()
        except Exception as exc:  # noqa: BLE001 - a broker that does not answer: check later
            log.info("worker %s: cannot describe its group: %s", self.worker_id, exc)
            return None
        ours = any(
            member.get("member_id") == member_id
            and any(
                a["partitions"]
                for a in (member.get("member_assignment") or {}).get("assigned_partitions", ())
            )
            for member in group.get("members", ())
        )
        return str(group.get("group_state")), ours


def _group_consumer(config: Config, topic: str, group_id: str, worker_id: str):
    consumer = bus.consumer(
        config,
        group_id=group_id,
        client_id=worker_id,
        session_timeout_ms=SESSION_TIMEOUT_MS,
        heartbeat_interval_ms=HEARTBEAT_MS,
    )
    consumer.subscribe([topic], listener=_RebalanceLog(worker_id))
    # Metadata fetched once subscribed, before the first poll joins the group: the member
    # then joins knowing the topic's partitions. Joined without them (kafka-python does not
    # fetch them on subscribing), it rejoins at the next metadata refresh, half a second
    # later: a second rebalance at every start, and one that can leave the member stuck.
    consumer.topics()
    return consumer


def _wait_for_metadata(producer, topic: str) -> None:
    try:
        producer.partitions_for(topic)
    except KafkaError as exc:
        bus.close_producer(producer)
        raise bus.BusError(f"no metadata for topic {topic}: {exc}") from None
