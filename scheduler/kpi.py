"""The KPI report of a run, computed from its events alone: what came in, what was decided.

It needs nothing from the scheduler's internals, so a replay (`hospital solve`) reports the
same figures as the live run, except the solver's timings.

**A warm-up** (`warmup_ms`) is left out of every figure of the hospital: the patients are
those who arrived after it (arrivals, admissions, referrals, discharges, stays, by ESI
level), the waits those of the tasks created after it (and so the target waits past), and
occupancy, the rooms' states and utilisation are integrated from it to the end. "After" as
the hours of `scheduler.hours` have it: the warm-up holds its last instant, as hour 0 holds
1:00:00, so that the figures by hour of a run with a warm-up of whole hours are those of
the hours after it. A run
that starts with an empty hospital admits its first patients freely: its first hours are not
those of a hospital in its stride. The tick solve times remain the whole run's (the
scheduler's work, not the hospital's).
"""

from __future__ import annotations

import math
from array import array
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

from scheduler import events as ev
from scheduler.engine import TickResult
from scheduler.hours import ByHour
from scheduler.layout import NEXT_KIND, ROLE_OF_KIND, step

ROLES = ("porter", "medical", "cleaner")
# A room's turn: booked on admission, occupied once the patient is in, dirty when they have
# left, being cleaned from a cleaner's dispatch, free again when clean.
ROOM_STATES = ("free", "booked", "occupied", "dirty", "cleaning")
# The state a completed task leaves its room in.
ROOM_AFTER = {"escort_in": "occupied", "escort_out": "dirty", "clean": "free"}


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank percentile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def histogram_percentile(counts: dict[int, int], total: int, q: float) -> int | float:
    """`percentile` of the values a histogram (value -> how many) counts: the same figure."""
    if not total:
        return 0.0
    rank = max(0, math.ceil(q / 100 * total) - 1)
    for value in sorted(counts):
        rank -= counts[value]
        if rank < 0:
            return value
    raise AssertionError("the histogram holds fewer values than its total")


