"""The tick scheduler: takes the inbound events of one tick, updates the hospital, asks the
policy for the tick's decisions and returns them. Every way of running the hospital (the
simulation, `hospital solve`, the Kafka service) drives this one class.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from scheduler import events as ev
from scheduler.config import Config, RulesConfig
from scheduler.hospital import Hospital, Rejected
from scheduler.policies import CpSatPolicy, GreedyPolicy, Policy
from scheduler.problem import Solution
from scheduler.validator import Auditor

# Within a tick, events are applied in a canonical order, whatever order they were
# delivered in, so that a replay of the same events gives the same decisions.
_TYPE_ORDER = {
    "escort.completed": 0,
    "visit.completed": 1,
    "cleaning.completed": 2,
    "patient.arrived": 3,
    # after the arrival they change, which a hospital system sends later (HL7 A08, A11)
    "patient.updated": 4,
    "patient.withdrawn": 5,
}

NOTHING_TO_DECIDE = Solution(bookings={}, dispatches={})


def covering_tick(time_ms: int, tick_ms: int) -> int:
    """The tick whose interval ((k - 1) * tick, k * tick] holds this time."""
    return -(-time_ms // tick_ms)


def _canonical_key(event: ev.Event) -> tuple[int, int, str]:
    return event.time_ms, _TYPE_ORDER.get(event.TYPE, 9), event.event_id


def canonical_order(events: list[ev.Event]) -> list[ev.Event]:
    if len(events) < 2:  # most ticks of a run: nothing to sort
        return list(events)
    return sorted(events, key=_canonical_key)


def make_policy(name: str, weights: RulesConfig | None = None) -> Policy:
    """The policy of that name. `cpsat-full`, the whole CP-SAT model the `cpsat` policy is
    held to, is for tests and benchmarks: it takes seconds where `cpsat` takes milliseconds."""
    if name == "greedy":
        return GreedyPolicy()
    if name == "cpsat":
        return CpSatPolicy(weights)
    if name == "cpsat-full":
        from scheduler.full_model import FullModelPolicy

        return FullModelPolicy(weights)
    raise ValueError(f"unknown policy {name!r}: expected cpsat or greedy")


@dataclass
class TickResult:
    tick: int
    time_ms: int
    consumed: list[ev.Event]  # applied, in the order applied
    decisions: list[ev.Decision]
    rejected: list[tuple[ev.Event, str]] = field(default_factory=list)
    duplicates: list[ev.Event] = field(default_factory=list)
    solved: bool = False  # False: nothing to decide this tick
    solve_ms: float = 0.0


class Scheduler:
    def __init__(self, config: Config, policy: Policy | None = None):
        self.config = config
        self.tick_ms = round(config.scheduler.tick_s * 1000)
        self.policy = policy or make_policy(config.scheduler.policy, config.rules)
        # The forecast goes only to a policy that looks ahead: `greedy` is first come,
        # first served.
        self.hospital = Hospital(config, lookahead=getattr(self.policy, "looks_ahead", False))
        self.auditor = Auditor(config) if config.scheduler.validate else None
        self.seen = ev.IdSet()  # every event applied: compact, however long the run
        self.last_tick = -1
        self.counters = {"ticks": 0, "events": 0, "rejected": 0, "duplicates": 0}

    def tick_of(self, time_ms: int) -> int:
        """The first tick that can consume an event of this time."""
        return max(covering_tick(time_ms, self.tick_ms), self.last_tick + 1)

    def tick(self, tick: int, inbound: list[ev.Event]) -> TickResult:
        if tick <= self.last_tick:
            raise ValueError(f"tick {tick} comes after tick {self.last_tick}")
        self.last_tick = tick
        now_ms = tick * self.tick_ms
        result = TickResult(tick, now_ms, [], [])
        consumed = result.consumed
        hospital, seen = self.hospital, self.seen
        effects: list = []
        for event in canonical_order(inbound):
            if event.event_id in seen:
                result.duplicates.append(event)
                continue
            if event.time_ms > now_ms:
                result.rejected.append((event, f"time {event.time_ms / 1000} s is after the tick"))
                continue
            try:
                hospital.apply(event, effects)
            except Rejected as exc:
                result.rejected.append((event, str(exc)))
                continue
            seen.add(event.event_id)
            consumed.append(event)
        hospital.change_duty(now_ms, effects)
        hospital.end_holds(now_ms)
        solution, problem = NOTHING_TO_DECIDE, None
        if hospital.has_choices():
            started = time.perf_counter()
            problem = hospital.problem(now_ms)
            solution = self.policy.solve(problem)
            result.solve_ms = (time.perf_counter() - started) * 1000
            result.solved = True
        decided = hospital.decide(solution, effects, now_ms, problem)
        if decided:
            prefix = f"decision-{tick}-"
            result.decisions = [
                cls(event_id=prefix + str(n), time_ms=now_ms, tick=tick, **fields)
                for n, (cls, fields) in enumerate(decided, start=1)
            ]
        if self.auditor is not None:
            self.auditor.check_tick(tick, consumed, result.decisions)
        counters = self.counters
        counters["ticks"] += 1
        counters["events"] += len(consumed)
        if result.rejected:
            counters["rejected"] += len(result.rejected)
        if result.duplicates:
            counters["duplicates"] += len(result.duplicates)
        return result
