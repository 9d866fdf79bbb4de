"""`hospital report`: a run as one self-contained HTML file with plots (plotly, its JS
inline, so the file opens anywhere without a network), from the run's decisions (a JSONL
file, or a run kept in the database) — and with the events the scheduler applied, when at
hand, so that every figure is the KPI report's own. `--compare` puts two runs side by side.

Each plot keeps plotly's own toolbar, whose camera button saves it as a PNG.
"""

from __future__ import annotations

import html
import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from dashboard.projection import ROLES, Projection
from dashboard.sources import group_ticks, parse
from scheduler import jsonl

COLOURS = {"porter": "#1f77b4", "medical": "#ff7f0e", "cleaner": "#2ca02c"}
KIND_COLOURS = {
    "escort_in": "#1f77b4",
    "escort_out": "#9ecae1",
    "visit": "#ff7f0e",
    "clean": "#2ca02c",
}
TIMELINE_TASKS = 4000  # the staff timeline shows at most this many tasks (the first)


@dataclass
class RunData:
    """One run as the report sees it: where it came from, its projection, its figures."""

    label: str
    projection: Projection
    meta: dict[str, Any] = field(default_factory=dict)
    exact: bool = False  # the events were at hand: figures are the KPI report's
    figures: dict[str, Any] = field(default_factory=dict)


def build(
    label: str,
    ticks: Iterable[tuple[int, int, list, list | None, float | None]],
    config: Any,
    duration_ms: int | None = None,
    meta: dict[str, Any] | None = None,
    exact: bool = False,
) -> RunData:
    """Feed a run's ticks (tick, time_ms, decisions, inbound or None, solve_ms or None)."""
    projection = Projection.for_config(config, sample_ms=60_000)
    projection.keep_staff_log = True
    for tick, time_ms, decisions, inbound, solve_ms in ticks:
        projection.apply(tick, time_ms, decisions, inbound, solve_ms=solve_ms)
    end = max(duration_ms or 0, projection.time_ms)
    projection.finish(end)
    with projection.lock:
        tiles = projection.tiles()
    figures = {
        k: tiles[k]
        for k in (
            "arrivals",
            "admitted",
            "referred",
            "referral_rate",
            "discharged",
            "in_building",
            "room_occupancy",
        )
    }
    figures["duration_s"] = end / 1000
    figures["ticks"] = projection.ticks
    for role in ROLES:
        figures[f"wait_mean_s.{role}"] = tiles["wait_mean_s"][role]
        figures[f"utilisation.{role}"] = tiles["utilisation"][role]
    return RunData(label, projection, dict(meta or {}), exact, figures)


def from_files(
    decisions: Path,
    config: Any,
    events: Path | None = None,
    duration_ms: int | None = None,
    label: str | None = None,
) -> RunData:
    """A run from its decisions file (`--out`) and, if given, its event log (`--record`)."""
    with open(decisions, encoding="utf-8") as stream:
        batches = group_ticks([parse(line) for line in stream if line.strip()])
    inbound: dict[int, list] | None = None
    if events is not None:
        inbound = defaultdict(list)
        with open(events, encoding="utf-8") as stream:
            for line in stream:
                if line.strip():
                    data = json.loads(line)
                    if data.get("type") == jsonl.HEADER:  # the run's config, not an event
                        continue
                    inbound[data["tick"]].append(parse(line))
    ticks = [
        (t, ms, ds, None if inbound is None else inbound.pop(t, []), None) for t, ms, ds in batches
    ]
    meta = {"decisions": decisions.name, "policy": config.scheduler.policy}
    if events is not None:
        meta["events"] = events.name
    return build(
        label or decisions.stem, ticks, config, duration_ms, meta, exact=events is not None
    )


# --- the plots -------------------------------------------------------------------------


def _layout(fig: go.Figure, title: str, x: str = "hour", y: str = "") -> go.Figure:
    fig.update_layout(
        title={"text": title, "x": 0.01},
        template="plotly_white",
        margin={"l": 50, "r": 20, "t": 60, "b": 45},
        height=340,
        legend={"orientation": "h", "x": 0, "y": 1.1},
        xaxis_title=x,
        yaxis_title=y,
    )
    return fig


