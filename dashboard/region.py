"""The region as its ticks tell it: one small projection, fed `RegionTick`s (each hospital's
consumed events and every decision of a tick), that serves the region's live page
(`hospital region run --dashboard`) and its report (`hospital region report`).

It reads nothing of the hospitals' schedulers: only the events and decisions of the ticks,
so that the region's ticks can come from the simulation in this process as they could from
a database. Its figures are the region's KPI report's own (`RegionKpi`, fed the same
ticks); beside them it follows what the KPI report does not keep: the requests waiting for
an offer, the transfers on the road, each hospital's patients waiting for staff, a point of
each hospital's occupancy each `sample_ms`, the transfers and referrals out per hour.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

from scheduler import events as ev
from scheduler.kpi import percentile
from scheduler.region import events as rev
from scheduler.region.config import RegionConfig
from scheduler.region.network import RegionTick
from scheduler.region.simulation import RegionKpi

HOUR_MS = 3_600_000


def hour_of(time_ms: int) -> int:
    """The hour of the run that holds this instant: hour h holds (h, h + 1] hours, and 0."""
    return max(0, time_ms - 1) // HOUR_MS


@dataclass(frozen=True, slots=True)
class OnTheRoad:
    """An accepted transfer, its patient on the way."""

    patient_id: str  # at the destination: <from>/<patient_id>
    origin: str
    to: str
    accepted_ms: int
    eta_ms: int


class RegionView:
    """The region, tick by tick. Thread-safe: one writer (`apply`), any number of readers
    (`snapshot`)."""

    def __init__(
        self,
        region: RegionConfig,
        coordinator: str,
        *,
        warmup_ms: int = 0,
        sample_ms: int = 60_000,
        duration_ms: int | None = None,
        label: str | None = None,
    ):
        self.lock = threading.Lock()
        self.region = region
        self.coordinator = coordinator
        self.label = label
        self.duration_ms = duration_ms
        self.kpi = RegionKpi(region, coordinator, warmup_ms)
        self.ids = list(region.ids)
        self.rooms = {h: kpi.rooms for h, kpi in self.kpi.hospitals.items()}
        self.tick = -1
        self.ticks = 0
        self.time_ms = 0
        self.finished = False
        self.version = 0  # +1 each change
        self.generation = 0  # the page's feed starts its series over when this changes
        self.pending: dict[tuple[str, str], str | None] = {}  # request -> offered to
        self.on_the_road: dict[str, OnTheRoad] = {}
        self.queued: dict[str, set[str]] = {h: set() for h in self.ids}  # patients' tasks
        self.held: Counter[str] = Counter()  # rooms held for a transfer on the road, by hospital
        self.sample_ms = sample_ms
        self.next_sample_ms = 0
        self.series: list[dict[str, Any]] = []
        self.transfers_by_hour: Counter[int] = Counter()  # accepted, by the hour of the run
        self.referred_out_by_hour: Counter[int] = Counter()
        self.rows_skipped = 0  # following a database: rows that did not parse, left out

    # --- the writer ------------------------------------------------------------------------

    def apply(self, out: RegionTick) -> None:
        """One tick of the region (`simulate_region`'s and `replay_region`'s `on_tick`)."""
        with self.lock:
            self.kpi.collect(out)
            self.tick, self.ticks, self.version = out.tick, self.ticks + 1, self.version + 1
            self.time_ms = max(self.time_ms, out.time_ms)
            for hospital_id, result in out.results.items():
                arrived = [e for e in result.consumed if isinstance(e, rev.TransferArrived)]
                for event in arrived:
                    if self.on_the_road.pop(event.patient_id, None) is not None:
                        self.held[hospital_id] -= 1  # admitted into the room held for them
            for hospital_id, decision in out.decisions:
                self._decision(hospital_id, decision)
            if out.time_ms >= self.next_sample_ms:
                self._sample()

    def _decision(self, hospital_id: str, decision: ev.Decision) -> None:
        if isinstance(decision, ev.TaskQueued):
            if decision.kind != "clean":  # a patient's own task
                self.queued[hospital_id].add(decision.task_id)
        elif isinstance(decision, ev.TaskDispatched):
            self.queued[hospital_id].discard(decision.task_id)
        elif isinstance(decision, ev.PatientReferred):  # isolated hospitals: final
            self.referred_out_by_hour[hour_of(decision.time_ms)] += 1
        elif isinstance(decision, rev.TransferRequested):
            self.pending[decision.origin, decision.patient_id] = None
        elif isinstance(decision, rev.TransferOffered):
            self.pending[decision.origin, decision.patient_id] = decision.to
        elif isinstance(decision, rev.TransferDeclined):
            self.pending[decision.origin, decision.patient_id] = None
        elif isinstance(decision, rev.TransferAccepted):
            # pop: its request may be a row the follower could not read
            self.pending.pop((decision.origin, decision.patient_id), None)
            arriving = rev.arriving_id(decision.origin, decision.patient_id)
            eta_ms = decision.time_ms + self.region.travel_ms[decision.origin, decision.to]
            self.on_the_road[arriving] = OnTheRoad(
                arriving, decision.origin, decision.to, decision.time_ms, eta_ms
            )
            self.held[decision.to] += 1
            self.transfers_by_hour[hour_of(decision.time_ms)] += 1
        elif isinstance(decision, rev.PatientReferredOut):
            self.pending.pop((decision.origin, decision.patient_id), None)
            self.referred_out_by_hour[hour_of(decision.time_ms)] += 1

    def _sample(self) -> None:
        """A point of the time series: each hospital's occupancy and patients waiting for a
        transfer now, in the region's order."""
        self.series.append(
            {
                "t": self.time_ms / 1000,
                "occupancy": [round(self._in_rooms(h) / (self.rooms[h] or 1), 4) for h in self.ids],
                "waiting": self._waiting_for_transfer(),
                "pending": len(self.pending),
                "on_the_road": len(self.on_the_road),
            }
        )
        self.next_sample_ms = (self.time_ms // self.sample_ms + 1) * self.sample_ms

    def set_rows_skipped(self, count: int) -> None:
        """How many stored rows the follower left out so far (they did not parse)."""
        with self.lock:
            if count != self.rows_skipped:
                self.rows_skipped, self.version = count, self.version + 1

    def finish(self, end_ms: int | None = None) -> None:
        """The run is over (at `end_ms`, if later than its last tick): a last point."""
        with self.lock:
            if end_ms is not None and end_ms > self.time_ms:
                self.time_ms = end_ms
            if not self.series or self.series[-1]["t"] < self.time_ms / 1000:
                self._sample()
            self.finished = True
            self.version += 1

    # --- the readers -----------------------------------------------------------------------

    def _in_rooms(self, hospital_id: str) -> int:
        """Patients in the hospital's rooms now (from their admission to their escort out)."""
        return len(self.kpi.hospitals[hospital_id].admitted_ms)

    def _taken(self, hospital_id: str) -> int:
        """The hospital's rooms not free now: booked, occupied, dirty, being cleaned (as its
        KPIs follow them), or held for a transfer on its way there."""
        return len(self.kpi.hospitals[hospital_id].room_state) + self.held[hospital_id]

    def _waiting_for_transfer(self) -> list[int]:
        counts = Counter(origin for origin, _ in self.pending)
        return [counts[h] for h in self.ids]

    def figures(self, end_ms: int | None = None) -> dict[str, Any]:
        """The region's KPI report (`hospital region run --report`'s figures, with
        `in_flight`), and what the report adds: the 95th percentile of the travel per
        transfer, each hospital's rooms and own admissions, the transfers from each hospital
        to each other (`matrix[from][to]`)."""
        with self.lock:
            return self._figures(self.time_ms if end_ms is None else end_ms)

    def _figures(self, end_ms: int) -> dict[str, Any]:
        kpi = self.kpi
        report = kpi.report(end_ms)
        region = report["region"]
        region["in_flight"] = {
            "on_the_way": len(self.on_the_road),
            "requests_pending": len(self.pending),
        }
        region["p95_transfer_travel_s"] = percentile(kpi.travel_s, 95)
        for hospital_id, figures in report["hospitals"].items():
            figures["rooms"] = self.rooms[hospital_id]
            # a transfer is admitted as it arrives, into the room held for it
            figures["own_admitted"] = figures["admitted"] - figures["transfers_in"]
        report["matrix"] = {
            origin: {to: kpi.transfers_by_pair[origin, to] for to in self.ids if to != origin}
            for origin in self.ids
        }
        return report

    def snapshot(self, series_from: int = 0, road_limit: int = 100) -> dict[str, Any]:
        """Everything the live page shows, JSON-ready; the time series from the point
        numbered `series_from` on (the page has those before)."""
        with self.lock:
            now = self.time_ms
            figures = self._figures(now)
            waiting = self._waiting_for_transfer()
            hospitals = []
            for n, hospital_id in enumerate(self.ids):
                own = figures["hospitals"][hospital_id]
                rooms = self.rooms[hospital_id]
                in_rooms = self._in_rooms(hospital_id)
                hospitals.append(
                    {
                        "id": hospital_id,
                        "rooms": rooms,
                        "in_rooms": in_rooms,
                        "occupancy_now": round(in_rooms / rooms, 4) if rooms else 0.0,
                        "taken_now": round(self._taken(hospital_id) / rooms, 4) if rooms else 0.0,
                        "waiting_for_staff": len(self.queued[hospital_id]),
                        "waiting_for_transfer": waiting[n],
                        **{
                            key: own[key]
                            for key in (
                                "arrivals",
                                "own_admitted",
                                "not_taken",
                                "transfers_in",
                                "transfers_out",
                                "referred_out",
                                "room_occupancy",
                            )
                        },
                    }
                )
            road = sorted(self.on_the_road.values(), key=lambda t: (t.eta_ms, t.patient_id))
            return {
                "version": self.version,
                "generation": self.generation,
                "tick": self.tick,
                "time_s": now / 1000,
                "duration_s": None if self.duration_ms is None else self.duration_ms / 1000,
                "label": self.label,
                "coordinator": self.coordinator,
                "finished": self.finished,
                "region": figures["region"],
                "hospitals": hospitals,
                "on_the_road": [
                    {
                        "patient": t.patient_id,
                        "from": t.origin,
                        "to": t.to,
                        "left_s": t.accepted_ms / 1000,
                        "eta_s": t.eta_ms / 1000,
                        "in_s": max(0, t.eta_ms - now) / 1000,
                    }
                    for t in road[:road_limit]
                ],
                "on_the_road_count": len(road),
                "rows_skipped": self.rows_skipped,
                "ids": self.ids,
                "series_from": series_from,
                "series": self.series[series_from:],
            }
