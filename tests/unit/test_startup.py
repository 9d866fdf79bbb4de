"""Start-up counts in a run's wall time: the command and a run of the default hospital import
nothing they do not need (numpy and scipy only for assignment problems above
`assignment.SMALL` pairs)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

RUN = """
import sys
from cli.main import app
from scheduler import config
from scheduler.runs import simulate_run

simulate_run(config.load(None).replace(scheduler={{"policy": "{policy}"}}), 600_000)
print(sorted(m for m in ("numpy", "scipy") if m in sys.modules))
"""


@pytest.mark.parametrize("policy", ["greedy", "cpsat"])
def test_a_run_of_the_default_hospital_imports_neither_numpy_nor_scipy(policy):
    done = subprocess.run(
        [sys.executable, "-c", RUN.format(policy=policy)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "[]"


# The modules in memory when each tick of a run has been decided; printed as JSON.
TICKS = """
import json, sys
from scheduler import scenarios
from scheduler.runs import simulate_run

found = []
config = scenarios.load("{scenario}").replace(scheduler={{"policy": "cpsat"}})
simulate_run(config, 600_000, on_tick=lambda s, r: found.append(sorted(sys.modules)))
print(json.dumps([found[0], found[-1]]))
"""


@pytest.mark.parametrize("scenario", ["hospital-overload", "ward-acuity"])
def test_a_large_hospitals_ticks_import_nothing_the_start_up_pays_for_them(scenario):
    """The first tick that needs numpy and scipy (on a large hospital, a few ticks in) took
    half a second to import them (issue 17, item 8): the run warms its tick path up before
    its clock starts, so its ticks import nothing, the first as the last."""
    done = subprocess.run(
        [sys.executable, "-c", TICKS.format(scenario=scenario)],
        capture_output=True,
        text=True,
        check=True,
    )
    first, last = json.loads(done.stdout)
    assert {"numpy", "scipy.optimize"} <= set(first)
    assert sorted(set(last) - set(first)) == []
