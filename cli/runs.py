"""`hospital runs` and the keeping of runs: each run that writes to a database leaves its row
and a copy of its ticks there (`scheduler.kept_runs`); thin over that module."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Iterator
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from cli.main import ConfigOption, DbOption, fail, load_config, service_errors, sqlite_file_missing
from cli.view import clock_text


class Kept:
    """What `keeping` needs to know at the end: the KPI report, once there is one."""

    def __init__(self, run_id: str):
        self.run_id = run_id
        self.figures: dict[str, Any] | None = None


@contextlib.contextmanager
def keeping(url: str, settings: Any, seed: int | None, duration_ms: int) -> Iterator[Kept]:
    """An embedded run kept: its row when it starts (after the store has migrated the
    database), its ticks copied and its row closed when it ends, however it ends."""
    from scheduler import kept_runs
    from scheduler.db.store import connect

    with service_errors():
        engine = connect(url)
    kept = Kept(kept_runs.new_run_id())
    try:
        kept_runs.begin(
            engine, kept.run_id, settings, seed=seed, mode="embedded", duration_ms=duration_ms
        )
        status = "failed"
        try:
            yield kept
            # A run stopped by a signal ends its simulation early but normally.
            status = (
                "interrupted"
                if kept.figures and "interrupted_at_ms" in kept.figures
                else "finished"
            )
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        finally:
            kept_runs.finish(engine, kept.run_id, kept.figures, status)
    finally:
        engine.dispose()


@contextlib.contextmanager
def keeping_service(
    ledger: Any, settings: Any, run_id: str, *, new_run: bool, until_ms: int | None, clock: Any
) -> Iterator[None]:
    """`hospital scheduler` keeps its run, started by hand or by `hospital run --kafka`: the
    row when it starts the run (a kept run of the same id is set aside) or resumes it, its
    ticks copied and its KPI report (from the database) when it stops, however it stops."""
    import logging

    from cli.distributed import ledger_report
    from scheduler import kept_runs
    from scheduler.db.lease import LeaseLost

    engine = ledger.engine
    row = kept_runs.find(engine, run_id)
    if row is not None and new_run:
        moved = kept_runs.set_aside(engine, run_id)
        logging.getLogger("hospital.scheduler").warning(
            "run %s: a run of that id was kept before; it is now %s", run_id, moved
        )
        row = None
    if row is None:
        kept_runs.begin(
            engine, run_id, settings, seed=None, mode="distributed", duration_ms=until_ms or 0
        )
    else:
        kept_runs.mark(engine, run_id, "running")
    status: str | None = "failed"
    try:
        yield
        status = "finished" if until_ms is not None and clock.now_ms() > until_ms else "interrupted"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    except LeaseLost:
        status = None  # another scheduler took over the run: its row is theirs to keep
        raise
    finally:
        if status is not None:
            reached = max(0, clock.now_ms() if until_ms is None else min(until_ms, clock.now_ms()))
            figures = ledger_report(ledger, settings, reached)
            figures["run_id"] = run_id
            kept_runs.finish(engine, run_id, figures, status, duration_ms=reached)


def keep_distributed(
    url: str, settings: Any, seed: int | None, duration_ms: int, started_at: float
) -> str | None:
    """After `hospital run --kafka`: keep the run the database holds now."""
    from sqlalchemy import update

    from cli.distributed import ledger_report
    from dashboard.sources import current_run
    from scheduler import kept_runs
    from scheduler.db.ledger import Ledger
    from scheduler.db.store import connect

    run_id = current_run(url)
    if run_id is None:
        return None
    ledger = Ledger(url, settings, settings.scheduler.policy)
    try:
        figures = ledger_report(ledger, settings, duration_ms)
    finally:
        ledger.close()
    figures["run_id"] = run_id
    engine = connect(url)
    try:
        if kept_runs.find(engine, run_id) is None:  # a scheduler service that kept nothing
            kept_runs.begin(
                engine, run_id, settings, seed=seed, mode="distributed", duration_ms=duration_ms
            )
        kept_runs.finish(engine, run_id, figures, duration_ms=duration_ms)
        # the run's start and seed as `hospital run --kafka` has them (its scheduler service,
        # which kept the run, knew neither)
        with engine.begin() as db:
            db.execute(
                update(kept_runs.KeptRun)
                .where(kept_runs.KeptRun.run_id == run_id)
                .values(
                    started_at=started_at, seed=settings.arrivals.seed if seed is None else seed
                )
            )
    finally:
        engine.dispose()
    return run_id


def export_header(engine: Any) -> tuple[dict[str, Any], int] | None:
    """For `hospital export`: the config and seed of the run the database holds, as kept
    (None: that run is not kept, so they are not known)."""
    from sqlalchemy import inspect, text

    from scheduler import kept_runs

    if not inspect(engine).has_table("kept_runs"):
        return None
    with engine.connect() as db:
        current = db.execute(text("SELECT run_id FROM runs")).scalar()
    row = kept_runs.find(engine, current) if current is not None else None
    if row is None:
        return None
    return row.config, row.seed if row.seed is not None else row.config["arrivals"]["seed"]


def stamp(seconds: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds)) if seconds else ""


def runs(
    db: DbOption = None,
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object a run.")] = False,
    limit: Annotated[
        int | None,
        typer.Option(help="At most this many, the latest first.", min=1, show_default=False),
    ] = None,
) -> None:
    """List the runs kept in the database, the latest first: id, mode, policy, seed, start
    (UTC), simulated duration, status and headline KPIs."""
    from sqlalchemy import inspect

    from scheduler import kept_runs
    from scheduler.db.store import connect, reason, safe_url

    url = db or load_config(config).database.url
    found = []
    if not sqlite_file_missing(url):  # no file, no runs: SQLite would make an empty one
        with service_errors():
            engine = connect(url)
        try:
            found = kept_runs.runs(engine) if inspect(engine).has_table("kept_runs") else []
        except Exception as exc:  # noqa: BLE001 - a database we cannot read
            raise fail(f"runs: {reason(exc)}", 3) from None
        finally:
            engine.dispose()
    if not found and not as_json:
        typer.echo(f"no runs kept in {safe_url(url)}")
        return
    found = found[:limit] if limit else found
    if as_json:
        for r in found:
            typer.echo(
                json.dumps(
                    {
                        "run_id": r.run_id,
                        "mode": r.mode,
                        "status": r.status,
                        "policy": r.policy,
                        "seed": r.seed,
                        "version": r.version,
                        "duration_s": r.duration_s,
                        "started_at": r.started_at,
                        "ended_at": r.ended_at,
                        "figures": r.figures,
                    },
                    sort_keys=True,
                )
            )
        return
    table = Table(title=f"Runs kept ({len(found)})", title_justify="left")
    for column in (
        "run",
        "mode",
        "policy",
        "seed",
        "started (UTC)",
        "simulated",
        "status",
        "arrivals",
        "referred",
    ):
        table.add_column(
            column, no_wrap=True, justify="right" if column in ("seed", "arrivals") else "left"
        )
    for r in found:
        f = r.figures or {}
        table.add_row(
            r.run_id,
            r.mode,
            r.policy,
            "" if r.seed is None else str(r.seed),
            stamp(r.started_at),
            clock_text(round(r.duration_s * 1000)),
            r.status,
            str(f.get("arrivals", "")),
            f"{f['referral_rate']:.1%}" if "referral_rate" in f else "",
        )
    Console(width=None if sys.stdout.isatty() else 160).print(table)