class KpiCollector:
    """Feed it every tick's result (`collect`); `report` gives the figures."""

    def __init__(self, rooms: int, staff_per_role: dict[str, int], warmup_ms: int = 0):
        self.rooms = rooms
        self.staff_per_role = staff_per_role
        self.warmup_ms = warmup_ms  # left out of the figures (see the module's docstring)
        self.counted_after = warmup_ms if warmup_ms else -1  # what happens later counts
        self.counts: defaultdict[str, int] = defaultdict(int)
        self.created_ms: dict[tuple[str, str], int] = {}  # (kind, patient) -> created
        self.task_role: dict[str, str] = {}
        self.dispatched_ms: dict[str, int] = {}
        # Waits as histograms (wait in ms -> tasks): they take a few distinct values (whole
        # ticks, mostly), so a day of a large hospital is a few entries, not millions, and
        # the mean and nearest-rank p95 come out exactly as from the list of waits.
        self.waits_ms: dict[str, Counter[int]] = {role: Counter() for role in ROLES}
        self.wait_totals: dict[str, list[int]] = {role: [0, 0] for role in ROLES}  # sum, n
        self.busy_ms: dict[str, int] = dict.fromkeys(ROLES, 0)
        self.arrived_ms: dict[str, int] = {}
        self.admitted_ms: dict[str, int] = {}
        self.stays_sum_ms = 0  # only the mean is reported: sum and count
        self.stays = 0
        self.occupied_ms = 0
        self.solve_ms = array("d")  # one a solved tick: 8 bytes each
        self.end_ms = 0
        # The clinical rules: each patient's ESI level while in the building; per level the
        # arrivals, referrals and waits of the patient's tasks (all, and medical alone);
        # escalations past a target wait per task kind.
        self.acuity: dict[str, int] = {}
        self.by_acuity: dict[int, Counter[str]] = defaultdict(Counter)
        self.acuity_waits: dict[tuple[int, str], Counter[int]] = defaultdict(Counter)
        self.sla_breaches: Counter[str] = Counter()
        # By hour of the simulated day: arrivals and referrals (by the arrival), waits (by
        # the task's creation), occupancy.
        self.hours = ByHour(ROLES)
        # The time rooms spend in each state but free, accumulated as each room moves on:
        # each room's state and since when (absent: free).
        self.room_state: dict[str, tuple[str, int]] = {}
        self.room_state_ms: dict[str, int] = dict.fromkeys(ROOM_STATES[1:], 0)
        self.holds: Counter[str] = Counter()  # looking ahead: staff and rooms held

    def collect(self, result: TickResult) -> None:
        self.counts["ticks"] += 1
        if result.solved:
            self.solve_ms.append(result.solve_ms)
        self.counts["rejected"] += len(result.rejected)
        self.counts["duplicates"] += len(result.duplicates)
        self.end_ms = max(self.end_ms, result.time_ms)
        for event in result.consumed:
            self._inbound(event)
        for decision in result.decisions:
            self._decision(decision)

    def _inbound(self, event: ev.Event) -> None:
        time_ms, warmup = event.time_ms, self.warmup_ms
        if isinstance(event, ev.PatientArrived):
            self.acuity[event.patient_id] = event.acuity
            self.arrived_ms[event.patient_id] = time_ms
            self.created_ms["escort_in", event.patient_id] = time_ms
            if time_ms > self.counted_after:
                self.counts["arrivals"] += 1
                self.by_acuity[event.acuity]["arrivals"] += 1
                self.hours.arrived(time_ms)
            return
        if isinstance(event, ev.ARRIVAL_CHANGES):
            self._arrival_changed(event)
            return
        if not isinstance(event, ev.COMPLETIONS):
            return  # a region's transfer offer: the hospital's figures count its answer
        role = self.task_role.pop(event.task_id)
        dispatched = self.dispatched_ms.pop(event.task_id)
        if time_ms > warmup:
            self.busy_ms[role] += time_ms - (dispatched if dispatched > warmup else warmup)
        kind = event.task_kind
        patient_id = getattr(event, "patient_id", "")  # a cleaning's: none
        if kind in ROOM_AFTER:
            self._room(event.room_id, ROOM_AFTER[kind], time_ms)
        if kind == "escort_out":
            admitted = self.admitted_ms.pop(patient_id)
            arrived = self.arrived_ms.pop(patient_id)
            if arrived > self.counted_after:  # one of the patients the figures are about
                self.counts["discharged"] += 1
                self.stays_sum_ms += time_ms - arrived
                self.stays += 1
            start = admitted if admitted > warmup else warmup
            if time_ms > start:
                self.occupied_ms += time_ms - start
                self.hours.occupy(start, time_ms)
        if kind in NEXT_KIND:
            self.created_ms[NEXT_KIND[kind], patient_id] = time_ms

    def _room(self, room_id: str, state: str, time_ms: int) -> None:
        """A room moves on to `state`: the time in the state it leaves is counted (from the
        warm-up on)."""
        left, since = self.room_state.get(room_id, ("free", 0))
        if left != "free":
            start = since if since > self.warmup_ms else self.warmup_ms
            if time_ms > start:
                self.room_state_ms[left] += time_ms - start
        if state == "free":
            self.room_state.pop(room_id, None)
        else:
            self.room_state[room_id] = (state, time_ms)

    def _arrival_changed(self, event: ev.PatientUpdated | ev.PatientWithdrawn) -> None:
        """An update of this tick's arrival moves it to its new ESI level; a withdrawal
        undoes it: a withdrawn arrival is counted nowhere."""
        patient_id = event.patient_id
        self.by_acuity[self.acuity.pop(patient_id)]["arrivals"] -= 1
        if isinstance(event, ev.PatientUpdated):
            self.acuity[patient_id] = event.acuity
            self.by_acuity[event.acuity]["arrivals"] += 1
            return
        self.counts["arrivals"] -= 1
        self.hours.arrived(self.arrived_ms.pop(patient_id), -1)
        del self.created_ms["escort_in", patient_id]

    def _decision(self, decision: ev.Decision) -> None:
        after = self.counted_after
        if isinstance(decision, ev.PatientAdmitted):
            if self.arrived_ms.get(decision.patient_id, decision.time_ms) > after:
                self.counts["admitted"] += 1
            self.admitted_ms[decision.patient_id] = decision.time_ms
            self._room(decision.room_id, "booked", decision.time_ms)
        elif isinstance(decision, ev.PatientReferred):
            arrived = self.arrived_ms.pop(decision.patient_id, decision.time_ms)
            level = self.acuity.pop(decision.patient_id, 3)
            if arrived > after:
                self.counts["referred"] += 1
                self.hours.referred(arrived)
                self.by_acuity[level]["referred"] += 1
        elif isinstance(decision, ev.PatientDischarged):
            self.acuity.pop(decision.patient_id, None)  # counted with the escort out
        elif isinstance(decision, ev.TaskEscalated):
            if decision.time_ms - round(decision.waited_s * 1000) > after:  # its creation
                self.sla_breaches[decision.kind] += 1
        elif isinstance(decision, (ev.StaffHeld, ev.RoomHeld)):
            self.holds["staff" if isinstance(decision, ev.StaffHeld) else "room"] += 1
        elif isinstance(decision, ev.TaskDispatched):
            role = ROLE_OF_KIND[decision.kind]
            kind = step(decision.kind)
            created = self.created_ms.pop((kind, decision.patient_id), decision.time_ms)
            self.task_role[decision.task_id] = role
            self.dispatched_ms[decision.task_id] = decision.time_ms
            if kind == "clean":
                self._room(decision.room_id, "cleaning", decision.time_ms)
            if created <= after:
                return
            wait = decision.time_ms - created
            if kind != "clean":  # a task of the patient's own
                level = self.acuity.get(decision.patient_id, 3)
                self.acuity_waits[level, "all"][wait] += 1
                if role == "medical":
                    self.acuity_waits[level, "medical"][wait] += 1
                    arrived = self.arrived_ms.get(decision.patient_id, decision.time_ms)
                    self.acuity_waits[level, "arrival_to_visit"][decision.time_ms - arrived] += 1
            self.waits_ms[role][wait] += 1
            self.hours.waited(role, created, wait)
            totals = self.wait_totals[role]
            totals[0] += wait
            totals[1] += 1

    def _acuity_figures(self, level: int) -> dict[str, Any]:
        counts = self.by_acuity[level]

        def waits(which: str) -> dict[str, float]:
            histogram = self.acuity_waits.get((level, which), Counter())
            n = sum(histogram.values())
            total = sum(wait * k for wait, k in histogram.items())
            return {
                "mean": round((total / n if n else 0.0) / 1000, 3),
                "p95": histogram_percentile(histogram, n, 95) / 1000,
                "tasks": n,
            }

        return {
            "arrivals": counts["arrivals"],
            "referred": counts["referred"],
            "referral_rate": round(counts["referred"] / counts["arrivals"], 4)
            if counts["arrivals"]
            else 0.0,
            "wait_s": waits("all"),
            "medical_wait_s": waits("medical"),
            "arrival_to_visit_s": waits("arrival_to_visit"),
        }

    def _room_states(self, end_ms: int, warmup: int) -> dict[str, float]:
        """The share of the rooms' time (from the warm-up to the end) in each state."""
        spent = dict(self.room_state_ms)
        for state, since in self.room_state.values():
            spent[state] += end_ms - max(since, warmup)
        total = self.rooms * (end_ms - warmup)
        if total <= 0:
            return {"free": 1.0, **dict.fromkeys(spent, 0.0)}
        shares = {state: round(ms / total, 4) for state, ms in spent.items()}
        return {"free": round(1 - sum(spent.values()) / total, 4), **shares}

    def report(
        self, duration_ms: int | None = None, extra: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        end_ms = max(duration_ms or 0, self.end_ms)
        warmup = min(self.warmup_ms, end_ms)

        def since_warmup(started: int) -> int:
            """ms from `started` (or the warm-up's end, if later) to the end."""
            return end_ms - max(started, warmup)

        # Work, stays and rooms' states still going at the end count up to the end.
        busy = dict(self.busy_ms)
        for task_id, started in self.dispatched_ms.items():
            busy[self.task_role[task_id]] += since_warmup(started)
        occupied = self.occupied_ms + sum(map(since_warmup, self.admitted_ms.values()))
        arrivals = self.counts["arrivals"]
        seconds = (end_ms - warmup) / 1000 or 1.0
        report: dict[str, Any] = {
            "duration_s": end_ms / 1000,
            "warmup_s": warmup / 1000,
            "arrivals": arrivals,
            "admitted": self.counts["admitted"],
            "referred": self.counts["referred"],
            "referral_rate": round(self.counts["referred"] / arrivals, 4) if arrivals else 0.0,
            "discharged": self.counts["discharged"],
            "in_building": self.counts["admitted"] - self.counts["discharged"],
            "wait_s": {
                role: {
                    "mean": round((s / n if n else 0.0) / 1000, 3),
                    "p95": histogram_percentile(self.waits_ms[role], n, 95) / 1000,
                    "tasks": n,
                }
                for role, (s, n) in self.wait_totals.items()
            },
            "mean_length_of_stay_s": round(
                (self.stays_sum_ms / self.stays if self.stays else 0.0) / 1000, 3
            ),
            "room_occupancy": round(occupied / 1000 / (self.rooms * seconds), 4),
            "room_states": self._room_states(end_ms, warmup),
            "utilisation": {
                role: round(busy[role] / 1000 / (count * seconds), 4) if count else 0.0
                for role, count in self.staff_per_role.items()
            },
            "ticks": self.counts["ticks"],
            "ticks_solved": len(self.solve_ms),
            "tick_solve_ms": {
                "p50": round(percentile(self.solve_ms, 50), 3),
                "p95": round(percentile(self.solve_ms, 95), 3),
                "max": round(max(self.solve_ms, default=0.0), 3),
            },
            "rejected_events": self.counts["rejected"],
            "duplicate_events": self.counts["duplicates"],
            "by_acuity": {
                str(level): self._acuity_figures(level) for level in sorted(self.by_acuity)
            },
            "sla_breaches": dict(sorted(self.sla_breaches.items())),
            "by_hour": self.hours.figures(
                end_ms, self.rooms, self.admitted_ms.values(), start_ms=warmup
            ),
        }
        if self.holds:  # looking ahead
            report["holds"] = {"staff": self.holds["staff"], "room": self.holds["room"]}
        report.update(extra or {})
        return report
