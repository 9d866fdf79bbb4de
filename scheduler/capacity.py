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

**By hour of day** (`hourly_bounds`): the same LP at each hour's rate. Its feasible set
holds 0 and shrinks nothing when scaled down, so its optimum under an arrival cap is the
smaller of the cap and `staff_rate`: an hour of `a` arrivals an hour refers at least
1 - 3600 * staff_rate / a of them, in the fluid sense. With `day_factors`, hour h of day d
has its own rate (`rates_per_hour[h] * day_factors[d]`); the KPI report pools the days of a
run by hour of day, and so does the bound: the mean of the bounds of each day's hour h that
the run reaches, weighted by their expected arrivals (a floor on the pooled referral rate).
Each hour's bound is a bound of the long run at that hour's rate, not of the hour itself:
an hour starts with the patients the hour before left in the rooms and queues, so a busy
hour that follows a quiet one can refer fewer than its bound (its rooms start free), and
the hour after a busy one more.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from scheduler.config import Config, staff_roster
from scheduler.demand import arrival_profile, mean_arrival_rate_per_s, mean_treatment_s
from scheduler.hours import HOUR_MS, HOURS
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
    # the share of each resource used at staff_rate, at one optimal solution: the binding
    # ones are used to the full at any, the others may be used more or less at another
    use: dict[str, float] = field(default_factory=dict)

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
) -> tuple[float, list[float]]:
    """The LP's optimum and an optimal x, by OR-tools' GLOP (a simplex, deterministic): the
    scheduler's own solver library, loaded in a tenth of the time scipy's takes, which
    `hospital run` of a small hospital would otherwise import at its end for this alone."""
    from ortools.linear_solver import pywraplp

    solver = pywraplp.Solver.CreateSolver("GLOP")
    # x[r] * hold[r] <= 1 is a bound on each variable (a room that takes no time is unbounded
    # by itself; the roles' rows still bound it unless they cost nothing either).
    x = [
        solver.NumVar(0.0, 1.0 / c.hold_s if c.hold_s > 0 else solver.infinity(), f"x{n}")
        for n, c in enumerate(costs)
    ]
    for role in ROLES:
        row = solver.Constraint(-solver.infinity(), float(staff[role]))
        for var, c in zip(x, costs):
            row.SetCoefficient(var, c.busy_s[role])
    if cap is not None:
        row = solver.Constraint(-solver.infinity(), cap)
        for var in x:
            row.SetCoefficient(var, 1.0)
    objective = solver.Objective()
    for var in x:
        objective.SetCoefficient(var, 1.0)
    objective.SetMaximization()
    status = solver.Solve()
    if status == pywraplp.Solver.UNBOUNDED:
        raise ValueError("the capacity is unbounded: some room costs no time of anyone")
    if status != pywraplp.Solver.OPTIMAL:
        raise RuntimeError(f"capacity LP failed: status {status}")
    return objective.Value(), [var.solution_value() for var in x]


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
    # The resource used most; on a tie (two used to the full, up to the solver's rounding),
    # the rooms, then the first role in ROLES' order.
    bottleneck = max(use, key=lambda k: (round(use[k], 6), k == "rooms"))
    min_referral = max(0.0, 1.0 - max_rate / arrival_rate)
    return CapacityBound(arrival_rate, max_rate, staff_rate, min_referral, bottleneck, use)


@dataclass(frozen=True)
class HourBound:
    """The capacity bound of one hour of the day, the run's days pooled."""

    hour: int  # of the day, 0-23
    arrivals_per_hour: float  # expected, the mean over the run's instances of this hour
    min_referral_rate: float

    def as_dict(self) -> dict[str, object]:
        return {
            "hour": self.hour,
            "arrivals_per_hour": round(self.arrivals_per_hour, 3),
            "min_referral_rate": round(self.min_referral_rate, 6),
        }


def referral_floor(staff_rate: float, arrivals_per_hour: float) -> float:
    """The capacity LP's lowest referral rate at an arrival rate, once its staff rate (the
    admissions a second it allows without an arrival cap) is known."""
    if arrivals_per_hour <= 0:
        return 0.0
    return max(0.0, 1.0 - staff_rate * 3600 / arrivals_per_hour)


def hourly_bounds(
    config: Config, duration_ms: int, bound: CapacityBound | None = None, start_ms: int = 0
) -> list[HourBound]:
    """The bound of each hour of the day that a run of `duration_ms` reaches from `start_ms`
    on (a warm-up left out; see the module's docstring), in order of the hour."""
    staff_rate = (bound or capacity_bound(config)).staff_rate
    profile = arrival_profile(config)
    flat = 3600 / config.arrivals.interval_s if profile is None else 0.0
    expected, covered, floors = [0.0] * HOURS, [0.0] * HOURS, [0.0] * HOURS
    for k in range(-(-max(duration_ms, 0) // HOUR_MS)):  # each hour of the run, whole or not
        within = min(HOUR_MS * (k + 1), duration_ms) - max(HOUR_MS * k, start_ms)
        if within <= 0:
            continue
        share = within / HOUR_MS
        rate = flat if profile is None else profile.hourly[k % len(profile.hourly)]
        hour = k % HOURS
        expected[hour] += rate * share
        covered[hour] += share
        floors[hour] += rate * share * referral_floor(staff_rate, rate)
    return [
        HourBound(
            hour,
            expected[hour] / covered[hour],
            floors[hour] / expected[hour] if expected[hour] else 0.0,
        )
        for hour in range(HOURS)
        if covered[hour]
    ]


def run_bound(config: Config, duration_ms: int, start_ms: int = 0) -> dict[str, Any]:
    """The capacity bound as a run's reports give it: in the long run, with the role (or
    the rooms) that binds it, and for each hour of the day the run reaches from `start_ms`
    (a warm-up left out) on, with the busiest of those hours apart."""
    bound = capacity_bound(config)
    by_hour = hourly_bounds(config, duration_ms, bound, start_ms)
    busiest = max(by_hour, key=lambda h: h.arrivals_per_hour, default=None)
    return {
        **bound.as_dict(),
        "by_hour": [h.as_dict() for h in by_hour],
        "busiest_hour": busiest.as_dict() if busiest else None,
    }
