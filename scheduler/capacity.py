"""The capacity bound: the highest admission rate any policy could sustain in a hospital.

A small linear program over the rooms' and each role's time. Variable `x[r]` is the rate of
admissions into room r (per second). Every admission into r costs each role its busy time
for that room (the porter: the escorts in and out; the medical staff: the visit; the
cleaners: the cleaning) and holds r for at least the sum of all four tasks, so

    maximise   sum_r x[r]
    subject to sum_r x[r] * busy[role][r] <= staff[role]      for each role
               x[r] * hold[r]             <= 1                for each room
               sum_r x[r]                 <= arrival rate
               x[r] >= 0

with every walk at its lower bound and every treatment and cleaning at its mean (over the
acuity mix when treatments differ by ESI level): in a long run a role's busy time per
admission is the mean's, however much the durations vary. In the `seed` travel model the
walks are fixed (escort in = walk from the entrance, escort out = 0, visit = walk +
treatment, cleaning = walk + cleaning). In the `layout` model they depend on where the
staff member comes from, and the cheapest case is taken: escort in = walk from the
entrance, escort out = walk from the room to the entrance, visit = treatment, cleaning =
cleaning. Waiting and the tick's granularity are ignored, so no policy can admit more:
`min_referral_rate` is a floor for every policy's referral rate in a long run. The arrival
rate is the long-run mean; with a `profile` of arrivals that is a floor still (an hour
above the bound refers at least its excess), if a loose one: the bound by hour of day is
where such a profile shows its peaks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linprog

from scheduler.config import Config, staff_roster
from scheduler.demand import mean_arrival_rate_per_s, mean_treatment_s
from scheduler.layout import ENTRANCE, Layout

ROLES = ("porter", "medical", "cleaner")


@dataclass(frozen=True)
class RoomCosts:
    """Lower bounds, in seconds, of what one admission into a room costs."""

    escort_in_s: float
    visit_s: float
    escort_out_s: float
    clean_s: float

    @property
    def busy_s(self) -> dict[str, float]:
        return {
            "porter": self.escort_in_s + self.escort_out_s,
            "medical": self.visit_s,
            "cleaner": self.clean_s,
        }

    @property
    def hold_s(self) -> float:
        return self.escort_in_s + self.visit_s + self.escort_out_s + self.clean_s


@dataclass(frozen=True)
class CapacityBound:
    arrival_rate: float  # patients per second offered
    max_rate: float  # admissions per second no policy can exceed
    staff_rate: float  # the same without the arrival cap: what rooms and staff allow
    min_referral_rate: float  # 1 - max_rate / arrival_rate
    bottleneck: str  # the role (or "rooms") that limits staff_rate
    use: dict[str, float] = field(default_factory=dict)  # share of each resource used at staff_rate

    def as_dict(self) -> dict[str, object]:
        return {
            "arrival_rate": round(self.arrival_rate, 6),
            "max_rate": round(self.max_rate, 6),
            "staff_rate": round(self.staff_rate, 6),
            "min_referral_rate": round(self.min_referral_rate, 6),
            "bottleneck": self.bottleneck,
            "use": {k: round(v, 4) for k, v in self.use.items()},
        }


def room_costs(config: Config, layout: Layout | None = None) -> dict[str, RoomCosts]:
    """The cheapest possible cost of an admission into each room."""
    layout = layout or Layout(config)
    treatment_s = (
        mean_treatment_s(config)
        if config.durations.treatment_s_by_acuity
        else layout.treatment_ms / 1000
    )
    costs = {}
    for room_id in layout.rooms:
        walk_in = layout.from_entrance(room_id) / 1000
        if layout.model == "seed":
            costs[room_id] = RoomCosts(
                walk_in,
                walk_in + treatment_s,
                0.0,
                walk_in + layout.cleaning_ms / 1000,
            )
        else:
            costs[room_id] = RoomCosts(
                walk_in,
                treatment_s,
                layout.walk(room_id, ENTRANCE) / 1000,
                layout.cleaning_ms / 1000,
            )
    return costs


def staff_per_role(config: Config) -> dict[str, int]:
    counts = dict.fromkeys(ROLES, 0)
    for _, role in staff_roster(config):
        counts[role] += 1
    return counts


def _solve(
    costs: list[RoomCosts], staff: dict[str, int], cap: float | None
) -> tuple[float, np.ndarray]:
    n = len(costs)
    rows: list[list[float]] = []
    bounds: list[float] = []
    for role in ROLES:
        rows.append([c.busy_s[role] for c in costs])
        bounds.append(staff[role])
    if cap is not None:
        rows.append([1.0] * n)
        bounds.append(cap)
    # x[r] * hold[r] <= 1 is a bound on each variable (a room that takes no time is unbounded
    # by itself; the roles' rows still bound it unless they cost nothing either).
    var_bounds = [(0.0, 1.0 / c.hold_s if c.hold_s > 0 else None) for c in costs]
    result = linprog(
        -np.ones(n),
        A_ub=np.array(rows),
        b_ub=np.array(bounds, dtype=float),
        bounds=var_bounds,
        method="highs",
    )
    if result.status == 3:
        raise ValueError("the capacity is unbounded: some room costs no time of anyone")
    if not result.success:
        raise RuntimeError(f"capacity LP failed: {result.message}")
    return float(-result.fun), result.x


def capacity_bound(config: Config) -> CapacityBound:
    """The highest sustainable admission rate of the hospital, and the lowest referral rate
    any policy can reach with its arrival rate."""
    costs = list(room_costs(config).values())
    staff = staff_per_role(config)
    arrival_rate = mean_arrival_rate_per_s(config)
    max_rate, _ = _solve(costs, staff, arrival_rate)
    staff_rate, x = _solve(costs, staff, None)
    use = {
        role: (
            float(sum(xi * c.busy_s[role] for xi, c in zip(x, costs))) / staff[role]
            if staff[role]
            else 0.0
        )
        for role in ROLES
    }
    use["rooms"] = float(sum(xi * c.hold_s for xi, c in zip(x, costs))) / len(costs)
    bottleneck = max(use, key=lambda k: (use[k], k == "rooms"))
    min_referral = max(0.0, 1.0 - max_rate / arrival_rate)
    return CapacityBound(arrival_rate, max_rate, staff_rate, min_referral, bottleneck, use)
