"""The distributed mode's patient generator and workers against the real Kafka broker
(`eval "$(scripts/backing-services env)"`). Every test has its own topics and consumer groups."""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter

import pytest

from scheduler import events as ev
from scheduler.config import Config, load
from scheduler.demand import Demand
from scheduler.distributed import bus
from scheduler.distributed.clock import LiveClock
from scheduler.distributed.generator import run_generator
from scheduler.distributed.worker import WorkerStats, run_worker
from scheduler.layout import Layout
from scheduler.simulation import completion
from tests.kafka_topics import delete_topics, own_topic_names

if not os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
    pytest.skip(
        "KAFKA_BOOTSTRAP_SERVERS is not set (scripts/backing-services env)", allow_module_level=True
    )

from kafka import TopicPartition  # noqa: E402  (after the skip: only with the broker)
from kafka.admin import KafkaAdminClient  # noqa: E402

pytestmark = [pytest.mark.services, pytest.mark.timeout(60)]
RUN = "run-test"
SPEED = 10


@pytest.fixture
def config():
    config = load(None, {"KAFKA_BOOTSTRAP_SERVERS": os.environ["KAFKA_BOOTSTRAP_SERVERS"]})
    config = config.replace(kafka=own_topic_names())
    bus.ensure_topics(config)
    yield config
    delete_topics(config)


class admin_client:
    def __init__(self, config: Config):
        self.admin = KafkaAdminClient(**bus.client_options(config), request_timeout_ms=15000)

    def __enter__(self) -> KafkaAdminClient:
        return self.admin

    def __exit__(self, *exc) -> None:
        self.admin.close()


def read_topic(
    config: Config, topic: str, count: int, timeout_s: float = 20, settle_s: float = 0.5
) -> list:
    """Every message of `topic`: waits for `count`, then `settle_s` more to catch extras."""
    consumer = bus.consumer(config, group_id=None)
    consumer.assign([TopicPartition(topic, p) for p in range(bus.topic_partitions(config)[topic])])
    messages: list = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=100).values():
                messages.extend(records)
            if len(messages) >= count:
                deadline = min(deadline, time.monotonic() + settle_s)
    finally:
        consumer.close(autocommit=False)
    return messages


def sim_time_of(message, clock: LiveClock) -> float:
    """When a message was produced, in simulated ms of `clock`."""
    return (message.timestamp / 1000 - clock.epoch_s) * clock.speed * 1000


def wait_for_members(
    config: Config, group: str, members: int, timeout_s: float = 30, steady_s: float = 2.0
) -> None:
    """Until the group is stable with `members` members, each with some partition, and has
    stayed so, with the same members and partitions, for `steady_s`. (kafka-python 3.0 often
    rejoins once more just after a join: a rebalance then, with tasks under way, moves a
    partition before its finished offsets are committed, and its tasks are done again —
    at least once, as promised, but not what these tests count.)"""
    deadline = time.monotonic() + timeout_s
    seen, since = None, 0.0
    with admin_client(config) as admin:
        while time.monotonic() < deadline:
            try:
                state = admin.describe_groups([group])[group]
            except Exception:  # noqa: BLE001 - the coordinator may not know the group yet
                state = {}
            # mid-rebalance a member's assignment is still empty (or undecoded bytes)
            assigned = sorted(
                (m["member_id"], repr(m["member_assignment"]["assigned_partitions"]))
                for m in state.get("members", [])
                if isinstance(m.get("member_assignment"), dict)
                and m["member_assignment"].get("assigned_partitions")
            )
            if state.get("group_state") == "Stable" and len(assigned) == members:
                if assigned != seen:
                    seen, since = assigned, time.monotonic()
                elif time.monotonic() - since >= steady_s:
                    return
            else:
                seen = None
            time.sleep(0.2)
    raise AssertionError(f"group {group} never had {members} members with partitions")


class WorkerThread(threading.Thread):
    def __init__(self, config: Config, worker_id: str, group: str, clock: LiveClock):
        super().__init__(name=worker_id, daemon=True)
        self.config, self.worker_id, self.group, self.clock = config, worker_id, group, clock
        self.stop = threading.Event()
        self.stats: WorkerStats | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.stats = run_worker(
                self.config,
                "porter",
                run_id=RUN,
                clock=self.clock,
                worker_id=self.worker_id,
                stop=self.stop,
                group_id=self.group,
            )
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            self.error = exc

    def finish(self) -> WorkerStats:
        self.stop.set()
        self.join(20)
        assert not self.is_alive(), f"{self.worker_id} did not stop"
        if self.error is not None:
            raise self.error
        assert self.stats is not None
        return self.stats


