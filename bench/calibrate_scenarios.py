"""Calibrate a scenario's arrival interval by measurement (not a test).

For each scenario given, simulates it with the `greedy` policy for `--hours` over `--seeds`
seeds and searches (bisection on the arrival rate) for the `interval_s` at which the busiest
role's measured utilisation is `--target` (0.85). It also measures what the staff can serve:
the admission rate of a run flooded with arrivals (`--flood` times the calibrated rate),
whose half-interval is the overload twin's interval. Prints the figures; the scenario files
are edited by hand from them.

    python bench/calibrate_scenarios.py ward hospital campus [--hours 1] [--seeds 2]
"""

from __future__ import annotations

import argparse
import statistics

from scheduler import scenarios
from scheduler.capacity import capacity_bound
from scheduler.config import Config
from scheduler.runs import simulate_run


def measure(config: Config, interval_s: float, hours: float, seeds: int) -> dict:
    config = config.replace(
        arrivals={"interval_s": interval_s}, scheduler={"policy": "greedy", "validate": False}
    )
    reports = [
        simulate_run(config, round(hours * 3_600_000), seed=seed) for seed in range(1, seeds + 1)
    ]
    util = {
        role: statistics.mean(r["utilisation"][role] for r in reports)
        for role in reports[0]["utilisation"]
    }
    admitted_per_s = statistics.mean(r["admitted"] / r["duration_s"] for r in reports)
    return {
        "interval_s": interval_s,
        "utilisation": util,
        "referral_rate": statistics.mean(r["referral_rate"] for r in reports),
        "admitted_per_s": admitted_per_s,
        "occupancy": statistics.mean(r["room_occupancy"] for r in reports),
        "stay_s": statistics.mean(r["mean_length_of_stay_s"] for r in reports),
    }


def show(name: str, m: dict) -> None:
    util = " ".join(f"{k}={v:.1%}" for k, v in m["utilisation"].items())
    print(
        f"  {name:10} interval {m['interval_s']:.4f} s: {util}  referred "
        f"{m['referral_rate']:.2%}  occupancy {m['occupancy']:.1%}  stay {m['stay_s']:.0f} s  "
        f"admitted {m['admitted_per_s']:.4f}/s",
        flush=True,
    )


def calibrate(config: Config, target: float, hours: float, seeds: int, steps: int) -> dict:
    bound = capacity_bound(config)
    low, high = bound.staff_rate * 0.3, bound.staff_rate * 1.2  # arrival rates, per second
    best = None
    for _ in range(steps):
        rate = (low + high) / 2
        m = measure(config, round(1 / rate, 4), hours, seeds)
        show("bisect", m)
        if best is None or abs(max(m["utilisation"].values()) - target) < abs(
            max(best["utilisation"].values()) - target
        ):
            best = m
        if max(m["utilisation"].values()) > target:
            high = rate
        else:
            low = rate
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="+")
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--target", type=float, default=0.85)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--flood", type=float, default=3.0)
    args = parser.parse_args()
    for name in args.names:
        config = scenarios.load(name)
        print(f"{name}: capacity bound {capacity_bound(config).as_dict()}", flush=True)
        best = calibrate(config, args.target, args.hours, args.seeds, args.steps)
        show("best", best)
        flooded = measure(config, best["interval_s"] / args.flood, args.hours, args.seeds)
        show("flooded", flooded)
        served = flooded["admitted_per_s"]
        print(
            f"  the staff serve {served:.4f} patients/s; overload interval "
            f"(twice that) {1 / (2 * served):.4f} s",
            flush=True,
        )


if __name__ == "__main__":
    main()
