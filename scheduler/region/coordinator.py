"""The coordinator: each tick, which hospital to offer each pending transfer request to.

Every coordinator is a function of what it is given — the requests waiting for an offer,
the hospitals' free usable rooms as their last tick left them, the travel times — and of
its own small state (`even`'s turn): no globals, no clock, so that it can run embedded, as
here, or later as a service fed by the same events.

- `cpsat`: one CP-SAT model over all the waiting requests and the hospitals: place as many
  as the free rooms allow (the most urgent, then the longest waiting, first when rooms are
  short), and among the placements the one of least travel and least load at the receiving
  hospitals (a room of a nearly full hospital is worth more to its own next patient than to
  a transfer: nearly full, it soon refers its own).
- `nearest`: the nearest hospital with a free room it may use.
- `even`: the hospitals with such a room in turn, each origin its own turn (an even split
  of diverted patients over the other hospitals: Kao et al. 2015, PLoS ONE 10:e0144227).
- `none`: isolated hospitals: no transfers (a referral is final, as in a single hospital).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

COORDINATORS = ("cpsat", "nearest", "even", "none")

# The cpsat model's objective, in seconds of travel: a placement is worth far more than any
# trip (a request not placed may end out of the region), an ESI level more urgent is worth
# 10 minutes of travel, each second waited one, and a receiving hospital's occupancy (0-1)
# costs up to LOAD_S.
PLACEMENT_S = 1_000_000
URGENCY_S = 600
LOAD_S = 3600


@dataclass(frozen=True)
class Request:
    patient_id: str
    origin: str
    acuity: int
    isolation: bool
    requested_ms: int

    @property
    def key(self) -> tuple[str, str]:
        return self.origin, self.patient_id


@dataclass(frozen=True)
class Capacity:
    """A hospital's free rooms, as its last tick left them."""

    rooms: int
    plain: int  # free rooms that do not isolate
    isolation: int  # free rooms that isolate
    shared: bool  # whether a patient without isolation may use an isolation room
    freeing: int = 0  # dirty or being cleaned: free soon

    def takes(self, isolation: bool) -> bool:
        if isolation:
            return self.isolation > 0
        return self.plain > 0 or (self.shared and self.isolation > 0)

    def minus(self, isolation: bool) -> Capacity:
        """What is left once a patient is placed (as the hospital would choose the room)."""
        if isolation or not self.plain:
            return replace(self, isolation=self.isolation - 1)
        return replace(self, plain=self.plain - 1)

    @property
    def occupancy(self) -> float:
        free = self.plain + self.isolation
        return 1.0 - free / self.rooms if self.rooms else 1.0


Offer = tuple[Request, str]  # the request and the hospital it is offered to


class Coordinator(Protocol):
    name: str

    def offers(
        self,
        now_ms: int,
        requests: Sequence[Request],
        capacity: Mapping[str, Capacity],
        travel_ms: Mapping[tuple[str, str], int],
    ) -> list[Offer]:
        """The offers of this tick, at most one per request, none beyond a hospital's free
        rooms, never to the request's own hospital."""
        ...


def priority_order(requests: Sequence[Request]) -> list[Request]:
    """The most urgent first, then the longest waiting, then by id: the heuristics' order."""
    return sorted(requests, key=lambda r: (r.acuity, r.requested_ms, r.origin, r.patient_id))


@dataclass
class NoTransfers:
    name: str = "none"

    def offers(self, now_ms, requests, capacity, travel_ms) -> list[Offer]:
        return []


@dataclass
class Nearest:
    name: str = "nearest"

    def offers(self, now_ms, requests, capacity, travel_ms) -> list[Offer]:
        left = dict(capacity)
        chosen = []
        for request in priority_order(requests):
            candidates = sorted(
                (travel_ms[request.origin, h], h)
                for h, c in left.items()
                if h != request.origin and c.takes(request.isolation)
            )
            if candidates:
                to = candidates[0][1]
                left[to] = left[to].minus(request.isolation)
                chosen.append((request, to))
        return chosen


@dataclass
class EvenSplit:
    """Each origin sends its requests to the hospitals with room in turn (in the region's
    order, starting after the one it sent to last)."""

    name: str = "even"
    last: dict[str, str] = field(default_factory=dict)  # origin -> the last it sent to

    def offers(self, now_ms, requests, capacity, travel_ms) -> list[Offer]:
        left = dict(capacity)
        order = list(capacity)
        chosen = []
        for request in priority_order(requests):
            start = order.index(self.last[request.origin]) + 1 if request.origin in self.last else 0
            turn = order[start:] + order[:start]
            to = next(
                (h for h in turn if h != request.origin and left[h].takes(request.isolation)),
                None,
            )
            if to is not None:
                left[to] = left[to].minus(request.isolation)
                self.last[request.origin] = to
                chosen.append((request, to))
        return chosen


@dataclass
class CpSatCoordinator:
    """The requests and the hospitals as one CP-SAT model (one worker, a fixed seed, no time
    limit: the same inputs give the same offers). A tick whose requests no hospital can take
    builds no model."""

    name: str = "cpsat"
    solved: int = 0

    def offers(self, now_ms, requests, capacity, travel_ms) -> list[Offer]:
        pairs = [
            (request, h)
            for request in sorted(requests, key=lambda r: r.key)
            for h, c in capacity.items()
            if h != request.origin and c.takes(request.isolation)
        ]
        if not pairs:
            return []
        from ortools.sat.python import cp_model

        model = cp_model.CpModel()
        x = {(r.key, h): model.new_bool_var(f"x{n}") for n, (r, h) in enumerate(pairs)}
        by_request: dict[tuple[str, str], list] = {}
        by_hospital: dict[tuple[str, bool], list] = {}
        for r, h in pairs:
            by_request.setdefault(r.key, []).append(x[r.key, h])
            by_hospital.setdefault((h, r.isolation), []).append(x[r.key, h])
        for variables in by_request.values():
            model.add_at_most_one(variables)
        for h, c in capacity.items():
            isolated = by_hospital.get((h, True), [])
            plain = by_hospital.get((h, False), [])
            model.add(sum(isolated) <= c.isolation)
            model.add(sum(plain) <= c.plain + (c.isolation if c.shared else 0))
            if c.shared:
                model.add(sum(isolated) + sum(plain) <= c.plain + c.isolation)
        model.maximize(
            sum(self._value(now_ms, r, h, capacity, travel_ms) * x[r.key, h] for r, h in pairs)
        )
        solver = cp_model.CpSolver()
        solver.parameters.num_workers = 1
        solver.parameters.random_seed = 0
        status = solver.solve(model)
        self.solved += 1
        if status != cp_model.OPTIMAL:
            raise RuntimeError(f"the coordinator's model: {solver.status_name(status)}")
        return [(r, h) for r, h in pairs if solver.value(x[r.key, h])]

    @staticmethod
    def _value(now_ms, request, hospital, capacity, travel_ms) -> int:
        waited_s = (now_ms - request.requested_ms) // 1000
        travel_s = travel_ms[request.origin, hospital] // 1000
        load = round(LOAD_S * capacity[hospital].occupancy)
        return PLACEMENT_S + URGENCY_S * (5 - request.acuity) + waited_s - travel_s - load


def make(name: str) -> Coordinator:
    if name == "cpsat":
        return CpSatCoordinator()
    if name == "nearest":
        return Nearest()
    if name == "even":
        return EvenSplit()
    if name == "none":
        return NoTransfers()
    raise ValueError(f"unknown coordinator {name!r}: expected {', '.join(COORDINATORS)}")
