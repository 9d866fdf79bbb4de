"""The tables of `hospital bench`, as rows of text: the terminal (`cli/bench.py`) and the
Markdown (`to_markdown`) show the same figures.

- KPIs: one row per scenario and KPI, a column per policy (mean ± half-width of the 95 %
  interval over the replications) and one per comparison with greedy (the paired
  difference, mean [low, high]); "n/a" where one replication gives no interval. The waits
  by ESI level for a scenario with a mix of levels, the tasks past their target wait for
  one with targets.
- The capacity bound: in the long run, and in the busiest hour the runs reached.
- By hour of the day, when the runs cover more than one: the expected arrivals, the fluid
  bound and each policy's referral rate.
- The scheduler's own figures (tick times, wall time, memory), apart: for its developers,
  with `hospital bench --detail`.
"""

from __future__ import annotations

from typing import Any

from scheduler.bench import BASELINE, DEVELOPER_METRICS, ESI_KEYS, KPI_METRICS, SLA_KEY

Rows = list[list[str]]


def _no_sign_on_zero(text: str, fmt: str) -> str:
    """'+0.00%' and '-0.00%' as '0.00%': a difference that rounds to nothing has no sign."""
    return fmt.format(0.0) if not any(c in "123456789" for c in text) else text


def signed(value: float, fmt: str) -> str:
    return _no_sign_on_zero(fmt.replace("{:", "{:+").format(value), fmt)


def level_cell(stats: dict[str, Any], fmt: str) -> str:
    """'mean ± half-width' of a figure over the replications ('± n/a' with one)."""
    mean = _no_sign_on_zero(fmt.format(stats["mean"]), fmt)
    if stats["half_width"] is None:
        return f"{mean} ± n/a"
    return f"{mean} ± {fmt.format(stats['half_width'])}"


def diff_cell(stats: dict[str, Any], fmt: str) -> str:
    """'mean [low, high]' of a paired difference ('[n/a]' with one pair)."""
    mean = signed(stats["mean"], fmt)
    if stats["half_width"] is None:
        return f"{mean} [n/a]"
    return f"{mean} [{signed(stats['low'], fmt)}, {signed(stats['high'], fmt)}]"


def policies(result: dict[str, Any]) -> list[str]:
    return list(dict.fromkeys(row["policy"] for row in result["summary"]))


def compared(result: dict[str, Any]) -> list[str]:
    """The policies compared with the baseline, in the order they ran."""
    return list(dict.fromkeys(row["policy"] for row in result.get("differences", ())))


def shown_kpis(result: dict[str, Any], scenario: str) -> list[tuple[str, str, str]]:
    """The KPIs of a scenario's rows: the waits by ESI level only where its patients came
    with several levels (those levels), the tasks past their target wait only where it has
    targets; the others always."""
    jobs = [j for j in result.get("jobs", ()) if j["scenario"] == scenario]
    levels = {level for j in jobs for level in j.get("esi_levels", ())}
    targets = any(j.get("sla_targets") for j in jobs)
    return [
        metric
        for metric in KPI_METRICS
        if (metric[0] not in ESI_KEYS or (len(levels) > 1 and ESI_KEYS[metric[0]] in levels))
        and (metric[0] != SLA_KEY or targets)
    ]


def kpi_table(result: dict[str, Any]) -> tuple[list[str], list[tuple[str, Rows]]]:
    """The headings, and per scenario its rows: KPI, a cell per policy, a cell per paired
    comparison."""
    summary = {(r["scenario"], r["policy"]): r for r in result["summary"]}
    diffs = {(d["scenario"], d["policy"]): d for d in result.get("differences", ())}
    names, versus = policies(result), compared(result)
    headings = ["scenario", "KPI", *names, *(f"{p} - {BASELINE} (paired)" for p in versus)]
    groups = []
    for scenario in result["settings"]["scenarios"]:
        rows = []
        for key, heading, fmt in shown_kpis(result, scenario):
            cells = [
                level_cell(summary[scenario, p][key], fmt) if (scenario, p) in summary else ""
                for p in names
            ]
            cells += [
                diff_cell(diffs[scenario, p][key], fmt) if (scenario, p) in diffs else ""
                for p in versus
            ]
            rows.append([heading, *cells])
        groups.append((scenario, rows))
    return headings, groups


def capacity_cells(bound: dict[str, Any]) -> tuple[str, str, str]:
    """(long-run bound with its bottleneck, busiest hour, its bound) of a scenario."""
    long_run = f"{bound['min_referral_rate']:.2%} ({bound['bottleneck']})"
    busiest = bound.get("busiest_hour")
    if busiest is None:
        return long_run, "n/a", "n/a"
    return long_run, f"{busiest['hour']:02d}h", f"{busiest['min_referral_rate']:.2%}"


def capacity_table(result: dict[str, Any]) -> tuple[list[str], Rows]:
    headings = [
        "scenario",
        "min referred, long run (bottleneck)",
        "busiest hour",
        "min referred, busiest hour",
    ]
    names = result["settings"]["scenarios"]
    rows = [[name, *capacity_cells(result["capacity"][name])] for name in names]
    return headings, rows


