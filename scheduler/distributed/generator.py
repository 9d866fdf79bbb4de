"""The patient generator of the distributed mode: one process that sends `patient.arrived`
to the inbound topic when the run's clock reaches each arrival time.

Arrivals are those of `simulation.arrivals`, as `simulation.simulate` makes them,
so a distributed run sees the same patients as an in-process one. Started late (a restart),
it sends every arrival already due at once: the scheduler drops an event_id it has applied,
so a resent arrival is harmless.
"""

from __future__ import annotations

import logging
import threading

from scheduler.config import Config
from scheduler.distributed import bus
from scheduler.distributed.bus import Outbox
from scheduler.distributed.clock import LiveClock
from scheduler.simulation import arrivals

log = logging.getLogger(__name__)

# Longest single sleep, in wall seconds, so that `stop` is noticed promptly.
NAP_S = 0.1


def run_generator(
    config: Config,
    *,
    run_id: str,
    clock: LiveClock,
    duration_ms: int,
    seed: int | None,
    producer_id: str = "generator",
    stop: threading.Event | None = None,
) -> int:
    """Send the run's arrivals up to `duration_ms` on time; return how many were sent."""
    stop = stop or threading.Event()
    seed = config.arrivals.seed if seed is None else seed
    bus.ensure_topics(config)  # else the first send auto-creates inbound with 1 partition
    producer = bus.producer(config)
    outbox = Outbox(producer, bus.headers(run_id, producer_id))
    sent = 0
    log.info(
        "generator %s started: run %s, %d ms at speed %g, seed %d",
        producer_id,
        run_id,
        duration_ms,
        clock.speed,
        seed,
    )
    try:
        for arrival in arrivals(config, seed):
            at = arrival.time_ms
            if at > duration_ms:
                break
            if clock.wall_seconds_until(at) > 0:
                sent += len(outbox.flush())  # what is due goes out before we sleep
                if not _wait(clock, at, stop):
                    break
            outbox.send_event(config.kafka.inbound_topic, arrival)
        sent += len(outbox.flush())
    finally:
        bus.close_producer(producer)
    log.info(
        "generator %s finished: %d arrivals sent%s",
        producer_id,
        sent,
        " (stopped)" if stop.is_set() else "",
    )
    return sent


def _wait(clock: LiveClock, at_ms: int, stop: threading.Event) -> bool:
    """Wait for the clock to reach `at_ms` in short naps; False when stopped first."""
    while not stop.is_set():
        delay = clock.wall_seconds_until(at_ms)
        if delay <= 0:
            return True
        stop.wait(min(delay, NAP_S))
    return False