def task(
    task_id: str,
    at_ms: int,
    staff_id: str,
    kind: str = "escort_in",
    room_id: str = "A1",
    patient_id: str = "patient-1",
) -> ev.TaskDispatched:
    return ev.TaskDispatched(
        f"dispatch-{task_id}", at_ms, at_ms // 1000, task_id, kind, staff_id, patient_id, room_id
    )


def send_dispatches(config: Config, messages: list[tuple[str, bytes, str]]) -> None:
    """(staff_id, value, run) triples to the porter dispatch topic, on the staff's partition."""
    producer = bus.producer(config)
    topic = bus.dispatch_topic(config, "porter")
    for staff_id, value, run in messages:
        producer.send(
            topic,
            key=staff_id.encode(),
            value=value,
            headers=bus.headers(run, "scheduler"),
            partition=bus.dispatch_partition(config, staff_id, "porter"),
        )
    producer.flush(timeout=15)
    producer.close()


def test_generator_sends_the_arrivals_on_time(config):
    clock = LiveClock(time.time(), 60)
    sent = run_generator(config, run_id=RUN, clock=clock, duration_ms=30_000, seed=None)

    times = Demand(config).arrival_times()
    expected = [next(times) for _ in range(7)]
    assert expected == [0, 5000, 10_000, 15_000, 20_000, 25_000, 30_000] and sent == 7
    messages = read_topic(config, config.kafka.inbound_topic, 7)
    arrivals = sorted((ev.parse_json(m.value) for m in messages), key=lambda e: e.time_ms)
    assert arrivals == [
        ev.PatientArrived(f"arrival-{n}", t, f"patient-{n}")
        for n, t in enumerate(expected, start=1)
    ]
    for message in messages:
        assert bus.header(message, "run") == RUN
        assert bus.header(message, "producer") == "generator"
        event = ev.parse_json(message.value)
        assert message.key == event.patient_id.encode()
        # Not before its time (1 ms of wall time is 60 simulated ms).
        assert sim_time_of(message, clock) >= event.time_ms - 2 * clock.speed


def test_generator_started_late_sends_the_due_arrivals_at_once(config):
    clock = LiveClock(time.time() - 2, SPEED)  # restarted 20 simulated seconds in
    sent = run_generator(config, run_id=RUN, clock=clock, duration_ms=30_000, seed=None)
    assert sent == 7
    messages = read_topic(config, config.kafka.inbound_topic, 7)
    at = {ev.parse_json(m.value).event_id: sim_time_of(m, clock) for m in messages}
    assert sorted(at) == [f"arrival-{n}" for n in range(1, 8)]
    # arrivals 1-5 (0 s to 20 s) were due at the start: sent at once, not 5 s apart (which
    # would send the fifth 20 s after the start, at 40 s); the slack is for a busy machine
    assert max(at[f"arrival-{n}"] for n in range(1, 6)) < 32_000
    assert at["arrival-7"] >= 30_000 - 2 * SPEED


def test_generator_stops_when_asked(config):
    clock = LiveClock(time.time(), 1)
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    started = time.monotonic()
    sent = run_generator(
        config, run_id=RUN, clock=clock, duration_ms=3_600_000, seed=None, stop=stop
    )
    assert sent == 1 and time.monotonic() - started < 3  # the arrival at 0 only