def plot_hourly(run: RunData) -> go.Figure:
    hourly = sorted(run.projection.hourly.items())
    hours = [h for h, _ in hourly]
    fig = go.Figure(
        [
            go.Bar(x=hours, y=[c[key] for _, c in hourly], name=key)
            for key in ("arrivals", "admitted", "referred")
        ]
    )
    return _layout(
        fig, "Arrivals, admissions and referrals per hour", "hour of the run", "patients"
    )


def plot_occupancy(run: RunData) -> go.Figure:
    p = run.projection
    rooms = len(p.rooms) or 1
    fig = go.Figure(
        go.Scatter(
            x=[pt["t"] / 3600 for pt in p.series],
            y=[pt["occupied"] / rooms for pt in p.series],
            mode="lines",
            name="occupied",
            line={"shape": "hv"},
        )
    )
    fig.update_yaxes(tickformat=".0%", range=[0, 1.05])
    return _layout(
        fig, "Room occupancy (rooms with a patient, each minute)", "hour", "share of rooms"
    )


def plot_waiting(run: RunData) -> go.Figure:
    p = run.projection
    t = [pt["t"] / 3600 for pt in p.series]
    fig = go.Figure(
        [
            go.Scatter(
                x=t,
                y=[pt["waiting"][role] for pt in p.series],
                name=role,
                mode="lines",
                line={"shape": "hv", "color": COLOURS[role]},
            )
            for role in ROLES
        ]
    )
    return _layout(fig, "Waiting-list length per role (each minute)", "hour", "tasks waiting")


def plot_waits(run: RunData) -> go.Figure:
    fig = go.Figure()
    for role in ROLES:
        counts = sorted(run.projection.waits_ms[role].items())
        fig.add_trace(
            go.Bar(
                x=[ms / 1000 for ms, _ in counts],
                y=[n for _, n in counts],
                name=role,
                marker_color=COLOURS[role],
            )
        )
    fig.update_layout(barmode="group")
    fig.update_yaxes(type="log", dtick=1)
    return _layout(
        fig, "Wait distribution per role (creation to dispatch)", "wait (s)", "tasks (log scale)"
    )


def plot_utilisation(run: RunData) -> go.Figure:
    p = run.projection
    seconds = (p.time_ms / 1000) or 1.0
    busy: dict[str, float] = defaultdict(float)
    for staff_id, _, _, start, end in p.staff_log:
        busy[staff_id] += (end - start) / 1000
    for task in p.tasks.values():  # still at work when the run stopped
        if task.staff_id is not None and task.dispatched_ms is not None:
            busy[task.staff_id] += (p.time_ms - task.dispatched_ms) / 1000
    staff = list(p.staff.values())
    fig = go.Figure(
        go.Bar(
            x=[s.staff_id for s in staff],
            y=[busy[s.staff_id] / seconds for s in staff],
            marker_color=[COLOURS.get(s.role, "#888") for s in staff],
            hovertext=[s.role for s in staff],
        )
    )
    fig.update_yaxes(tickformat=".0%", range=[0, 1.05])
    return _layout(fig, "Staff utilisation (share of the run on a task)", "", "busy")


def plot_timeline(run: RunData) -> go.Figure:
    p = run.projection
    log = sorted(p.staff_log, key=lambda row: row[3])[:TIMELINE_TASKS]
    order = {s: n for n, s in enumerate(p.staff)}
    fig = go.Figure()
    for kind, colour in KIND_COLOURS.items():
        rows = [r for r in log if r[1] == kind]
        if not rows:
            continue
        fig.add_trace(
            go.Bar(
                base=[r[3] / 3_600_000 for r in rows],
                x=[(r[4] - r[3]) / 3_600_000 for r in rows],
                y=[r[0] for r in rows],
                orientation="h",
                name=kind,
                marker_color=colour,
                hovertext=[
                    f"{r[0]}: {kind} {r[2]}, {r[3] / 1000:.0f}-{r[4] / 1000:.0f} s" for r in rows
                ],
                hoverinfo="text",
            )
        )
    shown = f" (the first {len(log)} tasks)" if len(p.staff_log) > len(log) else ""
    fig.update_layout(barmode="overlay", bargap=0.2)
    fig.update_yaxes(
        categoryorder="array", categoryarray=sorted(order, key=order.__getitem__, reverse=True)
    )
    _layout(fig, f"Staff timeline: who did what, when{shown}", "hour", "")
    fig.update_layout(height=max(340, 22 * len(order) + 120))
    return fig


