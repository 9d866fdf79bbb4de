"""The projection of a run in this process (`hospital run --dashboard`), made cheap for the
run: a tick costs it a few counters, and the hospital's state is read from the scheduler
itself instead of being rebuilt from the decisions.

`Projection.apply` follows the hospital from its decisions alone, which is all a run in
another process gives. Here, on the run's thread (`on_tick`, between two ticks), a tick only
adds to the figures that accumulate — counts, waits, busy time, room occupancy, the time
series — in one pass over its decisions and events; the rooms, staff and waiting lists,
which the page shows as they are now, are copied from the scheduler's `Hospital` at most
every `view_s` of wall time, and at the end. That is two thirds of the fold's instructions,
and none of its objects. The readers (the page, /metrics) are `Projection`'s: they see the
figures up to the last tick and a view at most `view_s` old.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from dashboard.projection import ROLES, Projection, RoomView, StaffView, TaskView, floor_of
from scheduler.layout import ROLE_OF_KIND

# Which role a completion frees.
ROLE_OF_COMPLETION = {
    "escort.completed": "porter",
    "visit.completed": "medical",
    "cleaning.completed": "cleaner",
}


class LiveProjection(Projection):
    """A `Projection` fed by `on_tick(scheduler, result)` of the run in this process."""

    def __init__(self, *args: Any, view_s: float = 0.25, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.view_s = view_s
        self._next_view = 0.0
        self._hospital: Any = None
        self._waiting_n = dict.fromkeys(ROLES, 0)
        self._waiting_ids: set[str] = set()  # tasks waiting
        self._in_progress: dict[str, tuple[str, int]] = {}  # task in progress -> role, since

    def on_tick(self, scheduler: Any, result: Any) -> None:
        """One tick of the run (`simulate_run`'s `on_tick`)."""
        hospital = self._hospital = scheduler.hospital
        with self.lock:
            self._count(result, hospital.tasks)
            now = time.monotonic()
            if now >= self._next_view:
                self._view(hospital)
                self._next_view = now + self.view_s

    def finish(self, end_ms: int | None = None) -> None:
        if self._hospital is not None:  # the run is over: its state holds still
            with self.lock:
                self._view(self._hospital)
        super().finish(end_ms)

    def waiting_counts(self) -> dict[str, int]:
        return dict(self._waiting_n)

    def in_progress(self) -> Iterator[tuple[str, int]]:
        return iter(self._in_progress.values())

    def _count(self, result: Any, tasks: dict[str, Any]) -> None:
        """The tick's figures, as `Projection._fold` counts them (with the lock held)."""
        time_ms = result.time_ms
        if time_ms > self.time_ms:
            if time_ms >= self.next_sample_ms:
                self._sample_until(time_ms)
            self.time_ms = time_ms
        self.tick = result.tick
        self.ticks += 1
        self.version += 1
        counts = self.counts
        if result.rejected or result.duplicates:
            counts["rejected"] += len(result.rejected)
            counts["duplicates"] += len(result.duplicates)
        if result.solved:
            self.solve.observe(result.solve_ms / 1000)
        busy, dispatched = self.busy, self._in_progress
        by_type = self.events_by_type
        for event in result.consumed:
            kind = event.TYPE
            by_type[kind] = by_type.get(kind, 0) + 1
            role = ROLE_OF_COMPLETION.get(kind)
            if role is None:  # an arrival
                continue
            since = dispatched.pop(event.task_id, None)
            if since is not None:
                self.busy_ms[role] += event.time_ms - since[1]
                busy[role] -= 1
            if kind == "escort.completed" and event.direction == "out":  # out of its room
                self.occupied_ms += event.time_ms - self.admitted_ms.pop(
                    event.patient_id, event.time_ms
                )
        by_type, waiting, queued = self.decisions_by_type, self._waiting_n, self._waiting_ids
        for d in result.decisions:
            kind = d.TYPE
            by_type[kind] = by_type.get(kind, 0) + 1
            if kind == "task.dispatched":
                role, task_id = ROLE_OF_KIND[d.kind], d.task_id
                task = tasks.get(task_id)
                created = d.time_ms if task is None else task.created_ms
                waits, wait = self.waits_ms[role], d.time_ms - created
                waits[wait] = waits.get(wait, 0) + 1
                dispatched[task_id] = (role, d.time_ms)
                busy[role] += 1
                if task_id in queued:
                    queued.discard(task_id)
                    waiting[role] -= 1
            elif kind == "task.queued":
                queued.add(d.task_id)
                waiting[ROLE_OF_KIND[d.kind]] += 1
            elif kind == "patient.admitted":
                counts["arrivals"] += 1
                counts["admitted"] += 1
                counts["in_rooms"] += 1
                hour = self._hour()
                hour["arrivals"] += 1
                hour["admitted"] += 1
                self.admitted_ms[d.patient_id] = d.time_ms
            elif kind == "patient.referred":
                counts["arrivals"] += 1
                counts["referred"] += 1
                hour = self._hour()
                hour["arrivals"] += 1
                hour["referred"] += 1
            elif kind == "patient.discharged":
                counts["discharged"] += 1
                counts["in_rooms"] -= 1
                self._hour()["discharged"] += 1
            elif kind == "task.escalated":
                self.escalations[d.kind] = self.escalations.get(d.kind, 0) + 1

    def _view(self, hospital: Any) -> None:
        """Rooms, staff and waiting lists as the scheduler has them now (with the lock held;
        on the run's thread, between two ticks)."""
        rooms = self.rooms
        for room in hospital.rooms.values():
            view = rooms.get(room.room_id)
            if view is None:
                view = rooms[room.room_id] = RoomView(room.room_id, floor_of(room.room_id))
            view.state, view.patient_id = room.status, room.patient_id
        staff = self.staff
        for member in hospital.staff.values():
            member_view = staff.get(member.staff_id)
            if member_view is None:
                member_view = staff[member.staff_id] = StaffView(member.staff_id, member.role)
            member_view.place, member_view.task_id = member.location, member.task_id
            member_view.off_duty = not member.on_duty
        in_progress = self._in_progress
        self.tasks = {
            t.task_id: TaskView(
                t.task_id,
                t.kind,
                t.patient_id,
                t.room_id,
                t.created_ms,
                t.staff_id,
                in_progress[t.task_id][1] if t.task_id in in_progress else None,
            )
            for t in hospital.tasks.values()
        }
        self.waiting = {role: {} for role in ROLES}
        for task in hospital.waiting.values():
            self.waiting[ROLE_OF_KIND[task.kind]][task.task_id] = self.tasks[task.task_id]
