"""Benchmark (not a test): both policies on the default hospital.

Prints, for each policy, simulated seconds per wall second and the tick solve time
p50 / p95 / max (over the ticks that had something to decide), and the greedy/cpsat speed
ratio measured in the same run. Targets: 24 simulated hours with cpsat in at most 60 s wall
on a 2-core machine; greedy ten times faster than that (6 s).

    python bench/bench_policies.py [--hours 24] [--travel seed|layout]
"""

from __future__ import annotations

import argparse
import time

from scheduler import config as config_module
from scheduler.runs import simulate_run


def measure(policy: str, hours: float, travel: str) -> dict:
    config = config_module.load(None, {}).replace(
        scheduler={"policy": policy}, travel={"model": travel}
    )
    started = time.perf_counter()
    report = simulate_run(config, round(hours * 3_600_000))
    wall = time.perf_counter() - started
    return {
        "policy": policy,
        "wall_s": wall,
        "sim_per_wall": hours * 3600 / wall,
        "solve": report["tick_solve_ms"],
        "ticks": report["ticks_solved"],
        "referral_rate": report["referral_rate"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--travel", choices=("seed", "layout"), default="seed")
    args = parser.parse_args()
    print(f"default hospital, {args.hours:g} simulated hours, travel model {args.travel}")
    print(
        f"{'policy':8} {'wall s':>8} {'sim s/wall s':>13} {'ticks':>7} "
        f"{'p50 ms':>7} {'p95 ms':>7} {'max ms':>7} {'referred':>9}"
    )
    results = {}
    for policy in ("cpsat", "greedy"):
        r = results[policy] = measure(policy, args.hours, args.travel)
        s = r["solve"]
        print(
            f"{policy:8} {r['wall_s']:8.2f} {r['sim_per_wall']:13.0f} {r['ticks']:7d} "
            f"{s['p50']:7.3f} {s['p95']:7.3f} {s['max']:7.3f} {r['referral_rate']:9.2%}"
        )
    ratio = results["cpsat"]["wall_s"] / results["greedy"]["wall_s"]
    cpsat_day = results["cpsat"]["wall_s"] * 24 / args.hours
    greedy_day = results["greedy"]["wall_s"] * 24 / args.hours
    print(f"cpsat:  {cpsat_day:.1f} s wall per simulated day (target <= 60 s)")
    print(
        f"greedy: {greedy_day:.1f} s wall per simulated day (target <= 6 s, ten times "
        f"faster than cpsat's target)"
    )
    print(f"greedy/cpsat speed ratio in this run: {ratio:.1f}x")


if __name__ == "__main__":
    main()