def by_hour_tables(result: dict[str, Any]) -> list[tuple[str, list[str], Rows]]:
    """Per scenario whose runs reach more than one hour of the day: each hour's expected
    arrivals, fluid bound and each policy's referral rate (mean ± half-width)."""
    names = policies(result)
    levels = {(r["scenario"], r["policy"], r["hour"]): r for r in result.get("by_hour", ())}
    tables = []
    for scenario in result["settings"]["scenarios"]:
        bounds = result["capacity"][scenario].get("by_hour", [])
        if len(bounds) < 2:
            continue
        headings = [
            "hour",
            "arrivals/h expected",
            "min referred (fluid bound)",
            *(f"{p} referred" for p in names),
        ]
        rows = []
        for bound in bounds:
            hour = bound["hour"]
            cells = [
                level_cell(levels[scenario, p, hour]["referral_rate"], "{:.2%}")
                if (scenario, p, hour) in levels
                else ""
                for p in names
            ]
            rows.append(
                [
                    f"{hour:02d}h",
                    f"{bound['arrivals_per_hour']:.1f}",
                    f"{bound['min_referral_rate']:.2%}",
                    *cells,
                ]
            )
        tables.append((scenario, headings, rows))
    return tables


def developer_table(result: dict[str, Any]) -> tuple[list[str], Rows]:
    """The scheduler's own figures per scenario and policy, mean ± half-width."""
    headings = ["scenario", "policy", *(heading for _, heading, _ in DEVELOPER_METRICS)]
    rows = [
        [row["scenario"], row["policy"]]
        + [level_cell(row[key], fmt) for key, _, fmt in DEVELOPER_METRICS]
        for row in result["summary"]
    ]
    return headings, rows


def developer_compact(result: dict[str, Any]) -> tuple[list[str], Rows]:
    """The same, folded into fewer columns of means, for a terminal."""
    headings = [
        "scenario",
        "policy",
        "first tick ms",
        "tick ms p50/p95/max",
        "over budget",
        "limited / gap",
        "wall s",
        "RSS MB",
    ]
    rows = []
    for row in result["summary"]:
        mean = {key: row[key]["mean"] for key, _, _ in DEVELOPER_METRICS}
        rows.append(
            [
                row["scenario"],
                row["policy"],
                f"{mean['first_tick_ms']:.2f}",
                f"{mean['solve_p50_ms']:.2f}/{mean['solve_p95_ms']:.2f}/{mean['solve_max_ms']:.1f}",
                f"{mean['ticks_over_budget']:.0f}",
                f"{mean['limited_share']:.1%} / {mean['worst_gap']:.2g}",
                f"{mean['wall_s']:.1f}",
                f"{mean['peak_rss_mb']:.0f}",
            ]
        )
    return headings, rows


def replications_text(result: dict[str, Any]) -> str:
    settings = result["settings"]
    n = settings.get("replications", settings.get("seeds"))
    seeds = "seed 1" if n == 1 else f"seeds 1–{n}"
    text = f"{n} replication{'s' if n != 1 else ''} ({seeds}) of {settings['hours']:g} simulated h"
    warmup_s = settings.get("warmup_s") or 0
    if warmup_s:
        warmup = f"{warmup_s / 3600:g} h" if warmup_s >= 3600 else f"{warmup_s / 60:g} min"
        text += f" (KPIs after a warm-up of {warmup})"
    return text


def _markdown(headings: list[str], rows: Rows) -> list[str]:
    return [
        "| " + " | ".join(headings) + " |",
        "|" + "|".join("---" for _ in headings) + "|",
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


def to_markdown(result: dict[str, Any], detail: bool = False) -> str:
    """The tables as Markdown; the scheduler's own figures with `detail`."""
    host = result["machine"]
    lines = [
        f"{replications_text(result)} each, per scenario and policy; mean ± half-width of "
        "the 95 % Student t interval over the replications; the policies' difference paired "
        f"by seed (the same patients), mean [95 % interval]. Machine: "
        f"{host.get('processor', '?')}, {host.get('cpus', '?')} CPUs, Python "
        f"{host.get('python', '?')}, OR-tools {host.get('ortools', '?')}.",
        "",
    ]
    headings, groups = kpi_table(result)
    rows = [
        [scenario if n == 0 else "", *row]
        for scenario, group in groups
        for n, row in enumerate(group)
    ]
    lines += _markdown(headings, rows)
    lines += ["", "Capacity bound: the lowest referral rate any policy could sustain.", ""]
    lines += _markdown(*capacity_table(result))
    for scenario, hour_headings, hour_rows in by_hour_tables(result):
        lines += ["", f"By hour of the day, {scenario}:", ""]
        lines += _markdown(hour_headings, hour_rows)
    if detail:
        lines += ["", "The scheduler's own figures:", ""]
        lines += _markdown(*developer_table(result))
    return "\n".join(lines) + "\n"
