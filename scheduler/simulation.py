"""The simulated hospital around the scheduler: the patient generator and the porter,
medical and cleaner workers, driven by a clock.

Time advances from event to event. At `--speed max` nothing waits (a discrete-event
simulation); at `--speed N` each tick waits for the wall clock, scaled by N. Both run the
same code, so the decisions do not depend on the speed.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from scheduler import events as ev
from scheduler.config import Config
from scheduler.demand import Demand
from scheduler.engine import Scheduler, TickResult
from scheduler.layout import Layout


def arrivals(config: Config, seed: int) -> Iterator[ev.PatientArrived]:
    """The run's patients, in order (`Demand.arrivals`): the patient generator's."""
    return Demand(config, seed).arrivals()


def completion(layout: Layout, demand: Demand, task: ev.TaskDispatched) -> ev.Completion:
    """The event a staff member reports when done with a task dispatched to them: the walk
    is timed from where they set off (`origin`), so a worker needs no memory of its own, and
    the treatment or cleaning is the task's patient's (`Demand.work_ms`)."""
    kind = task.kind
    duration = layout.walking_ms(task.origin, kind, task.room_id) + demand.work_ms(task)
    event_id, time_ms = f"done-{task.task_id}", task.time_ms + duration
    if kind == "escort_in" or kind == "escort_out":
        return ev.EscortCompleted(
            event_id,
            time_ms,
            task.task_id,
            task.staff_id,
            task.patient_id,
            task.room_id,
            "in" if kind == "escort_in" else "out",
        )
    if kind == "visit":
        return ev.VisitCompleted(
            event_id, time_ms, task.task_id, task.staff_id, task.patient_id, task.room_id
        )
    return ev.CleaningCompleted(event_id, time_ms, task.task_id, task.staff_id, task.room_id)


# The warm-up's throw-away patients: enough that a hospital of more than a few rooms has
# assignments past `scheduler.assignment.SMALL` pairs, as its busy ticks will; few enough
# that the warm-up of the largest takes milliseconds, not the run's time.
WARM_UP_PATIENTS = 16
# Its ticks: admissions and escorts in, visits, escorts out, cleans, rooms free again.
WARM_UP_TICKS = 5


def warm_up(config: Config) -> None:
    """Decide a few throw-away ticks of this config on a scratch hospital, so that what a
    tick does only the first time — imports (numpy and scipy, half a second, for the
    assignments of a large hospital), first calls — happens now, before the run's clock
    starts, rather than in the run's first ticks. The run's own scheduler is not touched:
    its decisions are the same, byte for byte. The patients are the run's first ones, all
    at time 0, one more than the rooms of a small hospital (a referral too); the first needs
    isolation if rooms can isolate, and the second is ESI 1 if the mix has urgent patients,
    so that the tick takes every path the run may."""
    scratch = Scheduler(config)
    demand = Demand(config, config.arrivals.seed)
    rooms = len(config.hospital.floors) * config.hospital.rooms_per_floor
    patients = list(itertools.islice(demand.arrivals(), min(rooms, WARM_UP_PATIENTS) + 1))
    mix = config.arrivals.acuity_mix
    inbound: list[ev.Event] = [
        dataclasses.replace(
            patient,
            time_ms=0,
            isolation=patient.isolation or (n == 0 and bool(config.hospital.isolation_rooms)),
            acuity=1 if n == 1 and (mix[0] or mix[1]) else patient.acuity,
        )
        for n, patient in enumerate(patients)
    ]
    layout, tick = scratch.hospital.layout, 0
    for _ in range(WARM_UP_TICKS):
        result = scratch.tick(tick, inbound)
        inbound = [
            completion(layout, demand, decision)
            for decision in result.decisions
            if isinstance(decision, ev.TaskDispatched)
        ]
        if not inbound:
            return
        tick = scratch.tick_of(max(event.time_ms for event in inbound))


class StopFlag:
    """A request to stop a run, safe to set from a signal handler (a `threading.Event` is
    not: its lock may be held by the very code the handler interrupted)."""

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set

    def wait(self, seconds: float) -> bool:
        """Sleep `seconds`, or less when the flag is set meanwhile."""
        end = time.monotonic() + seconds
        while not self._set and (left := end - time.monotonic()) > 0:
            time.sleep(min(left, 0.05))
        return self._set


class Clock:
    """Virtual time. `speed=None` runs as fast as the CPU allows; otherwise each tick waits
    until `sim_time / speed` of wall time has passed since the start, calling `on_idle`
    first (to write out what is done while there is time for it). A wait ends early when
    `stop` is set: a run asked to stop does not sleep until its next tick first."""

    def __init__(
        self,
        speed: float | None = None,
        stop: StopFlag | None = None,
        on_idle: Callable[[], None] | None = None,
    ):
        self.speed = speed
        self.stop = stop or StopFlag()
        self.on_idle = on_idle
        self._started = time.monotonic()

    def _delay(self, sim_ms: int) -> float:
        assert self.speed is not None
        return self._started + sim_ms / 1000 / self.speed - time.monotonic()

    def wait_until(self, sim_ms: int) -> None:
        if self.speed is None or self._delay(sim_ms) <= 0:
            return
        if self.on_idle:
            self.on_idle()
        delay = self._delay(sim_ms)
        if delay > 0:
            self.stop.wait(delay)


class Source(Protocol):
    """Events from outside the simulation (a hospital system's, through `hospital hl7
    listen`): what has come since the last tick, dated by the run's clock, `time_ms`."""

    def take(self, tick: int, time_ms: int, close: bool = False) -> list[ev.Event]:
        """The events for `tick`; with `close`, the last ones: nothing comes after."""
        ...


@dataclass
class RunSummary:
    ticks: int
    end_ms: int
    stopped: bool = False  # by `clock.stop`, at `end_ms`: the time of the last tick run


def simulate(
    config: Config,
    scheduler: Scheduler,
    duration_ms: int,
    *,
    seed: int | None = None,
    clock: Clock | None = None,
    on_tick: Callable[[TickResult], None] = lambda result: None,
    source: Source | None = None,
    generate: bool = True,
) -> RunSummary:
    """Run the hospital for `duration_ms` of simulated time. `on_tick` sees each tick's
    result (consumed events and decisions) as it happens. Setting `clock.stop` (from a
    signal handler, say) ends the run between two ticks: the tick under way is finished,
    the next one is not started. With a `source`, events from outside join the simulated
    ones, at every tick (`generate=False`: the patient generator is off, every patient
    comes from the source)."""
    clock = clock or Clock()
    seed = config.arrivals.seed if seed is None else seed
    if source is not None:
        return _simulate_fed(config, scheduler, duration_ms, seed, clock, on_tick, source, generate)
    layout = scheduler.hospital.layout
    pending: list[tuple[int, int, ev.Event]] = []  # (time, order, event), a heap
    order = 0

    def push(event: ev.Event) -> None:
        nonlocal order
        order += 1
        heapq.heappush(pending, (event.time_ms, order, event))

    demand = Demand(config, seed)
    patients = demand.arrivals()

    def next_arrival() -> None:
        arrival = next(patients)
        if arrival.time_ms <= duration_ms:
            push(arrival)

    next_arrival()
    ticks = last_ms = 0
    tick_ms = scheduler.tick_ms
    wait = clock.wait_until
    heappop, arrived, dispatched = heapq.heappop, ev.PatientArrived, ev.TaskDispatched
    while pending:
        if clock.stop.is_set():
            return RunSummary(ticks, last_ms, stopped=True)
        # `scheduler.tick_of`, inline: the first tick that can take the next event
        tick = max(-(-pending[0][0] // tick_ms), scheduler.last_tick + 1)
        now_ms = tick * tick_ms
        if now_ms > duration_ms:
            break
        batch = []
        while pending and pending[0][0] <= now_ms:
            event = heappop(pending)[2]
            batch.append(event)
            if type(event) is arrived:
                next_arrival()
        wait(now_ms)
        if clock.stop.is_set():
            return RunSummary(ticks, last_ms, stopped=True)
        result = scheduler.tick(tick, batch)
        ticks += 1
        last_ms = result.time_ms
        for decision in result.decisions:
            if type(decision) is dispatched:
                push(completion(layout, demand, decision))
        on_tick(result)
    return RunSummary(ticks, duration_ms)


def _simulate_fed(
    config: Config,
    scheduler: Scheduler,
    duration_ms: int,
    seed: int,
    clock: Clock,
    on_tick: Callable[[TickResult], None],
    source: Source,
    generate: bool,
) -> RunSummary:
    """`simulate` with a source: every tick up to the end is visited, on the clock, for what
    the source has, and a tick is made when there is something to apply (as the plain loop
    makes one only for its events: ticks, and so decisions, are the same for the same
    events). The last tick closes the source."""
    layout, tick_ms = scheduler.hospital.layout, scheduler.tick_ms
    demand = Demand(config, seed)
    patients = demand.arrivals() if generate else iter(())
    pending: list[tuple[int, int, ev.Event]] = []
    order = itertools.count()

    def push(event: ev.Event) -> None:
        heapq.heappush(pending, (event.time_ms, next(order), event))

    def next_arrival() -> None:
        arrival = next(patients, None)
        if arrival is not None and arrival.time_ms <= duration_ms:
            push(arrival)

    next_arrival()
    ticks = last_ms = 0
    last_tick = duration_ms // tick_ms
    for tick in range(last_tick + 1):
        now_ms = tick * tick_ms
        if clock.stop.is_set():
            return RunSummary(ticks, last_ms, stopped=True)
        clock.wait_until(now_ms)
        if clock.stop.is_set():
            return RunSummary(ticks, last_ms, stopped=True)
        batch = []
        while pending and pending[0][0] <= now_ms:
            event = heapq.heappop(pending)[2]
            batch.append(event)
            if type(event) is ev.PatientArrived:
                next_arrival()
        batch += source.take(tick, now_ms, close=tick == last_tick)
        if not batch:
            continue
        result = scheduler.tick(tick, batch)
        ticks += 1
        last_ms = result.time_ms
        for decision in result.decisions:
            if type(decision) is ev.TaskDispatched:
                push(completion(layout, demand, decision))
        on_tick(result)
    return RunSummary(ticks, duration_ms)