def plot_by_hour(runs: list[RunData]) -> go.Figure:
    """Referral rate and mean waits by hour of the simulated day (days pooled), every run
    on the same axes: solid for the first, dashed for the second."""
    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.08,
        subplot_titles=("referral rate", "mean wait of the tasks created in the hour"),
    )
    for n, run in enumerate(runs):
        with run.projection.lock:
            hours = run.projection.by_hour()
        x = [h["hour"] for h in hours]
        label = f"{run.label}: " if len(runs) > 1 else ""
        dash = "solid" if n == 0 else "dash"
        fig.add_trace(
            go.Scatter(
                x=x,
                y=[h["referral_rate"] for h in hours],
                name=f"{label}referral rate",
                mode="lines+markers",
                line={"color": "#c62828", "dash": dash},
            ),
            row=1,
            col=1,
        )
        for role in ROLES:
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=[h["wait_s"][role]["mean"] for h in hours],
                    name=f"{label}{role} wait",
                    mode="lines+markers",
                    line={"color": COLOURS[role], "dash": dash},
                ),
                row=2,
                col=1,
            )
    fig.update_yaxes(tickformat=".0%", rangemode="tozero", row=1, col=1)
    fig.update_yaxes(title_text="s", rangemode="tozero", row=2, col=1)
    fig.update_xaxes(range=[-0.5, 23.5], dtick=1, row=2, col=1)
    title = "By hour of the simulated day (days pooled)"
    if len(runs) > 1:
        title += ": " + " solid, ".join(r.label for r in runs) + " dashed"
    _layout(fig, title, "", "")
    fig.update_xaxes(title_text="hour of day", row=2, col=1)
    fig.update_layout(
        height=600,
        margin={"b": 110},
        legend={"orientation": "h", "x": 0, "y": -0.12, "yanchor": "top"},
    )
    return fig


PLOTS = (plot_hourly, plot_occupancy, plot_waiting, plot_waits, plot_utilisation, plot_timeline)
# Plots of every run at once, on the same axes (after the first of PLOTS).
COMBINED_PLOTS = (plot_by_hour,)

# --- the page --------------------------------------------------------------------------

