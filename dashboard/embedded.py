"""The projection of a run in this process (`hospital run --dashboard`), made cheap for the
run: it reads the run's own objects instead of following the decisions.

`Projection.apply` follows the hospital from its decisions alone, which is all a run in
another process gives. A run in this process already counts what the page shows: its
`KpiCollector` has the counts, waits, busy time, occupancy and solve times, its scheduler's
`Hospital` the rooms, staff and waiting lists. So a tick (`on_tick`, on the run's thread,
between two ticks) costs the projection only its events and decisions by type; at the
first tick past each time-series mark or hour it takes a point or closes the hour; and at
most every `view_s` of wall time, and at the end, it copies the rest. The readers (the
page, /metrics) are `Projection`'s: they see the figures of a view at most `view_s` old.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

from dashboard.projection import (
    HOURLY,
    ROLES,
    ROOM_STATES,
    Projection,
    StaffView,
    TaskView,
)
from scheduler.kpi import KpiCollector
from scheduler.layout import ROLE_OF_KIND

HOUR_MS = 3_600_000
# The decisions that the hourly counts count.
HOURLY_DECISIONS = {
    "patient.admitted": "admitted",
    "patient.referred": "referred",
    "patient.discharged": "discharged",
}


class LiveProjection(Projection):
    """A `Projection` of the run that `kpi` collects the figures of, fed its ticks by
    `on_tick(scheduler, result)` (`simulate_run(..., kpi=kpi, on_tick=...)`)."""

    def __init__(self, *args: Any, kpi: KpiCollector, view_s: float = 0.25, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.kpi = kpi
        self.warmup_ms = kpi.warmup_ms  # its figures leave out what the run's KPIs leave out
        self.view_s = view_s
        self._next_view = 0.0
        self._hospital: Any = None
        self._in_progress: list[tuple[str, int]] = []  # role, since: of each task in progress
        self._solved = 0  # the run's solve times already in `solve`
        self._hour_end = -1  # the current hour holds the ticks of (end - 1 h, end]
        self._hour_start: dict[str, int] = dict.fromkeys(HOURLY, 0)  # the counts then

    def on_tick(self, scheduler: Any, result: Any) -> None:
        """One tick of the run (`simulate_run`'s `on_tick`, after the KPIs have it).

        Most ticks write only the tick's number and the counts by type, and without the
        lock, which would cost more than they do: ints and dictionary entries, which a
        reader copies whole (a dictionary's copy is one step under the GIL). A point, an
        hour or a view takes the lock."""
        hospital = self._hospital = scheduler.hospital
        self.tick = result.tick
        self.ticks += 1
        self.version += 1
        by_type = self.events_by_type
        for event in result.consumed:
            kind = event.TYPE
            by_type[kind] = by_type.get(kind, 0) + 1
        by_type = self.decisions_by_type
        for decision in result.decisions:
            kind = decision.TYPE
            by_type[kind] = by_type.get(kind, 0) + 1
        time_ms = result.time_ms
        if time_ms > self.time_ms:
            self.time_ms = time_ms
        if time_ms >= self.next_sample_ms or time_ms > self._hour_end:
            with self.lock:
                if time_ms > self._hour_end:
                    self._next_hour(result)
                if time_ms >= self.next_sample_ms:
                    self._sample()
        now = time.monotonic()
        if now >= self._next_view:
            with self.lock:
                self._view(hospital)
            self._next_view = now + self.view_s

    def finish(self, end_ms: int | None = None) -> None:
        if self._hospital is not None:  # the run is over: its state holds still
            with self.lock:
                self._view(self._hospital)
        super().finish(end_ms)

    def in_progress(self) -> Iterator[tuple[str, int]]:
        return iter(self._in_progress)

    # --- what the run's KPIs and hospital say ------------------------------------------

    def _totals(self) -> dict[str, int]:
        """The run's counts so far, as the hourly counts count them."""
        counts = self.kpi.counts
        admitted, referred = counts["admitted"], counts["referred"]
        return {
            "arrivals": admitted + referred,  # an arrival is decided in its tick
            "admitted": admitted,
            "referred": referred,
            "discharged": counts["discharged"],
        }

    def _next_hour(self, result: Any) -> None:
        """The tick is the first past the current hour: close that hour with the counts
        before the tick, and open the tick's."""
        before = self._totals()
        for decision in result.decisions:  # the tick's own: not the hour's before
            counted = HOURLY_DECISIONS.get(decision.TYPE)
            if counted is not None:
                before[counted] -= 1
                if counted != "discharged":
                    before["arrivals"] -= 1
        self._count_hour(before)
        hour = max(0, result.time_ms - 1) // HOUR_MS
        self._hour_start, self._hour_end = before, (hour + 1) * HOUR_MS

    def _count_hour(self, now: dict[str, int]) -> None:
        """The current hour's counts up to `now` (an hour with none is not listed)."""
        if self._hour_end < 0:
            return
        counts = {key: now[key] - self._hour_start[key] for key in HOURLY}
        if any(counts.values()):
            self.hourly[self._hour_end // HOUR_MS - 1] = counts

    def _point(self) -> dict[str, Any]:
        totals = self._totals()
        return {
            "t": self.time_ms / 1000,
            "occupied": len(self.kpi.admitted_ms),  # all in rooms, warm-up or not
            "waiting": self._waiting_now(self._hospital),
            "busy": self._busy_now(),
            "referred": totals["referred"],
            "arrivals": totals["arrivals"],
            "rooms": self._rooms_now(self._hospital),
        }

    def _rooms_now(self, hospital: Any) -> dict[str, int]:
        """Rooms in each state, as the scheduler has them."""
        counts = dict.fromkeys(ROOM_STATES, 0)
        if hospital is None:  # no tick yet: every room free
            counts["free"] = len(self.rooms)
            return counts
        for state, n in Counter(room.status for room in hospital.rooms.values()).items():
            counts[state] = n
        return counts

    def _busy_now(self) -> dict[str, int]:
        """Staff on a task, by role: the run's tasks in progress."""
        busy = dict.fromkeys(ROLES, 0)
        for role in self.kpi.task_role.values():
            busy[role] += 1
        return busy

    @staticmethod
    def _waiting_now(hospital: Any) -> dict[str, int]:
        """Tasks waiting, by role, as the scheduler has them."""
        waiting = dict.fromkeys(ROLES, 0)
        if hospital is None:  # no tick yet
            return waiting
        for task in hospital.waiting.values():
            waiting[ROLE_OF_KIND[task.kind]] += 1
        return waiting

    def _view(self, hospital: Any) -> None:
        """Everything as the run has it now (with the lock held; on the run's thread,
        between two ticks)."""
        kpi = self.kpi
        if kpi.counts["ticks"] != self.ticks:
            raise RuntimeError("a LiveProjection is fed the ticks of a run with other KPIs")
        totals = self._totals()
        self._count_hour(totals)
        self.counts.update(
            totals,
            in_rooms=len(kpi.admitted_ms),  # all in rooms, warm-up or not
            rejected=kpi.counts["rejected"],
            duplicates=kpi.counts["duplicates"],
        )
        self.waits_ms = {role: dict(kpi.waits_ms[role]) for role in ROLES}
        self.busy_ms = dict(kpi.busy_ms)
        self.occupied_ms = kpi.occupied_ms
        self.admitted_ms = dict(kpi.admitted_ms)
        self.escalations = dict(kpi.sla_breaches)
        self.hours = kpi.hours.copy()
        solve_ms = kpi.solve_ms
        if len(solve_ms) > self._solved:
            observe = self.solve.observe
            for ms in solve_ms[self._solved :]:
                observe(ms / 1000)
            self._solved = len(solve_ms)
        task_role, dispatched_ms = kpi.task_role, kpi.dispatched_ms
        self._in_progress = [(task_role[t], ms) for t, ms in dispatched_ms.items()]
        self.busy = self._busy_now()

        for room in hospital.rooms.values():
            view = self._room(room.room_id)
            view.state, view.patient_id = room.status, room.patient_id
            view.held_until_ms, view.reserved_for = room.held_until_ms, room.reserved_for
        self.patients = {
            patient_id: (patient.acuity, patient.isolation)
            for patient_id, patient in hospital.patients.items()
        }
        staff = self.staff
        for member in hospital.staff.values():
            member_view = staff.get(member.staff_id)
            if member_view is None:
                member_view = staff[member.staff_id] = StaffView(member.staff_id, member.role)
            member_view.place, member_view.task_id = member.location, member.task_id
            member_view.off_duty = not member.on_duty
            member_view.held_until_ms = member.held_until_ms
        self.tasks = {
            t.task_id: TaskView(
                t.task_id,
                t.kind,
                t.patient_id,
                t.room_id,
                t.created_ms,
                t.staff_id,
                dispatched_ms.get(t.task_id),
            )
            for t in hospital.tasks.values()
        }
        self.waiting = {role: {} for role in ROLES}
        for task in hospital.waiting.values():
            self.waiting[ROLE_OF_KIND[task.kind]][task.task_id] = self.tasks[task.task_id]
