"""One tick's decision problem (the policies' input) and its solution (their output).

Both are plain immutable data: the policies never see the hospital's state, so they can be
tested, compared and checked in isolation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from scheduler.events import RESERVED_FOR


@dataclass(frozen=True)
class Arrival:
    patient_id: str
    arrived_ms: int
    acuity: int = 3  # ESI: 1 the most urgent, 5 the least
    isolation: bool = False  # needs a room able to isolate


@dataclass(frozen=True)
class OpenTask:
    """A task waiting for a staff member. An escort in for a patient who arrived this tick
    exists only if the patient is admitted; its room is the one the booking chooses."""

    key: str
    kind: str
    role: str
    room_id: str | None
    patient_id: str
    created_ms: int
    acuity: int = 3  # the patient's

    @property
    def for_arrival(self) -> bool:
        return self.room_id is None


@dataclass(frozen=True)
class FreeStaff:
    staff_id: str
    role: str
    location: str

    @property
    def grade(self) -> str:
        """porter, nurse, doctor or cleaner: the staff id's first word."""
        return self.staff_id.rsplit("-", 1)[0]


@dataclass(frozen=True)
class FutureStaff:
    """A staff member busy now (or off duty) whom the forecast expects free within the
    horizon: at `free_ms`, at `location`."""

    staff_id: str
    role: str
    location: str
    free_ms: int

    @property
    def grade(self) -> str:
        return self.staff_id.rsplit("-", 1)[0]


@dataclass(frozen=True)
class ExpectedTask:
    """A task the forecast expects to be created at `due_ms`, with `probability`: the next
    step of a task in progress (`certain`, its room known), or of an arrival expected then
    (`room_id` None, the time and the kind of patient a rate's expectation). `about` says
    what it is, in words, for the reasons."""

    key: str
    kind: str
    role: str
    room_id: str | None
    acuity: int
    due_ms: int
    probability: float
    about: str
    certain: bool = True  # a next step of a task in progress; an arrival's is not


@dataclass(frozen=True)
class RoomReservation:
    """Free rooms to keep for a class of patients (`urgent`: ESI 1-2; `isolation`): as many
    as the `expected` arrivals of that class before another room it may use comes free
    (`window_ms` from now), rounded."""

    reserved_for: str
    rooms: int
    expected: float
    window_ms: int


@dataclass(frozen=True)
class Lookahead:
    """What the forecast adds to a tick's problem (`scheduler.forecast`), and the holds: who
    and what is held now (until when), and who and what may be held (nothing whose last
    hold ran out before it was used)."""

    horizon_ms: Mapping[str, int]  # role -> how far its plan looks: a task's length
    max_hold_ms: int
    tick_ms: int
    future_staff: tuple[FutureStaff, ...] = ()
    expected_tasks: tuple[ExpectedTask, ...] = ()
    reservations: tuple[RoomReservation, ...] = ()
    held_staff: Mapping[str, int] = field(default_factory=dict)  # staff id -> until ms
    held_rooms: Mapping[str, tuple[str, int]] = field(default_factory=dict)  # -> class, until
    may_hold_staff: frozenset[str] = frozenset()
    may_hold_rooms: frozenset[str] = frozenset()
    # Walking in ms from a place to where a task of a kind starts in a room (None: a room
    # not known yet, reached from the entrance).
    walking: Callable[[str, str, str | None], int] = lambda location, kind, room: 0
    # The expected length in ms of a task from a place: its walk and its mean work.
    task_ms: Callable[[str, str, str | None, int], int] = lambda location, kind, room, acuity: 0


URGENT, ISOLATION = RESERVED_FOR  # a room held for ESI 1-2 patients, for isolation


def in_class(arrival: Arrival, reserved_for: str) -> bool:
    """Whether a room held for `reserved_for` is kept for this arrival."""
    return arrival.acuity <= 2 if reserved_for == URGENT else arrival.isolation


