"""`hospital runs`: the runs kept in the database (`scheduler.db.kept_runs`)."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from cli.common import (
    ConfigOption,
    DbOption,
    fail,
    load_config,
    service_errors,
    sqlite_file_missing,
)
from cli.view import clock_text, stamp


def runs(
    db: DbOption = None,
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object a run.")] = False,
    limit: Annotated[
        int | None,
        typer.Option(help="At most this many, the latest first.", min=1, show_default=False),
    ] = None,
) -> None:
    """List the runs kept in the database, the latest first: id, label (`hospital run
    --label`), config file, mode, policy, seed, start (UTC), simulated duration, status and
    headline KPIs."""
    from sqlalchemy import inspect

    from scheduler.db import kept_runs
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
                        "label": r.label,
                        "config_file": r.config_file,
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
        "label",
        "config",
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
            column,
            no_wrap=column != "label",  # a long label folds; nothing else does
            justify="right" if column in ("seed", "arrivals") else "left",
        )
    for r in found:
        f = r.figures or {}
        table.add_row(
            r.run_id,
            r.label or "",
            r.config_file or "",
            r.mode,
            r.policy,
            "" if r.seed is None else str(r.seed),
            stamp(r.started_at),
            clock_text(round(r.duration_s * 1000)),
            r.status,
            str(f.get("arrivals", "")),
            f"{f['referral_rate']:.1%}" if "referral_rate" in f else "",
        )
    Console(width=None if sys.stdout.isatty() else 200).print(table)
