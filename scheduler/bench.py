"""`hospital bench`: the named scenarios × policies × replications, measured.

Each job (one scenario, one policy, one replication: seed N of the arrival process) runs in
a fresh process, so that its peak memory is its own; `run_bench` runs them (several at once
with `processes`), then aggregates them over the replications (`scheduler.confidence`):
per (scenario, policy) each figure's mean with a 95 % Student t interval (`summarise`);
per scenario each KPI's *paired* difference between a policy and greedy, seed by seed
(`differences`: the policies' runs of one seed see the same patients, so the pairs cancel
the seeds' noise); and the KPIs by hour of the simulated day (`summarise_by_hour`). Beside
each scenario, its capacity bound (`scheduler.capacity`): the lowest referral rate any
policy could reach, in the long run and hour by hour.

    from scheduler import bench, bench_tables
    result = bench.run_bench(["ward"], ["cpsat", "greedy"], replications=5, hours=1.0)
    print(bench_tables.to_markdown(result))   # scheduler/bench_tables.py
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import os
import platform
import resource
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, fields
from typing import Any

from scheduler import scenarios
from scheduler.capacity import run_bound
from scheduler.confidence import paired_difference, t_interval, welch_difference
from scheduler.config import Config
from scheduler.kpi import ROLES

POLICIES = ("cpsat", "greedy")
BASELINE = "greedy"  # the policy the others are compared with, seed by seed

ESI_LEVELS = (1, 2, 3, 4, 5)
# The figures aggregated per (scenario, policy): key in a job's record, heading, format.
# The hospital's KPIs, what an analyst compares policies by (and their paired differences);
# the tables show the waits by ESI level only for a scenario with a mix of levels, and the
# tasks past their target wait only for one with targets (`ESI_KEYS`, `SLA_KEY`):
KPI_METRICS: tuple[tuple[str, str, str], ...] = (
    ("arrivals", "arrivals", "{:.1f}"),
    ("referral_rate", "referred", "{:.2%}"),
    ("mean_time_in_system_s", "time in system s", "{:.1f}"),
    ("wait_porter_s", "wait porter s", "{:.2f}"),
    ("wait_medical_s", "wait medical s", "{:.2f}"),
    ("wait_cleaner_s", "wait cleaner s", "{:.2f}"),
    *((f"wait_esi{n}_s", f"wait ESI {n} s", "{:.2f}") for n in ESI_LEVELS),
    ("sla_breaches", "tasks past target wait", "{:.1f}"),
    ("room_occupancy", "room occupancy", "{:.1%}"),
    ("utilisation_porter", "porters busy", "{:.1%}"),
    ("utilisation_medical", "medical staff busy", "{:.1%}"),
    ("utilisation_cleaner", "cleaners busy", "{:.1%}"),
)
ESI_KEYS = {f"wait_esi{n}_s": n for n in ESI_LEVELS}
SLA_KEY = "sla_breaches"
# ... and the scheduler's own figures, for its developers (`hospital bench --detail`):
DEVELOPER_METRICS: tuple[tuple[str, str, str], ...] = (
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
METRICS = KPI_METRICS + DEVELOPER_METRICS
# The KPIs by hour of the day (`by_hour` of the KPI report), aggregated the same way.
HOUR_METRICS: tuple[tuple[str, str, str], ...] = (
    ("arrivals", "arrivals", "{:.1f}"),
    ("referral_rate", "referred", "{:.2%}"),
    *((f"wait_{role}_s", f"wait {role} s", "{:.2f}") for role in ROLES),
    ("room_occupancy", "room occupancy", "{:.1%}"),
)


@dataclass(frozen=True)
class Job:
    scenario: str
    policy: str
    seed: int
    hours: float
    budget_ms: float | None = None  # None: the scenario's tick length
    # HOSPITAL_* variables applied over the scenario's file (`scenarios.overrides`)
    overrides: tuple[tuple[str, str], ...] = ()
    warmup_ms: int = 0  # the start of each run left out of its KPIs

    def config(self) -> Config:
        return scenarios.load(self.scenario, dict(self.overrides)).replace(
            scheduler={"policy": self.policy}
        )


def jobs_for(
    names: Iterable[str],
    policies: Iterable[str],
    replications: int,
    hours: float,
    budget_ms: float | None = None,
    overrides: dict[str, str] | None = None,
    warmup_ms: int = 0,
) -> list[Job]:
    """Every scenario × policy × replication; replication N is seed N for every policy, so
    that the policies' runs pair up (the same patients, the same treatments)."""
    settings = tuple(sorted((overrides or {}).items()))
    return [
        Job(name, policy, seed, hours, budget_ms, settings, warmup_ms)
        for name in names
        for policy in policies
        for seed in range(1, replications + 1)
    ]


