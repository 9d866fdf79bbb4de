"""`hospital region report`: a region's run as one self-contained HTML file with plots, in
the style of the single hospital's report (`dashboard.report`, whose page, plot layout and
warm-up shading it shares; plotly.js inline, no network).

The record (`hospital region run --record`) is replayed through a fresh region and its
coordinator (`replay_region`: the recorded run's decisions, byte for byte), its ticks fed to
a `RegionView`: the figures are the region's KPI report's own (a warm-up left out if
asked), the plots the view's series and hourly counts.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from plotly.colors import qualitative

from dashboard.region import RegionView
from dashboard.report import layout, page, plot_section, shade_warmup
from scheduler.region.config import RegionConfig
from scheduler.region.simulation import Recorded, recorded_duration_ms, replay_region

# The region's figures, in the table's order, with their names.
REGION_FIGURES = {
    "arrivals": "arrivals (the hospitals' own patients)",
    "referred_out": "referred out of the region",
    "referred_out_rate": "referred out of the region, rate",
    "requested": "transfers requested",
    "offers": "offers",
    "declined": "offers declined",
    "transfers": "transfers (accepted)",
    "mean_transfer_travel_s": "travel per transfer, mean (min)",
    "p95_transfer_travel_s": "travel per transfer, p95 (min)",
    "mean_wait_for_acceptance_s": "waiting for an offer to be accepted, mean (s)",
    "occupancy_mean": "room occupancy, mean of the hospitals",
    "occupancy_spread": "room occupancy, spread across hospitals (standard deviation)",
    "occupancy_range": "room occupancy, range across hospitals",
    "in_flight.requests_pending": "at the end: requests still waiting",
    "in_flight.on_the_way": "at the end: patients on the way",
}
SHARES = {"referred_out_rate", "occupancy_mean", "occupancy_spread", "occupancy_range"}
MINUTES = {"mean_transfer_travel_s", "p95_transfer_travel_s"}
HOSPITAL_COLUMNS = {
    "rooms": "rooms",
    "arrivals": "arrivals (transfers in among them)",
    "own_admitted": "own patients admitted",
    "not_taken": "own patients not taken",
    "transfers_out": "transfers out",
    "transfers_in": "transfers in",
    "referred_out": "referred out of the region",
    "room_occupancy": "room occupancy",
}
PALETTE = qualitative.D3 + qualitative.Dark24  # a hospital's colour: its place in the region


@dataclass
class RegionReport:
    """A region's run as the report sees it."""

    view: RegionView
    figures: dict[str, Any]
    duration_ms: int
    warmup_ms: int = 0
    meta: dict[str, Any] = field(default_factory=dict)
    rejected: list[str] = field(default_factory=list)


def build(
    region: RegionConfig,
    recorded: Recorded,
    coordinator: str,
    *,
    warmup_ms: int = 0,
    meta: dict[str, Any] | None = None,
) -> RegionReport:
    """Replay the record under `coordinator` and gather the report's figures and series.
    Raises `jsonl.LogError` (a record that cannot be replayed), `InvariantViolation` and
    `RegionViolation` (as `hospital region solve` would)."""
    duration_ms = recorded_duration_ms(recorded)
    view = RegionView(region, coordinator, warmup_ms=warmup_ms, duration_ms=duration_ms)
    run = replay_region(region, recorded, coordinator, on_tick=view.apply, warmup_ms=warmup_ms)
    view.finish(duration_ms)
    figures = view.figures(duration_ms)
    return RegionReport(view, figures, duration_ms, warmup_ms, dict(meta or {}), run.rejected)


# --- the plots -------------------------------------------------------------------------


def _colour(n: int) -> str:
    return PALETTE[n % len(PALETTE)]


def plot_occupancy(report: RegionReport) -> go.Figure:
    """Each hospital's patients in rooms, a share of its rooms, each minute."""
    view = report.view
    x = [point["t"] / 3600 for point in view.series]
    fig = go.Figure(
        [
            go.Scatter(
                x=x,
                y=[point["occupancy"][n] for point in view.series],
                name=hospital_id,
                mode="lines",
                line={"shape": "hv", "color": _colour(n)},
            )
            for n, hospital_id in enumerate(view.ids)
        ]
    )
    fig.update_yaxes(tickformat=".0%", range=[0, 1.05])
    layout(fig, "Room occupancy of each hospital (each minute)", "hour", "share of rooms")
    return shade_warmup(fig, report.warmup_ms)


