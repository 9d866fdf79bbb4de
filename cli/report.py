"""`hospital report`: a run as a self-contained HTML report with plots, thin over
`dashboard.report`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from cli.common import (
    ConfigOption,
    WarmupOption,
    check_outputs,
    fail,
    load_config,
    parse_duration,
    parse_warmup,
    sqlite_file_missing,
)
from scheduler.config import ConfigError


def kept_run(url: str, run_id: str | None, warmup_ms: int = 0) -> Any:
    """A run kept in the database (the latest when `run_id` is None), as the report sees it,
    its figures leaving out its first `warmup_ms`."""
    from sqlalchemy import inspect

    from cli.common import service_errors
    from dashboard import report
    from scheduler import config as config_module
    from scheduler import events as ev
    from scheduler.db import kept_runs
    from scheduler.db.store import connect, safe_url

    def nothing_kept() -> typer.Exit:
        return fail(
            f"no run {run_id!r} kept in {safe_url(url)} (hospital runs lists them)"
            if run_id
            else f"no run kept in {safe_url(url)}"
        )

    if sqlite_file_missing(url):  # no file, no run: SQLite would make an empty one
        raise nothing_kept()
    with service_errors():
        engine = connect(url)
    try:
        row = kept_runs.find(engine, run_id) if inspect(engine).has_table("kept_runs") else None
        if row is None:
            raise nothing_kept()
        config = config_module.from_mapping(row.config, {})
        vocabulary = {**ev.DECISIONS, **ev.INBOUND}
        ticks = [
            (
                tick,
                round(time_s * 1000),
                [ev.parse_json(d, vocabulary) for d in decisions],
                [ev.parse_json(e, vocabulary) for e in events],
                solve_ms or None,
            )
            for tick, time_s, solve_ms, _, events, decisions in kept_runs.history(
                engine, row.run_id
            )
        ]
    finally:
        engine.dispose()
    from cli.view import stamp

    meta = {
        "run": row.run_id,
        "label": row.label or "",
        "config file": row.config_file or "",
        "mode": row.mode,
        "status": row.status,
        "policy": row.policy,
        "seed": row.seed,
        "version": row.version,
        "started (UTC)": stamp(row.started_at),
        "ended (UTC)": stamp(row.ended_at),
    }
    return report.build(
        row.label or row.run_id,
        ticks,
        config,
        round(row.duration_s * 1000),
        meta,
        exact=True,
        warmup_ms=warmup_ms,
    )


def load_run(
    source: str | None,
    events: Path | None,
    config: Any,
    duration: str | None,
    label: str | None = None,
    db: str | None = None,
    warmup_ms: int = 0,
) -> Any:
    from dashboard import report

    if (
        source is not None
        and not Path(source).is_file()
        and (Path(source).suffix or "/" in source or "\\" in source)
    ):
        raise fail(f"{source}: no such decisions file")
    if source is None or not Path(source).is_file():
        if events is not None or duration is not None:
            raise fail(
                f"{source or 'the latest run'}: --events and --duration are for a "
                "decisions file; a kept run has its own"
            )
        return kept_run(db or config.database.url, source, warmup_ms)
    path = Path(source)
    duration_ms = parse_duration(duration) if duration else None
    check_log(path, "decisions")
    if events is not None:
        check_log(events, "events")
    elif warmup_ms:
        raise fail(
            f"{source}: --warmup needs the run's events to leave it out exactly: give "
            f"--events (the run's --record log)"
        )
    try:
        return report.from_files(path, config, events, duration_ms, label, warmup_ms)
    except ConfigError as exc:
        raise fail(f"{events}:1: the run header's config cannot be used: {exc}") from None
    except (OSError, ValueError, KeyError) as exc:
        raise fail(f"{source}: cannot read the run: {exc}") from None


def check_log(path: Path, kind: str) -> None:
    """One error line for the first line of a decisions file or an event log that the report
    could not read (the report reads them again: they are not kept in memory twice)."""
    from scheduler import events as ev
    from scheduler import jsonl

    try:
        for record in jsonl.read(path, ev.DECISIONS if kind == "decisions" else None):
            if record.tick is None:  # decisions always have one
                raise fail(
                    f"{path}:{record.line}: no 'tick': the report needs the event log "
                    f"of hospital run --record"
                )
    except jsonl.LogError as exc:
        raise fail(str(exc)) from None


def report(
    source: Annotated[
        str | None,
        typer.Argument(
            help="The run: its id in the database (hospital runs; the latest when none is "
            "given), or its decisions file (hospital run --out).",
            show_default=False,
        ),
    ] = None,
    out: Annotated[Path, typer.Option(help="The HTML file to write.")] = Path("report.html"),
    events: Annotated[
        Path | None,
        typer.Option(
            help="The run's event log (hospital run --record): with it, the figures are the "
            "run's KPI report exactly.",
            show_default=False,
        ),
    ] = None,
    duration: Annotated[
        str | None,
        typer.Option(
            help="The run's --duration (default: up to its last tick).", show_default=False
        ),
    ] = None,
    compare: Annotated[
        str | None,
        typer.Option(
            help="A second run to put side by side with the first (its id, or its decisions file).",
            show_default=False,
        ),
    ] = None,
    compare_events: Annotated[
        Path | None, typer.Option(help="The second run's event log.", show_default=False)
    ] = None,
    compare_config: Annotated[
        Path | None,
        typer.Option(help="The second run's config (default: --config).", show_default=False),
    ] = None,
    db: Annotated[
        str | None,
        typer.Option(
            help="Database URL of kept runs (default: database.url of the config).",
            show_default=False,
        ),
    ] = None,
    config: ConfigOption = None,
    warmup: WarmupOption = None,
) -> None:
    """Write a run's report as one HTML file with its figures (the KPI report's, with the
    capacity bound and its bottleneck) and plots (admissions and referrals per hour and by
    hour of day, the rooms' time in each state, occupancy, waiting lists, the waits'
    distribution, utilisation, a staff timeline), or two runs compared (`--compare`): both
    on each plot, the differences in the figures. A decisions file's event log (its
    header) says the run's config, policy, length and label. It opens without a network."""
    from dashboard import report as html_report

    check_outputs(out=out)
    warmup_ms = parse_warmup(warmup)
    settings = load_config(config)
    runs = [load_run(source, events, settings, duration, db=db, warmup_ms=warmup_ms)]
    if compare is not None:
        other = load_config(compare_config) if compare_config else settings
        compared = load_run(
            compare,
            compare_events,
            other,
            duration if Path(compare).is_file() else None,
            db=db,
            warmup_ms=warmup_ms,
        )
        if compared.label == runs[0].label:
            compared.label = f"{compared.label} (2)"
        runs.append(compared)
    try:
        out.write_text(html_report.render(runs), encoding="utf-8")
    except OSError as exc:
        raise fail(f"{out}: {exc.strerror}") from None
    typer.echo(f"report: {out}", err=True)