def run_job(job: Job) -> dict[str, Any]:
    """Simulate one scenario with one policy and seed; the job's figures. Meant to run in a
    process of its own (the peak RSS is the process's)."""
    from scheduler.runs import simulate_run

    config = job.config()
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
    report = simulate_run(
        config,
        round(job.hours * 3_600_000),
        seed=job.seed,
        on_tick=on_tick,
        warmup_ms=job.warmup_ms,
    )
    wall_s = time.perf_counter() - started
    policy = seen["scheduler"].policy if seen["scheduler"] is not None else None
    solved = report["ticks_solved"]
    limited = getattr(policy, "limited", 0) or 0
    record = {
        **{k: v for k, v in asdict(job).items() if k != "overrides"},  # in the settings
        "budget_ms": budget_ms,
        "wall_s": round(wall_s, 3),
        "arrivals": report["arrivals"],
        "admitted": report["admitted"],
        "referred": report["referred"],
        "referral_rate": report["referral_rate"],
        "mean_time_in_system_s": report["mean_length_of_stay_s"],
        **{f"wait_{role}_s": report["wait_s"][role]["mean"] for role in ROLES},
        **_acuity_record(report["by_acuity"]),
        "sla_breaches": sum(report["sla_breaches"].values()),
        "sla_targets": any(getattr(config.sla, f.name) for f in fields(config.sla)),
        "utilisation": report["utilisation"],
        "room_states": report["room_states"],
        **{f"utilisation_{role}": report["utilisation"].get(role, 0.0) for role in ROLES},
        "room_occupancy": report["room_occupancy"],
        "by_hour": [_hour_record(hour) for hour in report["by_hour"]],
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


def _acuity_record(by_acuity: dict[str, Any]) -> dict[str, Any]:
    """The mean wait of each ESI level's patients (of their own tasks; 0 for a level with
    none), and the levels that had patients."""
    return {
        **{
            f"wait_esi{n}_s": by_acuity[str(n)]["wait_s"]["mean"] if str(n) in by_acuity else 0.0
            for n in ESI_LEVELS
        },
        "esi_levels": [int(n) for n, level in by_acuity.items() if level["arrivals"]],
    }


def _hour_record(hour: dict[str, Any]) -> dict[str, Any]:
    """One hour of the day of a job's `by_hour`, flat as `HOUR_METRICS` reads it."""
    return {
        "hour": hour["hour"],
        "arrivals": hour["arrivals"],
        "referred": hour["referred"],
        "referral_rate": hour["referral_rate"],
        **{f"wait_{role}_s": hour["wait_s"][role]["mean"] for role in ROLES},
        "room_occupancy": hour["room_occupancy"],
    }


def run_jobs(
    jobs: list[Job],
    processes: int = 1,
    on_done: Callable[[dict[str, Any]], None] | None = None,
    worker: Callable[[Job], dict[str, Any]] = run_job,
    pool: Any = None,
) -> list[dict[str, Any]]:
    """Every job in a fresh process (at most `processes` at once); the records in the jobs'
    order. `on_done` sees each record as its job finishes. With `pool` (from `job_pool`,
    kept open by the caller across calls) a process runs several jobs in turn: for figures
    that need no process of their own (not the peak memory), and jobs so short that
    starting a process would take longer than they do."""
    records: list[dict[str, Any]] = []
    with contextlib.nullcontext(pool) if pool is not None else job_pool(processes, 1) as jobs_pool:
        for record in jobs_pool.imap_unordered(worker, jobs):
            records.append(record)
            if on_done:
                on_done(record)
    position = {(j.scenario, j.policy, j.seed): n for n, j in enumerate(jobs)}
    records.sort(key=lambda r: position.get((r["scenario"], r["policy"], r["seed"]), 0))
    return records


def job_pool(processes: int, jobs_per_process: int | None = None) -> Any:
    """A pool of spawned processes (`jobs_per_process` each, None: any number): clean
    ones, so that each has its own peak memory when given one job."""
    context = multiprocessing.get_context("spawn")
    return context.Pool(processes=max(1, processes), maxtasksperchild=jobs_per_process)


def stats(values: list[float]) -> dict[str, Any]:
    """Mean, 95 % interval (None with one value), smallest and largest of a figure."""
    interval = t_interval(values)
    return {**interval.as_dict(), "min": min(values), "max": max(values)}


def _groups(records: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """The records per (scenario, policy), in the order first seen."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault((record["scenario"], record["policy"]), []).append(record)
    return groups


def summarise(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (scenario, policy), in the order first seen: each metric's mean, 95 % interval,
    min and max over the replications."""
    summary = []
    for (scenario, policy), group in _groups(records).items():
        row: dict[str, Any] = {
            "scenario": scenario,
            "policy": policy,
            "seeds": sorted(r["seed"] for r in group),
            "replications": len(group),
        }
        for key, _, _ in METRICS:
            row[key] = stats([float(r[key]) for r in group])
        summary.append(row)
    return summary


def differences(records: list[dict[str, Any]], baseline: str = BASELINE) -> list[dict[str, Any]]:
    """Per scenario, each other policy against `baseline`: each KPI's mean difference
    (policy - baseline) over the seeds both ran, with its paired 95 % interval; beside it
    (`unpaired_half_width`), the half-width Welch's interval would have had, taking the
    runs apart."""
    groups = _groups(records)
    out = []
    for (scenario, policy), group in groups.items():
        base = groups.get((scenario, baseline))
        if policy == baseline or base is None:
            continue
        seeds = sorted({r["seed"] for r in group} & {r["seed"] for r in base})
        if not seeds:
            continue
        row: dict[str, Any] = {
            "scenario": scenario,
            "policy": policy,
            "baseline": baseline,
            "seeds": seeds,
        }
        for key, _, _ in KPI_METRICS:
            mine = {r["seed"]: float(r[key]) for r in group if r["seed"] in seeds}
            theirs = {r["seed"]: float(r[key]) for r in base if r["seed"] in seeds}
            paired = paired_difference(mine, theirs)
            apart = welch_difference(list(mine.values()), list(theirs.values()))
            row[key] = {**paired.as_dict(), "unpaired_half_width": apart.half_width}
        out.append(row)
    return out


def summarise_by_hour(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (scenario, policy, hour of the day) the jobs reached: each `HOUR_METRICS`
    figure's mean and 95 % interval over the replications."""
    out = []
    for (scenario, policy), group in _groups(records).items():
        by_hour: dict[int, list[dict[str, Any]]] = {}
        for record in group:
            for hour in record.get("by_hour", ()):
                by_hour.setdefault(hour["hour"], []).append(hour)
        for hour, rows in sorted(by_hour.items()):
            out.append(
                {
                    "scenario": scenario,
                    "policy": policy,
                    "hour": hour,
                    **{key: stats([float(r[key]) for r in rows]) for key, _, _ in HOUR_METRICS},
                }
            )
    return out


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


def capacities(
    names: Iterable[str],
    hours: float = 1.0,
    overrides: dict[str, str] | None = None,
    warmup_ms: int = 0,
) -> dict[str, dict[str, Any]]:
    """Each scenario's capacity bound, in the long run and for each hour of the day that a
    run of `hours` reaches after its warm-up (`by_hour`), with the busiest of those hours
    apart."""
    return {
        name: run_bound(scenarios.load(name, overrides or {}), round(hours * 3_600_000), warmup_ms)
        for name in names
    }


def run_bench(
    names: list[str],
    policies: list[str],
    replications: int = 5,
    hours: float = 1.0,
    processes: int = 1,
    budget_ms: float | None = None,
    on_done: Callable[[dict[str, Any]], None] | None = None,
    overrides: dict[str, str] | None = None,
    warmup_ms: int = 0,
) -> dict[str, Any]:
    """The whole benchmark as data: settings, machine, capacity bounds, jobs, and their
    summary, paired differences and figures by hour of the day. Each job's KPIs leave out
    its first `warmup_ms`."""
    for name in names:
        scenarios.path(name)  # an unknown name fails before any job starts
    # A bad scenario file or override fails before any job too.
    capacity = capacities(names, hours, overrides, warmup_ms)
    jobs = jobs_for(names, policies, replications, hours, budget_ms, overrides, warmup_ms)
    started = time.perf_counter()
    records = run_jobs(jobs, processes, on_done)
    return {
        "settings": {
            "scenarios": names,
            "policies": policies,
            "replications": replications,
            "seeds": replications,  # the same: replication N is seed N
            "level": 0.95,
            "hours": hours,
            "warmup_s": warmup_ms / 1000,
            "processes": processes,
            "budget_ms": budget_ms,
            "overrides": dict(sorted((overrides or {}).items())),
        },
        "machine": machine(),
        "wall_s": round(time.perf_counter() - started, 3),
        "capacity": capacity,
        "summary": summarise(records),
        "differences": differences(records),
        "by_hour": summarise_by_hour(records),
        "jobs": records,
    }
