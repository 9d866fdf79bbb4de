"""Benchmark (not a test): a day of the default hospital, as a user runs it.

Runs `hospital run --speed max --duration 24h --quiet` in a fresh process for both policies,
with the default SQLite store (a database file in a fresh temporary directory) and with
`--no-db`, and prints the best wall time and the CPU time (user + system) of each, start-up
included. Beside them, measured in the same run: a plain model of the same hospital (the
same arrivals, rooms, staff, task times and first-free choices, with no validator, no event
objects and no log), which gives the same admissions as `greedy`, in a process of its own;
each figure is also given as a multiple of that model's time. Targets (issue 6): cpsat at
most 5 s, greedy at most 1.5 s wall with the SQLite store.

    python bench/bench_day.py [--repeat 3] [--duration 24h] [--root CHECKOUT]...

`--root` measures other checkouts of the project (e.g. one of the commit before a change,
made with `git archive`) with the same script, interleaved, so that before and after are
measured in the same minutes.
"""

from __future__ import annotations

import argparse
import heapq
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def plain_model(duration_s: float) -> dict[str, int]:
    """The default hospital as a bare discrete-event loop: 2 floors of 3 rooms, 2 porters,
    2 nurses and a doctor, 2 cleaners; an arrival every 5 s; tasks timed from the entrance
    (floor index + room number seconds, plus 10 s of treatment or 9 s of cleaning); 1 s
    ticks, each deciding first come first served, first free room, first free staff."""
    rooms = [f"{floor}{n}" for floor in "AB" for n in (1, 2, 3)]
    walk = {room: 1000 * (1 + "AB".index(room[0])) + 1000 * int(room[1:]) for room in rooms}
    staff = {"porter": [True, True], "medical": [True, True, True], "cleaner": [True, True]}
    role = {"escort_in": "porter", "visit": "medical", "escort_out": "porter", "clean": "cleaner"}
    after = {"escort_in": "visit", "visit": "escort_out", "escort_out": "clean"}
    work = {"escort_in": 0, "visit": 10_000, "escort_out": 0, "clean": 9_000}
    free = set(rooms)
    waiting: list[tuple[int, int, str, str]] = []  # (created, order, kind, room)
    done: list[tuple[int, int, str, str, int]] = []  # (time, order, kind, room, staff), a heap
    counts = {"admitted": 0, "referred": 0, "discharged": 0, "ticks": 0}
    end_ms, next_arrival, order, tick_ms = round(duration_s * 1000), 0, 0, -1000
    while True:
        due = min(next_arrival, done[0][0] if done else next_arrival)
        tick_ms = max(-(-due // 1000) * 1000, tick_ms + 1000)  # one tick at a time
        if tick_ms > end_ms:
            return counts
        counts["ticks"] += 1
        arrivals = 0
        while done and done[0][0] <= tick_ms:
            at, _, kind, room, member = heapq.heappop(done)
            staff[role[kind]][member] = True
            if kind == "clean":
                free.add(room)
            elif kind in after:
                order += 1
                waiting.append((at, order, after[kind], room))
            if kind == "escort_out":
                counts["discharged"] += 1
        while next_arrival <= tick_ms:
            arrivals += 1
            if free:
                room = min(free, key=rooms.index)
                free.discard(room)
                order += 1
                waiting.append((next_arrival, order, "escort_in", room))
                counts["admitted"] += 1
            else:
                counts["referred"] += 1
            next_arrival += 5000
        waiting.sort()
        still = []
        for task in waiting:
            created, _, kind, room = task
            members = staff[role[kind]]
            member = next((n for n, idle in enumerate(members) if idle), None)
            if member is None:
                still.append(task)
                continue
            members[member] = False
            order += 1
            took = work[kind] + (0 if kind == "escort_out" else walk[room])
            heapq.heappush(done, (tick_ms + took, order, kind, room, member))
        waiting = still


def run(command: list[str], root: str, cwd: str) -> tuple[float, float, str]:
    """Wall and CPU (user + system) seconds of one process, and its standard output."""
    env = {**os.environ, "PYTHONPATH": root}
    before = os.times()
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = os.times()
    if done.returncode:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr}")
    cpu = (
        after.children_user + after.children_system - before.children_user - before.children_system
    )
    return wall, cpu, done.stdout


def best(runs: list[tuple[float, float, str]]) -> tuple[float, float]:
    return min(r[0] for r in runs), min(r[1] for r in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--duration", default="24h")
    parser.add_argument(
        "--root", action="append", help="a checkout to measure, repeatable (default: this one)"
    )
    args = parser.parse_args()
    roots = args.root or [str(Path(__file__).resolve().parent.parent)]
    hours = float(args.duration.rstrip("h"))
    python = [sys.executable]
    cases = [
        (root, policy, store)
        for root in roots
        for policy in ("greedy", "cpsat")
        for store in ("sqlite", "no-db")
    ]
    results: dict[tuple[str, str, str], list] = {case: [] for case in cases}
    with tempfile.TemporaryDirectory() as tmp:
        baseline = [
            run(python + [__file__, "--plain", str(hours * 3600)], roots[0], tmp)
            for _ in range(args.repeat)
        ]
        startup = [run(python + ["-c", "pass"], roots[0], tmp) for _ in range(args.repeat)]
        for _ in range(args.repeat):  # interleaved: a busy minute hits every case alike
            for root, policy, store in cases:
                db = (
                    ["--no-db"]
                    if store == "no-db"
                    else [
                        "--db",
                        f"sqlite:///{tmp}/run-{len(results[root, policy, store])}"
                        f"-{policy}-{roots.index(root)}.db",
                    ]
                )
                results[root, policy, store].append(
                    run(
                        python
                        + [
                            "-m",
                            "cli",
                            "run",
                            "--speed",
                            "max",
                            "--duration",
                            args.duration,
                            "--quiet",
                            "--policy",
                            policy,
                            *db,
                        ],
                        root,
                        tmp,
                    )
                )
    plain_wall, plain_cpu = best(baseline)
    print(
        f"{args.duration} of the default hospital, best of {args.repeat}, wall and CPU "
        f"(user + system) seconds, start-up included, a fresh SQLite file each run"
    )
    print(
        f"plain model ({baseline[0][2].strip()}): wall {plain_wall:.2f}  cpu {plain_cpu:.2f}"
        f"   (python start-up alone: cpu {best(startup)[1]:.2f})"
    )
    print(
        f"{'checkout':24} {'policy':7} {'store':7} {'wall s':>7} {'cpu s':>7} "
        f"{'wall/plain':>11} {'cpu/plain':>10} {'target':>7}"
    )
    for (root, policy, store), runs in results.items():
        wall, cpu = best(runs)
        target = {("greedy", "sqlite"): "1.5", ("cpsat", "sqlite"): "5"}.get((policy, store), "")
        print(
            f"{root[-24:]:24} {policy:7} {store:7} {wall:7.2f} {cpu:7.2f} "
            f"{wall / plain_wall:11.1f} {cpu / plain_cpu:10.1f} {target:>7}"
        )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--plain"]:
        print(plain_model(float(sys.argv[2])))
    else:
        main()
