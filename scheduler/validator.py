"""A solver-independent check of the scheduler's decisions against the invariants.

The `Auditor` keeps its own, deliberately simple, model of the hospital, built only from the
event stream: the inbound events each tick consumed and the decisions it made. It shares no
code with the scheduler's state, nor its tables of roles and steps: it restates the contract
(DESIGN.md sections 2 and 4) in its own, so that a wrong entry there is caught here. It does
O(1) work per event (O(log n) for a task with a target wait), cheap enough to run on every
tick of a live run.
"""

from __future__ import annotations

import dataclasses
import heapq
from collections import Counter
from dataclasses import dataclass, field
from typing import NoReturn

from scheduler import events as ev
from scheduler.config import Config
from scheduler.shifts import Roster

# The contract's tables, restated (DESIGN.md section 2), not imported from the scheduler.
# Who does each kind of task: porters escort, medical staff visit, cleaners clean.
DONE_BY = {
    "escort_in": "porter",
    "visit": "medical",
    "escort_out": "porter",
    "clean": "cleaner",
    "clean_terminal": "cleaner",
}
# The role of each grade of staff (the grade is the staff id without its number).
ROLE_OF_GRADE = {"porter": "porter", "nurse": "medical", "doctor": "medical", "cleaner": "cleaner"}
# The task that the completion of each kind creates: the patient, then the room, move on.
# (After an isolation patient's escort out the room gets a `clean_terminal` instead.)
COMES_NEXT = {"escort_in": "visit", "visit": "escort_out", "escort_out": "clean"}
# What a completion event reports each kind as: a terminal clean completes as a cleaning.
COMPLETES_AS = {
    "escort_in": "escort_in",
    "visit": "visit",
    "escort_out": "escort_out",
    "clean": "clean",
    "clean_terminal": "clean",
}
CLEANS = frozenset({"clean", "clean_terminal"})
DUTY_CHANGES = (ev.StaffOffDuty, ev.StaffOnDuty)
# Where staff start, and where an escort out leaves them: the exit is the entrance. Every
# other task leaves them in its room. A dispatch's `origin` is where its staff member is.
ENTRANCE = "entrance"


def _grade(staff_id: str) -> str:
    return staff_id.rsplit("-", 1)[0]


def _staff(config: Config) -> list[str]:
    """Everybody, from the config's head counts: porter-1, ..., nurse-1, ..., doctor-1, ..."""
    counts = {
        "porter": config.staff.porters,
        "nurse": config.staff.nurses,
        "doctor": config.staff.doctors,
        "cleaner": config.staff.cleaners,
    }
    return [f"{grade}-{n}" for grade, count in counts.items() for n in range(1, count + 1)]


def _targets(config: Config) -> dict[tuple[str, bool], int]:
    """Target waits in ms by (task kind, urgent), restated from `[sla]`: `<kind>_s`, and
    `<kind>_urgent_s` for a task of an ESI 1-2 patient (the routine target when 0)."""
    targets = {}
    for kind in DONE_BY:
        routine = getattr(config.sla, f"{kind}_s")
        urgent = 0.0 if kind in CLEANS else getattr(config.sla, f"{kind}_urgent_s")
        for is_urgent, seconds in ((False, routine), (True, urgent or routine)):
            if seconds:
                targets[kind, is_urgent] = round(seconds * 1000)
    return targets


class InvariantViolation(AssertionError):
    """The decisions broke one of the hospital's invariants."""


@dataclass
class _Task:
    kind: str
    patient_id: str
    room_id: str
    staff_id: str | None = None
    escalated: bool = False
    created_ms: int = 0  # when it began to wait: its patient's arrival, or the step before


