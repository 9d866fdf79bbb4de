"""`hospital run --kafka`: the supervisor, then the run's outputs read back from the database."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import typer
from rich.console import Console

from cli.common import fail, log_to_stderr, service_errors
from cli.keeping import ledger_report
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
    warmup_ms: int = 0,
    generate: bool = True,
) -> None:
    from scheduler.db.ledger import Ledger
    from scheduler.db.store import connect
    from scheduler.distributed.bus import ensure_topics
    from scheduler.distributed.supervisor import Supervisor, SupervisorError

    log_to_stderr(logging.WARNING if quiet else logging.INFO)
    try:
        with service_errors():
            # A database or broker that is not there is said now, in one line, rather than
            # by services restarted for minutes (a service that dies at start is restarted).
            connect(db_url).dispose()
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
                generate=generate,
            )
            supervisor.run()
            ledger = Ledger(db_url, settings, settings.scheduler.policy)
            try:
                figures = ledger_report(ledger, settings, duration_ms, warmup_ms)
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
    Console().print(summary_table(figures, settings.scheduler.tick_s))
    typer.echo(f"services' logs: {supervisor.log_dir}/", err=True)
