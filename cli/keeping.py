"""The keeping of runs: each run that writes to a database leaves its row and a copy of its
ticks there (`scheduler.db.kept_runs`), whichever way it ran; thin over that module."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

from cli.common import service_errors
from scheduler.config import Config


class Kept:
    """What `keeping` needs to know at the end: the KPI report, once there is one."""

    def __init__(self, run_id: str):
        self.run_id = run_id
        self.figures: dict[str, Any] | None = None


@contextlib.contextmanager
def keeping(
    url: str,
    settings: Any,
    seed: int | None,
    duration_ms: int,
    label: str | None = None,
    config_file: str | None = None,
) -> Iterator[Kept]:
    """An embedded run kept: its row when it starts (after the store has migrated the
    database), its ticks copied and its row closed when it ends, however it ends, with the
    simulated time it reached if it did not finish (an interrupted run's figures are up to
    that time: `hospital report` of the kept run must find them again)."""
    from scheduler.db import kept_runs
    from scheduler.db.store import connect

    with service_errors():
        engine = connect(url)
    kept = Kept(kept_runs.new_run_id())
    try:
        kept_runs.begin(
            engine,
            kept.run_id,
            settings,
            seed=seed,
            mode="embedded",
            duration_ms=duration_ms,
            label=label,
            config_file=config_file,
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
            reached = None if status == "finished" else _reached_ms(engine, kept.figures)
            kept_runs.finish(engine, kept.run_id, kept.figures, status, duration_ms=reached)
    finally:
        engine.dispose()


def _reached_ms(engine: Any, figures: dict[str, Any] | None) -> int:
    """The simulated time an embedded run that did not finish reached: its report's, or,
    without one (aborted, failed), that of the last tick it stored."""
    from scheduler.db import kept_runs

    if figures is not None and "interrupted_at_ms" in figures:
        return int(figures["interrupted_at_ms"])
    return kept_runs.last_tick_ms(engine)


@contextlib.contextmanager
def keeping_service(
    ledger: Any, settings: Any, run_id: str, *, new_run: bool, until_ms: int | None, clock: Any
) -> Iterator[None]:
    """`hospital scheduler` keeps its run, started by hand or by `hospital run --kafka`: the
    row when it starts the run (a kept run of the same id is set aside) or resumes it, its
    ticks copied and its KPI report (from the database) when it stops, however it stops."""
    import logging

    from scheduler.db import kept_runs
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
    url: str,
    settings: Any,
    seed: int | None,
    duration_ms: int,
    started_at: float,
    label: str | None = None,
    config_file: str | None = None,
    warmup_ms: int = 0,
) -> str | None:
    """After `hospital run --kafka`: keep the run the database holds now."""
    from sqlalchemy import update

    from dashboard.sources import current_run
    from scheduler.db import kept_runs
    from scheduler.db.ledger import Ledger
    from scheduler.db.store import connect

    run_id = current_run(url)
    if run_id is None:
        return None
    ledger = Ledger(url, settings, settings.scheduler.policy)
    try:
        figures = ledger_report(ledger, settings, duration_ms, warmup_ms)
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
        # the run's start, seed, label and config file as `hospital run --kafka` has them
        # (its scheduler service, which kept the run, knew none of them)
        closing: dict[str, Any] = {
            "started_at": started_at,
            "seed": settings.arrivals.seed if seed is None else seed,
            "label": label,
            "config_file": config_file,
        }
        row = kept_runs.find(engine, run_id)
        if row is not None and seed is not None:  # the seed it drew its patients from
            config = {**row.config, "arrivals": {**row.config["arrivals"], "seed": seed}}
            closing["config"] = json.dumps(config, sort_keys=True, default=list)
        with engine.begin() as db:
            db.execute(
                update(kept_runs.KeptRun)
                .where(kept_runs.KeptRun.run_id == run_id)
                .values(**closing)
            )
    finally:
        engine.dispose()
    return run_id


def export_header(engine: Any) -> tuple[dict[str, Any], int] | None:
    """For `hospital export`: the config and seed of the run the database holds, as kept
    (None: that run is not kept, so they are not known)."""
    from sqlalchemy import inspect, text

    from scheduler.db import kept_runs

    if not inspect(engine).has_table("kept_runs"):
        return None
    with engine.connect() as db:
        current = db.execute(text("SELECT run_id FROM runs")).scalar()
    if current is None:
        # No distributed run: the tables hold the embedded run that emptied them last,
        # the latest embedded run kept.
        current = next((r.run_id for r in kept_runs.runs(engine) if r.mode == "embedded"), None)
    row = kept_runs.find(engine, current) if current is not None else None
    if row is None:
        return None
    return row.config, row.seed if row.seed is not None else row.config["arrivals"]["seed"]


def ledger_report(ledger, settings: Config, duration_ms: int, warmup_ms: int = 0) -> dict:
    """The KPIs of the run in the database, as `hospital run` computes them in-process, with
    the capacity bound of its hospital."""
    from scheduler import events as ev
    from scheduler.capacity import run_bound
    from scheduler.engine import TickResult
    from scheduler.runs import new_kpi

    kpi = new_kpi(settings, warmup_ms)
    tick_ms = round(settings.scheduler.tick_s * 1000)
    solve_ms = ledger.solve_times()
    for tick, inbound, decisions in ledger.history():
        result = TickResult(
            tick,
            tick * tick_ms,
            inbound,
            [ev.parse_json(d, ev.DECISIONS) for d in decisions],
            solved=solve_ms.get(tick, 0.0) > 0,  # 0: nothing to decide
            solve_ms=solve_ms.get(tick, 0.0),
        )
        kpi.collect(result)
    figures = kpi.report(duration_ms, {"policy": settings.scheduler.policy})
    figures["dead_letters"] = ledger.dead_letters()
    figures["capacity"] = run_bound(settings, round(figures["duration_s"] * 1000), warmup_ms)
    return figures
