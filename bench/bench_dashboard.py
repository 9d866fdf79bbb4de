"""Benchmark (not a test): what the live dashboard costs an embedded `--speed max` run.

Runs the same simulation without and with the dashboard (`hospital run --dashboard`'s
projection fed each tick, its server up on 127.0.0.1 and a client reading the live feed all
along, as an open page does), in `--repeat` pairs, and prints the slowdown (the median of the
pairs' ratios) and the CPU the dashboard itself takes. Target: at most 10 %. Twice: as
`hospital run --speed max` runs by default, keeping the run in a SQLite database, and with
`--no-db`, where the run is about half as long and the dashboard's share larger. Then, for
reference, what following the same run from its decisions alone costs (`hospital dashboard`
of a run in another process).

    python bench/bench_dashboard.py [--hours 6] [--scenario default] [--repeat 5]
"""

from __future__ import annotations

import argparse
import gc
import itertools
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dashboard.embedded import LiveProjection
from dashboard.projection import Projection
from dashboard.server import DashboardServer
from scheduler import config as config_module
from scheduler import scenarios
from scheduler.db.store import SqlStore
from scheduler.runs import new_kpi, simulate_run


def plain(config, duration_ms: int, store) -> tuple[float, float]:
    gc.freeze()  # as `hospital run` does for its run (cli.main.frozen_heap)
    started, cpu = time.perf_counter(), time.process_time()
    simulate_run(config, duration_ms, store=store)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    gc.unfreeze()
    return wall, cpu


READER = """
import sys, httpx
with httpx.stream("GET", sys.argv[1], timeout=60) as response:
    for line in response.iter_lines():
        if line.startswith("event:"):
            print(line, flush=True)
"""


def thread_cpu(thread) -> float:
    """CPU seconds a running thread of this process has used."""
    return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))


def with_dashboard(config, duration_ms: int, store) -> tuple[float, float, float, int]:
    """The run with the dashboard up and a page's worth of client reading its live feed
    from another process (as a browser does): wall and CPU seconds of the run, and the CPU
    seconds the dashboard itself took (its per-tick projection on the run's thread, plus
    its server's thread), and how many live events the client read."""
    kpi = new_kpi(config)
    projection = LiveProjection.for_config(config, kpi=kpi)
    spent = [0.0]

    def on_tick(scheduler, result) -> None:
        started = time.perf_counter()  # a tick's work is all on this thread (and cheaper to time)
        projection.on_tick(scheduler, result)
        spent[0] += time.perf_counter() - started

    with DashboardServer(projection) as server:
        reader = subprocess.Popen(
            [sys.executable, "-c", READER, server.url + "events"], stdout=subprocess.PIPE, text=True
        )
        try:
            reader.stdout.readline()  # the page has its first state: the run starts
            server_cpu = thread_cpu(server.thread)
            gc.freeze()  # as `hospital run` does for its run (cli.main.frozen_heap)
            started, cpu = time.perf_counter(), time.process_time()
            simulate_run(config, duration_ms, store=store, on_tick=on_tick, kpi=kpi)
            wall = time.perf_counter() - started
            cpu = time.process_time() - cpu  # every thread: the server's work included
            gc.unfreeze()
            server_cpu = thread_cpu(server.thread) - server_cpu
            projection.finish(duration_ms)
            time.sleep(0.5)
        finally:
            reader.terminate()
            events = 1 + len(reader.communicate(timeout=10)[0].splitlines())
    return wall, cpu, spent[0] + server_cpu, events


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def pairs(config, duration_ms: int, repeat: int, new_store) -> float:
    """`repeat` pairs of runs without and with the dashboard, each on a fresh store from
    `new_store()` (None: no database); prints the slowdown; the median CPU s without."""
    # Pairs, in alternating order (without-with, with-without, ...): a machine whose speed
    # drifts (other processes, a shared host) slows both runs of a pair alike, so the ratio
    # within a pair is steadier than either time.
    without, within, feed = [], [], 0
    for n in range(repeat):
        for dashboard in (False, True) if n % 2 == 0 else (True, False):
            gc.collect()
            store = new_store()
            if dashboard:
                wall, cpu, own, feed = with_dashboard(config, duration_ms, store)
                within.append((wall, cpu, own))
            else:
                without.append(plain(config, duration_ms, store))
    print("  CPU s without:", " ".join(f"{c:.2f}" for _, c in without))
    print("  CPU s with:   ", " ".join(f"{c:.2f}" for _, c, _ in within))
    wall_ratio = median([b[0] / a[0] for a, b in zip(without, within)])
    cpu_ratio = median([b[1] / a[1] for a, b in zip(without, within)])
    own = median([b[2] / a[1] for a, b in zip(without, within)])
    print(
        f"  without the dashboard: {median([w for w, _ in without]):7.2f} s wall "
        f"{median([c for _, c in without]):7.2f} s CPU (medians)"
    )
    print(
        f"  with the dashboard:    {median([w for w, _, _ in within]):7.2f} s wall "
        f"{median([c for _, c, _ in within]):7.2f} s CPU ({feed} live events read by a client)"
    )
    print(
        f"  slowdown, median of the pairs: {100 * (wall_ratio - 1):+.1f} % wall, "
        f"{100 * (cpu_ratio - 1):+.1f} % CPU (target <= +10 %)"
    )
    print(
        f"  the dashboard's own CPU (its projection on the run's thread + its server's "
        f"thread): {100 * own:.1f} % of the run's CPU"
    )
    return median([c for _, c in without])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=6.0)
    parser.add_argument("--scenario", default="default")
    parser.add_argument("--repeat", type=int, default=5)
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
        f"--speed max, policy {config.scheduler.policy}, {args.repeat} pairs of runs"
    )
    with tempfile.TemporaryDirectory() as folder:
        databases = (Path(folder) / f"run{n}.db" for n in itertools.count())
        print("hospital run --speed max (its default SQLite store):")
        pairs(
            config,
            duration_ms,
            args.repeat,
            lambda: SqlStore(f"sqlite:///{next(databases)}", config, config.scheduler.policy),
        )
    print("hospital run --speed max --no-db (the run alone: the dashboard's share is larger):")
    base = pairs(config, duration_ms, args.repeat, lambda: None)
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
        f"{100 * best / base:.1f} % of the --no-db run's CPU)"
    )


if __name__ == "__main__":
    main()