FIGURE_NAMES = {
    "duration_s": "simulated time (s)",
    "arrivals": "arrivals",
    "admitted": "admitted",
    "referred": "referred",
    "referral_rate": "referral rate",
    "discharged": "discharged",
    "in_building": "in rooms at the end",
    "room_occupancy": "room occupancy",
    "ticks": "ticks",
    **{f"wait_mean_s.{r}": f"{r} wait, mean (s)" for r in ROLES},
    **{f"utilisation.{r}": f"{r} utilisation" for r in ROLES},
}

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 0; color: #1d2330; background: #f4f5f7; }
header { background: #1d2330; color: #fff; padding: .8em 1.2em; }
header h1 { margin: 0 0 .2em; font-size: 1.4em; }
main { padding: .8em 1.2em; }
section { background: #fff; border-radius: 6px; padding: .6em 1em; margin-bottom: .8em;
          box-shadow: 0 1px 2px #0002; }
table { border-collapse: collapse; }
th, td { padding: 2px 10px; border-bottom: 1px solid #eee; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.meta td { text-align: left; }
.grid { display: grid; grid-template-columns: repeat(var(--cols), minmax(0, 1fr)); gap: .8em; }
.note { color: #5b6475; font-size: .9em; }
.better { color: #2e7d32; } .worse { color: #c62828; }
"""

LOWER_IS_BETTER = {"referred", "referral_rate", *(f"wait_mean_s.{r}" for r in ROLES)}


def _value(key: str, value: Any) -> str:
    if isinstance(value, float) and (
        key.endswith("rate") or key.startswith("utilisation") or key == "room_occupancy"
    ):
        return f"{value:.2%}"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def figures_table(runs: list[RunData]) -> str:
    head = "".join(f"<th>{html.escape(r.label)}</th>" for r in runs)
    if len(runs) == 2:
        head += "<th>difference</th>"
    rows = []
    for key, name in FIGURE_NAMES.items():
        values: list[Any] = [r.figures.get(key) for r in runs]
        cells = "".join(f'<td data-figure="{key}">{_value(key, v)}</td>' for v in values)
        if len(runs) == 2 and all(isinstance(v, (int, float)) for v in values):
            diff = values[1] - values[0]
            better = (diff < 0) == (key in LOWER_IS_BETTER) if diff else None
            css = (
                ""
                if better is None or key not in LOWER_IS_BETTER
                else ("better" if better else "worse")
            )
            shown = f"{diff:+.2%}" if "%" in _value(key, 0.5) else f"{diff:+g}"
            cells += f'<td class="{css}">{shown}</td>'
        rows.append(f"<tr><td>{html.escape(name)}</td>{cells}</tr>")
    return f"<table class='figures'><tr><th>figure</th>{head}</tr>{''.join(rows)}</table>"


def meta_table(run: RunData) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>"
        for k, v in run.meta.items()
        if k != "config"
    )
    exact = (
        "Figures computed from the decisions and the events the scheduler applied: "
        "they are the run's KPI report."
        if run.exact
        else "Figures computed from the decisions alone: counts are exact; waits run from the "
        "tick that listed a task, occupancy and utilisation from tick to tick."
    )
    return (
        f"<h3>{html.escape(run.label)}</h3><table class='meta'>{rows}</table>"
        f"<p class='note'>{exact}</p>"
    )


def _combined(plot: Any, runs: list[RunData]) -> str:
    """A plot of every run at once, the page's width (its div: `plot-<name>`)."""
    name = plot.__name__.removeprefix("plot_").replace("_", "-")
    div = pio.to_html(
        plot(runs),
        include_plotlyjs=False,
        full_html=False,
        div_id=f"plot-{name}",
        config={"displaylogo": False, "toImageButtonOptions": {"format": "png"}},
    )
    return f"<section class='plot'>{div}</section>"


def render(runs: list[RunData], title: str | None = None) -> str:
    """The report as one HTML document: plotly.js inline, every plot a div."""
    cols = len(runs)
    title = title or (
        "Run " + runs[0].label if cols == 1 else f"{runs[0].label} against {runs[1].label}"
    )
    parts = [
        f"<section><h2>Figures</h2>{figures_table(runs)}</section>",
        f"<section><h2>Runs</h2><div class='grid' style='--cols:{cols}'>"
        + "".join(f"<div>{meta_table(r)}</div>" for r in runs)
        + "</div></section>",
    ]
    for n, plot in enumerate(PLOTS):
        cells = []
        for k, run in enumerate(runs):
            fig = plot(run)
            if cols > 1:
                fig.update_layout(title={"text": f"{run.label}: {fig.layout.title.text}"})
            cells.append(
                pio.to_html(
                    fig,
                    include_plotlyjs=False,
                    full_html=False,
                    div_id=f"plot-{n}-{k}",
                    config={"displaylogo": False, "toImageButtonOptions": {"format": "png"}},
                )
            )
        parts.append(
            f"<section class='plot grid' style='--cols:{cols}'>"
            + "".join(f"<div>{c}</div>" for c in cells)
            + "</section>"
        )
        if n == 0:
            parts += [_combined(plot, runs) for plot in COMBINED_PLOTS]
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{STYLE}</style>"
        f"<script>{get_plotlyjs()}</script></head><body>"
        f"<header><h1>hospital report</h1>{html.escape(title)}</header>"
        f"<main>{''.join(parts)}</main></body></html>"
    )
