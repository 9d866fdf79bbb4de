"""The patient generator of the distributed mode: one process that sends `patient.arrived`
to the inbound topic when the run's clock reaches each arrival time.

Arrivals are those of `simulation.arrival_times`, named as `simulation.simulate` names them,
so a distributed run sees the same patients as an in-process one. Started late (a restart),
it sends every arrival already due at once: the scheduler drops an event_id it has applied,
so a resent arrival is harmless.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from kafka.errors import KafkaError

from scheduler import events as ev
from scheduler.config import Config
from scheduler.services import bus
from scheduler.services.clock import LiveClock
from scheduler.simulation import arrival_times

log = logging.getLogger(__name__)

# Longest single sleep, in wall seconds, so that `stop` is noticed promptly.
NAP_S = 0.1


def run_generator(config: Config, *, run_id: str, clock: LiveClock, duration_ms: int,
                  seed: int | None, producer_id: str = "generator",
                  stop: threading.Event | None = None) -> int:
    """Send the run's arrivals up to `duration_ms` on time; return how many were sent."""
    stop = stop or threading.Event()
    seed = config.arrivals.seed if seed is None else seed
    bus.ensure_topics(config)   # else the first send auto-creates inbound with 1 partition
    producer = bus.producer(config)
    outbox = Outbox(producer, bus.headers(run_id, producer_id))
    sent = 0
    log.info("generator %s started: run %s, %d ms at speed %g, seed %d",
             producer_id, run_id, duration_ms, clock.speed, seed)
    try:
        for n, at in enumerate(arrival_times(config, seed), start=1):
            if at > duration_ms:
                break
            if clock.wall_seconds_until(at) > 0:
                sent += len(outbox.flush())   # what is due goes out before we sleep
                if not _wait(clock, at, stop):
                    break
            outbox.send_event(config.kafka.inbound_topic,
                              ev.PatientArrived(f"arrival-{n}", at, f"patient-{n}"))
        sent += len(outbox.flush())
    finally:
        producer.close(timeout=10)
    log.info("generator %s finished: %d arrivals sent%s", producer_id, sent,
             " (stopped)" if stop.is_set() else "")
    return sent


def _wait(clock: LiveClock, at_ms: int, stop: threading.Event) -> bool:
    """Wait for the clock to reach `at_ms` in short naps; False when stopped first."""
    while not stop.is_set():
        delay = clock.wall_seconds_until(at_ms)
        if delay <= 0:
            return True
        stop.wait(min(delay, NAP_S))
    return False


class Outbox:
    """Messages sent but not yet known to be written. `flush` waits for them, raises
    `BusError` if one failed, and returns the tags given with those written, in order, so
    that a caller acts (commits, counts) only on what the broker has acknowledged."""

    def __init__(self, producer, headers: list[tuple[str, bytes]]):
        self.producer, self.headers = producer, headers
        self.unflushed: list[tuple[Any, Any]] = []   # (future, tag)

    def send(self, topic: str, key: bytes | None, value: bytes, tag: Any = None) -> None:
        try:
            future = self.producer.send(topic, key=key, value=value, headers=self.headers)
        except KafkaError as exc:
            raise bus.BusError(f"could not send to {topic}: {exc}") from None
        self.unflushed.append((future, tag))

    def send_event(self, topic: str, event: ev.Event, tag: Any = None) -> None:
        self.send(topic, bus.key_of(event), bus.encode(event), tag)

    def flush(self) -> list[Any]:
        if not self.unflushed:
            return []
        try:
            self.producer.flush(timeout=30)
        except KafkaError as exc:
            raise bus.BusError(f"could not flush to Kafka: {exc}") from None
        for future, _ in self.unflushed:
            if not future.succeeded():
                raise bus.BusError(f"could not send to Kafka: {future.exception}")
        tags = [tag for _, tag in self.unflushed]
        self.unflushed.clear()
        return tags
