"""The hospital's state and the patient, room and staff lifecycle, in plain Python.

Inbound events move patients, rooms and staff along the lifecycle and create tasks; a
policy's `Solution` for a tick turns into decisions. Nothing here knows about Kafka, the
database or the solver.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from scheduler import events as ev
from scheduler import explain
from scheduler.config import Config, staff_roster
from scheduler.forecast import Busy, Outlook, Pending, State, Waiting
from scheduler.layout import ENTRANCE, ROLE_OF_KIND, Layout, step
from scheduler.problem import Arrival, FreeStaff, OpenTask, Solution, TickProblem
from scheduler.shifts import Roster


class Rejected(ValueError):
    """An inbound event that does not fit the hospital's state (an impossible transition)."""


@dataclass
class Room:
    room_id: str
    status: str = "free"  # free | booked | occupied | dirty | cleaning
    patient_id: str | None = None
    # Looking ahead: held free for a class of patients until a time (ms), or not; a room
    # whose hold ran out before it was booked is not held again until it has been.
    held_until_ms: int | None = None
    reserved_for: str = ""
    hold_spent: bool = False


@dataclass
class Staff:
    staff_id: str
    role: str  # porter | medical | cleaner
    location: str = ENTRANCE
    task_id: str | None = None
    on_duty: bool = True
    # Looking ahead: held free until a time (ms), or not; a member whose hold ran out before
    # they were given a task is not held again until they have been.
    held_until_ms: int | None = None
    hold_spent: bool = False
    # How the policies see them while free, made again only when they have moved.
    free: FreeStaff | None = field(default=None, compare=False, repr=False)

    def as_free_staff(self) -> FreeStaff:
        if self.free is None or self.free.location != self.location:
            self.free = FreeStaff(self.staff_id, self.role, self.location)
        return self.free


@dataclass
class Patient:
    patient_id: str
    arrived_ms: int
    # arrived | waiting_escort_in | escorting_in | waiting_visit | in_visit
    # | waiting_escort_out | escorting_out | discharged | referred | withdrawn
    stage: str = "arrived"
    room_id: str | None = None
    acuity: int = 3
    isolation: bool = False


@dataclass
class Task:
    task_id: str
    kind: str
    patient_id: str
    room_id: str
    created_ms: int
    staff_id: str | None = None
    acuity: int = 3  # the patient's (3 for cleaning: nobody's urgency)
    escalated: bool = False  # announced past its target wait
    dispatched_ms: int | None = None  # when given to its staff member (looking ahead only)
    # How the policies see it while it waits: the same every tick, so made once.
    open_task: OpenTask | None = field(default=None, compare=False, repr=False)

    @property
    def role(self) -> str:
        return ROLE_OF_KIND[self.kind]

    def as_open_task(self) -> OpenTask:
        if self.open_task is None:
            self.open_task = OpenTask(
                self.task_id,
                self.kind,
                ROLE_OF_KIND[self.kind],
                self.room_id,
                self.patient_id,
                self.created_ms,
                self.acuity,
            )
        return self.open_task


# The stage a patient is in while each kind of task is being done, and after it waits.
WAITING_STAGE = {
    "escort_in": "waiting_escort_in",
    "visit": "waiting_visit",
    "escort_out": "waiting_escort_out",
}
ACTIVE_STAGE = {"escort_in": "escorting_in", "visit": "in_visit", "escort_out": "escorting_out"}


class Walking(Mapping[tuple[str, str], int]):
    """Walking in ms from each free staff member to the start of each task of their role,
    worked out when asked: a long waiting list times many free staff would be thousands of
    walks a tick, of which a policy reads few. A new arrival's escort is the walk to the
    entrance (the walk on to the room depends on the booking: see `room_walking_ms`)."""

    def __init__(self, layout: Layout, tasks: list[OpenTask], staff: tuple[FreeStaff, ...]):
        self._layout = layout
        self._tasks = {t.key: t for t in tasks}
        self._staff = {s.staff_id: s for s in staff}
        self._known: dict[tuple[str, str | None, str], int] = {}

    def __getitem__(self, pair: tuple[str, str]) -> int:
        task, staff = self._tasks[pair[0]], self._staff[pair[1]]
        if task.role != staff.role:
            raise KeyError(pair)
        place = (task.kind, task.room_id, staff.location)
        if place not in self._known:
            layout = self._layout
            if task.room_id is None:
                walk = layout.walk(staff.location, ENTRANCE) if layout.model == "layout" else 0
            else:
                walk = layout.walking_ms(staff.location, task.kind, task.room_id)
            self._known[place] = walk
        return self._known[place]

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return (
            (t.key, s.staff_id)
            for t in self._tasks.values()
            for s in self._staff.values()
            if t.role == s.role
        )

    def __len__(self) -> int:
        return sum(1 for _ in self)


