"""The live scheduler and the broker (`eval "$(scripts/backing-services env)"`): the outbox relay
when sends fail, the end of a run, a restart after it, and topics with too few partitions.
Every test has its own topics; the ledger is SQLite (the end-to-end tests use PostgreSQL)."""

from __future__ import annotations

import itertools
import os
import time
from collections import Counter

import pytest

from scheduler import events as ev
from scheduler.config import Config, load
from scheduler.db.ledger import Ledger
from scheduler.distributed import bus
from scheduler.distributed import scheduler_service as service
from scheduler.distributed.clock import LiveClock
from scheduler.distributed.scheduler_service import LiveScheduler, Pending
from scheduler.simulation import arrivals
from tests.kafka_topics import delete_topics, own_topic_names, read_topic

if not os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
    pytest.skip(
        "KAFKA_BOOTSTRAP_SERVERS is not set (scripts/backing-services env)", allow_module_level=True
    )

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaTimeoutError
from kafka.future import Future

pytestmark = [pytest.mark.services, pytest.mark.timeout(120)]
RUN = "run-relay"
UNTIL_MS = 60_000


@pytest.fixture
def config():
    """Topics of its own, not created yet (a test may want them otherwise first)."""
    config = load(None, {"KAFKA_BOOTSTRAP_SERVERS": os.environ["KAFKA_BOOTSTRAP_SERVERS"]})
    config = config.replace(kafka=own_topic_names())
    yield config
    delete_topics(config)


@pytest.fixture
def live(config, tmp_path):
    """A scheduler that has begun its run, the run's clock already past its end."""
    ledger = Ledger(f"sqlite:///{tmp_path / 'run.db'}", config, config.scheduler.policy)
    scheduler = LiveScheduler(
        config, ledger, run_id=RUN, until_ms=UNTIL_MS, clock=LiveClock(time.time() - 3600, 1.0)
    )
    try:
        scheduler.start(fresh=True)
        yield scheduler
    finally:
        scheduler.close()


def first_arrivals(config: Config, up_to_ms: int) -> list[ev.PatientArrived]:
    return list(
        itertools.takewhile(lambda a: a.time_ms <= up_to_ms, arrivals(config, config.arrivals.seed))
    )


