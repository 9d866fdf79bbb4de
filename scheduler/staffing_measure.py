"""One run of a candidate staffing, measured less its warm-up: a job of `hospital staff`.

    job = StaffingJob("ward", "cpsat", seed=1, hours=4.0, overrides=(...), warmup_h=1.0)
    record = run_staffing_job(job)    # record["figures"]["wait.cleaner.p95"], record["by_hour"]

A `StaffingJob` is a `bench.Job` (so `bench.run_jobs` runs it, in parallel, as `hospital
bench` runs its own) with a warm-up before its `hours`: the run lasts `warmup_h + hours`,
and its figures are those of what happened after the warm-up. An empty hospital at time 0
has free rooms and idle staff, which flatters the first hour.

**Leaving the warm-up out.** The KPI collector's counts only grow (arrivals, referrals, each
role's waits as a histogram, stays, breaches, the same by ESI level and by hour of day), so
the window's figures are the counts at the end less a copy taken at the first tick past the
warm-up: a wait is counted when its task is dispatched, a stay when the patient leaves, a
referral when it is decided. (A general `--warmup` of run/bench/report may replace this
copy; the figures would be the same.) A second copy at the middle of the window gives the
figures of its second half (`late`): a figure still rising there has not settled.
"""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass
from typing import Any

from scheduler.bench import Job
from scheduler.hours import HOURS
from scheduler.kpi import ROLES, KpiCollector, histogram_percentile
from scheduler.targets import LEVELS


@dataclass(frozen=True)
class StaffingJob(Job):
    warmup_h: float = 1.0
    candidate: int = 0  # which staffing of the batch: the records are matched back by it


@dataclass
class Counts:
    """What the figures are made of, as counted up to some time."""

    arrivals: int
    referred: int
    waits: dict[str, Counter[int]]  # role -> wait in ms -> tasks
    stays_ms: int
    stays: int
    breaches: int
    by_acuity: dict[int, Counter[str]]  # level -> arrivals, referred
    acuity_waits: dict[tuple[int, str], Counter[int]]  # (level, all|medical) -> histogram
    hour_arrivals: list[int]
    hour_referrals: list[int]
    hour_wait_ms: dict[str, list[int]]
    hour_tasks: dict[str, list[int]]
    busy_ms: dict[str, int]  # work done, the tasks under way counted up to the time

    @classmethod
    def of(cls, kpi: KpiCollector, time_ms: int) -> Counts:
        busy = dict(kpi.busy_ms)
        for task_id, started in kpi.dispatched_ms.items():
            busy[kpi.task_role[task_id]] += time_ms - started
        return cls(
            arrivals=kpi.counts["arrivals"],
            referred=kpi.counts["referred"],
            waits={role: Counter(kpi.waits_ms[role]) for role in ROLES},
            stays_ms=kpi.stays_sum_ms,
            stays=kpi.stays,
            breaches=sum(kpi.sla_breaches.values()),
            by_acuity={level: Counter(c) for level, c in kpi.by_acuity.items()},
            acuity_waits={key: Counter(c) for key, c in kpi.acuity_waits.items()},
            hour_arrivals=list(kpi.hours.arrivals),
            hour_referrals=list(kpi.hours.referrals),
            hour_wait_ms=copy.deepcopy(kpi.hours.wait_sum_ms),
            hour_tasks=copy.deepcopy(kpi.hours.wait_tasks),
            busy_ms=busy,
        )

    @classmethod
    def zero(cls) -> Counts:
        return cls(
            0,
            0,
            {role: Counter() for role in ROLES},
            0,
            0,
            0,
            {},
            {},
            [0] * HOURS,
            [0] * HOURS,
            {role: [0] * HOURS for role in ROLES},
            {role: [0] * HOURS for role in ROLES},
            dict.fromkeys(ROLES, 0),
        )


def _share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def _wait_figures(histogram: Counter[int]) -> tuple[float, float]:
    """Mean and nearest-rank p95 of a histogram of waits in ms, in seconds."""
    n = sum(histogram.values())
    if not n:
        return 0.0, 0.0
    total = sum(wait * k for wait, k in histogram.items())
    return total / n / 1000, histogram_percentile(histogram, n, 95) / 1000


