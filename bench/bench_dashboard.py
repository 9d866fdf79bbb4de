"""Benchmark (not a test): what the live dashboard costs an embedded `--speed max` run.

Runs the same simulation without and with the dashboard (`hospital run --dashboard`'s
projection fed each tick, its server up on 127.0.0.1 and a client reading the live feed all
along, as an open page does), alternating, and prints the wall and CPU time of each (best of
`--repeat`) and the slowdown. Target: at most 10 %. Then, for reference, what following the
same run from its decisions alone costs (`hospital dashboard` of a run in another process).

    python bench/bench_dashboard.py [--hours 6] [--scenario default] [--repeat 3]
"""

from __future__ import annotations

import argparse
import gc
import subprocess
import sys
import time

from dashboard.embedded import LiveProjection
from dashboard.projection import Projection
from dashboard.server import DashboardServer
from scheduler import config as config_module
from scheduler import scenarios
from scheduler.runs import simulate_run


def plain(config, duration_ms: int) -> tuple[float, float]:
    started, cpu = time.perf_counter(), time.process_time()
    simulate_run(config, duration_ms)
    return time.perf_counter() - started, time.process_time() - cpu


READER = """
import sys, httpx
with httpx.stream("GET", sys.argv[1], timeout=60) as response:
    for line in response.iter_lines():
        if line.startswith("event:"):
            print(line, flush=True)
"""


def with_dashboard(config, duration_ms: int) -> tuple[float, float, int]:
    """The run with the dashboard up and a page's worth of client reading its live feed
    from another process (as a browser does)."""
    projection = LiveProjection.for_config(config)
    with DashboardServer(projection) as server:
        reader = subprocess.Popen(
            [sys.executable, "-c", READER, server.url + "events"], stdout=subprocess.PIPE, text=True
        )
        try:
            reader.stdout.readline()  # the page has its first state: the run starts
            started, cpu = time.perf_counter(), time.process_time()
            simulate_run(config, duration_ms, on_tick=projection.on_tick)
            wall = time.perf_counter() - started
            cpu = time.process_time() - cpu  # every thread: the server's work included
            projection.finish(duration_ms)
            time.sleep(0.5)
        finally:
            reader.terminate()
            events = 1 + len(reader.communicate(timeout=10)[0].splitlines())
    return wall, cpu, events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=6.0)
    parser.add_argument("--scenario", default="default")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    config = (
        config_module.load(None, {})
        if args.scenario == "default"
        else scenarios.load(args.scenario)
    )
    duration_ms = round(args.hours * 3_600_000)
    rooms = len(config.hospital.floors) * config.hospital.rooms_per_floor
    print(
        f"scenario {args.scenario} ({rooms} rooms), {args.hours:g} simulated hours, "
        f"--speed max, policy {config.scheduler.policy}, best of {args.repeat}"
    )
    without, within, feed = [], [], 0
    for _ in range(args.repeat):
        gc.collect()
        without.append(plain(config, duration_ms))
        gc.collect()
        wall, cpu, feed = with_dashboard(config, duration_ms)
        within.append((wall, cpu))
    a, b = min(w for w, _ in without), min(w for w, _ in within)
    ca, cb = min(c for _, c in without), min(c for _, c in within)
    print("wall s without:", " ".join(f"{w:.2f}" for w, _ in without))
    print("wall s with:   ", " ".join(f"{w:.2f}" for w, _ in within))
    print(f"without the dashboard: {a:7.2f} s wall {ca:7.2f} s CPU")
    print(
        f"with the dashboard:    {b:7.2f} s wall {cb:7.2f} s CPU "
        f"({feed} live events read by a client)"
    )
    print(
        f"slowdown: {100 * (b / a - 1):+.1f} % wall, {100 * (cb / ca - 1):+.1f} % CPU "
        f"(target <= +10 %; CPU time is the figure other processes on the machine disturb "
        f"least)"
    )
    # A run in another process is followed from its decisions: that fold, on recorded ticks.
    results: list = []
    simulate_run(config, duration_ms, on_tick=lambda s, r: results.append(r))
    best = float("inf")
    for _ in range(args.repeat):
        projection = Projection.for_config(config)
        started = time.perf_counter()
        for result in results:
            projection.apply_result(result)
        best = min(best, time.perf_counter() - started)
    print(
        f"following it from its decisions instead (hospital dashboard --follow/--db): "
        f"{best:.3f} s for {len(results)} ticks ({1e6 * best / len(results):.1f} us a tick, "
        f"{100 * best / ca:.1f} % of the run's CPU)"
    )


if __name__ == "__main__":
    main()