@dataclass
class Auditor:
    config: Config
    rooms: dict[str, str] = field(default_factory=dict)  # room -> free|taken|dirty|cleaning
    occupant: dict[str, str | None] = field(default_factory=dict)
    role: dict[str, str] = field(default_factory=dict)
    busy: dict[str, str | None] = field(default_factory=dict)  # staff -> task id
    place: dict[str, str] = field(default_factory=dict)  # staff -> where they are
    tasks: dict[str, _Task] = field(default_factory=dict)
    # patient -> stage, for the patients in the building; those who left are only counted
    # and remembered compactly, so that a second arrival of one is still caught
    patients: dict[str, str] = field(default_factory=dict)
    left: ev.IdSet = field(default_factory=ev.IdSet)
    referred: int = 0
    discharged: int = 0
    task_ids: ev.IdSet = field(default_factory=ev.IdSet)  # every task ever decided
    arrived: int = 0
    last_tick: int = -1
    tick_ms: int = 0
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
    # Target waits (`_targets`), and when each waiting task with one passes it: a heap of
    # (time past which it must have been escalated, task id), checked at each tick's end.
    # Tasks dispatched meanwhile stay in it until then: not part of the checker's state.
    targets: dict[tuple[str, bool], int] = field(default_factory=dict)
    deadlines: list[tuple[int, str]] = field(default_factory=list, compare=False)
    # Looking ahead: declared holds, live until their time (ms) or their use; staff and
    # rooms whose hold ran out unused, not to be held again until used.
    held_staff: dict[str, int] = field(default_factory=dict)
    held_rooms: dict[str, tuple[str, int]] = field(default_factory=dict)
    spent_staff: set[str] = field(default_factory=set)
    spent_rooms: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        floors, per_floor = self.config.hospital.floors, self.config.hospital.rooms_per_floor
        for floor in floors:
            for number in range(1, per_floor + 1):
                self.rooms[f"{floor}{number}"] = "free"
                self.occupant[f"{floor}{number}"] = None
        self.free_rooms = len(self.rooms)
        self.isolation_rooms = frozenset(self.config.hospital.isolation_rooms)
        self.free_isolation_rooms = len(self.isolation_rooms)
        self.tick_ms = round(self.config.scheduler.tick_s * 1000)
        self.lookahead = self.config.scheduler.lookahead_s > 0
        self.max_hold_ms = round(self.config.scheduler.max_hold_s * 1000)
        self.targets = _targets(self.config)
        self.waiting.update(dict.fromkeys(("porter", "visit", "urgent_visit", "cleaner"), 0))
        staff_ids = _staff(self.config)
        self.roster = Roster(self.config.shifts.roster, self.config.shifts.cycle_s, set(staff_ids))
        for staff_id in staff_ids:
            self.role[staff_id] = ROLE_OF_GRADE[_grade(staff_id)]
            self.busy[staff_id] = None
            self.place[staff_id] = ENTRANCE
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
        return not (
            self.config.hospital.reserve_isolation_rooms and room_id in self.isolation_rooms
        )

    def _waits_for(self, task: _Task) -> str:
        """Who may do a waiting task: the key of `waiting`."""
        if task.kind == "visit":
            urgent = self.config.rules.skills and self.acuity.get(task.patient_id, 3) <= 2
            return "urgent_visit" if urgent else "visit"
        return DONE_BY[task.kind]

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
        now_ms = tick * self.tick_ms
        if self.held_staff or self.held_rooms:
            self._end_holds(now_ms)
        undecided: set[str] = set()
        # The tasks this tick's events created, by (kind, patient, room), with the time each
        # began to wait: each must appear, dispatched or queued, exactly as created.
        expected_tasks: dict[tuple[str, str, str], list[int]] = {}
        discharges: set[str] = set()
        cleaned: set[str] = set()
        arrivals: dict[str, ev.PatientArrived] = {}
        for event in inbound:
            if event.time_ms > now_ms:
                self.fail(
                    tick,
                    f"{event.TYPE} {event.event_id} of {event.time_ms / 1000} s "
                    f"consumed by the tick of {now_ms / 1000} s",
                )
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
            elif isinstance(event, ev.ARRIVAL_CHANGES):
                self._change_arrival(tick, event, undecided, arrivals)
            else:
                self._complete(tick, event, expected_tasks, discharges, cleaned)
        referred: list[str] = []
        admitted: dict[str, str] = {}
        held_now: list[ev.StaffHeld | ev.RoomHeld] = []
        escalations: list[ev.TaskEscalated] = []
        # A duty change holds for the whole tick, wherever the list puts it: a dispatch to
        # staff going off duty is caught, one to staff coming on duty is not, in any order.
        for decision in decisions:
            if isinstance(decision, DUTY_CHANGES):
                self._dated(tick, decision, now_ms)
                self._duty(tick, decision)
        for decision in decisions:
            if isinstance(decision, DUTY_CHANGES):
                continue  # applied above
            self._dated(tick, decision, now_ms)
            if isinstance(decision, ev.PatientAdmitted):
                self._admit(tick, decision, undecided, expected_tasks, arrivals)
                admitted[decision.patient_id] = decision.room_id
            elif isinstance(decision, ev.PatientReferred):
                if decision.patient_id not in undecided:
                    self.fail(tick, f"referred {decision.patient_id}, who is not a new arrival")
                undecided.discard(decision.patient_id)
                referred.append(decision.patient_id)
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
            elif isinstance(decision, ev.TaskEscalated):
                escalations.append(decision)  # judged once every decision is made, below
            elif isinstance(decision, (ev.StaffHeld, ev.RoomHeld)):
                self._hold(tick, decision, now_ms)
                held_now.append(decision)
        for hold in held_now:  # a hold is of a member or room still free after the tick
            self._still_held(tick, hold)
        # An escalation is of a task still waiting after the tick, wherever the list puts it:
        # one queued in this tick may be escalated in it, one dispatched in it may not.
        for escalation in escalations:
            self._escalated(tick, escalation, now_ms)
        if undecided:
            self.fail(tick, f"arrivals neither admitted nor referred: {sorted(undecided)}")
        if any(expected_tasks.values()):
            missing = sorted(key for key, born in expected_tasks.items() if born)
            self.fail(tick, f"tasks created but not dispatched or queued: {missing}")
        if discharges or cleaned:
            self.fail(tick, f"no decision for {sorted(discharges)} {sorted(cleaned)}")
        for patient_id in referred:
            self._referral(tick, patient_id, arrivals, admitted)
        for staff_id in self.roster.shifts:  # the others are always on duty
            on = self.on_duty[staff_id]
            if on != self.roster.on_duty(staff_id, now_ms):
                self.fail(tick, f"{staff_id} is {'on' if on else 'off'} duty against the roster")
        self._no_idle_staff(tick)
        self._escalations_due(tick, now_ms)

    def _change_arrival(
        self,
        tick: int,
        event: ev.PatientUpdated | ev.PatientWithdrawn,
        undecided: set[str],
        arrivals: dict[str, ev.PatientArrived],
    ) -> None:
        """An update or a withdrawal changes only an arrival of this tick, before its
        decision. A withdrawn arrival is as if it never came, but its id stays used."""
        patient_id = event.patient_id
        if patient_id not in undecided:
            self.fail(tick, f"{event.TYPE} for {patient_id}, who is not an arrival of this tick")
        if isinstance(event, ev.PatientWithdrawn):
            undecided.discard(patient_id)
            del arrivals[patient_id], self.patients[patient_id]
            self.acuity.pop(patient_id, None)
            self.isolated.discard(patient_id)
            self.left.add(patient_id)
            self.arrived -= 1
            return
        self.acuity[patient_id] = event.acuity
        if event.isolation:
            self.isolated.add(patient_id)
        else:
            self.isolated.discard(patient_id)
        arrivals[patient_id] = dataclasses.replace(
            arrivals[patient_id], acuity=event.acuity, isolation=event.isolation
        )

    def _dated(self, tick: int, decision: ev.Decision, now_ms: int) -> None:
        if decision.tick != tick:
            self.fail(tick, f"decision {decision.event_id} carries tick {decision.tick}")
        if decision.time_ms != now_ms:
            self.fail(
                tick,
                f"decision {decision.event_id} is dated "
                f"{decision.time_ms / 1000} s, not its tick's {now_ms / 1000} s",
            )

    def _referral(
        self,
        tick: int,
        patient_id: str,
        arrivals: dict[str, ev.PatientArrived],
        admitted: dict[str, str],
    ) -> None:
        """Referred only when no free room this patient may use is left, and never while a
        less urgent (or, equally urgent, later) arrival of the tick took a room it could use."""
        if patient_id in self.isolated:
            free = self.free_isolation_rooms
        elif self.config.hospital.reserve_isolation_rooms:
            free = self.free_rooms - self.free_isolation_rooms
        else:
            free = self.free_rooms
        for room_id, (reserved_for, _) in self.held_rooms.items():
            # a room held for another class counts as taken for this patient
            if (
                self.rooms[room_id] == "free"
                and self._may_use(patient_id, room_id)
                and not self._in_class(patient_id, reserved_for)
            ):
                free -= 1
        if free:
            self.fail(tick, f"{patient_id} was referred while a room it may use is free")
        me = arrivals[patient_id]
        for other, room_id in admitted.items():
            them = arrivals[other]
            if (them.acuity, them.time_ms) > (me.acuity, me.time_ms) and self._may_use(
                patient_id, room_id
            ):
                if self.lookahead and them.isolation and not me.isolation and me.acuity > 2:
                    continue  # looking ahead, isolation rooms go to isolation patients first
                self.fail(
                    tick,
                    f"{patient_id} (ESI {me.acuity}) referred while {other} "
                    f"(ESI {them.acuity}, after it) took {room_id}",
                )
        del self.patients[patient_id]
        self.acuity.pop(patient_id, None)
        self.isolated.discard(patient_id)
        self.left.add(patient_id)
        self.referred += 1

    def _duty(self, tick: int, decision: ev.StaffOffDuty | ev.StaffOnDuty) -> None:
        staff_id = decision.staff_id
        on = isinstance(decision, ev.StaffOnDuty)
        if staff_id not in self.on_duty or self.on_duty[staff_id] == on:
            self.fail(
                tick, f"{decision.TYPE} for {staff_id}, who is not {'off' if on else 'on'} duty"
            )
        if self.roster.on_duty(staff_id, decision.time_ms) != on:
            self.fail(tick, f"{decision.TYPE} for {staff_id} against the roster")
        if staff_id in self.held_staff:  # a hold ends off duty
            self._release_staff(staff_id)
        self.spent_staff.discard(staff_id)
        if self.busy[staff_id] is None:
            self.idle[_grade(staff_id)] += 1 if on else -1
        self.on_duty[staff_id] = on

    def _complete(self, tick, event, expected_tasks, discharges, cleaned) -> None:
        task = self.tasks.get(event.task_id)
        if task is None or task.staff_id != event.staff_id:
            self.fail(
                tick, f"{event.TYPE} for task {event.task_id}, which {event.staff_id} was not doing"
            )
        if (
            event.task_kind != COMPLETES_AS[task.kind]
            or event.room_id != task.room_id
            or getattr(event, "patient_id", task.patient_id) != task.patient_id
        ):
            self.fail(
                tick,
                f"{event.TYPE} for task {event.task_id} does not fit it: the task "
                f"is a {task.kind} for {task.patient_id} in {task.room_id}",
            )
        self.busy[event.staff_id] = None  # the task's staff member, checked above
        self._set_idle(event.staff_id, 1)
        self.place[event.staff_id] = ENTRANCE if task.kind == "escort_out" else task.room_id
        del self.tasks[event.task_id]
        next_kind = COMES_NEXT.get(task.kind)
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
            if task.patient_id in self.isolated:  # the room needs a terminal clean
                self.isolated.discard(task.patient_id)
                self.terminal.add(task.room_id)
                next_kind = "clean_terminal"
        elif task.kind in CLEANS:
            self._room(task.room_id, "free")
            self.terminal.discard(task.room_id)
            cleaned.add(task.room_id)
        if next_kind:
            key = (next_kind, task.patient_id, task.room_id)
            expected_tasks.setdefault(key, []).append(event.time_ms)

    def _admit(self, tick, decision, undecided, expected_tasks, arrivals) -> None:
        patient_id, room_id = decision.patient_id, decision.room_id
        if patient_id not in undecided:
            self.fail(tick, f"admitted {patient_id}, who is not a new arrival")
        if self.rooms.get(room_id) != "free":
            self.fail(tick, f"booked room {room_id}, which is {self.rooms.get(room_id, 'unknown')}")
        if not self._may_use(patient_id, room_id):
            needs = "needs isolation" if patient_id in self.isolated else "does not need isolation"
            self.fail(tick, f"admitted {patient_id}, who {needs}, into {room_id}")
        undecided.discard(patient_id)
        self.held_rooms.pop(room_id, None)  # booked: a hold on it ends
        self.spent_rooms.discard(room_id)
        self._room(room_id, "taken")
        self.occupant[room_id] = patient_id
        self.patients[patient_id] = "admitted"
        key = ("escort_in", patient_id, room_id)
        expected_tasks.setdefault(key, []).append(arrivals[patient_id].time_ms)

    def _task(self, tick, decision, expected_tasks) -> None:
        task = self.tasks.get(decision.task_id)
        if task is None:  # a new task: it must be one this tick created, and appear once
            self._new_task(tick, decision, expected_tasks)
            task = self.tasks[decision.task_id]
        elif isinstance(decision, ev.TaskQueued) or task.staff_id is not None:
            self.fail(tick, f"task {decision.task_id} decided twice")
        elif (decision.kind, decision.patient_id, decision.room_id) != (
            task.kind,
            task.patient_id,
            task.room_id,
        ):
            self.fail(
                tick,
                f"task {decision.task_id} dispatched as {decision.kind} for "
                f"{decision.patient_id} in {decision.room_id}, but queued as "
                f"{task.kind} for {task.patient_id} in {task.room_id}",
            )
        if isinstance(decision, ev.TaskDispatched):
            self._dispatch(tick, decision, task)

    def _escalated(self, tick, decision, now_ms) -> None:
        """Announced once, for a task of that kind still waiting (after the tick's other
        decisions) past its target, with the task's wait and its target."""
        task = self.tasks.get(decision.task_id)
        if task is None or task.staff_id is not None or task.kind != decision.kind:
            self.fail(
                tick,
                f"task {decision.task_id} escalated as a waiting {decision.kind}, which it is not",
            )
        if task.escalated:
            self.fail(tick, f"task {decision.task_id} escalated twice")
        if not decision.waited_s > decision.sla_s:
            self.fail(
                tick,
                f"task {decision.task_id} escalated after {decision.waited_s} s, "
                f"within its {decision.sla_s} s target",
            )
        target = self._target(task)
        waited_ms = now_ms - task.created_ms
        if target is None or (decision.waited_s, decision.sla_s) != (
            waited_ms / 1000,
            target / 1000,
        ):
            self.fail(
                tick,
                f"task {decision.task_id} escalated as waiting {decision.waited_s} s against "
                f"{decision.sla_s} s: it has waited {waited_ms / 1000} s, and its target is "
                f"{'none' if target is None else target / 1000}",
            )
        task.escalated = True

    def _target(self, task: _Task) -> int | None:
        """The task's target wait in ms, if it has one: the urgent one for a task of an ESI
        1-2 patient (a cleaning is nobody's urgency)."""
        urgent = task.kind not in CLEANS and self.acuity.get(task.patient_id, 3) <= 2
        return self.targets.get((task.kind, urgent))

    def _watch(self, task_id: str, task: _Task) -> None:
        """A waiting task not yet escalated: checked for an escalation once past its target."""
        target = self._target(task)
        if target and task.staff_id is None and not task.escalated:
            heapq.heappush(self.deadlines, (task.created_ms + target, task_id))

    def _escalations_due(self, tick: int, now_ms: int) -> None:
        """Every task that has waited past its target by now has been escalated."""
        deadlines = self.deadlines
        while deadlines and deadlines[0][0] < now_ms:
            _, task_id = heapq.heappop(deadlines)
            task = self.tasks.get(task_id)
            if task is not None and task.staff_id is None and not task.escalated:
                self.fail(tick, f"task {task_id} waited past its target with no escalation")

    def _new_task(self, tick, decision, expected_tasks) -> None:
        kind, room_id = decision.kind, decision.room_id
        if kind in CLEANS:
            if self.rooms.get(room_id) != "dirty":
                self.fail(
                    tick,
                    f"task {decision.task_id}: a {kind} of {room_id}, which is "
                    f"{self.rooms.get(room_id, 'unknown')}, not dirty",
                )
            if (kind == "clean_terminal") != (room_id in self.terminal):
                owed = "needs" if room_id in self.terminal else "does not need"
                self.fail(
                    tick,
                    f"task {decision.task_id}: a {kind} of {room_id}, which "
                    f"{owed} a terminal clean",
                )
        key = (kind, decision.patient_id, room_id)
        if decision.task_id in self.task_ids or not expected_tasks.get(key):
            self.fail(
                tick,
                f"task {decision.task_id} ({kind} for {decision.patient_id} in "
                f"{room_id}) was not created this tick",
            )
        task = _Task(kind, decision.patient_id, room_id, created_ms=expected_tasks[key].pop())
        self.tasks[decision.task_id] = task
        self.task_ids.add(decision.task_id)
        self.waiting[self._waits_for(task)] += 1
        if kind not in CLEANS and self.occupant.get(room_id) != task.patient_id:
            self.fail(tick, f"task {decision.task_id}: {task.patient_id} is not in {room_id}")
        if isinstance(decision, ev.TaskQueued):  # it waits (dispatched, it would not)
            self._watch(decision.task_id, task)

    def _dispatch(self, tick, decision, task) -> None:
        staff_id = decision.staff_id
        if staff_id not in self.role:
            self.fail(tick, f"task {decision.task_id} given to unknown {staff_id}")
        if self.role[staff_id] != DONE_BY[task.kind]:
            self.fail(
                tick, f"{task.kind} {decision.task_id} given to {staff_id}, a {self.role[staff_id]}"
            )
        if self.busy[staff_id] is not None:
            self.fail(
                tick, f"{staff_id} given {decision.task_id} while doing {self.busy[staff_id]}"
            )
        if not self.on_duty[staff_id]:
            self.fail(tick, f"{staff_id} given {decision.task_id} while off duty")
        if decision.origin != self.place[staff_id]:
            self.fail(
                tick,
                f"{staff_id} sets off for {decision.task_id} from "
                f"{decision.origin}, but is at {self.place[staff_id]}",
            )
        if staff_id in self.held_staff:  # given a task: the hold ends
            self._release_staff(staff_id)
        self.spent_staff.discard(staff_id)
        waits_for = self._waits_for(task)
        if waits_for == "urgent_visit" and _grade(staff_id) != "doctor":
            self.fail(
                tick,
                f"visit {decision.task_id} to {task.patient_id} (ESI "
                f"{self.acuity[task.patient_id]}) given to {staff_id}, not a doctor",
            )
        task.staff_id = staff_id
        self.busy[staff_id] = decision.task_id
        self._set_idle(staff_id, -1)
        self.waiting[waits_for] -= 1
        if task.kind in CLEANS:
            self._room(task.room_id, "cleaning")

    # --- holds (looking ahead) ---------------------------------------------------------

    def _in_class(self, patient_id: str, reserved_for: str) -> bool:
        """Whether a room held for `reserved_for` is kept for this patient."""
        if reserved_for == "urgent":
            return self.acuity.get(patient_id, 3) <= 2
        return patient_id in self.isolated

    def _hold(self, tick: int, decision: ev.StaffHeld | ev.RoomHeld, now_ms: int) -> None:
        """A hold: only looking ahead, of a free member on duty or a free room, not held
        already nor held last and unused since, until a time within `max_hold_s`."""
        what = decision.staff_id if isinstance(decision, ev.StaffHeld) else decision.room_id
        if not self.lookahead:
            self.fail(tick, f"{decision.TYPE} of {what} without [scheduler] lookahead_s")
        until_ms = round(decision.until_s * 1000)
        if not now_ms < until_ms <= now_ms + self.max_hold_ms:
            self.fail(
                tick,
                f"{what} held until {decision.until_s} s: not within the "
                f"{self.max_hold_ms / 1000:g} s a hold may last from {now_ms / 1000} s",
            )
        if isinstance(decision, ev.StaffHeld):
            staff_id = decision.staff_id
            if staff_id not in self.role or not self.on_duty[staff_id]:
                self.fail(tick, f"{staff_id} held, who is unknown or off duty")
            if self.busy[staff_id] is not None:
                self.fail(tick, f"{staff_id} held while doing {self.busy[staff_id]}")
            if staff_id in self.held_staff or staff_id in self.spent_staff:
                self.fail(tick, f"{staff_id} held again before being given a task")
            self.held_staff[staff_id] = until_ms
            self._set_idle(staff_id, -1)
            return
        room_id = decision.room_id
        if self.rooms.get(room_id) != "free":
            self.fail(tick, f"room {room_id} held, which is {self.rooms.get(room_id, 'unknown')}")
        if room_id in self.held_rooms or room_id in self.spent_rooms:
            self.fail(tick, f"room {room_id} held again before being booked")
        if decision.reserved_for == "isolation" and room_id not in self.isolation_rooms:
            self.fail(tick, f"room {room_id} held for isolation, which it cannot give")
        self.held_rooms[room_id] = (decision.reserved_for, until_ms)

    def _still_held(self, tick: int, decision: ev.StaffHeld | ev.RoomHeld) -> None:
        if isinstance(decision, ev.StaffHeld):
            if decision.staff_id not in self.held_staff:
                self.fail(tick, f"{decision.staff_id} held and given a task in one tick")
        elif decision.room_id not in self.held_rooms:
            self.fail(tick, f"room {decision.room_id} held and booked in one tick")

    def _release_staff(self, staff_id: str) -> None:
        del self.held_staff[staff_id]
        self._set_idle(staff_id, 1)

    def _end_holds(self, now_ms: int) -> None:
        """Holds whose time has come end, their staff and rooms spent until used."""
        for staff_id, until_ms in list(self.held_staff.items()):
            if until_ms <= now_ms:
                self._release_staff(staff_id)
                self.spent_staff.add(staff_id)
        for room_id, (_, until_ms) in list(self.held_rooms.items()):
            if until_ms <= now_ms:
                del self.held_rooms[room_id]
                self.spent_rooms.add(room_id)

    # Which waiting tasks each grade may do.
    MAY_DO = {
        "porter": ("porter",),
        "cleaner": ("cleaner",),
        "nurse": ("visit",),
        "doctor": ("visit", "urgent_visit"),
    }

    def _no_idle_staff(self, tick: int) -> None:
        waiting = self.waiting
        for grade, count in self.idle.items():
            if not count:
                continue
            for kind in self.MAY_DO[grade]:
                if waiting[kind]:
                    staff_id = next(
                        s
                        for s, t in self.busy.items()
                        if t is None
                        and self.on_duty[s]
                        and _grade(s) == grade
                        and s not in self.held_staff
                    )
                    self.fail(tick, f"{staff_id} is idle while a task they may do waits")

    def accounted_for(self) -> dict[str, int]:
        """At the end of a run: every patient ends referred or discharged, or is still in
        the building, in a room of their own; every room that is not free is held by one of
        them or has its cleaning open (a dirty room that nobody will clean is a violation).
        Each count is kept on its own, so that the sum is a check."""
        summary = {
            "arrived": self.arrived,
            "referred": self.referred,
            "discharged": self.discharged,
            "in_building": len(self.patients),
        }
        if (
            summary["arrived"]
            != summary["referred"] + summary["discharged"] + summary["in_building"]
        ):
            raise InvariantViolation(f"patients unaccounted for: {summary}")
        in_rooms = {p for p in self.occupant.values() if p is not None}
        if in_rooms != set(self.patients):
            raise InvariantViolation(
                f"{summary['in_building']} patients in the building but {len(in_rooms)} in rooms"
            )
        being_cleaned = {t.room_id for t in self.tasks.values() if t.kind in CLEANS}
        for room_id, status in self.rooms.items():
            if status in ("dirty", "cleaning") and room_id not in being_cleaned:
                raise InvariantViolation(
                    f"room {room_id} ({status}) has no cleaning open: it would stay dirty for ever"
                )
        return summary
