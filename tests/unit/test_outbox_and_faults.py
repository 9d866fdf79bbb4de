"""The bus's `Outbox` against a fake producer (the real broker is in the integration tests),
and the parsing of the live scheduler's fault points."""

from __future__ import annotations

import pytest
from kafka.errors import KafkaTimeoutError
from kafka.future import Future

from scheduler.distributed.bus import BusError, Outbox, SendFailed
from scheduler.distributed.faults import Faults


class FakeProducer:
    """Acknowledges every send, except those of the values in `failing`, once each; refuses
    partition 99 as kafka-python refuses a partition the topic does not have."""

    def __init__(self, failing=()):
        self.failing = set(failing)
        self.sent: list[bytes] = []

    def send(self, topic, *, key, value, headers, partition):
        if partition == 99:
            raise ValueError(f"Unrecognized partition {partition} for topic {topic}")
        if value in self.failing:
            self.failing.discard(value)
            return Future().failure(KafkaTimeoutError("no acknowledgement"))
        self.sent.append(value)
        return Future().success(None)

    def flush(self, timeout=None):
        pass


def test_a_failed_send_is_reported_once_with_what_was_written_and_does_not_wedge():
    outbox = Outbox(FakeProducer(failing={b"b"}), [])
    for value in (b"a", b"b", b"c"):
        outbox.send("t", None, value, tag=value.decode())
    with pytest.raises(SendFailed, match="1 of 3") as failed:
        outbox.flush()
    assert failed.value.sent == ["a", "c"]
    outbox.send("t", None, b"b", tag="b")  # the retry
    assert outbox.flush() == ["b"]
    assert outbox.flush() == []


def test_a_partition_the_topic_lacks_is_a_bus_error():
    outbox = Outbox(FakeProducer(), [])
    with pytest.raises(BusError, match="partition 99.*fewer partitions"):
        outbox.send("dispatch.porter", b"porter-3", b"{}", partition=99)
    assert outbox.flush() == []


def test_fault_points_parse_and_fire_once():
    faults = Faults("after_commit:10, after_publish:20,tick_raises:arrival-3", resumed_after=-1)
    assert not faults.reached("after_commit", [3, 9])
    assert faults.reached("after_commit", [9, 12])
    assert not faults.reached("after_commit", [13])
    assert faults.reached("after_publish", [20])
    assert faults.raising == {"arrival-3"}


def test_a_fault_point_the_run_had_passed_at_start_is_disarmed():
    faults = Faults("after_commit:10,send_fails:30", resumed_after=12)
    assert not faults.reached("after_commit", [13])
    assert faults.reached("send_fails", [31])


@pytest.mark.parametrize("spec", ["after_comit:3", "after_commit", "after_commit:x"])
def test_a_misspelt_fault_point_is_an_error(spec):
    with pytest.raises(ValueError, match="HOSPITAL_FAULT"):
        Faults(spec)


def test_no_fault_point_without_the_variable():
    faults = Faults(None)
    assert not faults.ticks and not faults.raising
    assert not faults.reached("after_commit", [10**9])


def test_sent_ids_are_marked_by_runs_of_consecutive_ids_and_no_other():
    from scheduler.db.ledger import id_runs

    assert id_runs([]) == []
    assert id_runs([7, 1, 2, 3, 3]) == [(1, 3), (7, 7)]
    assert id_runs(range(10, 5010)) == [(10, 5009)]
    # a batch whose middle message failed: the ids on either side, not the failed one
    assert id_runs([*range(1, 50), *range(51, 101)]) == [(1, 49), (51, 100)]


@pytest.mark.parametrize("porters", [None, 7])
def test_the_scheduler_routes_each_dispatch_where_dispatch_partition_says(porters):
    from scheduler.config import load
    from scheduler.distributed import bus

    config = load(None, {})
    if porters is not None:
        config = config.replace(staff={"porters": porters})
    routes = bus.dispatch_routes(config)
    expected = {
        (role, staff_id): (
            bus.dispatch_topic(config, role),
            bus.dispatch_partition(config, staff_id, role),
        )
        for role in bus.ROLES
        for staff_id in bus.staff_of_role(config, role)
    }
    assert routes == expected
    assert len({route for route in routes.values()}) == len(routes)  # one partition each


def test_copy_text_escapes_what_copy_would_misread():
    from scheduler.db.store import _copy_text

    assert _copy_text(None) == "\\N"
    assert _copy_text(0.1) == "0.1"
    assert _copy_text('{"a": "x\\\\y\\"z"}') == '{"a": "x\\\\\\\\y\\\\"z"}'
    assert _copy_text("a\tb\nc\rd\\e") == "a\\tb\\nc\\rd\\\\e"


def test_the_live_scheduler_closes_its_producer_within_a_time_limit():
    """With the broker gone, kafka-python's `close()` without a timeout waits for ever for
    what it still holds (owed in the outbox all the same): the scheduler's exit must not."""
    from scheduler.distributed.scheduler_service import LiveScheduler

    closed = []

    class Client:
        def __init__(self, name):
            self.name = name

        def close(self, timeout=None):
            closed.append((self.name, timeout))

    class Ledger:
        def close(self):
            closed.append(("ledger", None))

    scheduler = LiveScheduler.__new__(LiveScheduler)  # only what `close` uses
    scheduler.consumer, scheduler.producer, scheduler.ledger = (
        Client("consumer"),
        Client("producer"),
        Ledger(),
    )
    scheduler.close()
    assert closed == [("consumer", None), ("producer", 10), ("ledger", None)]
