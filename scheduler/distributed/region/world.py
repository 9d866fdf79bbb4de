"""The world around a distributed region's schedulers, in one process: every hospital's
patients (its own arrival stream, as the embedded region draws it) and its staff (each
dispatched task reported done when the run's clock reaches its completion, timed as the
embedded region times it), sent to the hospital's inbound topic on time.

It reads the hospitals' dispatch topics from their beginning and keeps only the run's
messages, so a restarted world does again what was due: the schedulers drop an event id they
have applied, so what it sends twice is harmless. A transfer's patient is not the world's: the
coordinator sends their arrival at the end of the drive.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from scheduler import events as ev
from scheduler.config import Config
from scheduler.demand import Demand
from scheduler.distributed import bus
from scheduler.distributed.clock import LiveClock
from scheduler.distributed.region import members
from scheduler.layout import Layout
from scheduler.region.config import RegionConfig
from scheduler.simulation import completion

log = logging.getLogger("hospital.region.world")
POLL_MS = 100
GRACE_MS = 60_000  # simulated time past the end: completions still owed


@dataclass
class _Hospital:
    config: Config
    demand: Demand
    layout: Layout
    patients: Iterator[ev.PatientArrived]


class RegionWorld:
    def __init__(
        self,
        region: RegionConfig,
        base: Config,
        *,
        run_id: str,
        clock: LiveClock,
        duration_ms: int,
        seed: int | None = None,
        stop: threading.Event | None = None,
    ):
        self.region = region
        self.run_id = run_id
        self.clock = clock
        self.duration_ms = duration_ms
        self.stop = stop or threading.Event()
        seed = region.seed if seed is None else seed
        self.base = base
        self.hospitals: dict[str, _Hospital] = {}
        for member in region.hospitals:
            config = members.member_config(region, member.hospital_id, base)
            demand = Demand(config, member.seed(seed))
            self.hospitals[member.hospital_id] = _Hospital(
                config, demand, Layout(config), demand.arrivals()
            )
        self.due: list[tuple[int, int, str, ev.Event]] = []  # (time, order, hospital, event)
        self.order = itertools.count()
        self.done: set[tuple[str, str]] = set()  # (hospital, task): completion due or sent
        self.counters = {"arrivals": 0, "completions": 0, "duplicates": 0}

    def run(self) -> None:
        for hospital_id in self.hospitals:
            self._next_patient(hospital_id)
        by_topic = {}
        for hospital_id, hospital in self.hospitals.items():
            bus.ensure_topics(hospital.config)
            for role in bus.ROLES:
                by_topic[bus.dispatch_topic(hospital.config, role)] = hospital_id
        consumer = bus.consumer(self.base)
        producer = bus.producer(self.base)
        outbox = bus.Outbox(producer, bus.headers(self.run_id, "world"))
        try:
            consumer.seek_to_beginning(*members.assign_all(consumer, by_topic))
            end_ms = self.duration_ms + GRACE_MS
            while not self.stop.is_set() and self.clock.now_ms() <= end_ms:
                for tp, messages in consumer.poll(timeout_ms=POLL_MS, max_records=2000).items():
                    for message in messages:
                        if bus.header(message, "run") == self.run_id:
                            self._dispatched(by_topic[tp.topic], message.value)
                now = self.clock.now_ms()
                while self.due and self.due[0][0] <= now:
                    _, _, hospital_id, event = heapq.heappop(self.due)
                    outbox.send_event(self.hospitals[hospital_id].config.kafka.inbound_topic, event)
                    if isinstance(event, ev.PatientArrived):
                        self.counters["arrivals"] += 1
                        self._next_patient(hospital_id)
                    else:
                        self.counters["completions"] += 1
                outbox.flush()
        finally:
            consumer.close()
            bus.close_producer(producer)
        log.info("world: done (%s)", self.counters)

    def _next_patient(self, hospital_id: str) -> None:
        patient = next(self.hospitals[hospital_id].patients)
        if patient.time_ms <= self.duration_ms:
            self._push(hospital_id, patient)

    def _push(self, hospital_id: str, event: ev.Event) -> None:
        heapq.heappush(self.due, (event.time_ms, next(self.order), hospital_id, event))

    def _dispatched(self, hospital_id: str, value: bytes) -> None:
        try:
            task = ev.parse_json(value, ev.DECISIONS)
        except ev.BadEvent:
            return  # the scheduler's own dead letters say more; the world only does tasks
        if not isinstance(task, ev.TaskDispatched):
            return
        if (hospital_id, task.task_id) in self.done:  # task ids are a hospital's own
            self.counters["duplicates"] += 1
            return
        self.done.add((hospital_id, task.task_id))
        hospital = self.hospitals[hospital_id]
        self._push(hospital_id, completion(hospital.layout, hospital.demand, task))
