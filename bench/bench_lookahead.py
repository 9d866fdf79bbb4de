"""Benchmark (not a test): the scheduler looking ahead against the myopic one and greedy.

Runs each config (a scenario's name or a file's path) under three policies — `greedy`,
`cpsat` (myopic: `lookahead_s = 0`) and `cpsat+la` (`cpsat` with `lookahead_s`) — for the
same seeds (common random numbers: the same patients for every policy), and prints per
config and policy the mean over the seeds with its 95 % t-interval, and the paired
difference against myopic `cpsat` (mean and 95 % t-interval of the per-seed differences):

- `urgent wait s`: arrival to the dispatch of the visit, ESI 1-2 patients (per seed, the
  mean over its patients; `pooled` beside it: over every patient of every seed)
- referral rates: all, ESI 1-2, ESI 3-5, and per ESI level in the JSON
- `time in system s`: arrival to exit (`mean_length_of_stay_s`)
- SLA breaches, holds (staff, room), tick solve p95 / max ms

Each job runs in a fresh process (`--jobs` at once), as `hospital bench`'s do, so that the
tick times are each run's own.

    python bench/bench_lookahead.py --config tests/golden/acuity_mix/config.toml \\
        --seeds 11-20 --hours 2 [--lookahead-s 60] [--policies greedy,cpsat,cpsat+la]
    python bench/bench_lookahead.py --config ward --config hospital-overload --seeds 1-5
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# This checkout's scheduler, also in the spawned jobs (which import this module first).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

POLICIES = ("greedy", "cpsat", "cpsat+la")
BASELINE = "cpsat"
# What each record holds, with its heading; the first figures are the targets.
FIGURES = (
    ("urgent_wait_s", "urgent wait s", "{:.2f}"),
    ("referral_rate", "referred", "{:.2%}"),
    ("referral_rate_urgent", "referred ESI 1-2", "{:.2%}"),
    ("referral_rate_other", "referred ESI 3-5", "{:.2%}"),
    ("time_in_system_s", "time in system s", "{:.1f}"),
    ("sla_breaches", "SLA breaches", "{:.1f}"),
    ("staff_holds", "staff holds", "{:.0f}"),
    ("room_holds", "room holds", "{:.0f}"),
    ("solve_p95_ms", "tick p95 ms", "{:.2f}"),
    ("solve_max_ms", "tick max ms", "{:.1f}"),
)


@dataclass(frozen=True)
class Job:
    scenario: str  # a scenario's name or a config file's path
    policy: str
    seed: int
    hours: float
    lookahead_s: float
    validate: bool
    default_weights: bool = False  # [rules] weights reset to their defaults


def load_config(
    name: str, policy: str, lookahead_s: float, validate: bool, default_weights: bool = False
):
    from scheduler import config as config_module
    from scheduler import scenarios

    path = Path(name)
    config = config_module.load(path, {}) if path.suffix == ".toml" else scenarios.load(name)
    if default_weights:  # the soft rules' weights as shipped; the hard rules as configured
        rules = config_module.RulesConfig(skills=config.rules.skills)
        config = config.replace(rules=dataclasses.asdict(rules))
    return config.replace(
        scheduler={
            "policy": "greedy" if policy == "greedy" else "cpsat",
            "lookahead_s": lookahead_s if policy == "cpsat+la" else 0.0,
            "validate": validate,
        }
    )


def run_job(job: Job) -> dict[str, Any]:
    """One simulated run: its figures, and every ESI 1-2 patient's wait for the visit."""
    from scheduler import events as ev
    from scheduler.runs import simulate_run

    config = load_config(
        job.scenario, job.policy, job.lookahead_s, job.validate, job.default_weights
    )
    arrived: dict[str, tuple[int, int]] = {}
    waits: list[float] = []
    holds = {"staff": 0, "room": 0}

    def on_tick(scheduler, result) -> None:
        for event in result.consumed:
            if isinstance(event, ev.PatientArrived):
                arrived[event.patient_id] = (event.time_ms, event.acuity)
        for decision in result.decisions:
            if isinstance(decision, ev.TaskDispatched) and decision.kind == "visit":
                at, acuity = arrived[decision.patient_id]
                if acuity <= 2:
                    waits.append((decision.time_ms - at) / 1000)
            elif isinstance(decision, ev.StaffHeld):
                holds["staff"] += 1
            elif isinstance(decision, ev.RoomHeld):
                holds["room"] += 1

    started = time.perf_counter()
    report = simulate_run(config, round(job.hours * 3_600_000), seed=job.seed, on_tick=on_tick)
    by_acuity = report["by_acuity"]

    def rate(levels: str) -> float | None:
        arrivals = sum(by_acuity.get(level, {}).get("arrivals", 0) for level in levels)
        referred = sum(by_acuity.get(level, {}).get("referred", 0) for level in levels)
        return referred / arrivals if arrivals else None

    return {
        "scenario": job.scenario,
        "policy": job.policy,
        "seed": job.seed,
        "hours": job.hours,
        "lookahead_s": job.lookahead_s if job.policy == "cpsat+la" else 0.0,
        "wall_s": round(time.perf_counter() - started, 3),
        "arrivals": report["arrivals"],
        "referral_rate": report["referral_rate"],
        "referral_rate_urgent": rate("12"),
        "referral_rate_other": rate("345"),
        "referral_rate_by_esi": {level: rate(level) for level in "12345"},
        "urgent_wait_s": statistics.mean(waits) if waits else None,
        "urgent_waits": waits,
        "time_in_system_s": report["mean_length_of_stay_s"],
        "sla_breaches": sum(report["sla_breaches"].values()),
        "staff_holds": holds["staff"],
        "room_holds": holds["room"],
        "solve_p95_ms": report["tick_solve_ms"]["p95"],
        "solve_max_ms": report["tick_solve_ms"]["max"],
    }


