"""`hospital bench`: the named scenarios × policies × seeds, measured.

Each job (one scenario, one policy, one seed of the arrival process) runs in a fresh process,
so that its peak memory is its own; `run_bench` runs them (several at once with
`processes`), then `summarise` aggregates them per (scenario, policy) over the seeds: the
mean with the smallest and largest value, to show the seeds' noise. Beside each scenario,
its capacity bound (`scheduler.capacity`): the lowest referral rate any policy could reach.

    from scheduler import bench
    result = bench.run_bench(["ward"], ["cpsat", "greedy"], seeds=3, hours=1.0)
    print(bench.to_markdown(result))
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from scheduler import scenarios
from scheduler.capacity import capacity_bound
from scheduler.kpi import ROLES

POLICIES = ("cpsat", "greedy")

# The figures aggregated per (scenario, policy): key in a job's record, heading, format.
METRICS: tuple[tuple[str, str, str], ...] = (
    ("referral_rate", "referred", "{:.2%}"),
    ("mean_time_in_system_s", "time in system s", "{:.1f}"),
    ("wait_porter_s", "wait porter s", "{:.1f}"),
    ("wait_medical_s", "wait medical s", "{:.1f}"),
    ("wait_cleaner_s", "wait cleaner s", "{:.1f}"),
    ("first_tick_ms", "first tick ms", "{:.2f}"),
    ("solve_p50_ms", "tick p50 ms", "{:.2f}"),
    ("solve_p95_ms", "tick p95 ms", "{:.2f}"),
    ("solve_max_ms", "tick max ms", "{:.1f}"),
    ("ticks_over_budget", "ticks over budget", "{:.0f}"),
    ("limited_share", "limit cut search", "{:.1%}"),
    ("worst_gap", "worst gap", "{:.3g}"),
    ("wall_s", "wall s", "{:.1f}"),
    ("peak_rss_mb", "peak RSS MB", "{:.0f}"),
)


@dataclass(frozen=True)
class Job:
    scenario: str
    policy: str
    seed: int
    hours: float
    budget_ms: float | None = None  # None: the scenario's tick length


def jobs_for(
    names: Iterable[str],
    policies: Iterable[str],
    seeds: int,
    hours: float,
    budget_ms: float | None = None,
) -> list[Job]:
    return [
        Job(name, policy, seed, hours, budget_ms)
        for name in names
        for policy in policies
        for seed in range(1, seeds + 1)
    ]


def run_job(job: Job) -> dict[str, Any]:
    """Simulate one scenario with one policy and seed; the job's figures. Meant to run in a
    process of its own (the peak RSS is the process's)."""
    from scheduler.runs import simulate_run

    config = scenarios.load(job.scenario).replace(scheduler={"policy": job.policy})
    budget_ms = job.budget_ms if job.budget_ms is not None else config.scheduler.tick_s * 1000
    seen: dict[str, Any] = {"over": 0, "scheduler": None, "first": None}

    def on_tick(scheduler, result) -> None:
        seen["scheduler"] = scheduler
        if result.solved and seen["first"] is None:  # apart: what a start-up would cost
            seen["first"] = result.solve_ms
        if result.solved and result.solve_ms > budget_ms:
            seen["over"] += 1

    # The process imported the scheduler and (spawned from `hospital`) the whole CLI: move
    # those objects out of the collector's way, so that a full collection's pause over them
    # does not land in a tick's solve time at random.
    gc.collect()
    gc.freeze()
    started = time.perf_counter()
    report = simulate_run(config, round(job.hours * 3_600_000), seed=job.seed, on_tick=on_tick)
    wall_s = time.perf_counter() - started
    policy = seen["scheduler"].policy if seen["scheduler"] is not None else None
    solved = report["ticks_solved"]
    limited = getattr(policy, "limited", 0) or 0
    record = {
        **asdict(job),
        "budget_ms": budget_ms,
        "wall_s": round(wall_s, 3),
        "arrivals": report["arrivals"],
        "admitted": report["admitted"],
        "referred": report["referred"],
        "referral_rate": report["referral_rate"],
        "mean_time_in_system_s": report["mean_length_of_stay_s"],
        **{f"wait_{role}_s": report["wait_s"][role]["mean"] for role in ROLES},
        "utilisation": report["utilisation"],
        "room_occupancy": report["room_occupancy"],
        "ticks": report["ticks"],
        "ticks_solved": solved,
        "first_tick_ms": round(seen["first"] or 0.0, 3),
        "solve_p50_ms": report["tick_solve_ms"]["p50"],
        "solve_p95_ms": report["tick_solve_ms"]["p95"],
        "solve_max_ms": report["tick_solve_ms"]["max"],
        "ticks_over_budget": seen["over"],
        "ticks_limited": limited,
        "limited_share": round(limited / solved, 6) if solved else 0.0,
        "worst_gap": float(getattr(policy, "worst_gap", 0.0) or 0.0),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    return record


def run_jobs(
    jobs: list[Job],
    processes: int = 1,
    on_done: Callable[[dict[str, Any]], None] | None = None,
    worker: Callable[[Job], dict[str, Any]] = run_job,
) -> list[dict[str, Any]]:
    """Every job in a fresh process (at most `processes` at once); the records in the jobs'
    order. `on_done` sees each record as its job finishes."""
    records: list[dict[str, Any]] = []
    context = multiprocessing.get_context("spawn")  # a clean process: its own peak RSS
    with context.Pool(processes=max(1, processes), maxtasksperchild=1) as pool:
        for record in pool.imap_unordered(worker, jobs):
            records.append(record)
            if on_done:
                on_done(record)
    position = {(j.scenario, j.policy, j.seed): n for n, j in enumerate(jobs)}
    records.sort(key=lambda r: position.get((r["scenario"], r["policy"], r["seed"]), 0))
    return records


def _stats(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "min": min(values), "max": max(values)}


def summarise(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (scenario, policy), in the order first seen: each metric's mean, min and max over
    the seeds."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault((record["scenario"], record["policy"]), []).append(record)
    summary = []
    for (scenario, policy), group in groups.items():
        row: dict[str, Any] = {
            "scenario": scenario,
            "policy": policy,
            "seeds": sorted(r["seed"] for r in group),
        }
        for key, _, _ in METRICS:
            row[key] = _stats([float(r[key]) for r in group])
        summary.append(row)
    return summary


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "processor": platform.processor(),
    }
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    info["processor"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        from importlib.metadata import version

        info["ortools"] = version("ortools")
    except Exception:  # pragma: no cover - not installed as a distribution
        pass
    return info


def capacities(names: Iterable[str]) -> dict[str, dict[str, Any]]:
    return {name: capacity_bound(scenarios.load(name)).as_dict() for name in names}


def run_bench(
    names: list[str],
    policies: list[str],
    seeds: int = 3,
    hours: float = 1.0,
    processes: int = 1,
    budget_ms: float | None = None,
    on_done: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """The whole benchmark as data: settings, machine, capacity bounds, jobs and summary."""
    for name in names:
        scenarios.path(name)  # an unknown name fails before any job starts
    jobs = jobs_for(names, policies, seeds, hours, budget_ms)
    started = time.perf_counter()
    records = run_jobs(jobs, processes, on_done)
    return {
        "settings": {
            "scenarios": names,
            "policies": policies,
            "seeds": seeds,
            "hours": hours,
            "processes": processes,
            "budget_ms": budget_ms,
        },
        "machine": machine(),
        "wall_s": round(time.perf_counter() - started, 3),
        "capacity": capacities(names),
        "summary": summarise(records),
        "jobs": records,
    }


def cell(stats: dict[str, float], fmt: str) -> str:
    """'mean (min–max)', or the mean alone when every seed gave the same."""
    mean = fmt.format(stats["mean"])
    low, high = fmt.format(stats["min"]), fmt.format(stats["max"])
    return mean if low == high else f"{mean} ({low}–{high})"


def table_rows(result: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The headings and rows shown in the terminal and in the Markdown table."""
    headings = ["scenario", "policy", "min referred (bound)"] + [h for _, h, _ in METRICS]
    rows = []
    for row in result["summary"]:
        bound = result["capacity"][row["scenario"]]
        rows.append(
            [
                row["scenario"],
                row["policy"],
                f"{bound['min_referral_rate']:.2%} ({bound['bottleneck']})",
            ]
            + [cell(row[key], fmt) for key, _, fmt in METRICS]
        )
    return headings, rows


def _spread(stats: dict[str, float], fmt: str) -> str:
    """'mean ±half the min–max range' (the range alone is in the Markdown and the JSON)."""
    half = (stats["max"] - stats["min"]) / 2
    mean = fmt.format(stats["mean"])
    spread = fmt.format(half).rstrip("%")
    return mean if fmt.format(half) == fmt.format(0) else f"{mean} ±{spread}"


def compact_rows(result: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The same figures folded into fewer columns, for a terminal: means, ± half the range
    over the seeds on the quality figures."""
    headings = [
        "scenario",
        "policy",
        "min referred",
        "referred",
        "in system s",
        "wait s porter/medical/cleaner",
        "first tick ms",
        "tick ms p50/p95/max",
        "over budget",
        "limited / gap",
        "wall s",
        "RSS MB",
    ]
    rows = []
    for row in result["summary"]:
        bound = result["capacity"][row["scenario"]]
        mean = {key: row[key]["mean"] for key, _, _ in METRICS}
        rows.append(
            [
                row["scenario"],
                row["policy"],
                f"{bound['min_referral_rate']:.1%}",
                _spread(row["referral_rate"], "{:.1%}"),
                _spread(row["mean_time_in_system_s"], "{:.1f}"),
                "/".join(f"{mean[f'wait_{role}_s']:.1f}" for role in ROLES),
                f"{mean['first_tick_ms']:.2f}",
                f"{mean['solve_p50_ms']:.2f}/{mean['solve_p95_ms']:.2f}/{mean['solve_max_ms']:.1f}",
                f"{mean['ticks_over_budget']:.0f}",
                f"{mean['limited_share']:.1%} / {mean['worst_gap']:.2g}",
                f"{mean['wall_s']:.1f}",
                f"{mean['peak_rss_mb']:.0f}",
            ]
        )
    return headings, rows


def to_markdown(result: dict[str, Any]) -> str:
    headings, rows = table_rows(result)
    settings, host = result["settings"], result["machine"]
    lines = [
        f"Seeds 1–{settings['seeds']}, {settings['hours']:g} simulated hour(s) each; "
        f"mean (min–max) over the seeds. Machine: {host.get('processor', '?')}, "
        f"{host.get('cpus', '?')} CPUs, Python {host.get('python', '?')}, "
        f"OR-tools {host.get('ortools', '?')}.",
        "",
        "| " + " | ".join(headings) + " |",
        "|" + "|".join("---" for _ in headings) + "|",
    ]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"
