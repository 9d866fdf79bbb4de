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

    @property
    def for_arrival(self) -> bool:
        return self.room_id is None


@dataclass(frozen=True)
class FreeStaff:
    staff_id: str
    role: str
    location: str


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

    def tasks_of(self, role: str) -> list[OpenTask]:
        return [t for t in self.tasks if t.role == role]

    def staff_of(self, role: str) -> list[FreeStaff]:
        return [s for s in self.staff if s.role == role]

    @property
    def roles(self) -> list[str]:
        return sorted({s.role for s in self.staff} | {t.role for t in self.tasks})

    def admissions_due(self) -> int:
        """The spec: referred only when no room is free, so this many must be admitted."""
        return min(len(self.arrivals), len(self.free_rooms))

    def dispatches_due(self, role: str) -> int:
        """The spec: no staff member idle while a task of their role waits."""
        fixed = [t for t in self.tasks_of(role) if not t.for_arrival]
        arriving = len(self.tasks_of(role)) - len(fixed)
        return min(len(fixed) + min(arriving, self.admissions_due()), len(self.staff_of(role)))


@dataclass(frozen=True)
class Solution:
    bookings: dict[str, str]      # patient_id -> room_id, for admitted arrivals
    dispatches: dict[str, str]    # task key -> staff_id


class Infeasible(RuntimeError):
    """The policy found no decision satisfying the hard rules (a bug: there always is one)."""
