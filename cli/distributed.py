"""`hospital run --kafka`: the supervisor, then the run's outputs read back from the database."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import typer
from rich.console import Console

from cli.main import fail, service_errors
from cli.services import log_to_stderr
from cli.view import summary_table
from scheduler import config as config_module
from scheduler.config import Config


def run_distributed(
    settings: Config,
    config_path: Path | None,
    db_url: str,
    duration_ms: int,
    speed: float,
    seed: int | None,
    workers: dict[str, int],
    record: Path | None,
    out: Path | None,
    report: Path | None,
    quiet: bool,
) -> None:
    from scheduler.db.ledger import Ledger
    from scheduler.services.bus import ensure_topics
    from scheduler.services.supervisor import Supervisor, SupervisorError

    log_to_stderr(logging.WARNING if quiet else logging.INFO)
    try:
        with service_errors():
            ensure_topics(settings)
            supervisor = Supervisor(
                settings,
                config_path,
                db_url,
                duration_ms,
                speed,
                seed,
                workers,
                log_dir=Path("hospital-logs"),
            )
            supervisor.run()
            ledger = Ledger(db_url, settings, settings.scheduler.policy)
            try:
                figures = ledger_report(ledger, settings, duration_ms)
                if record or out:  # the record opens with the run's header, as in-process
                    ledger.export(
                        record,
                        out,
                        header=(
                            config_module.shareable(settings),
                            settings.arrivals.seed if seed is None else seed,
                        ),
                    )
            finally:
                ledger.close()
    except SupervisorError as exc:
        raise fail(str(exc), 1) from None
    except KeyboardInterrupt:
        raise fail("interrupted", 130) from None
    figures["run_id"] = supervisor.run_id
    if report:
        report.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    Console().print(summary_table(figures))
    typer.echo(f"services' logs: {supervisor.log_dir}/", err=True)


def ledger_report(ledger, settings: Config, duration_ms: int) -> dict:
    """The KPIs of the run in the database, as `hospital run` computes them in-process."""
    from scheduler import events as ev
    from scheduler.engine import TickResult
    from scheduler.runs import new_kpi

    kpi = new_kpi(settings)
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
    return figures
