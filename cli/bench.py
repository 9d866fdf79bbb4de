"""`hospital bench`: the named scenarios × policies × seeds, as a table, JSON and Markdown.
The work is `scheduler.bench`'s; this is the command line around it."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from scheduler import scenarios


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"hospital: error: {message}", err=True)
    return typer.Exit(code)


def bench(
    scenario: Annotated[
        list[str] | None,
        typer.Option(
            "--scenario",
            "-s",
            help="A scenario of scenarios/ (repeatable; default: all).",
            show_default=False,
        ),
    ] = None,
    policy: Annotated[
        list[str] | None,
        typer.Option(
            "--policy", help="cpsat or greedy (repeatable; default: both).", show_default=False
        ),
    ] = None,
    seeds: Annotated[int, typer.Option(min=1, help="Seeds 1..N of the arrival process.")] = 3,
    hours: Annotated[float, typer.Option(min=0.0, help="Simulated hours per job.")] = 1.0,
    jobs: Annotated[
        int, typer.Option(min=1, help="Jobs run in parallel, each in a fresh process.")
    ] = 1,
    out_json: Annotated[
        Path | None,
        typer.Option(
            "--out-json",
            help="Write every job's figures and the summary as JSON.",
            show_default=False,
        ),
    ] = None,
    out_md: Annotated[
        Path | None,
        typer.Option("--out-md", help="Write the summary as a Markdown table.", show_default=False),
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
) -> None:
    """Benchmark the scheduler on the named scenarios: for each scenario and policy, over the
    seeds, the wall time, the tick solve times against the budget, referrals, time in
    system, waits and peak memory; beside each scenario, the capacity bound (the lowest
    referral rate any policy could reach)."""
    if budget_ms is not None and not 0 < budget_ms < math.inf:  # NaN too
        raise _fail(f"--budget-ms: expected a number of ms greater than 0, got {budget_ms:g}")
    names = scenario or scenarios.names()
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
    total = len(names) * len(policies) * seeds
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
                names, policies, seeds, hours, jobs, budget_ms, on_done=done
            )
    except KeyboardInterrupt:
        raise _fail("interrupted", 130) from None
    out = Console()
    if not out.is_terminal:  # a file or a pipe: wide enough for the table on one line
        out = Console(width=180)
    out.print(summary_table(result))
    try:
        if out_json:
            out_json.write_text(json.dumps(result, indent=2) + "\n")
        if out_md:
            out_md.write_text(bench_module.to_markdown(result))
    except OSError as exc:
        raise _fail(f"{exc.filename}: {exc.strerror}") from None


def summary_table(result: dict) -> Table:
    from scheduler import bench as bench_module

    settings = result["settings"]
    table = Table(
        title=f"hospital bench: {settings['hours']:g} h × seeds 1–{settings['seeds']}, "
        "mean ±half the seeds' range",
        title_justify="left",
    )
    headings, rows = bench_module.compact_rows(result)
    for n, heading in enumerate(headings):
        table.add_column(heading, justify="left" if n < 2 else "right", overflow="fold")
    for row in rows:
        table.add_row(*row)
    return table
