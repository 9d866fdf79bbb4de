"""The region's tick: every hospital with something to apply decides its own tick, then the
coordinator decides the offers. Pure state and events: what comes in (each hospital's
inbound events of the tick) and what goes out (every decision); no simulation, no clock.
The simulation and the replay both drive this one class.

In a tick, in the region's order of hospitals, each hospital applies its inbound events and
the offers the coordinator made in the tick before, and decides: its own patients first,
then each offer (accepted into a reserved room, or declined). A patient it cannot take
becomes a `transfer.requested` (with the `none` coordinator: a final `patient.referred`, as
a single hospital). Then the coordinator refers out the requests past `max_wait_s` (or
that the rules forbid moving) and offers the others it can place; its offers reach their
hospital in the next tick. An accepted patient's `patient.arrived` comes from outside
(the ambulance: the simulation, or the record) after the travel time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from scheduler import events as ev
from scheduler.engine import TickResult
from scheduler.region import events as rev
from scheduler.region.config import RegionConfig, TransferRules
from scheduler.region.coordinator import Capacity, Coordinator, Request
from scheduler.region.member import MemberScheduler, arrivals_of, transfer_request


@dataclass
class Pending:
    request: Request
    offered_to: str | None = None  # awaiting that hospital's answer


@dataclass
class RegionTick:
    tick: int
    time_ms: int
    results: dict[str, TickResult]  # the hospitals that ticked
    decisions: list[tuple[str, ev.Decision]]  # (hospital, decision); the coordinator's: ""
    # this tick's acceptances, with their requests: the patients to drive over
    accepted: list[tuple[rev.TransferAccepted, Request]] = field(default_factory=list)


COORDINATOR = ""  # the `hospital` of the coordinator's decisions


def unmovable(rules: TransferRules, request: Request) -> str:
    """Why the region's rules forbid moving this patient ("" if they do not)."""
    if request.acuity <= 2 and not rules.move_urgent:
        return f"ESI {request.acuity}: not moved (transfers.move_urgent = false)"
    if request.isolation and not rules.move_isolation:
        return "needs isolation: not moved (transfers.move_isolation = false)"
    return ""


class Network:
    def __init__(self, region: RegionConfig, coordinator: Coordinator):
        self.region = region
        self.coordinator = coordinator
        self.transfers = coordinator.name != "none"
        self.members = {m.hospital_id: MemberScheduler(m.config) for m in region.hospitals}
        self.tick_ms = region.tick_ms
        self.pending: dict[tuple[str, str], Pending] = {}
        self.outbox: dict[str, list[rev.TransferOffered]] = {}  # offers for the next tick
        self.last_tick = -1
        # each hospital's free rooms as its last tick left them: they change only when it ticks
        self._capacity: dict[str, Capacity] = {}

    def busy(self) -> bool:
        """Whether the next tick must be run even with nothing coming in."""
        return bool(self.pending)

    def tick(self, tick: int, inbound: Mapping[str, list[ev.Event]]) -> RegionTick:
        if tick <= self.last_tick:
            raise ValueError(f"tick {tick} comes after tick {self.last_tick}")
        self.last_tick = tick
        now_ms = tick * self.tick_ms
        out = RegionTick(tick, now_ms, {}, [])
        for hospital_id, scheduler in self.members.items():
            batch = list(inbound.get(hospital_id, ())) + self.outbox.pop(hospital_id, [])
            if batch:
                self._capacity.pop(hospital_id, None)
                result = scheduler.tick(tick, batch)
                out.results[hospital_id] = result
                self._hospital_decisions(hospital_id, result, out)
        self._coordinate(tick, now_ms, out)
        return out

    def _hospital_decisions(self, hospital_id: str, result: TickResult, out: RegionTick) -> None:
        arrived = arrivals_of(result)
        for decision in result.decisions:
            if isinstance(decision, ev.PatientReferred) and self.transfers:
                decision = transfer_request(decision, arrived[decision.patient_id], hospital_id)
                request = Request(
                    decision.patient_id,
                    hospital_id,
                    decision.acuity,
                    decision.isolation,
                    decision.time_ms,
                )
                self.pending[request.key] = Pending(request)
            elif isinstance(decision, rev.TransferAccepted):
                pending = self.pending.pop((decision.origin, decision.patient_id))
                out.accepted.append((decision, pending.request))
            elif isinstance(decision, rev.TransferDeclined):
                self.pending[decision.origin, decision.patient_id].offered_to = None
            out.decisions.append((hospital_id, decision))

    def movable(self, request: Request) -> str:
        """Why the rules forbid moving this patient ("" if they do not)."""
        return unmovable(self.region.rules, request)

    def capacity(self) -> dict[str, Capacity]:
        """Every hospital's free rooms, in the region's order."""
        return {h: self._capacity_of(h) for h in self.members}

    def _capacity_of(self, hospital_id: str) -> Capacity:
        known = self._capacity.get(hospital_id)
        if known is None:
            hospital = self.members[hospital_id].hospital
            free_plain, free_isolation, freeing = hospital.free_counts()
            shared = not hospital.reserve_isolation_rooms
            plain_only = free_plain - (free_isolation if shared else 0)
            known = Capacity(len(hospital.rooms), plain_only, free_isolation, shared, freeing)
            self._capacity[hospital_id] = known
        return known

    def _coordinate(self, tick: int, now_ms: int, out: RegionTick) -> None:
        decided: list[tuple[type[ev.Decision], dict]] = []
        waiting = []
        max_wait_ms = self.region.rules.max_wait_ms
        for key, pending in list(self.pending.items()):
            if pending.offered_to is not None:
                continue
            request = pending.request
            waited_ms = now_ms - request.requested_ms
            why = self.movable(request) or (
                f"no hospital accepted within {max_wait_ms / 1000:g} s"
                if waited_ms >= max_wait_ms
                else ""
            )
            if why:
                del self.pending[key]
                fields = {"patient_id": request.patient_id, "origin": request.origin}
                decided.append(
                    (
                        rev.PatientReferredOut,
                        {**fields, "waited_s": waited_ms / 1000, "reason": why},
                    )
                )
            else:
                waiting.append(request)
        if waiting:
            offers = self.coordinator.offers(
                now_ms, waiting, self.capacity(), self.region.travel_ms
            )
            for request, to in offers:
                self.pending[request.key].offered_to = to
                travel_ms = self.region.travel_ms[request.origin, to]
                decided.append(
                    (
                        rev.TransferOffered,
                        {
                            "patient_id": request.patient_id,
                            "origin": request.origin,
                            "to": to,
                            "acuity": request.acuity,
                            "isolation": request.isolation,
                            "travel_s": travel_ms / 1000,
                        },
                    )
                )
        for n, (cls, fields) in enumerate(decided, start=1):
            decision = cls(event_id=f"region-{tick}-{n}", time_ms=now_ms, tick=tick, **fields)
            if isinstance(decision, rev.TransferOffered):
                self.outbox.setdefault(decision.to, []).append(decision)
            out.decisions.append((COORDINATOR, decision))
