"""`hospital report`: a run as a self-contained HTML report with plots, thin over
`dashboard.report`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from cli.main import ConfigOption, fail, load_config, parse_duration


def load_run(source: str, events: Path | None, config: Any, duration: str | None,
             label: str | None = None) -> Any:
    from dashboard import report

    path = Path(source)
    if not path.is_file():
        raise fail(f"{source}: no such decisions file")
    duration_ms = parse_duration(duration) if duration else None
    try:
        return report.from_files(path, config, events, duration_ms, label)
    except (OSError, ValueError, KeyError) as exc:
        raise fail(f"{source}: cannot read the run: {exc}") from None


def report(
    source: Annotated[str, typer.Argument(
        help="The run: its decisions file (hospital run --out).", show_default=False)],
    out: Annotated[Path, typer.Option(help="The HTML file to write.")] = Path("report.html"),
    events: Annotated[Optional[Path], typer.Option(
        help="The run's event log (hospital run --record): with it, the figures are the "
             "run's KPI report exactly.", show_default=False)] = None,
    duration: Annotated[Optional[str], typer.Option(
        help="The run's --duration (default: up to its last tick).", show_default=False)]
        = None,
    compare: Annotated[Optional[str], typer.Option(
        help="A second run to put side by side with the first (its decisions file).",
        show_default=False)] = None,
    compare_events: Annotated[Optional[Path], typer.Option(
        help="The second run's event log.", show_default=False)] = None,
    compare_config: Annotated[Optional[Path], typer.Option(
        help="The second run's config (default: --config).", show_default=False)] = None,
    config: ConfigOption = None,
) -> None:
    """Write a run's report as one HTML file with plots (arrivals, admissions and referrals
    per hour, occupancy, waiting lists, waits, utilisation, a staff timeline), or two runs
    side by side with the differences (`--compare`). It opens without a network."""
    from dashboard import report as html_report

    settings = load_config(config)
    runs = [load_run(source, events, settings, duration)]
    if compare is not None:
        other = load_config(compare_config) if compare_config else settings
        label = compare if Path(compare).stem != runs[0].label else f"{compare} (2)"
        runs.append(load_run(compare, compare_events, other, duration,
                             Path(label).stem if label == compare else label))
    try:
        out.write_text(html_report.render(runs), encoding="utf-8")
    except OSError as exc:
        raise fail(f"{out}: {exc.strerror}") from None
    typer.echo(f"report: {out}", err=True)
