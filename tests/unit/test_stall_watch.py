"""The worker's watch on kafka-python's group membership: a member the broker counts in a
stable group with partitions, but which never took them up, gets a new consumer within
seconds; a group still rebalancing is given its time; a member rightly without partitions is
left alone."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from kafka.coordinator.base import MemberState
from kafka.structs import TopicPartition

from scheduler.config import load
from scheduler.distributed import worker
from scheduler.distributed.worker import _StallWatch

PARTITION = TopicPartition("t.dispatch.porter", 0)


@dataclass
class Member:
    state: object
    member_id: str = "porter-worker-1-abc"


@dataclass
class FakeConsumer:
    state: object = MemberState.STABLE
    partitions: set = field(default_factory=set)

    def group_metadata(self) -> Member:
        return Member(self.state)

    def assignment(self) -> set:
        return self.partitions


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(worker.time, "monotonic", clock)
    return clock


def watch_seeing(broker_view) -> tuple[_StallWatch, list]:
    watch = _StallWatch(load(None, {}), "t.dispatch.porter.workers", "porter-worker-1")
    asked: list = []

    def view(member_id: str):
        asked.append(member_id)
        return broker_view

    watch.broker_view = view  # type: ignore[method-assign]
    return watch, asked


def seconds_until_stalled(watch: _StallWatch, consumer, clock: Clock, limit_s: float = 60):
    start = clock.now
    while clock.now - start <= limit_s:
        if watch.stalled(consumer):
            return clock.now - start
        clock.now += 0.2
    return None


def test_a_member_holding_its_partitions_is_never_checked(clock):
    watch, asked = watch_seeing(("Stable", True))
    consumer = FakeConsumer(MemberState.STABLE, {PARTITION})
    assert seconds_until_stalled(watch, consumer, clock) is None
    assert asked == []


def test_a_member_that_never_took_up_its_assignment_reconnects_within_seconds(clock):
    watch, asked = watch_seeing(("Stable", True))  # the broker: stable, and it holds some
    consumer = FakeConsumer(MemberState.REBALANCING, {PARTITION})
    waited = seconds_until_stalled(watch, consumer, clock)
    assert waited is not None and waited <= _StallWatch.CHECK_S + 0.5
    assert asked == ["porter-worker-1-abc"]


def test_a_group_still_rebalancing_at_the_broker_is_given_its_time(clock):
    watch, _ = watch_seeing(("PreparingRebalance", False))
    consumer = FakeConsumer(MemberState.REBALANCING)
    waited = seconds_until_stalled(watch, consumer, clock)
    assert waited is not None and _StallWatch.STALL_S <= waited <= _StallWatch.STALL_S + 2.5


def test_a_member_rightly_without_partitions_is_left_alone(clock):
    watch, asked = watch_seeing(("Stable", False))  # more workers than partitions
    consumer = FakeConsumer(MemberState.STABLE)
    assert seconds_until_stalled(watch, consumer, clock, limit_s=120) is None
    assert 1 <= len(asked) <= 120 / _StallWatch.STALL_S + 1  # checked, but rarely


def test_a_broker_that_does_not_answer_leaves_it_to_time(clock):
    watch, _ = watch_seeing(None)
    consumer = FakeConsumer(MemberState.REBALANCING)
    waited = seconds_until_stalled(watch, consumer, clock)
    assert waited is not None and waited >= _StallWatch.STALL_S
