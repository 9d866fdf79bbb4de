"""Benchmark (not a test): how often the `cpsat` policy's decisions equal those of the whole
rules model in one CP-SAT solve (`FullModelPolicy`, the reference), tick by tick.

The hospital runs with the `cpsat` policy; every tick that needs the solver is also handed,
unchanged, to the reference, and the two answers are compared. The reference's tie-break is
exact up to 30 pairs a tick; past that its optimum is not unique, so those ticks are counted
apart. Prints the share of equal ticks and the objective check.

    python bench/bench_exactness.py [--hours 24] [--scenario default layout]
"""

from __future__ import annotations

import argparse
import time

from rules.tie_break import EXACT_PAIRS, pair_count
from scheduler import config as config_module
from scheduler.engine import Scheduler
from scheduler.full_model import FullModelPolicy
from scheduler.policies import CpSatPolicy
from scheduler.simulation import simulate


class Comparing(CpSatPolicy):
    def __init__(self, weights):
        super().__init__(weights)
        self.reference = FullModelPolicy(weights)
        self.compared = {"small": 0, "small_equal": 0, "large": 0, "large_equal": 0}
        self.seconds = {"cpsat": 0.0, "full": 0.0}

    def solve(self, problem):
        started = time.perf_counter()
        ours = super().solve(problem)
        self.seconds["cpsat"] += time.perf_counter() - started
        started = time.perf_counter()
        theirs = self.reference.solve(problem)
        self.seconds["full"] += time.perf_counter() - started
        size = "small" if pair_count(problem) <= EXACT_PAIRS else "large"
        self.compared[size] += 1
        self.compared[f"{size}_equal"] += ours == theirs
        return ours


def compare(config, hours: float) -> Comparing:
    policy = Comparing(config.rules)
    simulate(config, Scheduler(config, policy), round(hours * 3_600_000))
    return policy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--travel", nargs="+", default=["seed", "layout"])
    args = parser.parse_args()
    for travel in args.travel:
        config = config_module.load(None, {}).replace(travel={"model": travel})
        policy = compare(config, args.hours)
        c = policy.compared
        ticks = c["small"] + c["large"]
        equal = c["small_equal"] + c["large_equal"]
        print(
            f"default hospital, travel {travel}, {args.hours:g} h: {ticks} ticks compared, "
            f"{equal} equal ({equal / max(ticks, 1):.2%}); with <= {EXACT_PAIRS} pairs "
            f"{c['small_equal']}/{c['small']}, with more {c['large_equal']}/{c['large']}; "
            f"solve time cpsat {policy.seconds['cpsat']:.1f} s, "
            f"full model {policy.seconds['full']:.1f} s"
        )


if __name__ == "__main__":
    main()