def commit_arrivals(live: LiveScheduler, up_to_ms: int) -> None:
    """Arrivals applied tick by tick, their decisions owed to the broker."""
    for arrival in first_arrivals(live.config, up_to_ms):
        live.tick(arrival.time_ms // 1000 + 1, Pending([arrival], [], {}))


def assert_published_once(live: LiveScheduler) -> None:
    """The decisions topic holds every stored decision exactly once, and nothing else."""
    stored = [d for _, _, decisions in live.ledger.history() for d in decisions]
    published = Counter(
        m.value.decode() for m in read_topic(live.config, live.config.kafka.decisions_topic)
    )
    assert stored and len(set(stored)) == len(stored)
    assert {d: n for d, n in published.items() if n > 1} == {}, "published twice"
    assert set(published) == set(stored), "lost or foreign decisions"
    assert live.ledger.count_unpublished() == 0


class FailingOnce:
    """The real producer, except that the first send of `payload` fails as a broker that
    timed out would: the future fails, nothing is written."""

    def __init__(self, producer, fail: set[bytes]):
        self.producer, self.fail = producer, set(fail)

    def send(self, topic, *, key, value, headers, partition):
        if value in self.fail:
            self.fail.discard(value)
            return Future().failure(KafkaTimeoutError("injected: no acknowledgement"))
        return self.producer.send(topic, key=key, value=value, headers=headers, partition=partition)

    def flush(self, timeout=None):
        self.producer.flush(timeout=timeout)


class AlwaysFailing(FailingOnce):
    def send(self, topic, *, key, value, headers, partition):
        return Future().failure(KafkaTimeoutError("injected: the broker is gone"))


# --- the relay --------------------------------------------------------------------------


def test_a_failed_send_neither_wedges_the_relay_nor_doubles_what_was_sent(live):
    commit_arrivals(live, 30_000)
    owed = live.ledger.unpublished(limit=10_000)
    assert len(owed) > 10
    middle = owed[len(owed) // 2]
    live.sender.producer = FailingOnce(live.producer, {middle.payload})
    assert not live.relay(), "the failed send went unnoticed"
    assert [m.outbox_id for m in live.ledger.unpublished()] == [middle.outbox_id]
    for _ in range(3):
        if live.relay() and not live.owed:
            break
    assert_published_once(live)


def test_the_end_of_a_run_publishes_everything_owed_beyond_one_batch(live, monkeypatch):
    monkeypatch.setattr(service, "RELAY_BATCH", 5)
    commit_arrivals(live, UNTIL_MS)
    assert live.ledger.count_unpublished() > 3 * 5
    live.run()
    assert_published_once(live)


def test_the_end_of_a_run_with_the_broker_failing_is_an_error(live, monkeypatch):
    monkeypatch.setattr(service, "FINAL_RELAY_S", 1.0)
    commit_arrivals(live, 20_000)
    live.sender.producer = AlwaysFailing(live.producer, set())
    with pytest.raises(bus.BusError, match=r"\d+ messages committed .* still unpublished"):
        live.run()


def test_a_restart_does_not_resend_what_was_published_before_the_kill(
    live, config, tmp_path, monkeypatch
):
    """Killed between the broker's acknowledgement and the outbox's update: the restarted
    scheduler finds them on the broker and does not send them again."""
    commit_arrivals(live, 30_000)
    monkeypatch.setattr(live.ledger, "mark_published_ids", lambda *_, **__: None)  # the kill
    live.relay()
    assert live.ledger.count_unpublished() > 0
    live.close()
    monkeypatch.undo()

    ledger = Ledger(f"sqlite:///{tmp_path / 'run.db'}", config, config.scheduler.policy)
    again = LiveScheduler(config, ledger, run_id=RUN, until_ms=UNTIL_MS, clock=live.clock)
    try:
        again.start(fresh=False)
        assert_published_once(again)
    finally:
        again.close()


# --- the end of a run -----------------------------------------------------------------------


def test_a_scheduler_started_after_the_end_applies_what_was_stamped_up_to_it(live, config):
    """It used to stop at once, leaving the events of the last seconds unapplied."""
    sent = first_arrivals(config, UNTIL_MS + 5_000)
    producer = bus.producer(config)
    outbox = bus.Outbox(producer, bus.headers(RUN, "test"))
    for arrival in sent:
        outbox.send_event(config.kafka.inbound_topic, arrival)
    outbox.flush()
    producer.close()
    live.run()
    applied = {e.event_id for _, inbound, _ in live.ledger.history() for e in inbound}
    assert applied == {a.event_id for a in sent if a.time_ms <= UNTIL_MS}
    assert len(applied) == UNTIL_MS // 5_000 + 1
    assert_published_once(live)


# --- topics ------------------------------------------------------------------------------


def test_a_dispatch_topic_with_too_few_partitions_is_grown(config):
    """Left by an earlier run with fewer porters, or auto-created with one partition: the
    scheduler used to crash on the dispatch to the second porter, at every start."""
    topic = bus.dispatch_topic(config, "porter")
    porters = bus.staff_of_role(config, "porter")
    assert len(porters) >= 2
    admin = KafkaAdminClient(**bus.client_options(config), request_timeout_ms=15000)
    try:
        admin.create_topics([NewTopic(topic, 1, 1)])
        bus.ensure_topics(config)
        [described] = admin.describe_topics([topic])
        assert len(described["partitions"]) == len(porters)
    finally:
        admin.close()
    producer = bus.producer(config)
    try:
        outbox = bus.Outbox(producer, bus.headers(RUN, "test"))
        outbox.send(
            topic,
            porters[-1].encode(),
            b"{}",
            tag="last",
            partition=bus.dispatch_partition(config, porters[-1], "porter"),
        )
        assert outbox.flush() == ["last"]
        with pytest.raises(bus.BusError, match="partition 99"):
            outbox.send(topic, b"k", b"{}", partition=99)
    finally:
        producer.close()


# --- the clock -----------------------------------------------------------------------------


def test_events_read_after_a_slow_relay_are_not_taken_for_events_from_the_future(
    config, tmp_path, monkeypatch
):
    """A relay that took long (a loaded machine, a slow broker) left the loop's next tick
    behind the clock: the arrivals read after it were dead-lettered as "ahead of the run's
    clock", though sent on time (an e2e run lost arrival-5 to arrival-8 so)."""
    import threading

    from scheduler.distributed.generator import run_generator

    until_ms, speed = 40_000, 10.0
    clock = LiveClock(time.time() + 1.0, speed)
    ledger = Ledger(f"sqlite:///{tmp_path / 'run.db'}", config, config.scheduler.policy)
    live = LiveScheduler(config, ledger, run_id=RUN, until_ms=until_ms, clock=clock)
    relay, slow = live.relay, [True]

    def slow_relay() -> bool:
        if live.owed and slow:
            slow.clear()
            time.sleep(1.5)  # 15 simulated seconds: three arrivals meanwhile
        return relay()

    try:
        live.start(fresh=True)
        monkeypatch.setattr(live, "relay", slow_relay)
        generator = threading.Thread(
            target=run_generator,
            args=(config,),
            kwargs={"run_id": RUN, "clock": clock, "duration_ms": until_ms, "seed": None},
        )
        generator.start()
        live.run()
        generator.join(timeout=30)
        applied = {e.event_id for _, inbound, _ in live.ledger.history() for e in inbound}
    finally:
        live.close()
    assert not slow, "the relay was never slow: no test"
    assert live.counters["dead_lettered"] == 0
    assert applied == {a.event_id for a in first_arrivals(config, until_ms)}
