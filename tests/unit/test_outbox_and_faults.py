"""The bus's `Outbox` against a fake producer (the real broker is in the integration tests),
and the parsing of the live scheduler's fault points."""

from __future__ import annotations

import pytest
from kafka.errors import KafkaTimeoutError
from kafka.future import Future

from scheduler.services.bus import BusError, Outbox, SendFailed
from scheduler.services.faults import Faults


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
