"""A hospital of a region: the single hospital's scheduler, unchanged in what it decides for
its own patients, with three additions, all in its own tick:

- a `transfer.offered` is an inbound event; after the tick's own arrivals are decided, the
  offer is accepted into a free room the patient may use (the room is then `reserved` for
  that patient alone, and is no longer free) or declined;
- a transfer's `patient.arrived` is booked into its reserved room as it is applied, before
  the tick's policy is asked: a transferred patient never finds the hospital full;
- its auditor (the single hospital's validator) knows reserved rooms: an accepted room must
  have been free and usable, a declined offer must have found none, and the transferred
  patient goes into the room reserved for them.

The hospital's own `patient.referred` stays its decision; the region turns it into a
`transfer.requested` (`network`), or, in the distributed mode where the coordinator is
another process, the member does it itself (`requests_transfers`).
"""

from __future__ import annotations

from scheduler import events as ev
from scheduler.config import Config
from scheduler.engine import Scheduler, TickResult
from scheduler.hospital import Hospital, Rejected
from scheduler.problem import Solution, TickProblem
from scheduler.region import events as rev
from scheduler.validator import Auditor

RESERVED = "reserved"


class MemberHospital(Hospital):
    def __init__(self, config: Config, lookahead: bool = False):
        super().__init__(config, lookahead=lookahead)
        self.offers: list[rev.TransferOffered] = []  # this tick's, to answer
        self.reserved: dict[str, str] = {}  # arriving patient id -> the room held for them

    def apply(self, event: ev.Event, effects: list[tuple[type[ev.Decision], dict]]) -> None:
        if isinstance(event, rev.TransferOffered):
            self.offers.append(event)
            return
        if isinstance(event, rev.TransferArrived):
            room_id = self.reserved.get(event.patient_id)
            if room_id is None:
                raise Rejected(f"transfer {event.patient_id}: no room was reserved for them")
            super().apply(event, effects)
            self._admit_reserved(event.patient_id, room_id, effects)
            return
        super().apply(event, effects)

    def _admit_reserved(self, patient_id: str, room_id: str, effects: list) -> None:
        del self.reserved[patient_id]
        patient = self.patients[patient_id]
        self.arrivals.remove(patient)
        room = self.rooms[room_id]
        room.status, room.patient_id = "booked", patient_id
        patient.room_id = room_id
        effects.append((ev.PatientAdmitted, {"patient_id": patient_id, "room_id": room_id}))
        self._new_task("escort_in", patient_id, room_id, patient.arrived_ms)

    def has_choices(self) -> bool:
        return bool(self.offers) or super().has_choices()

    def decide(
        self,
        solution: Solution,
        effects: list[tuple[type[ev.Decision], dict]],
        now_ms: int = 0,
        problem: TickProblem | None = None,
    ) -> list[tuple[type[ev.Decision], dict]]:
        decisions = super().decide(solution, effects, now_ms, problem)
        for offer in self.offers:
            decisions.append(self._answer(offer))
        self.offers = []
        return decisions

    def usable_free_rooms(self, isolation: bool) -> list[str]:
        """The free rooms a patient may use, those that isolate last for one who need not."""
        free = [r.room_id for r in self.rooms.values() if r.status == "free"]
        if isolation:
            return [r for r in free if r in self.isolation_rooms]
        plain = [r for r in free if r not in self.isolation_rooms]
        if self.reserve_isolation_rooms:
            return plain
        return plain + [r for r in free if r in self.isolation_rooms]

    def _answer(self, offer: rev.TransferOffered) -> tuple[type[ev.Decision], dict]:
        about = {"patient_id": offer.patient_id, "origin": offer.origin, "to": offer.to}
        rooms = self.usable_free_rooms(offer.isolation)
        if not rooms:
            needs = "an isolation room" if offer.isolation else "a room"
            return rev.TransferDeclined, {**about, "reason": f"no free {needs} left"}
        room = self.rooms[rooms[0]]
        arriving = rev.arriving_id(offer.origin, offer.patient_id)
        room.status, room.patient_id = RESERVED, arriving
        self.reserved[arriving] = room.room_id
        reason = f"{room.room_id} held until the patient arrives ({offer.travel_s / 60:g} min)"
        return rev.TransferAccepted, {**about, "room_id": room.room_id, "reason": reason}

    def free_counts(self) -> tuple[int, int, int]:
        """(rooms free for a patient without isolation, isolation rooms free, rooms not free
        now but expected soon: dirty or being cleaned)."""
        free_plain = len(self.usable_free_rooms(False))
        free_isolation = sum(1 for r in self.isolation_rooms if self.rooms[r].status == "free")
        freeing = sum(1 for r in self.rooms.values() if r.status in ("dirty", "cleaning"))
        return free_plain, free_isolation, freeing


