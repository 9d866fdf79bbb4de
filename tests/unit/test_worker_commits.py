"""The worker's offset commits: a rebalance refuses the commit of every round (five a second)
until it is over; the worker says so once, then once more when a commit goes through."""

from __future__ import annotations

import logging

from kafka.errors import RebalanceInProgressError
from kafka.structs import TopicPartition

from scheduler.config import load
from scheduler.distributed.clock import LiveClock
from scheduler.distributed.worker import _Worker

PARTITION = TopicPartition("t.dispatch.porter", 0)


class RefusingConsumer:
    """Refuses the first `refusals` commits, as a group in a rebalance does."""

    def __init__(self, refusals: int):
        self.refusals = refusals
        self.committed: list[dict] = []

    def commit(self, offsets, timeout_ms=None) -> None:
        if self.refusals:
            self.refusals -= 1
            raise RebalanceInProgressError()
        self.committed.append(offsets)


def worker_with(consumer) -> _Worker:
    return _Worker(load(None, {}), "porter", "run-1", LiveClock(0.0, 1.0), "w-1", consumer, None)


def test_a_streak_of_refused_commits_is_said_once_and_its_end_once(caplog):
    consumer = RefusingConsumer(refusals=12)
    worker = worker_with(consumer)
    worker.offsets.read(PARTITION, 41)
    worker.offsets.finish(PARTITION, 41)
    with caplog.at_level(logging.INFO, logger="scheduler.distributed.worker"):
        for _ in range(15):
            worker.commit()
    lines = [r.getMessage() for r in caplog.records]
    assert [line for line in lines if "commit failed" in line] == [
        "worker w-1: commit failed, will retry: " + str(RebalanceInProgressError())
    ]
    assert "worker w-1: committed, after 12 failed tries" in lines
    assert len(consumer.committed) == 1  # then nothing new to commit
    assert consumer.committed[0][PARTITION].offset == 42
    # A later refusal starts a new streak, said again.
    worker.offsets.read(PARTITION, 42)
    worker.offsets.finish(PARTITION, 42)
    consumer.refusals = 1
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="scheduler.distributed.worker"):
        worker.commit()
    assert any("commit failed" in r.getMessage() for r in caplog.records)