def test_worker_completes_tasks_on_time_and_dead_letters_bad_messages(config):
    group = f"{config.kafka.inbound_topic}.porters"
    clock = LiveClock(time.time(), SPEED)
    worker = WorkerThread(config, "w1", group, clock)
    worker.start()
    wait_for_members(config, group, 1)

    base = clock.now_ms() + 1000
    t1 = task("t1", base, "porter-1", room_id="A1")  # done at +2000
    t2 = task("t2", base + 500, "porter-2", room_id="B3")  # done at +5500
    t3 = task("t3", base + 1000, "porter-1", "escort_out", room_id="A2")  # done at +1000
    visit = task("t9", base, "porter-1", "visit")
    other_run = task("t4", base, "porter-1")
    send_dispatches(
        config,
        [
            ("porter-1", bus.encode(t1), RUN),
            ("porter-1", bus.encode(visit), RUN),  # not a porter's task: dead letter
            ("porter-1", bus.encode(t1), RUN),  # delivered twice: done once
            ("porter-1", bus.encode(other_run), "another-run"),  # ignored
            ("porter-1", bus.encode(t3), RUN),
            ("porter-2", b"{not json", RUN),  # dead letter, and the worker goes on
            ("porter-2", bus.encode(t2), RUN),
        ],
    )
    messages = read_topic(config, config.kafka.inbound_topic, 3)
    stats = worker.finish()

    layout = Layout(config)
    expected = {t.task_id: completion(layout, Demand(config), t) for t in (t1, t2, t3)}
    assert [expected[t].time_ms - base for t in ("t3", "t1", "t2")] == [1000, 2000, 5500]
    received = {ev.parse_json(m.value).task_id: m for m in messages}
    assert len(messages) == 3 and set(received) == {"t1", "t2", "t3"}
    for task_id, message in received.items():
        event = ev.parse_json(message.value)
        assert event == expected[task_id]
        assert message.key == bus.key_of(event)
        assert (bus.header(message, "run"), bus.header(message, "producer")) == (RUN, "w1")
        # Sent when the clock reached the completion's time (1 ms of wall time = 10 ms),
        # not before; after, within a generous second of wall time on a busy machine.
        assert event.time_ms - 5 * SPEED <= sim_time_of(message, clock) <= event.time_ms + 10_000
    assert stats == WorkerStats(
        tasks_done=3, duplicates=1, dead_lettered=2, task_ids=["t3", "t1", "t2"]
    )

    dead = [json.loads(m.value) for m in read_topic(config, config.kafka.dead_letter_topic, 2)]
    assert sorted(d["origin"] for d in dead) == ["w1", "w1"]
    reasons = sorted(d["reason"] for d in dead)
    assert reasons[0] == "a visit task is not for porter workers"
    assert reasons[1].startswith("not valid JSON")
    assert {d["message"] for d in dead} == {"{not json", bus.encode(visit).decode()}

    # Everything read was finished, so everything is committed.
    topic = bus.dispatch_topic(config, "porter")
    with admin_client(config) as admin:
        committed = admin.list_group_offsets({group: None})[group]
    assert {tp.partition: meta.offset for tp, meta in committed.items() if tp.topic == topic} == {
        0: 5,
        1: 2,
    }


def test_two_workers_of_a_role_share_the_tasks(config):
    group = f"{config.kafka.inbound_topic}.porters"
    clock = LiveClock(time.time(), SPEED)
    workers = [WorkerThread(config, f"w{n}", group, clock) for n in (1, 2)]
    for worker in workers:
        worker.start()
    wait_for_members(config, group, 2)

    base = clock.now_ms() + 500
    tasks = [
        task(
            f"{staff}-t{n}", base + 300 * n, staff, room_id=room, patient_id=f"patient-{staff}-{n}"
        )
        for staff, room in (("porter-1", "A1"), ("porter-2", "B2"))
        for n in range(3)
    ]
    send_dispatches(config, [(t.staff_id, bus.encode(t), RUN) for t in tasks])
    messages = read_topic(config, config.kafka.inbound_topic, len(tasks))
    stats = [worker.finish() for worker in workers]

    done = Counter(ev.parse_json(m.value).task_id for m in messages)
    assert done == Counter(t.task_id for t in tasks)  # each task exactly once
    producers = {ev.parse_json(m.value).task_id: bus.header(m, "producer") for m in messages}
    assert set(producers.values()) == {"w1", "w2"}
    # One staff member's work stays with one worker: their partition's.
    for staff in ("porter-1", "porter-2"):
        assert len({p for task_id, p in producers.items() if task_id.startswith(staff)}) == 1
    assert all(s.tasks_done >= 1 for s in stats)
    assert sorted(tid for s in stats for tid in s.task_ids) == sorted(done)


