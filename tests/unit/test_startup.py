"""Start-up counts in a run's wall time: the command and a run of the default hospital import
nothing they do not need (numpy and scipy only for assignment problems above
`assignment.SMALL` pairs)."""

from __future__ import annotations

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
