"""The coordinators compared on named regions (`hospital region bench`): replications paired
by the region's seed (every coordinator sees the same patients), the mean and 95% interval
of each figure, the paired difference of each coordinator with `cpsat`, and the region's
fluid bound beside them."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from scheduler.confidence import paired_difference, t_interval
from scheduler.region import config as region_config
from scheduler.region.bound import region_bound
from scheduler.region.coordinator import COORDINATORS
from scheduler.region.simulation import simulate_region

FIGURES = ("referred_out", "referred_out_rate", "transfers", "mean_transfer_travel_s")
REFERENCE = "cpsat"


def run_region_bench(
    names: Sequence[str],
    coordinators: Sequence[str] = COORDINATORS,
    replications: int = 10,
    duration_ms: int = 24 * 3_600_000,
    on_done: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Each region under each coordinator, seeds 1..replications; raises
    `region_config.RegionError` for a region that does not load."""
    regions = {name: region_config.load(region_config.region_path(name)) for name in names}
    runs: list[dict[str, Any]] = []
    for name, region in regions.items():
        for seed in range(1, replications + 1):
            for coordinator in coordinators:
                started = time.perf_counter()
                report = simulate_region(region, coordinator, duration_ms, seed=seed).report
                record = {
                    "region": name,
                    "coordinator": coordinator,
                    "seed": seed,
                    "wall_s": round(time.perf_counter() - started, 3),
                    **{figure: report["region"][figure] for figure in FIGURES},
                }
                runs.append(record)
                if on_done:
                    on_done(record)
    return {
        "replications": replications,
        "duration_s": duration_ms / 1000,
        "coordinators": list(coordinators),
        "bounds": {name: region_bound(region).as_dict() for name, region in regions.items()},
        "summary": summarise(runs, list(regions), list(coordinators)),
        "runs": runs,
    }


def summarise(
    runs: list[dict[str, Any]], names: list[str], coordinators: list[str]
) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for name in names:
        by: dict[str, dict[str, dict[int, float]]] = {
            c: {f: {} for f in FIGURES} for c in coordinators
        }
        for run in runs:
            if run["region"] == name:
                for figure in FIGURES:
                    by[run["coordinator"]][figure][run["seed"]] = run[figure]
        summary[name] = {}
        for coordinator in coordinators:
            figures = by[coordinator]
            entry: dict[str, Any] = {
                f: t_interval(list(figures[f].values())).as_dict() for f in FIGURES
            }
            if REFERENCE in by and coordinator != REFERENCE:
                entry["minus_cpsat"] = {
                    f: paired_difference(figures[f], by[REFERENCE][f]).as_dict() for f in FIGURES
                }
            summary[name][coordinator] = entry
    return summary


def _cell(interval: dict[str, Any], digits: int) -> str:
    mean, half = interval["mean"], interval["half_width"]
    return f"{mean:.{digits}f}" + (f" ± {half:.{digits}f}" if half is not None else "")


def _difference(interval: dict[str, Any], digits: int) -> str:
    low, high = interval["low"], interval["high"]
    text = f"{interval['mean']:+.{digits}f}"
    return text + (f" [{low:+.{digits}f}, {high:+.{digits}f}]" if low is not None else "")


def to_markdown(result: dict[str, Any]) -> str:
    """The bench as a Markdown table: one row per region and coordinator."""
    lines = [
        f"{result['replications']} replications of {result['duration_s'] / 3600:g} h each "
        "(seeds 1..N, paired); mean ± 95 % interval half-width; paired difference with "
        "cpsat: mean [95 % interval]",
        "",
        "| region | coordinator | referred out | referred-out rate | transfers "
        "| mean travel per transfer (min) | referred out − cpsat | travel − cpsat (min) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, by_coordinator in result["summary"].items():
        bound = result["bounds"][name]
        for coordinator, entry in by_coordinator.items():
            travel = {
                k: (v / 60 if isinstance(v, (int, float)) and k != "n" else v)
                for k, v in entry["mean_transfer_travel_s"].items()
            }
            versus = entry.get("minus_cpsat")
            moved = entry["transfers"]["mean"] > 0  # none: no trip to average
            travel_versus = (
                {
                    k: (v / 60 if isinstance(v, (int, float)) and k != "n" else v)
                    for k, v in versus["mean_transfer_travel_s"].items()
                }
                if versus and moved
                else None
            )
            lines.append(
                f"| {name} | {coordinator} | {_cell(entry['referred_out'], 1)} "
                f"| {_cell(entry['referred_out_rate'], 4)} | {_cell(entry['transfers'], 1)} "
                f"| {_cell(travel, 1) if moved else '—'} "
                f"| {_difference(versus['referred_out'], 1) if versus else '—'} "
                f"| {_difference(travel_versus, 1) if travel_versus else '—'} |"
            )
        lines.append(
            f"| {name} | fluid bound (long run) | | {bound['min_referred_out_rate']:.4f} "
            f"(isolated: {bound['min_referred_isolated_rate']:.4f}) | | | | |"
        )
    return "\n".join(lines) + "\n"
