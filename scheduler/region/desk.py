"""The coordinator's side of the transfer protocol when the hospitals are other processes
(the distributed mode; the embedded `Network` keeps the same books in one process).

The desk hears the hospitals' decisions (requests, acceptances, refusals, the admissions of
patients it sent) and, at each step, refers out of the region the requests past `max_wait_s`
(or that the rules forbid moving), offers the others to hospitals with room (the region's
`Coordinator`), and hands out the arrivals of the patients whose drive has ended. Its state is
plain data (`DeskState.dump`), so that a standby can take it over from the database.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from scheduler import events as ev
from scheduler.region import events as rev
from scheduler.region.config import RegionConfig
from scheduler.region.coordinator import Capacity, Coordinator, Request
from scheduler.region.network import unmovable


@dataclass
class DeskState:
    pending: dict[str, dict[str, Any]] = field(default_factory=dict)  # "origin/patient" -> request
    on_road: list[dict[str, Any]] = field(default_factory=list)  # {"to", "event"}, by time
    held: dict[str, list[str]] = field(default_factory=dict)  # arriving id -> [hospital, room]
    offers: int = 0

    def dump(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def load(cls, data: dict[str, Any]) -> DeskState:
        return cls(**data)


@dataclass
class Step:
    decisions: list[ev.Decision]  # referrals out and offers
    arrivals: list[tuple[str, rev.TransferArrived]]  # (receiving hospital, arrival) due now


# A hospital's free rooms, given the rooms held for patients on the road: (hospital, room).
CapacityOf = Callable[[set[tuple[str, str]]], dict[str, Capacity]]


class TransferDesk:
    def __init__(self, region: RegionConfig, coordinator: Coordinator):
        self.region = region
        self.coordinator = coordinator
        self.state = DeskState()

    def heard(self, decision: ev.Decision) -> None:
        """A hospital's decision; one heard again (a message read twice) changes nothing."""
        state = self.state
        if isinstance(decision, rev.TransferRequested):
            key = rev.arriving_id(decision.origin, decision.patient_id)
            state.pending.setdefault(
                key,
                {
                    "patient_id": decision.patient_id,
                    "origin": decision.origin,
                    "acuity": decision.acuity,
                    "isolation": decision.isolation,
                    "requested_ms": decision.time_ms,
                    "offered_to": None,
                },
            )
        elif isinstance(decision, rev.TransferAccepted):
            key = rev.arriving_id(decision.origin, decision.patient_id)
            request = state.pending.pop(key, None)
            if request is None:
                return
            arrival = rev.TransferArrived(
                f"transfer-{key}",
                decision.time_ms + self.region.travel_ms[decision.origin, decision.to],
                key,
                acuity=request["acuity"],
                isolation=request["isolation"],
                transferred_from=decision.origin,
            )
            state.on_road.append({"to": decision.to, "event": arrival.to_json()})
            state.on_road.sort(key=lambda r: (_time_s(r), r["event"]))
            state.held[key] = [decision.to, decision.room_id]
        elif isinstance(decision, rev.TransferDeclined):
            request = state.pending.get(rev.arriving_id(decision.origin, decision.patient_id))
            if request is not None and request["offered_to"] == decision.to:
                request["offered_to"] = None
        elif isinstance(decision, ev.PatientAdmitted):
            state.held.pop(decision.patient_id, None)  # the held room is now booked

    def held_rooms(self) -> set[tuple[str, str]]:
        return {(hospital, room) for hospital, room in self.state.held.values()}

    def step(self, now_ms: int, capacity_of: CapacityOf) -> Step:
        state = self.state
        tick = now_ms // self.region.tick_ms
        decided: list[ev.Decision] = []
        waiting: list[Request] = []
        max_wait_ms = self.region.rules.max_wait_ms
        for key, r in sorted(state.pending.items()):
            if r["offered_to"] is not None:
                continue
            request = Request(
                r["patient_id"], r["origin"], r["acuity"], r["isolation"], r["requested_ms"]
            )
            waited_ms = now_ms - request.requested_ms
            why = unmovable(self.region.rules, request) or (
                f"no hospital accepted within {max_wait_ms / 1000:g} s"
                if waited_ms >= max_wait_ms
                else ""
            )
            if why:
                del state.pending[key]
                decided.append(
                    rev.PatientReferredOut(
                        f"out-{key}",
                        now_ms,
                        tick,
                        request.patient_id,
                        request.origin,
                        waited_s=max(0, waited_ms) / 1000,
                        reason=why,
                    )
                )
            else:
                waiting.append(request)
        if waiting:
            capacity = capacity_of(self.held_rooms())
            for request, to in self.coordinator.offers(
                now_ms, waiting, capacity, self.region.travel_ms
            ):
                state.offers += 1
                key = rev.arriving_id(request.origin, request.patient_id)
                state.pending[key]["offered_to"] = to
                decided.append(
                    rev.TransferOffered(
                        f"offer-{state.offers}-{key}",
                        now_ms,
                        tick,
                        request.patient_id,
                        request.origin,
                        to,
                        acuity=request.acuity,
                        isolation=request.isolation,
                        travel_s=self.region.travel_ms[request.origin, to] / 1000,
                    )
                )
        arrivals = []
        while state.on_road and _time_s(state.on_road[0]) * 1000 <= now_ms:
            road = state.on_road.pop(0)
            arrival = rev.parse_member_event(road["event"])
            assert isinstance(arrival, rev.TransferArrived)
            arrivals.append((road["to"], arrival))
        return Step(decided, arrivals)


def _time_s(road: dict[str, Any]) -> float:
    return json.loads(road["event"])["time"]