# --- statistics (to be replaced by `hospital bench --replications`' own) -------------------


def t_interval(values: list[float]) -> tuple[float, float, float]:
    """Mean and its 95 % t-interval (the mean alone for fewer than 2 values)."""
    mean = statistics.mean(values)
    if len(values) < 2:
        return mean, mean, mean
    from scipy.stats import t

    half = t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / len(values) ** 0.5
    return mean, mean - half, mean + half


def summarise(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (config, policy): each figure's mean and interval over the seeds, and the paired
    difference against the baseline's same seeds."""
    rows = []
    by_key: dict[tuple[str, str], dict[int, dict[str, Any]]] = {}
    for r in records:
        by_key.setdefault((r["scenario"], r["policy"]), {})[r["seed"]] = r
    for (scenario, policy), runs in by_key.items():
        base = by_key.get((scenario, BASELINE), {})
        row: dict[str, Any] = {"scenario": scenario, "policy": policy, "seeds": sorted(runs)}
        for key, _, _ in FIGURES:
            values = [r[key] for r in runs.values() if r[key] is not None]
            if not values:
                continue
            row[key] = t_interval(values)
            pairs = [
                runs[s][key] - base[s][key]
                for s in runs
                if s in base and runs[s][key] is not None and base[s][key] is not None
            ]
            if pairs and policy != BASELINE:
                row[key + "_diff"] = t_interval(pairs)
        pooled = [w for r in runs.values() for w in r["urgent_waits"]]
        if pooled:
            row["urgent_wait_pooled_s"] = statistics.mean(pooled)
        rows.append(row)
    return rows


def to_markdown(rows: list[dict[str, Any]]) -> str:
    lines = []
    for key, heading, form in FIGURES:
        if not any(key in row for row in rows):
            continue
        lines += [f"\n{heading} (mean [95 % interval]; paired difference against {BASELINE})\n"]
        lines += ["| config | policy | mean | difference |", "|---|---|---|---|"]
        for row in rows:
            if key not in row:
                continue
            mean, low, high = row[key]
            cell = f"{form.format(mean)} [{form.format(low)}, {form.format(high)}]"
            if key == "urgent_wait_s" and "urgent_wait_pooled_s" in row:
                cell += f" (pooled {row['urgent_wait_pooled_s']:.2f})"
            diff = ""
            if key + "_diff" in row:
                d, dl, dh = row[key + "_diff"]
                diff = f"{form.format(d)} [{form.format(dl)}, {form.format(dh)}]"
            lines.append(f"| {label(row['scenario'])} | {row['policy']} | {cell} | {diff} |")
    return "\n".join(lines)


def label(scenario: str) -> str:
    """A config's name: its scenario's, or its file's (its folder's for a `config.toml`)."""
    path = Path(scenario)
    return path.parent.name if path.name == "config.toml" else path.stem


def seeds_of(text: str) -> list[int]:
    first, _, last = text.partition("-")
    return list(range(int(first), int(last or first) + 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", action="append", required=True, help="scenario or .toml")
    parser.add_argument("--policies", default=",".join(POLICIES))
    parser.add_argument("--seeds", default="11-20", help="FIRST-LAST")
    parser.add_argument("--hours", type=float, default=2.0)
    parser.add_argument("--lookahead-s", type=float, default=60.0)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--no-validate", action="store_true")
    parser.add_argument(
        "--default-weights", action="store_true", help="reset [rules] weights to the defaults"
    )
    parser.add_argument("--out-json", type=Path)
    args = parser.parse_args()
    from scheduler.bench import run_jobs

    jobs = [
        Job(
            name,
            policy,
            seed,
            args.hours,
            args.lookahead_s,
            not args.no_validate,
            args.default_weights,
        )
        for name in args.config
        for policy in args.policies.split(",")
        for seed in seeds_of(args.seeds)
    ]

    def done(record: dict[str, Any]) -> None:
        wait = record["urgent_wait_s"]
        print(
            f"{label(record['scenario'])} {record['policy']} seed {record['seed']}: "
            f"referred {record['referral_rate']:.2%}, time in system "
            f"{record['time_in_system_s']:.1f} s"
            + (f", urgent wait {wait:.2f} s" if wait is not None else "")
            + f", {record['wall_s']:.1f} s wall",
            flush=True,
        )

    records = run_jobs(jobs, args.jobs, done, worker=run_job)
    rows = summarise(records)
    print(to_markdown(rows))
    if args.out_json:
        args.out_json.write_text(json.dumps({"records": records, "summary": rows}, indent=1))


if __name__ == "__main__":
    main()