@dataclass(frozen=True)
class TickProblem:
    now_ms: int
    arrivals: tuple[Arrival, ...]
    free_rooms: tuple[str, ...]
    tasks: tuple[OpenTask, ...]
    staff: tuple[FreeStaff, ...]
    # Walking, in ms: from each free staff member to the start of each task of their role,
    # and from the entrance to each free room (the escort of a new arrival).
    walking_ms: Mapping[tuple[str, str], int] = field(default_factory=dict)
    room_walking_ms: Mapping[str, int] = field(default_factory=dict)

    # The clinical rules (off by default): rooms able to isolate, kept for isolation patients
    # or not; visits to ESI 1-2 patients by doctors only; target waits (kind, urgent) -> ms.
    isolation_rooms: frozenset[str] = frozenset()
    reserve_isolation_rooms: bool = False
    skills: bool = False
    sla_ms: Mapping[tuple[str, bool], int] = field(default_factory=dict)
    # Looking ahead (`[scheduler] lookahead_s`): None for the myopic scheduler.
    lookahead: Lookahead | None = None

    def tasks_of(self, role: str) -> list[OpenTask]:
        return [t for t in self.tasks if t.role == role]

    def staff_of(self, role: str) -> list[FreeStaff]:
        return [s for s in self.staff if s.role == role]

    @property
    def roles(self) -> list[str]:
        return sorted({s.role for s in self.staff} | {t.role for t in self.tasks})

    def may_book(self, arrival: Arrival, room_id: str) -> bool:
        """Isolation: a patient who needs it goes only into a room able to isolate; with
        `reserve_isolation_rooms`, only such patients go there."""
        if arrival.isolation:
            return room_id in self.isolation_rooms
        return not (self.reserve_isolation_rooms and room_id in self.isolation_rooms)

    def may_do(self, task: OpenTask, staff: FreeStaff) -> bool:
        """The right role, and with `skills` a doctor for a visit to an ESI 1-2 patient."""
        if task.role != staff.role:
            return False
        return not (
            self.skills and task.kind == "visit" and task.acuity <= 2 and staff.grade != "doctor"
        )

    def admitted(self) -> tuple[Arrival, ...]:
        """The hard rules' admissions: arrivals in order of urgency (ESI), then of arrival,
        each admitted if a free room it may use can still be found for it and for everyone
        admitted before it. So a patient is referred only when no room it may use is free,
        and never for a less urgent one. Looking ahead, rooms kept for a class of patients
        come in that order as phantom arrivals (`rules.hold_rooms`). Cached: it is asked
        several times a tick."""
        if not self.arrivals:
            return ()
        if self.lookahead is not None and self.lookahead.reservations:
            return self.room_plan()[0]
        cached = self.__dict__.get("_admitted")
        if cached is None:
            from scheduler.matching import greedy_by_priority

            order = sorted(
                range(len(self.arrivals)),
                key=lambda n: (self.arrivals[n].acuity, self.arrivals[n].arrived_ms, n),
            )
            ranked = [self.arrivals[n] for n in order]
            if not self.isolation_rooms and all(not a.isolation for a in ranked):
                chosen = ranked[: len(self.free_rooms)]
            else:
                chosen = greedy_by_priority(ranked, self.free_rooms, self.may_book)
            keep = {a.patient_id for a in chosen}
            cached = tuple(a for a in self.arrivals if a.patient_id in keep)
            object.__setattr__(self, "_admitted", cached)
        return cached

    def room_plan(self) -> tuple[tuple[Arrival, ...], tuple[Arrival, ...]]:
        """Looking ahead: the admitted arrivals and the phantoms that stand for the rooms
        kept (`rules.hold_rooms`), in this order of priority: the ESI 1-2 arrivals, the
        rooms kept for ESI 1-2, the ESI 3-5 arrivals who need isolation (they are among
        those expected), the isolation rooms kept, the other arrivals; by ESI level, then
        arrival, within each. A phantom may take a free room that its class may use and
        that may be held (or is held for it already). Cached."""
        cached = self.__dict__.get("_room_plan")
        if cached is not None:
            return cached
        from scheduler.matching import greedy_by_priority

        lookahead = self.lookahead
        assert lookahead is not None
        order = sorted(
            range(len(self.arrivals)),
            key=lambda n: (self.arrivals[n].acuity, self.arrivals[n].arrived_ms, n),
        )
        ranked = [self.arrivals[n] for n in order]
        urgent = [a for a in ranked if a.acuity <= 2]
        isolated = [a for a in ranked if a.acuity > 2 and a.isolation]
        others = [a for a in ranked if a.acuity > 2 and not a.isolation]
        phantoms: dict[str, list[Arrival]] = {URGENT: [], ISOLATION: []}
        for reservation in lookahead.reservations:
            count = reservation.rooms
            if reservation.reserved_for == ISOLATION:
                count -= len(isolated)  # this tick's isolation patients are among those expected
            phantoms[reservation.reserved_for] += [
                Arrival(f"kept:{reservation.reserved_for}:{n}", self.now_ms, 3, False)
                for n in range(max(0, count))
            ]
        order_of_rooms = [
            *urgent,
            *phantoms[URGENT],
            *isolated,
            *phantoms[ISOLATION],
            *others,
        ]
        all_phantoms = phantoms[URGENT] + phantoms[ISOLATION]
        kept_for = {a.patient_id: a.patient_id.split(":")[1] for a in all_phantoms}

        def fits(arrival: Arrival, room_id: str) -> bool:
            reserved_for = kept_for.get(arrival.patient_id)
            if reserved_for is None:
                return self.may_book(arrival, room_id)
            return self.may_keep(room_id, reserved_for)

        chosen = greedy_by_priority(order_of_rooms, self.free_rooms, fits)
        keep = {a.patient_id for a in chosen}
        plan = (
            tuple(a for a in self.arrivals if a.patient_id in keep),
            tuple(a for a in all_phantoms if a.patient_id in keep),
        )
        object.__setattr__(self, "_room_plan", plan)
        return plan

    def may_keep(self, room_id: str, reserved_for: str) -> bool:
        """Whether a free room may be held for a class: one its patients may use, that may
        be held (its last hold did not run out unused), not held for another class."""
        lookahead = self.lookahead
        if lookahead is None or room_id not in lookahead.may_hold_rooms:
            return False
        held = lookahead.held_rooms.get(room_id)
        if held is not None and held[0] != reserved_for:
            return False
        if reserved_for == ISOLATION:
            return room_id in self.isolation_rooms
        return not (self.reserve_isolation_rooms and room_id in self.isolation_rooms)

    def admissions_due(self) -> int:
        """The spec: referred only when no room it may use is free: this many are admitted."""
        return len(self.admitted())

    def dispatches_due(self, role: str) -> int:
        """The spec: no staff member idle while a task they may do waits. Taken as: as many
        tasks of the role dispatched as its free staff can take between them."""
        admitted = {a.patient_id for a in self.admitted()}
        tasks = [t for t in self.tasks_of(role) if not t.for_arrival or t.patient_id in admitted]
        staff = self.staff_of(role)
        if not self.skills or role != "medical":
            return min(len(tasks), len(staff))
        from scheduler.matching import maximum_matching_size

        return maximum_matching_size(tasks, staff, self.may_do)


@dataclass(frozen=True)
class Hold:
    """A staff member or a room held back this tick for what the forecast expects: until
    `until_ms`, for `reserved_for` (a room) and `reason`, in words."""

    until_ms: int
    reason: str
    reserved_for: str = ""


@dataclass(frozen=True)
class Solution:
    bookings: dict[str, str]  # patient_id -> room_id, for admitted arrivals
    dispatches: dict[str, str]  # task key -> staff_id
    # New holds (lookahead only): staff id or room id -> its hold.
    staff_holds: dict[str, Hold] = field(default_factory=dict)
    room_holds: dict[str, Hold] = field(default_factory=dict)
    # Looking ahead, what the forecast made of a dispatch (task key -> words), for reasons.
    notes: dict[str, str] = field(default_factory=dict)


class Infeasible(RuntimeError):
    """The policy found no decision satisfying the hard rules (a bug: there always is one)."""
