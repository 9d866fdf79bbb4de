"""`hospital bench`: the named scenarios × policies × replications, as tables, JSON and
Markdown. The work is `scheduler.bench`'s, the tables `scheduler.bench_tables`'; this is the
command line around them."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cli.common import parse_warmup, warn_about
from scheduler import scenarios
from scheduler.config import ConfigError
from scheduler.region.config import region_names
from scheduler.region.coordinator import COORDINATORS


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"hospital: error: {message}", err=True)
    return typer.Exit(code)


def bench(
    scenario: Annotated[
        list[str] | None,
        typer.Option(
            "--scenario",
            "-s",
            help="A scenario of scenarios/ by name, or a config file by its path "
            "(repeatable; default: every scenario).",
            show_default=False,
        ),
    ] = None,
    policy: Annotated[
        list[str] | None,
        typer.Option(
            "--policy", help="cpsat or greedy (repeatable; default: both).", show_default=False
        ),
    ] = None,
    replications: Annotated[
        int,
        typer.Option(
            min=1,
            help="Replications per scenario and policy: seeds 1..N, the same for every "
            "policy, so that their difference is paired.",
        ),
    ] = 5,
    seeds: Annotated[
        int | None, typer.Option(min=1, hidden=True, help="The old name of --replications.")
    ] = None,
    hours: Annotated[float, typer.Option(min=0.0, help="Simulated hours per job.")] = 1.0,
    jobs: Annotated[
        int, typer.Option(min=1, help="Jobs run in parallel, each in a fresh process.")
    ] = 1,
    out_json: Annotated[
        Path | None,
        typer.Option(
            "--out-json",
            help="Write every job's figures, the summary with its intervals, the paired "
            "differences and the figures by hour of day as JSON.",
            show_default=False,
        ),
    ] = None,
    out_md: Annotated[
        Path | None,
        typer.Option("--out-md", help="Write the tables as Markdown.", show_default=False),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="SECTION.KEY=VALUE over every scenario's file, e.g. --set staff.cleaners=8 "
            "(repeatable; after the HOSPITAL_<SECTION>_<KEY> variables, which apply too).",
            show_default=False,
        ),
    ] = None,
    budget_ms: Annotated[
        float | None,
        typer.Option(
            "--budget-ms",
            help="A tick's solve budget in ms, greater than 0 (default: the scenario's tick "
            "length).",
            show_default=False,
        ),
    ] = None,
    warmup: Annotated[
        str | None,
        typer.Option(
            help="Leave each run's first simulated time out of its KPIs (30m, 1h; part of "
            "--hours): the patients who arrived after it, the tasks created after it.",
            show_default=False,
        ),
    ] = None,
    detail: Annotated[
        bool,
        typer.Option(
            "--detail",
            help="Also the scheduler's own figures: tick solve times against the budget, "
            "wall time, peak memory (always in --out-json).",
        ),
    ] = False,
) -> None:
    """Benchmark the scheduler on the named scenarios: for each scenario and policy, the
    KPIs (referrals, time in system, waits by role and by ESI level, tasks past their
    target wait, occupancy, utilisation) with their 95 % intervals over the replications,
    and each policy's paired difference with greedy; beside each scenario, the capacity
    bound (the lowest referral rate any policy could reach) and its bottleneck, in the long
    run and in the busiest hour. With --detail, the scheduler's own figures too."""
    replications = seeds if seeds is not None else replications
    if scenario and set(scenario) & set(region_names()):
        _bench_regions(scenario, replications, hours, out_json, out_md)
        return
    if budget_ms is not None and not 0 < budget_ms < math.inf:  # NaN too
        raise _fail(f"--budget-ms: expected a number of ms greater than 0, got {budget_ms:g}")
    names = scenario or scenarios.names()
    warmup_ms = parse_warmup(warmup, round(hours * 3_600_000))
    from scheduler import bench as bench_module  # scipy and the LP: only when benching

    policies = policy or list(bench_module.POLICIES)
    for name in policies:
        if name not in bench_module.POLICIES:
            raise _fail(f"--policy: expected cpsat or greedy, got {name!r}")
    try:
        for name in names:
            scenarios.path(name)
    except scenarios.UnknownScenario as exc:
        raise _fail(f"--scenario: {exc}") from None
    try:
        overrides = scenarios.overrides(os.environ, set_ or [])
        for name in names:
            warn_about(scenarios.load(name, overrides), name)
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    total = len(names) * len(policies) * replications
    console = Console(stderr=True)
    progress = Progress(
        TextColumn("benchmarking"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[last]}"),
        console=console,
        transient=True,
    )
    task = progress.add_task("bench", total=total, last="")

    def done(record: dict) -> None:
        progress.update(
            task,
            advance=1,
            last=f"{record['scenario']} {record['policy']} "
            f"seed {record['seed']}: {record['wall_s']:.1f} s",
        )

    try:
        with progress:
            result = bench_module.run_bench(
                names,
                policies,
                replications,
                hours,
                jobs,
                budget_ms,
                on_done=done,
                overrides=overrides,
                warmup_ms=warmup_ms,
            )
    except KeyboardInterrupt:
        raise _fail("interrupted", 130) from None
    except ConfigError as exc:  # a scenario file that does not load
        raise _fail(str(exc)) from None
    out = Console()
    if not out.is_terminal:  # a file or a pipe: wide enough for the table on one line
        out = Console(width=180)
    for table in summary_tables(result, detail):
        out.print(table)
    try:
        if out_json:
            out_json.write_text(json.dumps(result, indent=2) + "\n")
        if out_md:
            from scheduler.bench_tables import to_markdown

            out_md.write_text(to_markdown(result, detail))
    except OSError as exc:
        raise _fail(f"{exc.filename}: {exc.strerror}") from None