def sla_targets(config: Config) -> dict[tuple[str, bool], int]:
    """Target waits in ms by (task kind, urgent): `[sla] <kind>_s`, `<kind>_urgent_s` for
    ESI 1-2 patients (the routine target when 0). Kinds without a target are left out."""
    targets = {}
    for kind in ROLE_OF_KIND:
        routine = getattr(config.sla, f"{kind}_s")
        urgent = getattr(config.sla, f"{kind}_urgent_s", 0.0) or routine
        for is_urgent, seconds in ((False, routine), (True, urgent)):
            if seconds:
                targets[kind, is_urgent] = round(seconds * 1000)
    return targets


class Hospital:
    def __init__(self, config: Config, layout: Layout | None = None, lookahead: bool = False):
        """`lookahead`: the tick's problem carries the forecast (`scheduler.forecast`), and
        the policy may hold staff and rooms; only with `[scheduler] lookahead_s` above 0."""
        self.layout = layout or Layout(config)
        self.rooms = {room_id: Room(room_id) for room_id in self.layout.rooms}
        self.staff = {staff_id: Staff(staff_id, role) for staff_id, role in staff_roster(config)}
        self.roster = Roster(config.shifts.roster, config.shifts.cycle_s, set(self.staff))
        self.isolation_rooms = frozenset(config.hospital.isolation_rooms)
        self.reserve_isolation_rooms = config.hospital.reserve_isolation_rooms
        self.skills = config.rules.skills
        self.sla_ms = sla_targets(config)
        self.explain = config.scheduler.explain
        self.patients: dict[str, Patient] = {}
        self.tasks: dict[str, Task] = {}  # open tasks: waiting or in progress
        self.waiting: dict[str, Task] = {}  # waiting lists, in creation order
        self.arrivals: list[Patient] = []  # arrived since the last tick, not yet decided
        self.finished = ev.IdSet()  # patients discharged or referred (compact)
        self._task_count = 0
        self._new_tasks: list[Task] = []  # created since the last tick's decisions
        self.outlook = (
            Outlook(config, self.layout, self.roster)
            if lookahead and config.scheduler.lookahead_s > 0
            else None
        )

    # --- inbound events ---------------------------------------------------------------

    def apply(self, event: ev.Event, effects: list[tuple[type[ev.Decision], dict]]) -> None:
        """Apply one inbound event, appending the decisions it implies to `effects`.
        Raises `Rejected`, leaving the state unchanged, when the event is impossible."""
        if isinstance(event, ev.ARRIVAL_CHANGES):
            self._change_arrival(event)
            return
        if isinstance(event, ev.PatientArrived):
            if event.patient_id in self.patients or event.patient_id in self.finished:
                raise Rejected(f"patient {event.patient_id} has already arrived")
            patient = Patient(
                event.patient_id, event.time_ms, acuity=event.acuity, isolation=event.isolation
            )
            self.patients[patient.patient_id] = patient
            self.arrivals.append(patient)
            return
        task = self._completed_task(event)
        assert task.staff_id is not None  # `_completed_task` rejects one never dispatched
        staff = self.staff[task.staff_id]
        staff.location = self.layout.task_ms(staff.location, task.kind, task.room_id)[1]
        staff.task_id = None
        del self.tasks[task.task_id]
        room = self.rooms[task.room_id]
        if task.kind == "escort_in":
            room.status = "occupied"
            self._new_task("visit", task.patient_id, room.room_id, event.time_ms)
        elif task.kind == "visit":
            self._new_task("escort_out", task.patient_id, room.room_id, event.time_ms)
        elif task.kind == "escort_out":
            patient = self.patients.pop(task.patient_id)
            patient.stage = "discharged"
            self.finished.add(patient.patient_id)
            room.status, room.patient_id = "dirty", None
            effects.append(
                (ev.PatientDischarged, {"patient_id": patient.patient_id, "room_id": room.room_id})
            )
            # A room that held an isolation patient gets a terminal clean.
            kind = "clean_terminal" if patient.isolation else "clean"
            self._new_task(kind, patient.patient_id, room.room_id, event.time_ms)
        else:
            room.status = "free"
            effects.append((ev.RoomAvailable, {"room_id": room.room_id}))

    def _change_arrival(self, event: ev.PatientUpdated | ev.PatientWithdrawn) -> None:
        """An update or a withdrawal of an arrival not yet decided (one of this tick's);
        once the patient is admitted or referred it is too late."""
        patient = self.patients.get(event.patient_id)
        if patient is None or patient.stage != "arrived":
            if patient is not None:
                raise Rejected(f"{event.TYPE}: too late: {event.patient_id} is already admitted")
            if event.patient_id in self.finished:
                raise Rejected(
                    f"{event.TYPE}: too late: {event.patient_id} was already referred, "
                    f"discharged or withdrawn"
                )
            raise Rejected(f"{event.TYPE}: unknown patient {event.patient_id}")
        if isinstance(event, ev.PatientUpdated):
            patient.acuity, patient.isolation = event.acuity, event.isolation
            return
        del self.patients[patient.patient_id]
        self.arrivals.remove(patient)
        patient.stage = "withdrawn"
        self.finished.add(patient.patient_id)  # the id is not used again in this run

    def _completed_task(self, event: ev.Event) -> Task:
        if not isinstance(event, (ev.EscortCompleted, ev.VisitCompleted, ev.CleaningCompleted)):
            raise Rejected(f"{event.TYPE} is not an inbound event")
        kind = event.task_kind
        task = self.tasks.get(event.task_id)
        if task is None:
            raise Rejected(f"{event.TYPE}: no open task {event.task_id}")
        if task.staff_id is None:
            raise Rejected(f"{event.TYPE}: task {task.task_id} was never dispatched")
        patient_id = getattr(event, "patient_id", task.patient_id)
        if (
            step(task.kind) == kind
            and task.staff_id == event.staff_id
            and task.room_id == event.room_id
            and task.patient_id == patient_id
        ):
            return task
        expected = {
            "kind": kind,
            "staff_id": event.staff_id,
            "room_id": event.room_id,
            "patient_id": patient_id,
        }
        for name, value in expected.items():
            if (step(task.kind) if name == "kind" else getattr(task, name)) != value:
                raise Rejected(
                    f"{event.TYPE}: task {task.task_id} has {name} "
                    f"{getattr(task, name)}, not {value}"
                )
        return task

    def _new_task(self, kind: str, patient_id: str, room_id: str, now_ms: int) -> Task:
        self._task_count += 1
        patient = self.patients.get(patient_id)
        acuity = patient.acuity if patient is not None and kind in WAITING_STAGE else 3
        task = Task(f"task-{self._task_count}", kind, patient_id, room_id, now_ms, acuity=acuity)
        self.tasks[task.task_id] = task
        self.waiting[task.task_id] = task
        self._new_tasks.append(task)
        if kind in WAITING_STAGE:
            self.patients[patient_id].stage = WAITING_STAGE[kind]
        return task

    # --- one tick's decisions ------------------------------------------------------------

    def has_choices(self) -> bool:
        """False when this tick has nothing to decide: no arrival, and no waiting task with
        a free staff member of its role."""
        if self.arrivals:
            return True
        if not self.waiting:
            return False
        idle = {s.role for s in self.staff.values() if s.task_id is None and s.on_duty}
        return bool(idle) and any(ROLE_OF_KIND[task.kind] in idle for task in self.waiting.values())

    def change_duty(self, now_ms: int, effects: list[tuple[type[ev.Decision], dict]]) -> None:
        """Staff whose shift or break began or ended by `now_ms`, announced; off duty, they
        get no new task and finish the one they have."""
        for staff_id in self.roster.shifts:
            staff = self.staff[staff_id]
            on = self.roster.on_duty(staff_id, now_ms)
            if on != staff.on_duty:
                staff.on_duty = on
                staff.held_until_ms, staff.hold_spent = None, False  # a hold ends off duty
                effects.append((ev.StaffOnDuty if on else ev.StaffOffDuty, {"staff_id": staff_id}))

    def end_holds(self, now_ms: int) -> None:
        """Holds whose time has come end; their staff and rooms are not held again until
        they have been used."""
        if self.outlook is None:
            return
        for staff in self.staff.values():
            if staff.held_until_ms is not None and staff.held_until_ms <= now_ms:
                staff.held_until_ms, staff.hold_spent = None, True
        for room in self.rooms.values():
            if room.held_until_ms is not None and room.held_until_ms <= now_ms:
                room.held_until_ms, room.reserved_for, room.hold_spent = None, "", True

    def problem(self, now_ms: int) -> TickProblem:
        free_rooms = tuple(r.room_id for r in self.rooms.values() if r.status == "free")
        free_staff = tuple(
            s.as_free_staff() for s in self.staff.values() if s.task_id is None and s.on_duty
        )
        tasks = [t.as_open_task() for t in self.waiting.values()]
        tasks += [
            OpenTask(
                f"arrival:{p.patient_id}",
                "escort_in",
                "porter",
                None,
                p.patient_id,
                p.arrived_ms,
                p.acuity,
            )
            for p in self.arrivals
        ]
        from_entrance = self.layout.from_entrance
        room_walking = {r: from_entrance(r) for r in free_rooms}
        arrivals = tuple(
            Arrival(p.patient_id, p.arrived_ms, p.acuity, p.isolation) for p in self.arrivals
        )
        return TickProblem(
            now_ms,
            arrivals,
            free_rooms,
            tuple(tasks),
            free_staff,
            Walking(self.layout, tasks, free_staff),
            room_walking,
            isolation_rooms=self.isolation_rooms,
            reserve_isolation_rooms=self.reserve_isolation_rooms,
            skills=self.skills,
            sla_ms=self.sla_ms,
            lookahead=None if self.outlook is None else self._lookahead(now_ms, free_rooms),
        )

    def _needs_isolation(self, patient_id: str) -> bool:
        """Whether a patient in the building needs isolation (a room's terminal clean after
        them); a cleaning's patient has left: its kind says."""
        patient = self.patients.get(patient_id)
        return patient is not None and patient.isolation

    def _lookahead(self, now_ms: int, free_rooms: tuple[str, ...]):
        assert self.outlook is not None
        busy = []
        for task in self.tasks.values():
            if task.staff_id is None:
                continue
            busy.append(
                Busy(
                    task.task_id,
                    task.kind,
                    task.staff_id,
                    self.staff[task.staff_id].location,  # their place until the task ends
                    task.room_id,
                    task.patient_id,
                    task.acuity,
                    self._needs_isolation(task.patient_id),
                    task.dispatched_ms if task.dispatched_ms is not None else now_ms,
                )
            )
        escorts = [
            Waiting(t.task_id, t.patient_id, t.room_id, t.acuity)
            for t in self.waiting.values()
            if t.kind == "escort_in"
        ]
        escorts += [
            Waiting(f"arrival:{p.patient_id}", p.patient_id, None, p.acuity) for p in self.arrivals
        ]
        pending = tuple(
            Pending(t.kind, t.room_id, t.acuity, self._needs_isolation(t.patient_id))
            for t in self.waiting.values()
        )
        staff = self.staff.values()
        state = State(
            busy=tuple(busy),
            free_staff=tuple(s.staff_id for s in staff if s.task_id is None and s.on_duty),
            off_duty=tuple(s.staff_id for s in staff if s.task_id is None and not s.on_duty),
            staff_location={s.staff_id: s.location for s in staff},
            staff_role={s.staff_id: s.role for s in staff},
            free_rooms=free_rooms,
            waiting_escorts=tuple(escorts),
            pending=pending,
            held_staff={s.staff_id: s.held_until_ms for s in staff if s.held_until_ms is not None},
            held_rooms={
                r.room_id: (r.reserved_for, r.held_until_ms)
                for r in self.rooms.values()
                if r.held_until_ms is not None
            },
            spent_staff=frozenset(s.staff_id for s in staff if s.hold_spent),
            spent_rooms=frozenset(r.room_id for r in self.rooms.values() if r.hold_spent),
        )
        return self.outlook.lookahead(now_ms, state)

    def decide(
        self,
        solution: Solution,
        effects: list[tuple[type[ev.Decision], dict]],
        now_ms: int = 0,
        problem: TickProblem | None = None,
    ) -> list[tuple[type[ev.Decision], dict]]:
        """Carry out a tick's solution; the decisions in their canonical order. With
        `explain`, referrals and dispatches say why, from the tick's `problem`."""
        decisions = list(effects)
        dispatches = dict(solution.dispatches)
        problem_key: dict[str, str] = {}  # task id -> its key in the problem
        why = problem if self.explain else None
        states: dict[str, str] = {}  # each room's state, for the first referral's reason
        for held_id, hold in solution.room_holds.items():
            held = self.rooms[held_id]
            held.held_until_ms, held.reserved_for = hold.until_ms, hold.reserved_for
            decisions.append(
                (
                    ev.RoomHeld,
                    {
                        "room_id": held_id,
                        "reserved_for": hold.reserved_for,
                        "reason": hold.reason,
                        "until_s": hold.until_ms / 1000,
                    },
                )
            )
        for patient in self.arrivals:
            room_id = solution.bookings.get(patient.patient_id)
            if room_id is None:
                self.patients.pop(patient.patient_id)
                patient.stage = "referred"
                self.finished.add(patient.patient_id)
                if why is not None and not states:
                    states = {r.room_id: r.status for r in self.rooms.values()}
                reason = (
                    "no free room"
                    if why is None
                    else explain.referral(why, patient.patient_id, solution, states)
                )
                decisions.append(
                    (ev.PatientReferred, {"patient_id": patient.patient_id, "reason": reason})
                )
                continue
            room = self.rooms[room_id]
            room.status, room.patient_id = "booked", patient.patient_id
            room.held_until_ms, room.reserved_for, room.hold_spent = None, "", False
            patient.room_id = room_id
            decisions.append(
                (ev.PatientAdmitted, {"patient_id": patient.patient_id, "room_id": room_id})
            )
            task = self._new_task("escort_in", patient.patient_id, room_id, patient.arrived_ms)
            staff_id = dispatches.get(f"arrival:{patient.patient_id}")
            if staff_id is not None:
                dispatches[task.task_id] = staff_id
                problem_key[task.task_id] = f"arrival:{patient.patient_id}"
        self.arrivals = []
        new = {t.task_id for t in self._new_tasks}
        for task in list(self.waiting.values()):
            staff_id = dispatches.get(task.task_id)
            if staff_id is None and task.task_id not in new:
                continue  # still waiting, already announced
            fields = {
                "task_id": task.task_id,
                "kind": task.kind,
                "patient_id": task.patient_id,
                "room_id": task.room_id,
            }
            if staff_id is not None:
                origin = self.staff[staff_id].location
                self._dispatch(task, staff_id, now_ms)
                if why is not None:
                    key = problem_key.get(task.task_id, task.task_id)
                    fields["reason"] = explain.dispatch(why, key, staff_id, solution.notes.get(key))
                decisions.append(
                    (ev.TaskDispatched, {**fields, "staff_id": staff_id, "origin": origin})
                )
            elif task.task_id in new:
                decisions.append((ev.TaskQueued, fields))
        self._new_tasks = []
        for staff_id, hold in solution.staff_holds.items():
            self.staff[staff_id].held_until_ms = hold.until_ms
            decisions.append(
                (
                    ev.StaffHeld,
                    {"staff_id": staff_id, "reason": hold.reason, "until_s": hold.until_ms / 1000},
                )
            )
        if self.sla_ms:
            self._escalate(now_ms, decisions)
        return decisions

    def _escalate(self, now_ms: int, decisions: list[tuple[type[ev.Decision], dict]]) -> None:
        """Tasks still waiting past their target, each announced once."""
        for task in self.waiting.values():
            target = self.sla_ms.get((task.kind, task.acuity <= 2))
            if target and not task.escalated and now_ms - task.created_ms > target:
                task.escalated = True
                decisions.append(
                    (
                        ev.TaskEscalated,
                        {
                            "task_id": task.task_id,
                            "kind": task.kind,
                            "waited_s": (now_ms - task.created_ms) / 1000,
                            "sla_s": target / 1000,
                        },
                    )
                )

    def _dispatch(self, task: Task, staff_id: str, now_ms: int) -> None:
        staff = self.staff[staff_id]
        task.staff_id = staff_id
        if self.outlook is not None:  # only the forecast needs it (and snapshots keep it then)
            task.dispatched_ms = now_ms
        staff.task_id = task.task_id
        staff.held_until_ms, staff.hold_spent = None, False
        del self.waiting[task.task_id]
        if task.kind in ACTIVE_STAGE:
            self.patients[task.patient_id].stage = ACTIVE_STAGE[task.kind]
        if step(task.kind) == "clean":
            self.rooms[task.room_id].status = "cleaning"

    # --- views ----------------------------------------------------------------------------

    def queues(self) -> dict[str, list[Task]]:
        by_role: dict[str, list[Task]] = {"porter": [], "medical": [], "cleaner": []}
        for task in self.waiting.values():
            by_role[task.role].append(task)
        return by_role
