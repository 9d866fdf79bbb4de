"""The KPI report of a run, computed from its events alone: what came in, what was decided.

It needs nothing from the scheduler's internals, so a replay (`hospital solve`) reports the
same figures as the live run, except the solver's timings.
"""

from __future__ import annotations

import math
from array import array
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

from scheduler import events as ev
from scheduler.engine import TickResult
from scheduler.layout import NEXT_KIND, ROLE_OF_KIND, step

ROLES = ("porter", "medical", "cleaner")


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

    def __init__(self, rooms: int, staff_per_role: dict[str, int]):
        self.rooms = rooms
        self.staff_per_role = staff_per_role
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
        if isinstance(event, ev.PatientArrived):
            self.counts["arrivals"] += 1
            self.acuity[event.patient_id] = event.acuity
            self.by_acuity[event.acuity]["arrivals"] += 1
            self.arrived_ms[event.patient_id] = event.time_ms
            self.created_ms["escort_in", event.patient_id] = event.time_ms
            return
        assert isinstance(event, ev.COMPLETIONS)  # the other inbound events close a task
        role = self.task_role.pop(event.task_id)
        self.busy_ms[role] += event.time_ms - self.dispatched_ms.pop(event.task_id)
        kind = event.task_kind
        patient_id = getattr(event, "patient_id", "")  # a cleaning's: none
        if kind == "escort_out":
            self.stays_sum_ms += event.time_ms - self.arrived_ms.pop(patient_id)
            self.stays += 1
            self.occupied_ms += event.time_ms - self.admitted_ms.pop(patient_id)
        if kind in NEXT_KIND:
            self.created_ms[NEXT_KIND[kind], patient_id] = event.time_ms

    def _decision(self, decision: ev.Decision) -> None:
        if isinstance(decision, ev.PatientAdmitted):
            self.counts["admitted"] += 1
            self.admitted_ms[decision.patient_id] = decision.time_ms
        elif isinstance(decision, ev.PatientReferred):
            self.counts["referred"] += 1
            self.arrived_ms.pop(decision.patient_id, None)
            self.by_acuity[self.acuity.pop(decision.patient_id, 3)]["referred"] += 1
        elif isinstance(decision, ev.PatientDischarged):
            self.counts["discharged"] += 1
            self.acuity.pop(decision.patient_id, None)
        elif isinstance(decision, ev.TaskEscalated):
            self.sla_breaches[decision.kind] += 1
        elif isinstance(decision, (ev.StaffHeld, ev.RoomHeld)):
            self.holds["staff" if isinstance(decision, ev.StaffHeld) else "room"] += 1
        elif isinstance(decision, ev.TaskDispatched):
            role = ROLE_OF_KIND[decision.kind]
            created = self.created_ms.pop(
                (step(decision.kind), decision.patient_id), decision.time_ms
            )
            wait = decision.time_ms - created
            if step(decision.kind) != "clean":  # a task of the patient's own
                level = self.acuity.get(decision.patient_id, 3)
                self.acuity_waits[level, "all"][wait] += 1
                if role == "medical":
                    self.acuity_waits[level, "medical"][wait] += 1
                    arrived = self.arrived_ms.get(decision.patient_id, decision.time_ms)
                    self.acuity_waits[level, "arrival_to_visit"][decision.time_ms - arrived] += 1
            self.waits_ms[role][wait] += 1
            totals = self.wait_totals[role]
            totals[0] += wait
            totals[1] += 1
            self.task_role[decision.task_id] = role
            self.dispatched_ms[decision.task_id] = decision.time_ms

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

    def report(
        self, duration_ms: int | None = None, extra: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        end_ms = max(duration_ms or 0, self.end_ms)
        # Work and stays still going at the end count up to the end.
        busy = dict(self.busy_ms)
        for task_id, started in self.dispatched_ms.items():
            busy[self.task_role[task_id]] += end_ms - started
        occupied = self.occupied_ms + sum(end_ms - t for t in self.admitted_ms.values())
        arrivals = self.counts["arrivals"]
        seconds = end_ms / 1000 or 1.0
        report: dict[str, Any] = {
            "duration_s": end_ms / 1000,
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
        }
        if self.holds:  # looking ahead
            report["holds"] = {"staff": self.holds["staff"], "room": self.holds["room"]}
        report.update(extra or {})
        return report
