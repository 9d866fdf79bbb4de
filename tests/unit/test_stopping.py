"""A run asked to stop (`StopFlag`, as the CLI's signal handlers set it) ends at a tick
boundary, with everything written up to its last tick; no solver takes SIGINT for itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from scheduler.config import Config
from scheduler.engine import Scheduler
from scheduler.runs import simulate_run
from scheduler.simulation import Clock, StopFlag, simulate

CONFIG = Config()
ROOT = Path(__file__).resolve().parents[2]


def test_a_stop_ends_the_simulation_after_the_tick_under_way():
    stop, seen = StopFlag(), []

    def on_tick(result):
        seen.append(result)
        if len(seen) == 5:
            stop.set()  # as a signal handler would, in the middle of a tick

    summary = simulate(
        CONFIG, Scheduler(CONFIG), 3_600_000, clock=Clock(None, stop), on_tick=on_tick
    )
    assert summary.stopped and summary.ticks == 5 == len(seen)
    assert summary.end_ms == seen[-1].time_ms


def test_a_run_that_is_not_stopped_says_so():
    summary = simulate(CONFIG, Scheduler(CONFIG), 60_000)
    assert not summary.stopped and summary.end_ms == 60_000


def test_a_stop_cuts_the_wait_for_the_wall_clock_short():
    stop = StopFlag()
    threading.Timer(0.1, stop.set).start()
    started = time.monotonic()
    Clock(speed=0.001, stop=stop).wait_until(60_000)  # a minute of wall time, unless stopped
    assert time.monotonic() - started < 2


def test_a_stopped_run_writes_every_tick_up_to_its_stop_and_reports_it(tmp_path):
    stop, ticks = StopFlag(), []

    def on_tick(scheduler, result):
        ticks.append(result.tick)
        if len(ticks) == 30:
            stop.set()

    record, out = tmp_path / "ev.jsonl", tmp_path / "dec.jsonl"
    report = simulate_run(CONFIG, 3_600_000, record=record, out=out, on_tick=on_tick, stop=stop)
    assert report["ticks"] == 30
    last_ms = report["interrupted_at_ms"]
    assert last_ms == report["duration_s"] * 1000 < 3_600_000
    recorded = [json.loads(line) for line in record.read_text().splitlines()[1:]]
    assert sorted({r["tick"] for r in recorded}) == ticks
    assert all(json.loads(line)["tick"] <= ticks[-1] for line in out.read_text().splitlines())


def test_a_finished_run_is_not_marked_interrupted():
    assert "interrupted_at_ms" not in simulate_run(CONFIG, 60_000)


SOLVE_THEN_CTRL_C = """
import os, signal, time
from scheduler.config import Config
from scheduler.engine import Scheduler
from scheduler.full_model import FullModelPolicy
from scheduler.simulation import simulate

caught = []
signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
config = Config()
policy = FullModelPolicy(config.rules)
simulate(config, Scheduler(config, policy), 10 * 60_000)
assert policy.solved > 0
os.kill(os.getpid(), signal.SIGINT)
time.sleep(0.1)
print("caught", len(caught))
"""


def test_the_cp_sat_solver_leaves_sigint_alone():
    """OR-tools installs its own SIGINT handler while it solves, unless told not to, and
    leaves the default one behind, unseen by Python's `signal.getsignal`: a later Ctrl-C
    would kill the run before it could stop. So the test is a real signal, in a process."""
    done = subprocess.run(
        [sys.executable, "-c", SOLVE_THEN_CTRL_C],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert (done.returncode, done.stdout) == (0, "caught 1\n"), done.stderr


class CountingStore:
    """Counts the ticks saved, and how many were saved at each commit."""

    def __init__(self):
        self.saved, self.commits, self.closed = 0, [], False

    def save_tick(self, result):
        self.saved += 1

    def flush(self):
        self.commits.append(self.saved)

    def close(self):
        self.closed = True


def test_a_live_run_commits_what_it_has_whenever_it_waits_for_the_clock():
    store = CountingStore()
    simulate_run(CONFIG, 60_000, speed=120, store=store)  # a minute in half a second
    assert store.closed and store.saved > 20
    # A commit before each wait: each tick committed before the next one, bar ticks that
    # ran late on a busy machine (then one commit takes them all).
    assert len(store.commits) > store.saved / 2
    assert store.commits == sorted(store.commits) and store.commits[-1] < store.saved


def test_a_run_as_fast_as_the_cpu_allows_leaves_the_commits_to_the_store():
    store = CountingStore()
    simulate_run(CONFIG, 10 * 60_000, store=store)
    assert store.commits == [] and store.closed