def _hours(report: RegionReport) -> list[int]:
    return list(range(max(1, -(-report.duration_ms // 3_600_000))))


def plot_transfers_per_hour(report: RegionReport) -> go.Figure:
    hours = _hours(report)
    counts = report.view.transfers_by_hour
    fig = go.Figure(
        go.Bar(
            x=[h + 0.5 for h in hours],
            y=[counts.get(h, 0) for h in hours],
            name="transfers",
            marker_color="#0288d1",
        )
    )
    layout(fig, "Transfers accepted per hour of the run", "hour", "transfers")
    return shade_warmup(fig, report.warmup_ms)


def plot_referred_out_per_hour(report: RegionReport) -> go.Figure:
    hours = _hours(report)
    counts = report.view.referred_out_by_hour
    fig = go.Figure(
        go.Bar(
            x=[h + 0.5 for h in hours],
            y=[counts.get(h, 0) for h in hours],
            name="referred out",
            marker_color="#c62828",
        )
    )
    layout(fig, "Patients referred out of the region per hour of the run", "hour", "patients")
    return shade_warmup(fig, report.warmup_ms)


def plot_matrix(report: RegionReport) -> go.Figure:
    """Transfers from each hospital (rows) to each other (columns)."""
    ids = report.view.ids
    matrix = report.figures["matrix"]
    cells = [[matrix[o].get(t) if o != t else None for t in ids] for o in ids]
    fig = go.Figure(
        go.Heatmap(
            z=cells,
            x=ids,
            y=ids,
            colorscale="Blues",
            text=[["" if v is None else str(v) for v in row] for row in cells],
            texttemplate="%{text}",
            hovertemplate="%{y} → %{x}: %{z} transfers<extra></extra>",
        )
    )
    fig.update_yaxes(autorange="reversed")
    layout(fig, "Transfers from each hospital (rows) to each other (columns)", "to", "from")
    fig.update_layout(height=max(360, 40 * len(ids) + 150))
    return fig


PLOTS = (plot_occupancy, plot_transfers_per_hour, plot_matrix, plot_referred_out_per_hour)

# --- the page --------------------------------------------------------------------------


def _figure(figures: dict[str, Any], key: str) -> Any:
    value: Any = figures
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _shown(key: str, value: Any) -> str:
    if value is None:
        return ""
    if key in SHARES or key == "room_occupancy":
        return f"{value:.2%}"
    if key in MINUTES:
        return f"{value / 60:.1f}"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def region_table(report: RegionReport) -> str:
    region = report.figures["region"]
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td>"
        f'<td data-figure="{key}">{html.escape(_shown(key, _figure(region, key)))}</td></tr>'
        for key, name in REGION_FIGURES.items()
    )
    return f"<table class='figures'><tr><th>figure</th><th>region</th></tr>{rows}</table>"


def hospitals_table(report: RegionReport) -> str:
    head = "".join(f"<th>{html.escape(name)}</th>" for name in HOSPITAL_COLUMNS.values())
    rows = []
    for hospital_id, figures in report.figures["hospitals"].items():
        cells = "".join(
            f'<td data-figure="{key}">{html.escape(_shown(key, figures[key]))}</td>'
            for key in HOSPITAL_COLUMNS
        )
        name = html.escape(hospital_id)
        rows.append(f'<tr data-hospital="{name}"><td>{name}</td>{cells}</tr>')
    return (
        f"<table class='hospitals'><tr><th>hospital</th>{head}</tr>{''.join(rows)}"
        f"{_totals_row(report)}</table>"
        "<p class='note'>A transfer's patient counts among the arrivals of the hospital that "
        "received them; a room held for a transfer counts as free until its patient arrives. "
        "The last row: the hospitals' sums, and their occupancy's mean ± spread (standard "
        "deviation).</p>"
    )


def _totals_row(report: RegionReport) -> str:
    hospitals = report.figures["hospitals"].values()
    region = report.figures["region"]
    cells = "".join(
        f"<td>{sum(figures[key] for figures in hospitals)}</td>"
        for key in HOSPITAL_COLUMNS
        if key != "room_occupancy"
    )
    spread = f"{region['occupancy_mean']:.2%} ± {region['occupancy_spread']:.2%}"
    return f"<tr class='totals'><th>all</th>{cells}<th>{html.escape(spread)}</th></tr>"


def matrix_table(report: RegionReport) -> str:
    ids = report.view.ids
    matrix = report.figures["matrix"]
    head = "".join(f"<th>{html.escape(t)}</th>" for t in ids)
    rows = []
    for origin in ids:
        cells = "".join(
            "<td>–</td>"
            if to == origin
            else f'<td data-from="{html.escape(origin)}" data-to="{html.escape(to)}">'
            f"{matrix[origin][to]}</td>"
            for to in ids
        )
        out = sum(matrix[origin].values())
        rows.append(f"<tr><td>{html.escape(origin)}</td>{cells}<td>{out}</td></tr>")
    into = "".join(f"<td>{sum(matrix[o].get(t, 0) for o in ids)}</td>" for t in ids)
    return (
        f"<table class='matrix'><tr><th>from \\ to</th>{head}<th>sent</th></tr>"
        f"{''.join(rows)}<tr><td>accepted</td>{into}<td></td></tr></table>"
    )


def meta_table(report: RegionReport) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>"
        for k, v in report.meta.items()
    )
    warmup = (
        f" The first {report.warmup_ms / 1000:g} s are left out of the figures (shaded on "
        "the plots over time): the patients counted are those who arrived after it."
        if report.warmup_ms
        else ""
    )
    return (
        f"<table class='meta'>{rows}</table><p class='note'>Figures from the record replayed "
        f"through the region and its coordinator: they are the run's KPI report.{warmup}</p>"
    )


def plot_id(plot: Any) -> str:
    return "plot-" + plot.__name__.removeprefix("plot_").replace("_", "-")


def render(report: RegionReport, title: str) -> str:
    """The report as one HTML document: plotly.js inline, every plot a div `plot-<name>`."""
    sections = [
        f"<section><h2>Run</h2>{meta_table(report)}</section>",
        f"<section><h2>The region</h2>{region_table(report)}</section>",
        f"<section><h2>Hospitals</h2>{hospitals_table(report)}</section>",
        f"<section><h2>Transfers, from → to</h2>{matrix_table(report)}</section>",
    ]
    sections += [plot_section(plot(report), plot_id(plot)) for plot in PLOTS]
    return page(title, sections, heading="hospital region report")


def write(report: RegionReport, title: str, out: Path) -> None:
    out.write_text(render(report, title), encoding="utf-8")
