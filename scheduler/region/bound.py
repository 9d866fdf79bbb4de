"""The fluid bound of a region: the fewest referrals out of the region any coordinator could
reach in a long run, with transfers allowed.

Each hospital h can admit at most `max_h` patients a second (the single hospital's capacity
bound, `scheduler.capacity`: its rooms and staff, every walk at its least, no waiting). A
linear program moves the arrivals' excess between hospitals:

    maximise   sum_h served_h
    subject to served_h = local_h + sum_i f[i, h]          (f: transfers from i to h)
               local_h + sum_j f[h, j] <= arrivals_h
               sum_j f[h, j] <= movable_h * arrivals_h     (ESI 1-2 stay when not moved)
               served_h <= max_h,  all >= 0

Travel is free in it (a transfer's room is not held for the drive) and nobody waits: no
coordinator refers fewer in the long run. Isolated hospitals (`f = 0`) refer at least
sum_h max(0, arrivals_h - max_h): the `none` bound beside it. Solved by OR-tools' GLOP, as
the single hospital's bound is.
"""

from __future__ import annotations

from dataclasses import dataclass

from scheduler.capacity import capacity_bound
from scheduler.region.config import RegionConfig


@dataclass(frozen=True)
class RegionBound:
    arrivals_per_hour: float
    capacity_per_hour: float  # what the hospitals' rooms and staff allow, summed
    min_referred_out_rate: float  # with transfers
    min_referred_isolated_rate: float  # without

    def as_dict(self) -> dict[str, float]:
        return {
            "arrivals_per_hour": round(self.arrivals_per_hour, 3),
            "capacity_per_hour": round(self.capacity_per_hour, 3),
            "min_referred_out_rate": round(self.min_referred_out_rate, 6),
            "min_referred_isolated_rate": round(self.min_referred_isolated_rate, 6),
        }


def _movable_share(region: RegionConfig, hospital_index: int) -> float:
    config = region.hospitals[hospital_index].config
    mix = config.arrivals.acuity_mix
    total = sum(mix)
    urgent = (mix[0] + mix[1]) / total if total else 0.0
    share = 1.0 if region.rules.move_urgent else 1.0 - urgent
    if not region.rules.move_isolation:
        share *= 1.0 - config.arrivals.isolation_share
    return share


def region_bound(region: RegionConfig) -> RegionBound:
    from ortools.linear_solver import pywraplp

    bounds = [capacity_bound(m.config) for m in region.hospitals]
    arrivals = [b.arrival_rate for b in bounds]
    most = [b.staff_rate for b in bounds]
    n = len(bounds)
    solver = pywraplp.Solver.CreateSolver("GLOP")
    local = [solver.NumVar(0.0, arrivals[h], f"local{h}") for h in range(n)]
    moved = {
        (i, j): solver.NumVar(0.0, solver.infinity(), f"f{i}_{j}")
        for i in range(n)
        for j in range(n)
        if i != j
    }
    for h in range(n):
        out = [moved[h, j] for j in range(n) if j != h]
        incoming = [moved[i, h] for i in range(n) if i != h]
        solver.Add(local[h] + sum(out) <= arrivals[h])
        solver.Add(sum(out) <= _movable_share(region, h) * arrivals[h])
        solver.Add(local[h] + sum(incoming) <= most[h])
    solver.Maximize(sum(local) + sum(moved.values()))
    if solver.Solve() != pywraplp.Solver.OPTIMAL:
        raise RuntimeError("the region's fluid LP failed")
    total = sum(arrivals)
    served = solver.Objective().Value()
    isolated = sum(max(0.0, a - m) for a, m in zip(arrivals, most))
    return RegionBound(
        total * 3600,
        sum(most) * 3600,
        max(0.0, 1.0 - served / total) if total else 0.0,
        isolated / total if total else 0.0,
    )