def figures(start: Counts, end: Counts) -> dict[str, float]:
    """Every figure a target may name (`scheduler.targets.METRICS`), between two counts."""
    out: dict[str, float] = {
        "referral": _share(end.referred - start.referred, end.arrivals - start.arrivals)
    }
    tasks = 0
    for role in ROLES:
        waits = end.waits[role] - start.waits[role]
        tasks += sum(waits.values())
        out[f"wait.{role}.mean"], out[f"wait.{role}.p95"] = _wait_figures(waits)
    stays = end.stays - start.stays
    out["time_in_system"] = (end.stays_ms - start.stays_ms) / stays / 1000 if stays else 0.0
    out["sla_breaches"] = _share(end.breaches - start.breaches, tasks)
    for level in LEVELS:
        counts = end.by_acuity.get(level, Counter()) - start.by_acuity.get(level, Counter())
        out[f"referral.esi{level}"] = _share(counts["referred"], counts["arrivals"])
        for which, prefix in (("all", f"wait.esi{level}"), ("medical", f"wait.medical.esi{level}")):
            waits = end.acuity_waits.get((level, which), Counter()) - start.acuity_waits.get(
                (level, which), Counter()
            )
            out[f"{prefix}.mean"], out[f"{prefix}.p95"] = _wait_figures(waits)
    return out


def hourly_figures(start: Counts, end: Counts) -> list[dict[str, float]]:
    """Per hour of the day (the days pooled): arrivals, the referral rate and each role's
    mean wait (of the tasks created in the hour), between two counts."""
    out = []
    for hour in range(HOURS):
        arrivals = end.hour_arrivals[hour] - start.hour_arrivals[hour]
        row: dict[str, float] = {
            "hour": hour,
            "arrivals": arrivals,
            "referral": _share(end.hour_referrals[hour] - start.hour_referrals[hour], arrivals),
        }
        for role in ROLES:
            tasks = end.hour_tasks[role][hour] - start.hour_tasks[role][hour]
            wait_ms = end.hour_wait_ms[role][hour] - start.hour_wait_ms[role][hour]
            row[f"wait.{role}.mean"] = wait_ms / tasks / 1000 if tasks else 0.0
        out.append(row)
    return out


def run_staffing_job(job: Job) -> dict[str, Any]:
    """Simulate one candidate staffing with one seed; its figures less the warm-up. Runs in
    a worker process (local or a Dask worker): everything it needs is in the job."""
    from scheduler.runs import new_kpi, simulate_run

    assert isinstance(job, StaffingJob)
    config = job.config()
    warmup_ms = round(job.warmup_h * 3_600_000)
    duration_ms = warmup_ms + round(job.hours * 3_600_000)
    kpi = new_kpi(config)
    seen: dict[str, Counts] = {}

    middle_ms = (warmup_ms + duration_ms) // 2

    def on_tick(scheduler, result) -> None:
        if "start" not in seen and result.time_ms >= warmup_ms:
            seen["start"] = Counts.of(kpi, result.time_ms)
        if "middle" not in seen and result.time_ms >= middle_ms:
            seen["middle"] = Counts.of(kpi, result.time_ms)

    report = simulate_run(config, duration_ms, seed=job.seed, on_tick=on_tick, kpi=kpi)
    end = Counts.of(kpi, duration_ms)
    start = Counts.zero() if warmup_ms == 0 else seen.get("start", end)
    middle = seen.get("middle", end)
    window_s = max(duration_ms - warmup_ms, 1) / 1000
    staff = kpi.staff_per_role
    return {
        "scenario": job.scenario,
        "policy": job.policy,
        "seed": job.seed,
        "candidate": job.candidate,
        "figures": figures(start, end),
        "late": figures(middle, end),
        "by_hour": hourly_figures(start, end),
        "utilisation": {
            role: (end.busy_ms[role] - start.busy_ms[role]) / 1000 / (staff[role] * window_s)
            if staff.get(role)
            else 0.0
            for role in ROLES
        },
        "arrivals": end.arrivals - start.arrivals,
        "invariants_checked": bool(report.get("invariants_checked")),
    }