def test_a_restarted_worker_redoes_the_unfinished_tasks(config):
    group = f"{config.kafka.inbound_topic}.porters"
    clock = LiveClock(time.time(), SPEED)
    first = WorkerThread(config, "w1", group, clock)
    first.start()
    wait_for_members(config, group, 1)

    base = clock.now_ms() + 500
    slow = task("slow", base + 15_000, "porter-1", room_id="B3")  # done at +20000
    quick = task("quick", base, "porter-1", room_id="A1")  # done at +2000
    send_dispatches(
        config, [("porter-1", bus.encode(slow), RUN), ("porter-1", bus.encode(quick), RUN)]
    )
    read_topic(config, config.kafka.inbound_topic, 1, settle_s=0)
    assert first.finish().task_ids == ["quick"]  # stopped before `slow` was due
    with admin_client(config) as admin:
        committed = admin.list_group_offsets({group: None})[group]
    topic = bus.dispatch_topic(config, "porter")
    assert committed[TopicPartition(topic, 0)].offset == 0  # not past the unfinished `slow`

    # The new worker reads from offset 0 again: `slow` is done, on time, and `quick` is done
    # again (at least once: the scheduler drops the second `done-quick`).
    second = WorkerThread(config, "w2", group, clock)
    second.start()
    messages = read_topic(config, config.kafka.inbound_topic, 3)
    assert second.finish().task_ids == ["quick", "slow"]
    sent = sorted((ev.parse_json(m.value).event_id, bus.header(m, "producer")) for m in messages)
    assert sent == [("done-quick", "w1"), ("done-quick", "w2"), ("done-slow", "w2")]
    slow_done = next(m for m in messages if ev.parse_json(m.value).task_id == "slow")
    assert sim_time_of(slow_done, clock) >= base + 20_000 - 5 * SPEED


def test_a_worker_that_loses_a_partition_leaves_its_pending_tasks_to_the_new_owner(config):
    """A second worker joins while the first holds tasks not yet due on both partitions:
    the tasks of the partition that moves are done once, by the new owner, on time."""
    group = f"{config.kafka.inbound_topic}.porters"
    clock = LiveClock(time.time(), SPEED)
    first = WorkerThread(config, "w1", group, clock)
    first.start()
    wait_for_members(config, group, 1)
    base = clock.now_ms() + 500
    tasks = [
        task("p1", base + 40_000, "porter-1", room_id="A1"),
        task("p2", base + 40_000, "porter-2", room_id="B2", patient_id="patient-2"),
    ]
    send_dispatches(config, [(t.staff_id, bus.encode(t), RUN) for t in tasks])
    time.sleep(1)  # read by the first worker, due in ~4 s
    second = WorkerThread(config, "w2", group, clock)
    second.start()
    wait_for_members(config, group, 2)
    messages = read_topic(config, config.kafka.inbound_topic, 2, settle_s=1.5)
    first.finish(), second.finish()
    done = Counter((ev.parse_json(m.value).task_id, bus.header(m, "producer")) for m in messages)
    assert sorted(done) == [("p1", "w1"), ("p2", "w2")] or sorted(done) == [
        ("p1", "w2"),
        ("p2", "w1"),
    ], done
    assert set(done.values()) == {1}
    for message in messages:
        assert sim_time_of(message, clock) >= base + 42_000 - 5 * SPEED


def test_a_producer_whose_broker_is_gone_closes_without_an_error(config):
    """What a stopped broker leaves unsent is dropped on closing, and the producer closed:
    a service exiting with SendFailed (exit 4: it is started again and sends it again) does
    not die of kafka-python's timeout on close instead, nor of another one when collected."""
    from kafka.errors import IllegalStateError

    from tests.faultproxy import KafkaFaultProxy

    host, port = config.kafka.bootstrap_servers.split(",")[0].rsplit(":", 1)
    with KafkaFaultProxy(host, int(port)) as proxy:
        proxied = config.replace(kafka={"bootstrap_servers": f"127.0.0.1:{proxy.port}"})
        producer = bus.producer(proxied)
        producer.send(config.kafka.inbound_topic, b"sent").get(timeout=15)
        proxy.outage(30)
        producer.send(config.kafka.inbound_topic, b"never sent")
        started = time.monotonic()
        bus.close_producer(producer, timeout_s=1)
        assert time.monotonic() - started < 10
        with pytest.raises(IllegalStateError):  # closed: nothing left to fail when collected
            producer.send(config.kafka.inbound_topic, b"after")
