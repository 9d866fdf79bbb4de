"""Scheduler snapshots: the state a restart needs, as compact JSON, checked on load.

`dump` writes what the config does not already give: the engine's tick, counters and the
ids of the events it applied, the hospital's rooms, staff, the patients still in the
building and the tasks still open, and the validator's own tables. What no later event can
refer to (patients who left, tasks done) is dropped; the ids of the events applied, of the
patients who left and of the tasks decided are kept as `IdSet`s, a bit per id. No config
value is inside, so no credential either: a fingerprint of the config's deciding sections
says which config the state belongs to, and `load` is given that config.

`load` never runs code from the snapshot and never trusts it: the JSON is size-limited, its
shape checked (types, known keys, numbers in range) and every id in it must refer to a room,
a staff member, a patient or a task of the config and the state; otherwise `SnapshotError`
says what is wrong, and the caller replays the stored ticks instead.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from scheduler import events as ev
from scheduler.config import Config, shareable
from scheduler.engine import Scheduler
from scheduler.hospital import Patient, Task
from scheduler.layout import ENTRANCE, ROLE_OF_KIND
from scheduler.validator import DONE_BY, _Task

FORMAT = 2  # 2: the checker's tasks say when they began to wait
MAX_BYTES = 8 << 20  # a week of the default hospital takes 5 KB
MAX_COUNT = 2**53 - 1  # counters, ticks and times (ms): exact in any JSON reader
MAX_LIST = 1_000_000  # live patients or open tasks: bounded by the hospital's size


class SnapshotError(ValueError):
    """A snapshot that cannot be used; the message says why."""


class ConfigMismatch(SnapshotError):
    """A snapshot taken under another config (its deciding sections differ)."""


def fingerprint(config: Config) -> str:
    """A hash of the sections that decide (not where the broker and database are, nor who
    logs in to them): a snapshot holds this, never the values."""
    text = json.dumps(shareable(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


# --- the shape of a snapshot -----------------------------------------------------------------

Id = Annotated[str, StringConstraints(min_length=1, max_length=ev.IdSet.MAX_ID_CHARS)]
Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]
Tick = Annotated[int, Field(ge=-1, le=MAX_COUNT)]
Acuity = Annotated[int, Field(ge=1, le=5)]
Kind = Literal["escort_in", "visit", "escort_out", "clean", "clean_terminal"]


class _Shape(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class IdSetShape(_Shape):
    bits: dict[Id, str] = Field(max_length=ev.IdSet.MAX_PREFIXES)
    other: list[Id] = Field(max_length=MAX_LIST)


class Counters(_Shape):
    ticks: Count
    events: Count
    rejected: Count
    duplicates: Count


class EngineShape(_Shape):
    last_tick: Tick
    counters: Counters
    seen: IdSetShape


class PolicyShape(_Shape):
    solved: Count | None = None
    forced: Count | None = None


ReservedFor = Literal["urgent", "isolation"]


class RoomShape(_Shape):
    status: Literal["free", "booked", "occupied", "dirty", "cleaning"]
    patient: Id | None
    # Looking ahead only (absent otherwise): a live hold, and a hold that ran out unused.
    held_until_ms: Count | None = None
    reserved_for: ReservedFor | None = None
    hold_spent: bool = False


class StaffShape(_Shape):
    location: Id
    task: Id | None
    on_duty: bool
    held_until_ms: Count | None = None
    hold_spent: bool = False


class PatientShape(_Shape):
    id: Id
    arrived_ms: Count
    stage: Literal[
        "arrived",
        "waiting_escort_in",
        "escorting_in",
        "waiting_visit",
        "in_visit",
        "waiting_escort_out",
        "escorting_out",
    ]
    room: Id | None
    acuity: Acuity
    isolation: bool


class TaskShape(_Shape):
    id: Id
    kind: Kind
    patient: Id
    room: Id
    created_ms: Count
    staff: Id | None
    acuity: Acuity
    escalated: bool
    dispatched_ms: Count | None = None  # looking ahead only: when its staff member set off


class HospitalShape(_Shape):
    rooms: dict[Id, RoomShape]
    staff: dict[Id, StaffShape]
    patients: list[PatientShape] = Field(max_length=MAX_LIST)
    tasks: list[TaskShape] = Field(max_length=MAX_LIST)
    waiting: list[Id] = Field(max_length=MAX_LIST)
    arrivals: list[Id] = Field(max_length=MAX_LIST)
    new_tasks: list[Id] = Field(max_length=MAX_LIST)
    finished: IdSetShape
    task_count: Count


class AuditRoomShape(_Shape):
    status: Literal["free", "taken", "dirty", "cleaning"]
    occupant: Id | None
    held_until_ms: Count | None = None
    reserved_for: ReservedFor | None = None
    hold_spent: bool = False


class AuditStaffShape(_Shape):
    task: Id | None
    place: Id
    on_duty: bool
    held_until_ms: Count | None = None
    hold_spent: bool = False


class AuditTaskShape(_Shape):
    id: Id
    kind: Kind
    patient: Id
    room: Id
    staff: Id | None
    escalated: bool
    created_ms: Count


class AuditorShape(_Shape):
    rooms: dict[Id, AuditRoomShape]
    staff: dict[Id, AuditStaffShape]
    tasks: list[AuditTaskShape] = Field(max_length=MAX_LIST)
    patients: dict[Id, Literal["arrived", "admitted", "in_room"]] = Field(max_length=MAX_LIST)
    acuity: dict[Id, Acuity] = Field(max_length=MAX_LIST)
    isolated: list[Id] = Field(max_length=MAX_LIST)
    terminal: list[Id] = Field(max_length=MAX_LIST)
    left: IdSetShape
    task_ids: IdSetShape
    arrived: Count
    referred: Count
    discharged: Count
    last_tick: Tick


class SnapshotShape(_Shape):
    format: Literal[2]
    config: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
    engine: EngineShape
    policy_counters: PolicyShape
    hospital: HospitalShape
    auditor: AuditorShape | None


# --- dump ----------------------------------------------------------------------------------


def _hold(until_ms: int | None, spent: bool, reserved_for: str = "") -> dict[str, Any]:
    """A member's or room's hold, written only when there is one: a snapshot of a run that
    does not look ahead is as it always was."""
    hold: dict[str, Any] = {}
    if until_ms is not None:
        hold["held_until_ms"] = until_ms
        if reserved_for:
            hold["reserved_for"] = reserved_for
    if spent:
        hold["hold_spent"] = True
    return hold


def dump(scheduler: Scheduler) -> bytes:
    """The scheduler's state as compact UTF-8 JSON, keys sorted: the same state gives the
    same bytes."""
    hospital, auditor = scheduler.hospital, scheduler.auditor
    looking_ahead = hospital.outlook is not None
    state = {
        "format": FORMAT,
        "config": fingerprint(scheduler.config),
        "engine": {
            "last_tick": scheduler.last_tick,
            "counters": scheduler.counters,
            "seen": scheduler.seen.to_json(),
        },
        "policy_counters": {
            name: getattr(scheduler.policy, name)
            for name in ("solved", "forced")
            if isinstance(getattr(scheduler.policy, name, None), int)
        },
        "hospital": {
            "rooms": {
                r.room_id: {
                    "status": r.status,
                    "patient": r.patient_id,
                    **_hold(r.held_until_ms, r.hold_spent, r.reserved_for),
                }
                for r in hospital.rooms.values()
            },
            "staff": {
                s.staff_id: {
                    "location": s.location,
                    "task": s.task_id,
                    "on_duty": s.on_duty,
                    **_hold(s.held_until_ms, s.hold_spent),
                }
                for s in hospital.staff.values()
            },
            "patients": [
                {
                    "id": p.patient_id,
                    "arrived_ms": p.arrived_ms,
                    "stage": p.stage,
                    "room": p.room_id,
                    "acuity": p.acuity,
                    "isolation": p.isolation,
                }
                for p in hospital.patients.values()
            ],
            "tasks": [
                {
                    "id": t.task_id,
                    "kind": t.kind,
                    "patient": t.patient_id,
                    "room": t.room_id,
                    "created_ms": t.created_ms,
                    "staff": t.staff_id,
                    "acuity": t.acuity,
                    "escalated": t.escalated,
                    **(
                        {"dispatched_ms": t.dispatched_ms}
                        if looking_ahead and t.dispatched_ms is not None
                        else {}
                    ),
                }
                for t in hospital.tasks.values()
            ],
            "waiting": list(hospital.waiting),
            "arrivals": [p.patient_id for p in hospital.arrivals],
            "new_tasks": [t.task_id for t in hospital._new_tasks],
            "finished": hospital.finished.to_json(),
            "task_count": hospital._task_count,
        },
        "auditor": None
        if auditor is None
        else {
            "rooms": {
                r: {
                    "status": s,
                    "occupant": auditor.occupant[r],
                    **_hold(
                        auditor.held_rooms.get(r, ("", None))[1],
                        r in auditor.spent_rooms,
                        auditor.held_rooms.get(r, ("", None))[0],
                    ),
                }
                for r, s in auditor.rooms.items()
            },
            "staff": {
                s: {
                    "task": auditor.busy[s],
                    "place": auditor.place[s],
                    "on_duty": auditor.on_duty[s],
                    **_hold(auditor.held_staff.get(s), s in auditor.spent_staff),
                }
                for s in auditor.role
            },
            "tasks": [
                {
                    "id": i,
                    "kind": t.kind,
                    "patient": t.patient_id,
                    "room": t.room_id,
                    "staff": t.staff_id,
                    "escalated": t.escalated,
                    "created_ms": t.created_ms,
                }
                for i, t in auditor.tasks.items()
            ],
            "patients": auditor.patients,
            "acuity": auditor.acuity,
            "isolated": sorted(auditor.isolated),
            "terminal": sorted(auditor.terminal),
            "left": auditor.left.to_json(),
            "task_ids": auditor.task_ids.to_json(),
            "arrived": auditor.arrived,
            "referred": auditor.referred,
            "discharged": auditor.discharged,
            "last_tick": auditor.last_tick,
        },
    }
    return json.dumps(state, sort_keys=True, separators=(",", ":")).encode()


# --- load ----------------------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def parse(data: bytes | str) -> SnapshotShape:
    """The snapshot's JSON, of the expected shape; `SnapshotError` otherwise."""
    if not isinstance(data, (bytes, bytearray, memoryview, str)):
        raise SnapshotError(f"a snapshot is JSON text, not {type(data).__name__}")
    if len(data) > MAX_BYTES:
        raise SnapshotError(f"{len(data)} bytes: larger than the {MAX_BYTES} allowed")
    try:
        text = data if isinstance(data, str) else bytes(data).decode("utf-8")
        raw = json.loads(text, parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise SnapshotError("not UTF-8 text (an old pickled snapshot?)") from None
    except (ValueError, RecursionError) as exc:
        raise SnapshotError(f"not valid JSON: {str(exc)[:200]}") from None
    if isinstance(raw, dict) and raw.get("format") != FORMAT:
        raise SnapshotError(f"format {str(raw.get('format'))[:20]}, not {FORMAT}")
    try:
        return SnapshotShape.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "the snapshot"
        raise SnapshotError(
            f"{where}: {first['msg']} ({exc.error_count()} "
            f"error{'s' if exc.error_count() > 1 else ''})"
        ) from None


def load(config: Config, data: bytes | str) -> Scheduler:
    """A scheduler for `config` in the state `data` holds; `SnapshotError` (`ConfigMismatch`
    for another config's snapshot) when it cannot be used."""
    shape = parse(data)
    if shape.config != fingerprint(config):
        raise ConfigMismatch("taken under another config")
    scheduler = Scheduler(config)
    if (scheduler.auditor is None) != (shape.auditor is None):
        raise SnapshotError("auditor: present exactly when scheduler.validate is on")
    try:
        _restore_engine(scheduler, shape)
        _restore_hospital(scheduler, shape.hospital)
        if shape.auditor is not None:
            _restore_auditor(scheduler, shape.auditor)
    except ValueError as exc:
        raise SnapshotError(str(exc)) from None
    return scheduler


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _distinct(ids: list[str], what: str) -> None:
    _check(len(set(ids)) == len(ids), f"{what}: an id given twice")


def _restore_engine(scheduler: Scheduler, shape: SnapshotShape) -> None:
    scheduler.last_tick = shape.engine.last_tick
    scheduler.counters = shape.engine.counters.model_dump()
    scheduler.seen = _idset(shape.engine.seen, "engine.seen")
    for name in ("solved", "forced"):
        value = getattr(shape.policy_counters, name)
        _check(
            (value is None) != isinstance(getattr(scheduler.policy, name, None), int),
            f"policy_counters.{name}: not a counter of this config's policy",
        )
        if value is not None:
            setattr(scheduler.policy, name, value)


def _idset(shape: IdSetShape, where: str) -> ev.IdSet:
    try:
        return ev.IdSet.from_json(shape.model_dump())
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


_TASK_ID = re.compile(r"^task-([1-9][0-9]{0,15})$")
_PATIENT_KINDS = frozenset({"escort_in", "visit", "escort_out"})


def _restore_hospital(scheduler: Scheduler, shape: HospitalShape) -> None:
    hospital = scheduler.hospital
    now_ms = max(scheduler.last_tick, 0) * scheduler.tick_ms
    _check(set(shape.rooms) == set(hospital.rooms), "hospital.rooms: not this config's rooms")
    _check(set(shape.staff) == set(hospital.staff), "hospital.staff: not this config's staff")
    places = set(hospital.rooms) | {ENTRANCE}
    finished = _idset(shape.finished, "hospital.finished")
    patients: dict[str, Patient] = {}
    for p in shape.patients:
        _check(
            p.id not in patients and p.id not in finished,
            f"patient {p.id}: given twice, or both in the building and gone",
        )
        _check(p.room is None or p.room in hospital.rooms, f"patient {p.id}: unknown room")
        _check(p.arrived_ms <= now_ms, f"patient {p.id}: arrived after the last tick")
        patients[p.id] = Patient(p.id, p.arrived_ms, p.stage, p.room, p.acuity, p.isolation)
    tasks: dict[str, Task] = {}
    for t in shape.tasks:
        number = _TASK_ID.match(t.id)
        _check(
            number is not None and int(number[1]) <= shape.task_count and t.id not in tasks,
            f"task {t.id}: not a task id up to task-{shape.task_count}, or given twice",
        )
        _check(t.room in hospital.rooms, f"task {t.id}: unknown room {t.room}")
        _check(
            t.kind not in _PATIENT_KINDS or t.patient in patients,
            f"task {t.id}: {t.kind} of {t.patient}, who is not in the building",
        )
        _check(t.created_ms <= now_ms, f"task {t.id}: created after the last tick")
        if t.staff is not None:
            staff = shape.staff.get(t.staff)
            _check(
                staff is not None
                and staff.task == t.id
                and hospital.staff[t.staff].role == ROLE_OF_KIND[t.kind],
                f"task {t.id}: {t.staff} is not doing it",
            )
        _check(
            t.dispatched_ms is None or (t.staff is not None and t.dispatched_ms <= now_ms),
            f"task {t.id}: dispatched after the last tick, or to nobody",
        )
        tasks[t.id] = Task(
            t.id, t.kind, t.patient, t.room, t.created_ms, t.staff, t.acuity, t.escalated
        )
        tasks[t.id].dispatched_ms = t.dispatched_ms
    for staff_id, s in shape.staff.items():
        _check(s.location in places, f"staff {staff_id}: unknown location")
        _check(
            s.task is None or (s.task in tasks and tasks[s.task].staff_id == staff_id),
            f"staff {staff_id}: task {s.task} is not theirs",
        )
        _check_hold(f"staff {staff_id}", s.held_until_ms, s.hold_spent, hospital, now_ms)
        _check(
            s.held_until_ms is None or (s.task is None and s.on_duty),
            f"staff {staff_id}: held while busy or off duty",
        )
        member = hospital.staff[staff_id]
        member.location, member.task_id, member.on_duty = s.location, s.task, s.on_duty
        member.held_until_ms, member.hold_spent = s.held_until_ms, s.hold_spent
    for room_id, r in shape.rooms.items():
        _check(r.patient is None or r.patient in patients, f"room {room_id}: unknown patient")
        _check_hold(f"room {room_id}", r.held_until_ms, r.hold_spent, hospital, now_ms)
        _check(
            (r.held_until_ms is None) == (r.reserved_for is None)
            and (r.held_until_ms is None or r.status == "free"),
            f"room {room_id}: a hold without its class, or of a room that is not free",
        )
        room = hospital.rooms[room_id]
        room.status, room.patient_id = r.status, r.patient
        room.held_until_ms, room.reserved_for = r.held_until_ms, r.reserved_for or ""
        room.hold_spent = r.hold_spent
    for what, ids in (("waiting", shape.waiting), ("new_tasks", shape.new_tasks)):
        _distinct(ids, f"hospital.{what}")
        _check(all(i in tasks for i in ids), f"hospital.{what}: not an open task")
    _check(
        set(shape.waiting) == {i for i, t in tasks.items() if t.staff_id is None},
        "hospital.waiting: not the open tasks nobody is doing",
    )
    _distinct(shape.arrivals, "hospital.arrivals")
    _check(all(p in patients for p in shape.arrivals), "hospital.arrivals: unknown patient")
    hospital.patients = patients
    hospital.tasks = tasks
    hospital.waiting = {i: tasks[i] for i in shape.waiting}
    hospital.arrivals = [patients[p] for p in shape.arrivals]
    hospital._new_tasks = [tasks[i] for i in shape.new_tasks]
    hospital.finished = finished
    hospital._task_count = shape.task_count


def _check_hold(what: str, until_ms: int | None, spent: bool, hospital, now_ms: int) -> None:
    """A hold only looking ahead, live past the last tick, and never both live and spent."""
    if until_ms is None and not spent:
        return
    _check(hospital.outlook is not None, f"{what}: a hold, but this config does not look ahead")
    _check(until_ms is None or until_ms > now_ms, f"{what}: a hold that ended before the tick")
    _check(until_ms is None or not spent, f"{what}: held, and its last hold spent")


def _restore_auditor(scheduler: Scheduler, shape: AuditorShape) -> None:
    auditor = scheduler.auditor
    assert auditor is not None
    _check(set(shape.rooms) == set(auditor.rooms), "auditor.rooms: not this config's rooms")
    _check(set(shape.staff) == set(auditor.role), "auditor.staff: not this config's staff")
    _check(shape.last_tick <= scheduler.last_tick, "auditor.last_tick: after the engine's")
    places = set(auditor.rooms) | {ENTRANCE}
    tasks: dict[str, _Task] = {}
    for t in shape.tasks:
        _check(
            t.id not in tasks and t.room in auditor.rooms,
            f"auditor task {t.id}: given twice, or of an unknown room",
        )
        _check(
            t.staff is None
            or (
                t.staff in shape.staff
                and shape.staff[t.staff].task == t.id
                and auditor.role[t.staff] == DONE_BY[t.kind]
            ),
            f"auditor task {t.id}: {t.staff} is not doing it",
        )
        tasks[t.id] = _Task(t.kind, t.patient, t.room, t.staff, t.escalated, t.created_ms)
    for staff_id, s in shape.staff.items():
        _check(s.place in places, f"auditor staff {staff_id}: unknown place")
        _check(
            s.task is None or (s.task in tasks and tasks[s.task].staff_id == staff_id),
            f"auditor staff {staff_id}: task {s.task} is not theirs",
        )
    for room_id, r in shape.rooms.items():
        _check(
            r.occupant is None or r.occupant in shape.patients,
            f"auditor room {room_id}: unknown occupant",
        )
    for what, ids in (("acuity", list(shape.acuity)), ("isolated", shape.isolated)):
        _check(set(ids) <= set(shape.patients), f"auditor.{what}: a patient not in the building")
    _distinct(shape.isolated, "auditor.isolated")
    _distinct(shape.terminal, "auditor.terminal")
    _check(set(shape.terminal) <= set(auditor.rooms), "auditor.terminal: unknown room")
    for room_id, r in shape.rooms.items():
        auditor._room(room_id, r.status)  # keeps the free-room counts
        auditor.occupant[room_id] = r.occupant
    auditor.tasks = tasks
    auditor.patients = dict(shape.patients)
    auditor.acuity = dict(shape.acuity)
    auditor.isolated = set(shape.isolated)
    auditor.terminal = set(shape.terminal)
    auditor.left = _idset(shape.left, "auditor.left")
    auditor.task_ids = _idset(shape.task_ids, "auditor.task_ids")
    auditor.arrived, auditor.referred = shape.arrived, shape.referred
    auditor.discharged, auditor.last_tick = shape.discharged, shape.last_tick
    # The per-role counts follow from the tables: worked out again, not trusted.
    now_ms = max(scheduler.last_tick, 0) * scheduler.tick_ms
    for staff_id, s in shape.staff.items():
        auditor.busy[staff_id], auditor.place[staff_id] = s.task, s.place
        auditor._set_idle(staff_id, -1)  # as a fresh auditor counted them: idle
        auditor.on_duty[staff_id] = s.on_duty
        _check_hold(
            f"auditor staff {staff_id}", s.held_until_ms, s.hold_spent, scheduler.hospital, now_ms
        )
        _check(
            s.held_until_ms is None or (s.task is None and s.on_duty),
            f"auditor staff {staff_id}: held while busy or off duty",
        )
        if s.held_until_ms is not None:
            auditor.held_staff[staff_id] = s.held_until_ms  # held: not idle
        elif s.task is None:
            auditor._set_idle(staff_id, 1)
        if s.hold_spent:
            auditor.spent_staff.add(staff_id)
    for room_id, r in shape.rooms.items():
        _check_hold(
            f"auditor room {room_id}", r.held_until_ms, r.hold_spent, scheduler.hospital, now_ms
        )
        _check(
            (r.held_until_ms is None) == (r.reserved_for is None)
            and (r.held_until_ms is None or r.status == "free"),
            f"auditor room {room_id}: a hold without its class, or of a room not free",
        )
        if r.held_until_ms is not None and r.reserved_for is not None:
            auditor.held_rooms[room_id] = (r.reserved_for, r.held_until_ms)
        if r.hold_spent:
            auditor.spent_rooms.add(room_id)
    for task in tasks.values():
        if task.staff_id is None:
            auditor.waiting[auditor._waits_for(task)] += 1
    auditor.deadlines = []  # when the waiting tasks pass their targets: worked out again
    for task_id, task in tasks.items():
        auditor._watch(task_id, task)
