"""One tick's decision problem (the policies' input) and its solution (their output).

Both are plain immutable data: the policies never see the hospital's state, so they can be
tested, compared and checked in isolation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


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
        and never for a less urgent one. Cached: it is asked several times a tick."""
        if not self.arrivals:
            return ()
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
class Solution:
    bookings: dict[str, str]  # patient_id -> room_id, for admitted arrivals
    dispatches: dict[str, str]  # task key -> staff_id


class Infeasible(RuntimeError):
    """The policy found no decision satisfying the hard rules (a bug: there always is one)."""
