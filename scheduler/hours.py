"""Figures by hour of the simulated day (0-23, the days of a run pooled): what the KPI
report's `by_hour` holds, and the dashboard's chart by hour of day.

    hours = ByHour(ROLES)
    hours.arrived(time_ms); hours.referred(arrival_ms)   # by the patient's arrival
    hours.waited("medical", created_ms, wait_ms)         # by the task's creation
    hours.occupy(admitted_ms, left_ms)                   # a stay, split across the hours
    hours.figures(end_ms, rooms, ongoing=...)            # the hours the run reached

**Which hour a time is in.** Hour h holds the times in (h:00, h+1:00] of every day, and the
run's time 0 is in hour 0: as a tick holds the events since the tick before, so that an
arrival lands in the hour of the tick that decides it, and a run of whole hours ends in its
last hour rather than with one arrival in the next (`hour_of`). Occupancy is measured in
room-time, which no boundary splits unevenly.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

HOUR_MS = 3_600_000
HOURS = 24
DAY_MS = HOURS * HOUR_MS


def hour_of(time_ms: int) -> int:
    """The hour of the day (0-23) that holds `time_ms` (see the module's docstring)."""
    return (time_ms - 1) // HOUR_MS % HOURS if time_ms > 0 else 0


def covered_ms(end_ms: int, start_ms: int = 0) -> list[int]:
    """How much of the run, from `start_ms` (a warm-up left out) to `end_ms`, each hour of
    the day covers (in ms)."""

    def upto(time_ms: int) -> list[int]:
        days, rest = divmod(max(time_ms, 0), DAY_MS)
        return [days * HOUR_MS + min(max(rest - h * HOUR_MS, 0), HOUR_MS) for h in range(HOURS)]

    if not start_ms:
        return upto(end_ms)
    return [max(0, b - a) for a, b in zip(upto(start_ms), upto(end_ms))]


def split_by_hour(start_ms: int, end_ms: int) -> Iterable[tuple[int, int]]:
    """(hour of the day, ms) of the span from `start_ms` to `end_ms`, hour by hour."""
    while start_ms < end_ms:
        hour_end = (start_ms // HOUR_MS + 1) * HOUR_MS
        upto = min(end_ms, hour_end)
        yield start_ms // HOUR_MS % HOURS, upto - start_ms
        start_ms = upto


class ByHour:
    """Counts by hour of the day, fed as a run goes; `figures` reports them."""

    def __init__(self, roles: Sequence[str]):
        self.roles = tuple(roles)
        self.arrivals = [0] * HOURS
        self.referrals = [0] * HOURS
        self.wait_sum_ms = {role: [0] * HOURS for role in self.roles}
        self.wait_tasks = {role: [0] * HOURS for role in self.roles}
        self.occupied_ms = [0] * HOURS  # room-ms of stays over

    # On a run's path (a few calls a patient): `hour_of` inline, and the common case of a
    # stay within one hour without a generator.

    def arrived(self, time_ms: int, count: int = 1) -> None:
        """An arrival (`count` -1: one withdrawn), counted in its hour."""
        self.arrivals[(time_ms - 1) // HOUR_MS % HOURS if time_ms > 0 else 0] += count

    def referred(self, arrival_ms: int) -> None:
        """A referral, counted in the hour of the patient's arrival."""
        self.referrals[(arrival_ms - 1) // HOUR_MS % HOURS if arrival_ms > 0 else 0] += 1

    def waited(self, role: str, created_ms: int, wait_ms: int) -> None:
        """A task of `role` created at `created_ms`, dispatched `wait_ms` later."""
        hour = (created_ms - 1) // HOUR_MS % HOURS if created_ms > 0 else 0
        self.wait_sum_ms[role][hour] += wait_ms
        self.wait_tasks[role][hour] += 1

    def occupy(self, start_ms: int, end_ms: int) -> None:
        """A room held by a patient from `start_ms` to `end_ms`."""
        hour = start_ms // HOUR_MS
        if end_ms <= (hour + 1) * HOUR_MS:
            self.occupied_ms[hour % HOURS] += end_ms - start_ms
            return
        occupied = self.occupied_ms
        for hour, ms in split_by_hour(start_ms, end_ms):
            occupied[hour] += ms

    def copy(self) -> ByHour:
        other = ByHour(self.roles)
        other.arrivals, other.referrals = list(self.arrivals), list(self.referrals)
        other.wait_sum_ms = {role: list(v) for role, v in self.wait_sum_ms.items()}
        other.wait_tasks = {role: list(v) for role, v in self.wait_tasks.items()}
        other.occupied_ms = list(self.occupied_ms)
        return other

    def figures(
        self,
        end_ms: int,
        rooms: int,
        ongoing: Iterable[int] = (),
        arrivals: Sequence[int] | None = None,
        referrals: Sequence[int] | None = None,
        start_ms: int = 0,
    ) -> list[dict[str, Any]]:
        """Each hour the run reached (or that counted something), in order: arrivals,
        referred, referral rate, the mean wait per role of the tasks created in it, and the
        mean room occupancy over it. `ongoing` are the admission times of the patients still
        in a room at `end_ms`; `arrivals` and `referrals` stand in for the counts here (a
        projection that counts them otherwise). With a warm-up, the figures are fed only
        what follows it, and the hours cover the run from `start_ms` on."""
        arrivals = self.arrivals if arrivals is None else arrivals
        referrals = self.referrals if referrals is None else referrals
        occupied = list(self.occupied_ms)
        for start in ongoing:
            for hour, ms in split_by_hour(max(start, start_ms), end_ms):
                occupied[hour] += ms
        covered = covered_ms(end_ms, start_ms)
        out = []
        for hour in range(HOURS):
            counted = arrivals[hour] or any(self.wait_tasks[r][hour] for r in self.roles)
            if not covered[hour] and not counted:
                continue
            out.append(
                {
                    "hour": hour,
                    "arrivals": arrivals[hour],
                    "referred": referrals[hour],
                    "referral_rate": round(referrals[hour] / arrivals[hour], 4)
                    if arrivals[hour]
                    else 0.0,
                    "wait_s": {role: self._wait(role, hour) for role in self.roles},
                    "room_occupancy": round(occupied[hour] / (rooms * covered[hour]), 4)
                    if rooms and covered[hour]
                    else 0.0,
                }
            )
        return out

    def _wait(self, role: str, hour: int) -> dict[str, Any]:
        tasks = self.wait_tasks[role][hour]
        mean_ms = self.wait_sum_ms[role][hour] / tasks if tasks else 0.0
        return {"mean": round(mean_ms / 1000, 3), "tasks": tasks}