class MemberAuditor(Auditor):
    """The single hospital's auditor, with the transfer rules of a member hospital."""

    def __init__(self, config: Config):
        super().__init__(config)
        self.reservations: dict[str, str] = {}  # arriving patient -> room
        self.transfers_in: dict[str, str] = {}  # this tick's: arriving patient -> their room

    def check_tick(self, tick: int, inbound: list[ev.Event], decisions: list[ev.Decision]) -> None:
        own_inbound = [e for e in inbound if not isinstance(e, rev.TransferOffered)]
        transfers_in = self.transfers_in = {}
        for event in own_inbound:
            if isinstance(event, rev.TransferArrived):
                room_id = self.reservations.pop(event.patient_id, None)
                if room_id is None:
                    self.fail(tick, f"{event.patient_id} arrived by transfer with no room held")
                if self.occupant.get(room_id) != event.patient_id:
                    self.fail(tick, f"room {room_id} was not held for {event.patient_id}")
                self._room(room_id, "free")  # theirs: the admission below takes it
                self.occupant[room_id] = None
                transfers_in[event.patient_id] = room_id
        super().check_tick(
            tick,
            own_inbound,
            [d for d in decisions if not isinstance(d, tuple(rev.DECISIONS.values()))],
        )
        admitted = {d.patient_id: d.room_id for d in decisions if isinstance(d, ev.PatientAdmitted)}
        for patient_id, room_id in transfers_in.items():
            if admitted.get(patient_id) != room_id:
                self.fail(tick, f"{patient_id} arrived by transfer and was not put in {room_id}")
        offered = {(e.origin, e.patient_id) for e in inbound if isinstance(e, rev.TransferOffered)}
        for decision in decisions:
            if isinstance(decision, (rev.TransferAccepted, rev.TransferDeclined)):
                if (decision.origin, decision.patient_id) not in offered:
                    self.fail(tick, f"{decision.TYPE} for {decision.patient_id}, never offered")
                offered.discard((decision.origin, decision.patient_id))
                isolation = next(
                    e.isolation
                    for e in inbound
                    if isinstance(e, rev.TransferOffered)
                    and (e.origin, e.patient_id) == (decision.origin, decision.patient_id)
                )
                self._answer(tick, decision, isolation)
        if offered:
            self.fail(tick, f"offers left unanswered: {sorted(offered)}")

    def _referral(self, tick, patient_id, arrivals, admitted) -> None:
        """A transfer's patient goes into the room held for them, whatever their ESI level:
        the urgency rule compares the tick's own arrivals only."""
        own = {p: room for p, room in admitted.items() if p not in self.transfers_in}
        super()._referral(tick, patient_id, arrivals, own)

    def _usable_free(self, isolation: bool) -> int:
        if isolation:
            return self.free_isolation_rooms
        if self.config.hospital.reserve_isolation_rooms:
            return self.free_rooms - self.free_isolation_rooms
        return self.free_rooms

    def _answer(self, tick: int, decision: ev.Decision, isolation: bool) -> None:
        if isinstance(decision, rev.TransferDeclined):
            if self._usable_free(isolation):
                self.fail(tick, f"declined {decision.patient_id} while a usable room is free")
            return
        assert isinstance(decision, rev.TransferAccepted)
        room_id = decision.room_id
        if self.rooms.get(room_id) != "free":
            self.fail(tick, f"reserved room {room_id}, which is {self.rooms.get(room_id)}")
        in_isolation_room = room_id in self.isolation_rooms
        if isolation and not in_isolation_room:
            self.fail(tick, f"reserved {room_id}, no isolation room, for an isolation patient")
        if not isolation and in_isolation_room and self.config.hospital.reserve_isolation_rooms:
            self.fail(tick, f"reserved isolation room {room_id} for a patient without isolation")
        arriving = rev.arriving_id(decision.origin, decision.patient_id)
        self._room(room_id, RESERVED)
        self.occupant[room_id] = arriving
        self.reservations[arriving] = room_id


class MemberScheduler(Scheduler):
    """The tick scheduler of a member hospital (`Scheduler`, with `MemberHospital`). With
    `requests_transfers` (the distributed mode), a patient it cannot take is decided as a
    `transfer.requested` from `hospital_id`, for the coordinator."""

    hospital: MemberHospital

    def __init__(self, config: Config, hospital_id: str = "", requests_transfers: bool = False):
        super().__init__(config)
        self.hospital = MemberHospital(config, lookahead=self.hospital.outlook is not None)
        self.auditor = MemberAuditor(config) if config.scheduler.validate else None
        self.hospital_id = hospital_id
        self.requests_transfers = requests_transfers

    def tick(self, tick: int, inbound: list[ev.Event]) -> TickResult:
        result = super().tick(tick, inbound)
        if self.requests_transfers:
            arrived = arrivals_of(result)
            result.decisions = [
                transfer_request(d, arrived[d.patient_id], self.hospital_id)
                if isinstance(d, ev.PatientReferred)
                else d
                for d in result.decisions
            ]
        return result


def arrivals_of(result: TickResult) -> dict[str, ev.PatientArrived | ev.PatientUpdated]:
    """The tick's arrivals by patient, as last updated in the tick: a patient it refers
    arrived in it."""
    arrived: dict[str, ev.PatientArrived | ev.PatientUpdated] = {}
    for event in result.consumed:
        if isinstance(event, ev.PatientArrived | ev.PatientUpdated):
            arrived[event.patient_id] = event
    return arrived


def transfer_request(
    referral: ev.PatientReferred,
    patient: ev.PatientArrived | ev.PatientUpdated,
    hospital_id: str,
) -> rev.TransferRequested:
    """A hospital's referral, as its request to be placed elsewhere in the region."""
    return rev.TransferRequested(
        referral.event_id,
        referral.time_ms,
        referral.tick,
        referral.patient_id,
        hospital_id,
        acuity=patient.acuity,
        isolation=patient.isolation,
    )
