"""The cpsat policy against the whole CP-SAT model (`FullModelPolicy`) on the prototype's
hospital: every tick of half an hour of each travel model, handed to both, decided alike.
(`bench/bench_exactness.py` does the same over 24 h and prints the share.)"""

from __future__ import annotations

import pytest

from rules.tie_break import EXACT_PAIRS, pair_count
from scheduler.config import Config
from scheduler.engine import Scheduler
from scheduler.full_model import FullModelPolicy
from scheduler.policies import CpSatPolicy
from scheduler.simulation import simulate


class BothPolicies(CpSatPolicy):
    def __init__(self, weights):
        super().__init__(weights)
        self.reference = FullModelPolicy(weights)
        self.compared = 0

    def solve(self, problem):
        ours = super().solve(problem)
        assert pair_count(problem) <= EXACT_PAIRS
        assert ours == self.reference.solve(problem), f"tick at {problem.now_ms} ms"
        self.compared += 1
        return ours


@pytest.mark.parametrize("travel", ["seed", "layout"])
def test_every_tick_of_the_default_hospital_is_decided_as_the_full_model_decides(travel):
    config = Config().replace(travel={"model": travel})
    policy = BothPolicies(config.rules)
    simulate(config, Scheduler(config, policy), 30 * 60_000)
    assert policy.compared > 300
