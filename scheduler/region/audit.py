"""The region's invariants, checked after every tick from the events alone (each hospital's
own invariants, reserved rooms included, are its `MemberAuditor`'s):

- a patient a hospital cannot take is requested once, and ends in exactly one place:
  admitted at one hospital (theirs, or the one that accepted them) or referred out;
- a patient is transferred at most once: one who came by transfer is never requested;
- an offer goes to another hospital, is answered by that hospital in the next tick, and
  only a request still pending is offered;
- an accepted patient arrives at the hospital that accepted them, and nowhere else;
- ESI 1-2 and isolation patients are offered only as the transfer rules allow;
- a request is referred out only past `max_wait_s`, or when the rules forbid the move.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from scheduler import events as ev
from scheduler.region import events as rev
from scheduler.region.config import RegionConfig
from scheduler.region.network import RegionTick


class RegionViolation(AssertionError):
    """The region's decisions broke one of its invariants."""


@dataclass
class RegionAuditor:
    region: RegionConfig
    transfers: bool = True
    requested: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)  # acuity, ms
    isolation: set[tuple[str, str]] = field(default_factory=set)
    offered: dict[tuple[str, str], tuple[str, int]] = field(default_factory=dict)  # to, tick
    accepted: dict[tuple[str, str], str] = field(default_factory=dict)  # -> to, in flight
    ended: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            ("admitted", "admitted_by_transfer", "referred_out"), 0
        )
    )

    def fail(self, tick: int, message: str) -> None:
        raise RegionViolation(f"region tick {tick}: {message}")

    def check(self, out: RegionTick) -> None:
        tick = out.tick
        for hospital_id, result in out.results.items():
            for event in result.consumed:  # a hospital rejects an arrival it holds no room for
                if isinstance(event, rev.TransferArrived):
                    self._arrival(tick, hospital_id, event)
        unanswered = {k for k, (_, t) in self.offered.items() if t < tick}
        for hospital_id, decision in out.decisions:
            if isinstance(decision, ev.PatientAdmitted):
                by_transfer = "/" in decision.patient_id
                self.ended["admitted_by_transfer" if by_transfer else "admitted"] += 1
            elif isinstance(decision, ev.PatientReferred):
                if self.transfers:
                    self.fail(tick, f"{decision.patient_id} referred, not requested")
                self.ended["referred_out"] += 1
            elif isinstance(decision, rev.TransferRequested):
                self._requested(tick, hospital_id, decision)
            elif isinstance(decision, rev.TransferOffered):
                self._offered(tick, decision)
            elif isinstance(decision, (rev.TransferAccepted, rev.TransferDeclined)):
                key = (decision.origin, decision.patient_id)
                if self.offered.get(key, ("", 0))[0] != hospital_id or hospital_id != decision.to:
                    self.fail(tick, f"{decision.TYPE} of {key} by {hospital_id}, not offered it")
                del self.offered[key]
                unanswered.discard(key)
                if isinstance(decision, rev.TransferAccepted):
                    self.accepted[key] = hospital_id
                    del self.requested[key]
                    self.isolation.discard(key)
            elif isinstance(decision, rev.PatientReferredOut):
                self._referred_out(tick, decision)
        if unanswered:
            self.fail(tick, f"offers not answered in the tick after: {sorted(unanswered)}")

    def _arrival(self, tick: int, hospital_id: str, event: rev.TransferArrived) -> None:
        origin, _, patient_id = event.patient_id.partition("/")
        key = (origin, patient_id)
        if origin != event.transferred_from or self.accepted.get(key) != hospital_id:
            self.fail(tick, f"{event.patient_id} arrived at {hospital_id}, which did not accept")
        del self.accepted[key]

    def _requested(self, tick: int, hospital_id: str, decision: rev.TransferRequested) -> None:
        key = (decision.origin, decision.patient_id)
        if not self.transfers:
            self.fail(tick, "a transfer requested with no coordinator")
        if decision.origin != hospital_id:
            self.fail(tick, f"{hospital_id} requested a transfer from {decision.origin}")
        if "/" in decision.patient_id:
            self.fail(tick, f"{decision.patient_id} came by transfer: not moved twice")
        if key in self.requested:
            self.fail(tick, f"{key} requested twice")
        self.requested[key] = (decision.acuity, decision.time_ms)
        if decision.isolation:
            self.isolation.add(key)

    def _offered(self, tick: int, decision: rev.TransferOffered) -> None:
        key = (decision.origin, decision.patient_id)
        rules = self.region.rules
        if key not in self.requested or key in self.offered:
            self.fail(tick, f"offered {key}, which is not a pending request")
        if decision.to == decision.origin or decision.to not in self.region.ids:
            self.fail(tick, f"offered {key} to {decision.to!r}")
        acuity = self.requested[key][0]
        if acuity <= 2 and not rules.move_urgent:
            self.fail(tick, f"offered {key}, ESI {acuity}, against transfers.move_urgent")
        if key in self.isolation and not rules.move_isolation:
            self.fail(tick, f"offered {key}, in isolation, against transfers.move_isolation")
        if decision.isolation != (key in self.isolation):
            self.fail(tick, f"offered {key} with the wrong isolation")
        self.offered[key] = (decision.to, tick)

    def _referred_out(self, tick: int, decision: rev.PatientReferredOut) -> None:
        key = (decision.origin, decision.patient_id)
        if key not in self.requested or key in self.offered:
            self.fail(tick, f"referred out {key}, which is not a pending request")
        acuity, requested_ms = self.requested.pop(key)
        isolation = key in self.isolation
        self.isolation.discard(key)
        rules = self.region.rules
        forbidden = (acuity <= 2 and not rules.move_urgent) or (
            isolation and not rules.move_isolation
        )
        if not forbidden and decision.time_ms - requested_ms < rules.max_wait_ms:
            self.fail(tick, f"referred out {key} before max_wait_s")
        self.ended["referred_out"] += 1

    def in_flight(self) -> dict[str, int]:
        """The transfers not ended at the end of a run: requests pending, patients on the way."""
        return {"requests_pending": len(self.requested), "on_the_way": len(self.accepted)}
