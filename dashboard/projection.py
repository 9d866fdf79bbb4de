"""One small state projection of a run, fed tick by tick with the decisions the scheduler
made (and, when they are at hand, the inbound events it consumed). It serves the dashboard's
page, its `/metrics` and the HTML report alike, and knows nothing of the scheduler's objects.

From the decisions alone the hospital can be followed: a task's first appearance (queued or
dispatched) means the patient's previous task is done; `patient.discharged` closes the escort
out, `room.available` the cleaning. With the consumed events too, a task's wait is counted
from the instant it was created (an arrival, a completion) exactly as the KPI report counts
it; without them, from the tick that first listed it.

`apply` is on the follower's path: it does a few dictionary operations a decision and
nothing else; everything the page shows is built by `snapshot`, on the reader's thread. (A
run in this process has a cheaper way: `dashboard.embedded`.)
"""

from __future__ import annotations

import bisect
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from scheduler.hours import ByHour
from scheduler.layout import ROLE_OF_KIND, STEP_OF_KIND  # the vocabulary of task kinds

ROLES = ("porter", "medical", "cleaner")
PREVIOUS_KIND = {"visit": "escort_in", "escort_out": "visit"}
ROOM_STATES = ("free", "booked", "occupied", "dirty", "cleaning")
ENTRANCE = "entrance"
HOURLY = ("arrivals", "admitted", "referred", "discharged")
ARRIVAL_CHANGES = ("patient.updated", "patient.withdrawn")
# Prometheus histogram buckets, in seconds: a tick's solve around its 1 s budget, and a
# task's wait around the hospital's minutes.
SOLVE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
WAIT_BUCKETS = (0.0, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
# A count by key: a plain dict, its keys set beforehand where they are known. Not a Counter
# nor a defaultdict: the interpreter's fast path for `d[k] += 1` is for a dict itself, and a
# tick does a few such counts a decision.
Tally = dict[str, int]
COUNTS = ("arrivals", "admitted", "referred", "discharged", "in_rooms", "rejected", "duplicates")


@dataclass(slots=True)
class RoomView:
    room_id: str
    floor: str
    state: str = "free"
    patient_id: str | None = None
    isolation: bool = False  # a room able to isolate
    held_until_ms: int | None = None  # looking ahead: kept for a class of patients
    reserved_for: str = ""


@dataclass(slots=True)
class StaffView:
    staff_id: str
    role: str
    place: str = ENTRANCE  # where they are, or set off from
    task_id: str | None = None
    off_duty: bool = False
    held_until_ms: int | None = None  # looking ahead: kept free until then


@dataclass(slots=True)
class TaskView:
    task_id: str
    kind: str
    patient_id: str
    room_id: str
    created_ms: int
    staff_id: str | None = None
    dispatched_ms: int | None = None


@dataclass
class Histogram:
    """Cumulative-bucket histogram as Prometheus counts it: `counts[i]` observations
    <= `bounds[i]`, the last one +Inf."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    n: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value
        self.n += 1

    def cumulative(self) -> list[tuple[str, int]]:
        out, running = [], 0
        for bound, count in zip((*map(repr, self.bounds), "+Inf"), self.counts):
            running += count
            out.append((bound, running))
        return out


def floor_of(room_id: str) -> str:
    """The floor letters of a room id ("B12" -> "B")."""
    return room_id.rstrip("0123456789") or room_id


class Projection:
    """The hospital as its decisions tell it. Thread-safe: one writer (`apply`), any number
    of readers (`snapshot`, `metrics`)."""

    def __init__(
        self,
        rooms: Iterable[str] = (),
        staff: Iterable[tuple[str, str]] = (),
        *,
        sample_ms: int = 10_000,
        policy: str | None = None,
        run_id: str | None = None,
        label: str | None = None,
        duration_ms: int | None = None,
        isolation_rooms: Iterable[str] = (),
    ):
        self.lock = threading.Lock()
        self._rooms0, self._staff0 = tuple(rooms), tuple(staff)
        self.isolation_rooms = frozenset(isolation_rooms)
        self.rooms: dict[str, RoomView] = {
            r: RoomView(r, floor_of(r), isolation=r in self.isolation_rooms) for r in self._rooms0
        }
        self.staff: dict[str, StaffView] = {s: StaffView(s, role) for s, role in self._staff0}
        # how many rooms are in each state, kept as rooms move on (for the time series)
        self.room_counts: Tally = dict.fromkeys(ROOM_STATES, 0)
        self.room_counts["free"] = len(self.rooms)
        self.policy = policy
        self.run_id = run_id
        self.label = label  # the run's name (`hospital run --label`)
        self.warmup_ms = 0  # what the figures leave out (the run's own KPIs': LiveProjection)
        self.duration_ms = duration_ms  # how long the run is to last, when known
        # ESI level and isolation of each patient in the building, when the inbound events
        # are at hand (the decisions do not say them)
        self.patients: dict[str, tuple[int, bool]] = {}
        self.tasks: dict[str, TaskView] = {}  # open: waiting or in progress
        self.waiting: dict[str, dict[str, TaskView]] = {role: {} for role in ROLES}
        self.current: dict[str, str] = {}  # patient or room -> task in progress
        self.created_hint: dict[tuple[str, str], int] = {}  # (kind, patient) -> created
        self.busy: Tally = dict.fromkeys(ROLES, 0)  # role -> staff members on a task
        self.tick = -1
        self.ticks = 0
        self.time_ms = 0
        self.finished = False
        self.version = 0  # +1 each change
        self.generation = 0  # +1 each reset
        self.counts: Tally = dict.fromkeys(COUNTS, 0)
        self.decisions_by_type: Tally = {}
        self.escalations: Tally = {}  # task kind -> tasks past their target
        self.events_by_type: Tally = {}
        self.solve = Histogram(SOLVE_BUCKETS)
        # waits as wait in ms -> tasks (a few distinct values: whole ticks, mostly)
        self.waits_ms: dict[str, dict[int, int]] = {role: {} for role in ROLES}
        self.busy_ms = dict.fromkeys(ROLES, 0)
        self.occupied_ms = 0  # room-ms of patients gone
        self.admitted_ms: dict[str, int] = {}  # patient in a room -> admitted
        self.done_ms: dict[str, int] = {}  # task -> its completion's time, if known
        self.sample_ms = sample_ms
        self.next_sample_ms = 0
        self.series: list[dict[str, Any]] = []  # a point each `sample_ms` (see `_sample`)
        self.hourly: dict[int, Tally] = {}  # hour -> arrivals, admitted, referred
        self._hour_span: tuple[int, int, Tally] = (0, -1, {})  # (from, to] in ms, its counts
        # by hour of the day: arrivals and referrals (by the arrival when the inbound events
        # are at hand, else by the tick that decided them), waits (by the task's creation),
        # occupancy
        self.hours = ByHour(ROLES)
        self.staff_log: list[tuple[str, str, str, int, int]] = []  # staff, kind, room, from, to
        self.keep_staff_log = False
        self.lag: dict[str, int] = {}  # distributed mode: consumer lag
        self.dead_letters = 0
        self.rows_skipped = 0  # following a database or a file: rows that did not parse
        self._handlers = {kind: getattr(self, name) for kind, name in self._HANDLERS.items()}

    def reset(self) -> None:
        """Forget everything (a new run starts in the database being followed)."""
        with self.lock:
            fresh = Projection(
                self._rooms0,
                self._staff0,
                sample_ms=self.sample_ms,
                policy=self.policy,
                isolation_rooms=self.isolation_rooms,
            )
            lock, version, generation = self.lock, self.version, self.generation
            self.__dict__.update(fresh.__dict__)
            self.lock = lock
            self.version, self.generation = version + 1, generation + 1
            self._handlers = {kind: getattr(self, name) for kind, name in self._HANDLERS.items()}

    # --- the writer --------------------------------------------------------------------

    @classmethod
    def for_config(cls, config: Any, **kwargs: Any) -> Projection:
        from scheduler.config import staff_roster

        rooms = [
            f"{floor}{n}"
            for floor in config.hospital.floors
            for n in range(1, config.hospital.rooms_per_floor + 1)
        ]
        return cls(
            rooms,
            staff_roster(config),
            policy=config.scheduler.policy,
            isolation_rooms=config.hospital.isolation_rooms,
            **kwargs,
        )

    def apply(
        self,
        tick: int,
        time_ms: int,
        decisions: Iterable[Any],
        inbound: Iterable[Any] | None = None,
        *,
        solve_ms: float | None = None,
        rejected: int = 0,
        duplicates: int = 0,
    ) -> None:
        """One tick: its decisions (event objects with `TYPE` and their fields), and if
        known the inbound events it consumed and how long its solve took."""
        with self.lock:
            self._fold(tick, time_ms, decisions, inbound, solve_ms, rejected, duplicates)

    def apply_result(self, result: Any) -> None:
        """A `scheduler.engine.TickResult`, as `simulate_run`'s `on_tick` hands it over."""
        with self.lock:
            self._fold(
                result.tick,
                result.time_ms,
                result.decisions,
                result.consumed,
                result.solve_ms if result.solved else None,
                len(result.rejected),
                len(result.duplicates),
            )

    def _fold(
        self,
        tick: int,
        time_ms: int,
        decisions: Iterable[Any],
        inbound: Iterable[Any] | None,
        solve_ms: float | None,
        rejected: int,
        duplicates: int,
    ) -> None:
        if time_ms > self.time_ms:
            self.time_ms = time_ms
        self.tick = tick
        self.ticks += 1
        self.version += 1
        if rejected or duplicates:
            self.counts["rejected"] += rejected
            self.counts["duplicates"] += duplicates
        if solve_ms is not None:
            solve = self.solve
            seconds = solve_ms / 1000
            solve.counts[bisect.bisect_left(solve.bounds, seconds)] += 1
            solve.total += seconds
            solve.n += 1
        if inbound:
            by_type, hint, done = self.events_by_type, self.created_hint, self.done_ms
            for event in inbound:
                kind = event.TYPE
                by_type[kind] = by_type.get(kind, 0) + 1
                if kind == "patient.arrived":  # its escort in waits from now
                    hint["escort_in", event.patient_id] = event.time_ms
                    self.patients[event.patient_id] = (event.acuity, event.isolation)
                    continue
                if kind in ARRIVAL_CHANGES:  # of an arrival of this tick (HL7 A08, A11)
                    if kind == "patient.withdrawn":
                        del hint["escort_in", event.patient_id]
                    continue
                done[event.task_id] = event.time_ms
                # the task this completion creates, which waits from now
                if kind == "escort.completed":
                    following = "visit" if event.direction == "in" else "clean"
                elif kind == "visit.completed":
                    following = "escort_out"
                else:
                    continue
                hint[following, event.patient_id] = event.time_ms
        handlers, by_type = self._handlers, self.decisions_by_type
        for decision in decisions:
            kind = decision.TYPE
            by_type[kind] = by_type.get(kind, 0) + 1
            handler = handlers.get(kind)
            if handler is not None:
                handler(decision)
        if time_ms >= self.next_sample_ms:
            self._sample()

    def finish(self, end_ms: int | None = None) -> None:
        with self.lock:
            if end_ms is not None and end_ms > self.time_ms:
                self._sample_until(end_ms)
                self.time_ms = end_ms
            self.finished = True
            self.version += 1

    def _sample(self) -> None:
        """A time-series point: the state now, after the first tick at or past the next
        `sample_ms` mark (a tick changes the state; between two ticks it holds still)."""
        self.series.append(self._point())
        self.next_sample_ms = (self.time_ms // self.sample_ms + 1) * self.sample_ms

    def _sample_until(self, time_ms: int) -> None:
        """The points of the marks up to `time_ms`, the run over: its last state at each."""
        while self.next_sample_ms <= time_ms:
            self.time_ms = max(self.time_ms, self.next_sample_ms)
            self.series.append(self._point())
            self.next_sample_ms += self.sample_ms

    def _point(self) -> dict[str, Any]:
        counts, waiting, busy = self.counts, self.waiting_counts(), self.busy
        return {
            "t": self.time_ms / 1000,
            "occupied": counts["in_rooms"],
            "waiting": waiting,
            "busy": {role: busy[role] for role in ROLES},
            "referred": counts["referred"],
            "arrivals": counts["arrivals"],
            "rooms": dict(self.room_counts),
        }

    def _hour(self) -> Tally:
        # hour k holds the ticks of (k h, (k + 1) h], as a tick holds the events before it
        start, end, counter = self._hour_span
        if start < self.time_ms <= end:
            return counter
        hour = max(0, self.time_ms - 1) // 3_600_000
        if hour not in self.hourly:
            self.hourly[hour] = dict.fromkeys(HOURLY, 0)
        counter = self.hourly[hour]
        self._hour_span = (hour * 3_600_000, (hour + 1) * 3_600_000, counter)
        return counter

    def _room(self, room_id: str) -> RoomView:
        room = self.rooms.get(room_id)
        if room is None:
            room = self.rooms[room_id] = RoomView(room_id, floor_of(room_id))
            self.room_counts["free"] += 1
        return room

    def _move(self, room: RoomView, state: str) -> None:
        """A room moves on to `state`, and the counts by state with it."""
        counts = self.room_counts
        counts[room.state] -= 1
        counts[state] = counts.get(state, 0) + 1
        room.state = state

    def _admitted(self, d: Any) -> None:
        self.counts["arrivals"] += 1
        self.counts["admitted"] += 1
        self.counts["in_rooms"] += 1
        hour = self._hour()
        hour["arrivals"] += 1
        hour["admitted"] += 1
        self.hours.arrived(self.created_hint.get(("escort_in", d.patient_id), d.time_ms))
        self.admitted_ms[d.patient_id] = d.time_ms
        room = self._room(d.room_id)
        self._move(room, "booked")
        room.patient_id = d.patient_id
        room.held_until_ms = None  # booked: its hold ends

    def _referred(self, d: Any) -> None:
        self.counts["arrivals"] += 1
        self.counts["referred"] += 1
        hour = self._hour()
        hour["arrivals"] += 1
        hour["referred"] += 1
        arrived = self.created_hint.pop(("escort_in", d.patient_id), d.time_ms)
        self.hours.arrived(arrived)
        self.hours.referred(arrived)
        self.patients.pop(d.patient_id, None)

    def _discharged(self, d: Any) -> None:
        self.counts["discharged"] += 1
        self.counts["in_rooms"] -= 1
        self._hour()["discharged"] += 1
        left_ms = self._complete(self.current.pop(d.patient_id, None))
        admitted = self.admitted_ms.pop(d.patient_id, left_ms)
        self.occupied_ms += left_ms - admitted
        self.hours.occupy(admitted, left_ms)
        self.patients.pop(d.patient_id, None)
        room = self._room(d.room_id)
        self._move(room, "dirty")
        room.patient_id = None

    def _available(self, d: Any) -> None:
        self._complete(self.current.pop(d.room_id, None))
        room = self._room(d.room_id)
        self._move(room, "free")
        room.patient_id = None

    def _complete(self, task_id: str | None) -> int:
        """Close a task in progress; when it ended (its completion's time if known)."""
        if not task_id:
            return self.time_ms
        done_ms = self.done_ms.pop(task_id, self.time_ms)
        task = self.tasks.pop(task_id, None)
        if task is None or task.staff_id is None or task.dispatched_ms is None:
            return done_ms
        self.busy_ms[ROLE_OF_KIND[task.kind]] += done_ms - task.dispatched_ms
        if self.keep_staff_log:
            self.staff_log.append(
                (task.staff_id, task.kind, task.room_id, task.dispatched_ms, done_ms)
            )
        staff = self.staff.get(task.staff_id)
        if staff is not None and staff.task_id == task_id:
            staff.task_id = None
            self.busy[staff.role] = self.busy.get(staff.role, 0) - 1
            staff.place = ENTRANCE if task.kind == "escort_out" else task.room_id
        return done_ms

    def _new_task(self, d: Any) -> TaskView:
        """A task's first appearance: the patient's previous task is done."""
        kind, patient_id = d.kind, d.patient_id
        step = STEP_OF_KIND.get(kind, kind)
        if step in PREVIOUS_KIND:
            self._complete(self.current.pop(patient_id, None))
            if step == "visit":
                self._move(self._room(d.room_id), "occupied")
        created = self.created_hint.pop((step, patient_id), d.time_ms)
        task = self.tasks[d.task_id] = TaskView(d.task_id, kind, patient_id, d.room_id, created)
        return task

    def _queued(self, d: Any) -> None:
        task = self._new_task(d)
        self.waiting[ROLE_OF_KIND[d.kind]][d.task_id] = task

    def _dispatched(self, d: Any) -> None:
        task_id, role = d.task_id, ROLE_OF_KIND[d.kind]
        task = self.tasks.get(task_id)
        if task is None:
            task = self._new_task(d)
        else:
            self.waiting[role].pop(task_id, None)
        time_ms = d.time_ms
        task.staff_id, task.dispatched_ms = d.staff_id, time_ms
        waits, wait = self.waits_ms[role], time_ms - task.created_ms
        waits[wait] = waits.get(wait, 0) + 1
        self.hours.waited(role, task.created_ms, wait)
        cleaning = role == "cleaner"  # a cleaning is the room's task, not a patient's
        self.current[d.room_id if cleaning else d.patient_id] = task_id
        staff = self.staff.get(d.staff_id)
        if staff is None:
            staff = self.staff[d.staff_id] = StaffView(d.staff_id, role)
        if staff.task_id is None:
            self.busy[staff.role] = self.busy.get(staff.role, 0) + 1
        staff.task_id, staff.held_until_ms = task_id, None  # given a task: a hold ends
        staff.place = getattr(d, "origin", staff.place)
        if cleaning:
            self._move(self._room(d.room_id), "cleaning")

    def _staff_member(self, d: Any) -> StaffView:
        staff = self.staff.get(d.staff_id)
        if staff is None:
            staff = self.staff[d.staff_id] = StaffView(d.staff_id, "")
        return staff

    def _off_duty(self, d: Any) -> None:
        member = self._staff_member(d)
        member.off_duty, member.held_until_ms = True, None

    def _staff_held(self, d: Any) -> None:
        self._staff_member(d).held_until_ms = round(d.until_s * 1000)

    def _room_held(self, d: Any) -> None:
        room = self._room(d.room_id)
        room.held_until_ms, room.reserved_for = round(d.until_s * 1000), d.reserved_for

    def _on_duty(self, d: Any) -> None:
        self._staff_member(d).off_duty = False

    def _escalated(self, d: Any) -> None:
        self.escalations[d.kind] = self.escalations.get(d.kind, 0) + 1

    _HANDLERS = {
        "patient.admitted": "_admitted",
        "patient.referred": "_referred",
        "patient.discharged": "_discharged",
        "room.available": "_available",
        "task.queued": "_queued",
        "task.dispatched": "_dispatched",
        "staff.off_duty": "_off_duty",
        "staff.held": "_staff_held",
        "room.held": "_room_held",
        "staff.on_duty": "_on_duty",
        "task.escalated": "_escalated",
    }

    # --- the readers -------------------------------------------------------------------

    def wait_histograms(self) -> dict[str, Histogram]:
        """Each role's waits in seconds as a Prometheus histogram (call with the lock held)."""
        out = {}
        for role, counts in self.waits_ms.items():
            h = out[role] = Histogram(WAIT_BUCKETS)
            for wait_ms, n in counts.items():
                h.counts[bisect.bisect_left(h.bounds, wait_ms / 1000)] += n
                h.total += wait_ms * n
                h.n += n
            h.total /= 1000
        return out

    def waiting_counts(self) -> dict[str, int]:
        """How many tasks wait, by role (call with the lock held)."""
        return {role: len(self.waiting[role]) for role in ROLES}

    def in_progress(self) -> Iterator[tuple[str, int]]:
        """(role, dispatched at) of each task in progress (call with the lock held)."""
        for task in self.tasks.values():
            if task.dispatched_ms is not None:
                yield ROLE_OF_KIND[task.kind], task.dispatched_ms

    def tiles(self) -> dict[str, Any]:
        """The KPI tiles (call with the lock held)."""
        arrivals = self.counts["arrivals"]
        rooms = len(self.rooms) or 1
        busy = self.busy
        staff = Counter(s.role for s in self.staff.values())  # the roster, on duty or not
        # time-weighted figures from the warm-up on, if the run leaves one out
        start = min(self.warmup_ms, self.time_ms)
        now, seconds = self.time_ms, (self.time_ms - start) / 1000 or 1.0
        occupied = self.occupied_ms + sum(now - max(t, start) for t in self.admitted_ms.values())
        busy_ms = dict(self.busy_ms)
        for role, dispatched_ms in self.in_progress():
            busy_ms[role] += now - max(dispatched_ms, start)
        return {
            "arrivals": arrivals,
            "admitted": self.counts["admitted"],
            "referred": self.counts["referred"],
            "referral_rate": round(self.counts["referred"] / arrivals, 4) if arrivals else 0.0,
            "discharged": self.counts["discharged"],
            "in_building": self.counts["in_rooms"],
            "occupancy_now": round(self.counts["in_rooms"] / rooms, 4),
            "room_occupancy": round(occupied / 1000 / (rooms * seconds), 4),
            "utilisation": {
                role: round(busy_ms[role] / 1000 / (staff[role] * seconds), 4)
                if staff[role]
                else 0.0
                for role in ROLES
            },
            "wait_mean_s": {
                role: round(h.total / h.n, 3) if h.n else 0.0
                for role, h in self.wait_histograms().items()
            },
            "waiting": self.waiting_counts(),
            "busy": {role: busy[role] for role in ROLES},
            "staff": {role: staff[role] for role in ROLES},
            "sla_breaches": sum(self.escalations.values()),
        }

    def snapshot(self, series_from: int = 0, queue_limit: int = 50) -> dict[str, Any]:
        """Everything the page shows, as JSON-ready data; the time series from the point
        numbered `series_from` on (the page already has those before)."""
        with self.lock:
            now = self.time_ms
            floors: dict[str, list[dict[str, Any]]] = {}
            esi = self._esi
            for room in self.rooms.values():
                held = room.held_until_ms is not None and room.held_until_ms > now
                floors.setdefault(room.floor, []).append(
                    {
                        "id": room.room_id,
                        "state": room.state,
                        "patient": room.patient_id,
                        "isolation": room.isolation,
                        **esi(room.patient_id),
                        **({"held_for": room.reserved_for} if held else {}),
                    }
                )
            staff = []
            for member in self.staff.values():
                task = self.tasks.get(member.task_id) if member.task_id else None
                staff.append(
                    {
                        "id": member.staff_id,
                        "role": member.role,
                        "place": member.place,
                        "off_duty": member.off_duty,
                        "held_until_s": member.held_until_ms / 1000
                        if member.held_until_ms is not None and member.held_until_ms > now
                        else None,
                        "task": None
                        if task is None or task.dispatched_ms is None
                        else {
                            "kind": task.kind,
                            "patient": task.patient_id,
                            "room": task.room_id,
                            "for_s": (now - task.dispatched_ms) / 1000,
                            **esi(task.patient_id),
                        },
                    }
                )
            queues = {
                role: {
                    "count": len(tasks),
                    "tasks": [
                        {
                            "task": t.task_id,
                            "kind": t.kind,
                            "patient": t.patient_id,
                            "room": t.room_id,
                            "age_s": (now - t.created_ms) / 1000,
                            **esi(t.patient_id),
                        }
                        for t in list(tasks.values())[:queue_limit]
                    ],
                }
                for role, tasks in self.waiting.items()
            }
            return {
                "run_id": self.run_id,
                "label": self.label,
                "policy": self.policy,
                "tick": self.tick,
                "time_s": now / 1000,
                "duration_s": None if self.duration_ms is None else self.duration_ms / 1000,
                "finished": self.finished,
                "version": self.version,
                "floors": [{"floor": f, "rooms": rs} for f, rs in floors.items()],
                "staff": staff,
                "queues": queues,
                "tiles": self.tiles(),
                "series_from": series_from,
                "series": self.series[series_from:],
                "hourly": [
                    {"hour": h, **{k: c[k] for k in HOURLY}} for h, c in sorted(self.hourly.items())
                ],
                "by_hour": self.by_hour(),
            }

    def _esi(self, patient_id: str | None) -> dict[str, Any]:
        """The patient's ESI level and isolation need, when known (call with the lock held)."""
        known = self.patients.get(patient_id) if patient_id else None
        return {} if known is None else {"esi": known[0], "isolation_need": known[1]}

    def by_hour(self) -> list[dict[str, Any]]:
        """The figures by hour of the day (`scheduler.hours`), as the KPI report's `by_hour`
        has them when the inbound events are at hand (call with the lock held)."""
        return self.hours.figures(self.time_ms, len(self.rooms), self.admitted_ms.values())
