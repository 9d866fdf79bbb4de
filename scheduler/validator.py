"""A solver-independent check of the scheduler's decisions against the invariants.

The `Auditor` keeps its own, deliberately simple, model of the hospital, built only from the
event stream: the inbound events each tick consumed and the decisions it made. It shares no
code with the scheduler's state, so a bug there cannot hide itself here. It is cheap enough
to run on every tick of a live run.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import NoReturn

from scheduler import events as ev
from scheduler.config import Config
from scheduler.hospital import staff_roster
from scheduler.layout import NEXT_KIND, ROLE_OF_KIND, step
from scheduler.shifts import Roster


def _grade(staff_id: str) -> str:
    return staff_id.rsplit("-", 1)[0]


class InvariantViolation(AssertionError):
    """The decisions broke one of the hospital's invariants."""


@dataclass
class _Task:
    kind: str
    patient_id: str
    room_id: str
    staff_id: str | None = None
    done: bool = False


@dataclass
class Auditor:
    config: Config
    rooms: dict[str, str] = field(default_factory=dict)          # room -> free|taken|dirty|cleaning
    occupant: dict[str, str | None] = field(default_factory=dict)
    role: dict[str, str] = field(default_factory=dict)
    busy: dict[str, str | None] = field(default_factory=dict)    # staff -> task id
    tasks: dict[str, _Task] = field(default_factory=dict)
    # patient -> stage, for the patients in the building; those who left are only counted
    # and remembered compactly, so that a second arrival of one is still caught
    patients: dict[str, str] = field(default_factory=dict)
    left: ev.IdSet = field(default_factory=ev.IdSet)
    referred: int = 0
    discharged: int = 0
    task_ids: ev.IdSet = field(default_factory=ev.IdSet)         # every task ever decided
    arrived: int = 0
    last_tick: int = -1
    # Kept as the tables change, so that the per-tick checks need no scan: rooms free,
    # staff idle and tasks waiting per role.
    free_rooms: int = 0
    # Idle staff on duty by grade (porter, nurse, doctor, cleaner) and waiting tasks by who
    # may do them (porter, cleaner, visit, urgent_visit: ESI 1-2 with the skills rule).
    idle: Counter = field(default_factory=Counter)
    waiting: Counter = field(default_factory=Counter)
    free_isolation_rooms: int = 0
    # The clinical rules: patients' acuity and isolation while in the building, rooms able to
    # isolate, rooms owed a terminal clean, who is on duty.
    acuity: dict[str, int] = field(default_factory=dict)
    isolated: set[str] = field(default_factory=set)
    isolation_rooms: frozenset[str] = frozenset()
    terminal: set[str] = field(default_factory=set)
    on_duty: dict[str, bool] = field(default_factory=dict)

    def __post_init__(self) -> None:
        floors, per_floor = self.config.hospital.floors, self.config.hospital.rooms_per_floor
        for floor in floors:
            for number in range(1, per_floor + 1):
                self.rooms[f"{floor}{number}"] = "free"
                self.occupant[f"{floor}{number}"] = None
        self.free_rooms = len(self.rooms)
        self.isolation_rooms = frozenset(self.config.hospital.isolation_rooms)
        self.free_isolation_rooms = len(self.isolation_rooms)
        staff_ids = {staff_id for staff_id, _ in staff_roster(self.config)}
        self.roster = Roster(self.config.shifts.roster, self.config.shifts.cycle_s, staff_ids)
        for staff_id, role in staff_roster(self.config):
            self.role[staff_id] = role
            self.busy[staff_id] = None
            self.on_duty[staff_id] = True
            self.idle[_grade(staff_id)] += 1

    def _room(self, room_id: str, status: str) -> None:
        change = (status == "free") - (self.rooms[room_id] == "free")
        self.free_rooms += change
        if room_id in self.isolation_rooms:
            self.free_isolation_rooms += change
        self.rooms[room_id] = status

    def _may_use(self, patient_id: str, room_id: str) -> bool:
        if patient_id in self.isolated:
            return room_id in self.isolation_rooms
        return not (self.config.hospital.reserve_isolation_rooms
                    and room_id in self.isolation_rooms)

    def _waits_for(self, task: _Task) -> str:
        """Who may do a waiting task: the key of `waiting`."""
        if task.kind == "visit":
            urgent = self.config.rules.skills and self.acuity.get(task.patient_id, 3) <= 2
            return "urgent_visit" if urgent else "visit"
        return ROLE_OF_KIND[task.kind]

    def _set_idle(self, staff_id: str, change: int) -> None:
        if self.on_duty[staff_id]:
            self.idle[_grade(staff_id)] += change

    def fail(self, tick: int, message: str) -> NoReturn:
        raise InvariantViolation(f"tick {tick}: {message}")

    def check_tick(self, tick: int, inbound: list[ev.Event], decisions: list[ev.Decision]) -> None:
        """Check one tick: the inbound events it consumed, then the decisions it made."""
        if tick <= self.last_tick:
            self.fail(tick, f"ticks out of order (after tick {self.last_tick})")
        self.last_tick = tick
        undecided: set[str] = set()
        expected_tasks: Counter[tuple[str, str]] = Counter()
        discharges: set[str] = set()
        cleaned: set[str] = set()
        arrivals: dict[str, ev.PatientArrived] = {}
        for event in inbound:
            if isinstance(event, ev.PatientArrived):
                if event.patient_id in self.patients or event.patient_id in self.left:
                    self.fail(tick, f"patient {event.patient_id} arrived twice")
                self.patients[event.patient_id] = "arrived"
                self.acuity[event.patient_id] = event.acuity
                if event.isolation:
                    self.isolated.add(event.patient_id)
                self.arrived += 1
                undecided.add(event.patient_id)
                arrivals[event.patient_id] = event
            else:
                self._complete(tick, event, expected_tasks, discharges, cleaned)
        now_ms = decisions[0].time_ms if decisions else None
        referred: list[str] = []
        admitted: dict[str, str] = {}
        for decision in decisions:
            if decision.tick != tick:
                self.fail(tick, f"decision {decision.event_id} carries tick {decision.tick}")
            if isinstance(decision, ev.PatientAdmitted):
                self._admit(tick, decision, undecided, expected_tasks)
                admitted[decision.patient_id] = decision.room_id
            elif isinstance(decision, ev.PatientReferred):
                if decision.patient_id not in undecided:
                    self.fail(tick, f"referred {decision.patient_id}, who is not a new arrival")
                undecided.discard(decision.patient_id)
                referred.append(decision.patient_id)
            elif isinstance(decision, (ev.StaffOffDuty, ev.StaffOnDuty)):
                self._duty(tick, decision)
            elif isinstance(decision, (ev.TaskDispatched, ev.TaskQueued)):
                self._task(tick, decision, expected_tasks)
            elif isinstance(decision, ev.PatientDischarged):
                if decision.patient_id not in discharges:
                    self.fail(tick, f"discharged {decision.patient_id} without an escort out")
                discharges.discard(decision.patient_id)
            elif isinstance(decision, ev.RoomAvailable):
                if decision.room_id not in cleaned:
                    self.fail(tick, f"room {decision.room_id} available without a cleaning")
                cleaned.discard(decision.room_id)
        if undecided:
            self.fail(tick, f"arrivals neither admitted nor referred: {sorted(undecided)}")
        missing = +expected_tasks
        if missing:
            self.fail(tick, f"tasks created but not dispatched or queued: {sorted(missing)}")
        if discharges or cleaned:
            self.fail(tick, f"no decision for {sorted(discharges)} {sorted(cleaned)}")
        for patient_id in referred:
            self._referral(tick, patient_id, arrivals, admitted)
        if now_ms is not None:
            for staff_id, on in self.on_duty.items():
                if on != self.roster.on_duty(staff_id, now_ms):
                    self.fail(tick, f"{staff_id} is {'on' if on else 'off'} duty against the "
                                    f"roster")
        self._no_idle_staff(tick)

    def _referral(self, tick: int, patient_id: str, arrivals: dict[str, ev.PatientArrived],
                  admitted: dict[str, str]) -> None:
        """Referred only when no free room this patient may use is left, and never while a
        less urgent (or, equally urgent, later) arrival of the tick took a room it could use."""
        if patient_id in self.isolated:
            free = self.free_isolation_rooms
        elif self.config.hospital.reserve_isolation_rooms:
            free = self.free_rooms - self.free_isolation_rooms
        else:
            free = self.free_rooms
        if free:
            self.fail(tick, f"{patient_id} was referred while a room it may use is free")
        me = arrivals[patient_id]
        for other, room_id in admitted.items():
            them = arrivals[other]
            if (them.acuity, them.time_ms) > (me.acuity, me.time_ms) and \
                    self._may_use(patient_id, room_id):
                self.fail(tick, f"{patient_id} (ESI {me.acuity}) referred while {other} "
                                f"(ESI {them.acuity}, after it) took {room_id}")
        del self.patients[patient_id]
        self.acuity.pop(patient_id, None)
        self.isolated.discard(patient_id)
        self.left.add(patient_id)
        self.referred += 1

    def _duty(self, tick: int, decision: ev.StaffOffDuty | ev.StaffOnDuty) -> None:
        staff_id = decision.staff_id
        on = isinstance(decision, ev.StaffOnDuty)
        if staff_id not in self.on_duty or self.on_duty[staff_id] == on:
            self.fail(tick, f"{decision.TYPE} for {staff_id}, who is not "
                            f"{'off' if on else 'on'} duty")
        if not self.roster.on_duty(staff_id, decision.time_ms) == on:
            self.fail(tick, f"{decision.TYPE} for {staff_id} against the roster")
        if self.busy[staff_id] is None:
            self.idle[_grade(staff_id)] += 1 if on else -1
        self.on_duty[staff_id] = on

    def _complete(self, tick, event, expected_tasks, discharges, cleaned) -> None:
        task = self.tasks.get(event.task_id)
        if task is None or task.done or task.staff_id != event.staff_id:
            self.fail(tick, f"{event.TYPE} for task {event.task_id}, which "
                            f"{event.staff_id} was not doing")
        if event.task_kind != step(task.kind) or event.room_id != task.room_id:
            self.fail(tick, f"{event.TYPE} for task {event.task_id} does not fit it: the task "
                            f"is a {task.kind} in {task.room_id}")
        task.done = True
        self.busy[event.staff_id] = None   # the task's staff member, checked above
        self._set_idle(event.staff_id, 1)
        del self.tasks[event.task_id]
        next_kind = NEXT_KIND.get(task.kind)
        if task.kind == "escort_in":
            self.patients[task.patient_id] = "in_room"
        elif task.kind == "escort_out":
            del self.patients[task.patient_id]
            self.left.add(task.patient_id)
            self.discharged += 1
            self._room(task.room_id, "dirty")
            self.occupant[task.room_id] = None
            discharges.add(task.patient_id)
            self.acuity.pop(task.patient_id, None)
            if task.patient_id in self.isolated:   # the room needs a terminal clean
                self.isolated.discard(task.patient_id)
                self.terminal.add(task.room_id)
                next_kind = "clean_terminal"
        elif step(task.kind) == "clean":
            self._room(task.room_id, "free")
            self.terminal.discard(task.room_id)
            cleaned.add(task.room_id)
        if next_kind:
            expected_tasks[next_kind, task.patient_id] += 1

    def _admit(self, tick, decision, undecided, expected_tasks) -> None:
        patient_id, room_id = decision.patient_id, decision.room_id
        if patient_id not in undecided:
            self.fail(tick, f"admitted {patient_id}, who is not a new arrival")
        if self.rooms.get(room_id) != "free":
            self.fail(tick, f"booked room {room_id}, which is {self.rooms.get(room_id, 'unknown')}")
        if not self._may_use(patient_id, room_id):
            needs = "needs isolation" if patient_id in self.isolated else "does not need isolation"
            self.fail(tick, f"admitted {patient_id}, who {needs}, into {room_id}")
        undecided.discard(patient_id)
        self._room(room_id, "taken")
        self.occupant[room_id] = patient_id
        self.patients[patient_id] = "admitted"
        expected_tasks["escort_in", patient_id] += 1

    def _task(self, tick, decision, expected_tasks) -> None:
        task = self.tasks.get(decision.task_id)
        if task is None:  # a new task: it must be one this tick created, and appear once
            if step(decision.kind) == "clean" and (decision.kind == "clean_terminal") != (
                    decision.room_id in self.terminal):
                self.fail(tick, f"task {decision.task_id}: a {decision.kind} of "
                                f"{decision.room_id}, which "
                                f"{'needs' if decision.room_id in self.terminal else 'does not need'}"
                                f" a terminal clean")
            key = (decision.kind, decision.patient_id)
            if decision.task_id in self.task_ids or expected_tasks[key] <= 0:
                self.fail(tick, f"task {decision.task_id} ({decision.kind} for "
                                f"{decision.patient_id}) was not created this tick")
            expected_tasks[key] -= 1
            task = _Task(decision.kind, decision.patient_id, decision.room_id)
            self.tasks[decision.task_id] = task
            self.task_ids.add(decision.task_id)
            self.waiting[self._waits_for(task)] += 1
            if step(task.kind) != "clean" and self.occupant.get(task.room_id) != task.patient_id:
                self.fail(tick, f"task {decision.task_id}: {task.patient_id} is not in {task.room_id}")
        elif isinstance(decision, ev.TaskQueued) or task.staff_id is not None:
            self.fail(tick, f"task {decision.task_id} decided twice")
        if isinstance(decision, ev.TaskDispatched):
            staff_id = decision.staff_id
            if staff_id not in self.role:
                self.fail(tick, f"task {decision.task_id} given to unknown {staff_id}")
            if self.role[staff_id] != ROLE_OF_KIND[task.kind]:
                self.fail(tick, f"{task.kind} {decision.task_id} given to {staff_id}, "
                                f"a {self.role[staff_id]}")
            if self.busy[staff_id] is not None:
                self.fail(tick, f"{staff_id} given {decision.task_id} while doing "
                                f"{self.busy[staff_id]}")
            if not self.on_duty[staff_id]:
                self.fail(tick, f"{staff_id} given {decision.task_id} while off duty")
            waits_for = self._waits_for(task)
            if waits_for == "urgent_visit" and _grade(staff_id) != "doctor":
                self.fail(tick, f"visit {decision.task_id} to {task.patient_id} (ESI "
                                f"{self.acuity[task.patient_id]}) given to {staff_id}, not a doctor")
            task.staff_id = staff_id
            self.busy[staff_id] = decision.task_id
            self._set_idle(staff_id, -1)
            self.waiting[waits_for] -= 1
            if step(task.kind) == "clean":
                self._room(task.room_id, "cleaning")

    # Which waiting tasks each grade may do.
    MAY_DO = {"porter": ("porter",), "cleaner": ("cleaner",), "nurse": ("visit",),
              "doctor": ("visit", "urgent_visit")}

    def _no_idle_staff(self, tick: int) -> None:
        idle, waiting = self.idle, self.waiting
        for grade, count in idle.items():
            if count and any(waiting[kind] for kind in self.MAY_DO[grade]):
                staff_id = next(s for s, t in self.busy.items()
                                if t is None and self.on_duty[s] and _grade(s) == grade)
                self.fail(tick, f"{staff_id} is idle while a task they may do waits")

    def accounted_for(self) -> dict[str, int]:
        """Every patient ends referred or discharged, or is still in the building."""
        summary = {"arrived": self.arrived, "referred": self.referred,
                   "discharged": self.discharged}
        summary["in_building"] = self.arrived - summary["referred"] - summary["discharged"]
        in_rooms = sum(1 for p in self.occupant.values() if p is not None)
        if summary["in_building"] != in_rooms:
            raise InvariantViolation(f"{summary['in_building']} patients in the building but "
                                     f"{in_rooms} in rooms")
        return summary