def _bench_regions(names: list[str], replications: int, hours: float, out_json, out_md) -> None:
    """Named regions (`region-5`, `region-20`): their coordinators compared, as `hospital
    region bench` does, over `hours` of simulated time."""
    from cli.region import bench_regions

    if not set(names) <= set(region_names()):
        raise _fail("--scenario: regions and single hospitals are benchmarked apart")
    bench_regions(
        names, list(COORDINATORS), replications, round(hours * 3_600_000), out_json, out_md
    )


def summary_tables(result: dict, detail: bool = False) -> list[Table]:
    """The KPIs with their intervals and paired differences, the bound beside each
    scenario; then, apart and with `detail`, the scheduler's own figures."""
    from scheduler import bench_tables

    headings, groups = bench_tables.kpi_table(result)
    kpis = Table(
        title=f"hospital bench: {bench_tables.replications_text(result)} each; mean ± 95 % "
        "interval half-width; paired difference: mean [95 % interval]",
        title_justify="left",
    )
    for n, heading in enumerate(headings):
        kpis.add_column(heading, justify="left" if n < 2 else "right", overflow="fold")
    for scenario, rows in groups:
        bound = result["capacity"][scenario]
        _, hour, busiest = bench_tables.capacity_cells(bound)
        label = [
            scenario,
            f"capacity bound: {bound['min_referral_rate']:.2%}",
            f"bottleneck: {bound['bottleneck']}",
            f"busiest hour {hour}: {busiest}",
        ]
        for n, row in enumerate(rows):
            kpis.add_row(label[n] if n < len(label) else "", *row, end_section=n == len(rows) - 1)
    if not detail:
        return [kpis]
    headings, rows = bench_tables.developer_compact(result)
    developer = Table(
        title="the scheduler's own figures (means)",
        title_justify="left",
    )
    for n, heading in enumerate(headings):
        developer.add_column(heading, justify="left" if n < 2 else "right", overflow="fold")
    for row in rows:
        developer.add_row(*row)
    return [kpis, developer]
