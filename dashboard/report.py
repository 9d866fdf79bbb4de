"""`hospital report`: a run as one self-contained HTML file with plots (plotly, its JS
inline, so the file opens anywhere without a network), from the run's decisions (a JSONL
file, or a run kept in the database) — and with the events the scheduler applied, when at
hand, so that every figure is the KPI report's own (`scheduler.kpi`, a warm-up left out if
asked). `--compare` adds a second run: each plot shows both runs on the same axes (the
second dashed, or beside the first), the figures their differences, in percentage points
where the figures are shares.

A decisions file's run is told by its event log's header (`hospital run --record`): its
config (and so its rooms, staff and policy), its length and its label.

Each plot keeps plotly's own toolbar, whose camera button saves it as a PNG; it stands
upright at the plot's right edge, clear of the title.
"""

from __future__ import annotations

import html
import json
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from dashboard.projection import ROLES, ROOM_STATES, Projection
from dashboard.sources import group_ticks, parse
from scheduler import jsonl
from scheduler.kpi import histogram_percentile

COLOURS = {"porter": "#1f77b4", "medical": "#ff7f0e", "cleaner": "#2ca02c"}
KIND_COLOURS = {
    "escort_in": "#1f77b4",
    "escort_out": "#9ecae1",
    "visit": "#ff7f0e",
    "clean": "#2ca02c",
}
STATE_COLOURS = {  # the dashboard's
    "free": "#2e7d32",
    "booked": "#f9a825",
    "occupied": "#0288d1",
    "dirty": "#c62828",
    "cleaning": "#8e24aa",
}
STATE_NAMES = {"dirty": "dirty, awaiting a cleaner", "cleaning": "being cleaned"}
RUN_DASHES = ("solid", "dash")  # the first run's lines, the second's
RUN_PATTERNS = ("", "/")  # and bars
TIMELINE_TASKS = 4000  # the staff timeline shows at most this many tasks (the first)
WAIT_BINS = 30  # about this many bins up to the 99th percentile of the waits
PLOT_CONFIG = {"displaylogo": False, "toImageButtonOptions": {"format": "png"}}


@dataclass
class RunData:
    """One run as the report sees it: where it came from, its projection, its figures."""

    label: str
    projection: Projection
    meta: dict[str, Any] = field(default_factory=dict)
    exact: bool = False  # the events were at hand: figures are the KPI report's
    figures: dict[str, Any] = field(default_factory=dict)
    kpi: dict[str, Any] | None = None  # the KPI report, when the events were at hand
    # each role's waits (ms -> tasks) as the figures count them: the KPI collector's (a
    # warm-up left out) when the events were at hand, else the projection's
    waits_ms: dict[str, dict[int, int]] = field(default_factory=dict)
    warmup_ms: int = 0


def build(
    label: str,
    ticks: Iterable[tuple[int, int, list, list | None, float | None]],
    config: Any,
    duration_ms: int | None = None,
    meta: dict[str, Any] | None = None,
    exact: bool = False,
    warmup_ms: int = 0,
) -> RunData:
    """Feed a run's ticks (tick, time_ms, decisions, inbound or None, solve_ms or None): to
    the projection for the plots and, with the events (`exact`), to the run's own KPI
    collector for the figures, which then leave out the first `warmup_ms`."""
    from scheduler.engine import TickResult
    from scheduler.runs import new_kpi

    if warmup_ms and not exact:
        raise ValueError("a warm-up needs the run's events")
    projection = Projection.for_config(config, sample_ms=60_000)
    projection.keep_staff_log = True
    kpi = new_kpi(config, warmup_ms) if exact else None
    for tick, time_ms, decisions, inbound, solve_ms in ticks:
        projection.apply(tick, time_ms, decisions, inbound, solve_ms=solve_ms)
        if kpi is not None:
            solved = bool(solve_ms)
            result = TickResult(tick, time_ms, inbound or [], decisions, solved=solved)
            result.solve_ms = solve_ms or 0.0
            kpi.collect(result)
    end = max(duration_ms or 0, projection.time_ms)
    projection.finish(end)
    run = RunData(label, projection, dict(meta or {}), exact, warmup_ms=warmup_ms)
    if kpi is not None:
        run.kpi = kpi.report(end)
        run.waits_ms = {role: dict(kpi.waits_ms[role]) for role in ROLES}
    else:
        run.waits_ms = {role: dict(projection.waits_ms[role]) for role in ROLES}
    run.figures = figures_of(run, config, end, warmup_ms)
    return run


def figures_of(run: RunData, config: Any, end_ms: int, warmup_ms: int) -> dict[str, Any]:
    """The figures table's values: the KPI report's when there is one, else what the
    decisions alone tell (counts exact; waits from the tick that listed a task, occupancy
    and the rooms' states from tick to tick); the capacity bound of the run's hospital."""
    from scheduler.capacity import run_bound

    p = run.projection
    with p.lock:
        tiles = p.tiles()
    kpi = run.kpi
    out: dict[str, Any] = {"duration_s": end_ms / 1000}
    if warmup_ms:
        out["warmup_s"] = warmup_ms / 1000
    counted = (
        "arrivals",
        "admitted",
        "referred",
        "referral_rate",
        "discharged",
        "in_building",
        "room_occupancy",
    )
    for key in counted:
        out[key] = kpi[key] if kpi is not None else tiles[key]
    states = kpi["room_states"] if kpi is not None else sampled_room_states(p)
    for state in ROOM_STATES:
        out[f"rooms.{state}"] = states.get(state, 0.0)
    for role in ROLES:
        if kpi is not None:
            out[f"wait_mean_s.{role}"] = kpi["wait_s"][role]["mean"]
            out[f"wait_p95_s.{role}"] = kpi["wait_s"][role]["p95"]
            out[f"utilisation.{role}"] = kpi["utilisation"][role]
        else:
            waits = run.waits_ms[role]
            out[f"wait_mean_s.{role}"] = tiles["wait_mean_s"][role]
            out[f"wait_p95_s.{role}"] = histogram_percentile(waits, sum(waits.values()), 95) / 1000
            out[f"utilisation.{role}"] = tiles["utilisation"][role]
    out["sla_breaches"] = (
        sum(kpi["sla_breaches"].values()) if kpi is not None else tiles["sla_breaches"]
    )
    bound = run_bound(config, end_ms, warmup_ms)
    out["capacity"] = bound["min_referral_rate"]
    out["bottleneck"] = bound["bottleneck"]
    out["ticks"] = kpi["ticks"] if kpi is not None else p.ticks
    return out


def sampled_room_states(p: Projection) -> dict[str, float]:
    """The share of the rooms' time in each state, from the time series' points (each
    minute): what a report of the decisions alone can tell."""
    points = [pt["rooms"] for pt in p.series if "rooms" in pt]
    rooms = len(p.rooms) or 1
    if not points:
        return {}
    return {
        state: round(sum(pt.get(state, 0) for pt in points) / (rooms * len(points)), 4)
        for state in ROOM_STATES
    }


def from_files(
    decisions: Path,
    config: Any,
    events: Path | None = None,
    duration_ms: int | None = None,
    label: str | None = None,
    warmup_ms: int = 0,
) -> RunData:
    """A run from its decisions file (`--out`) and, if given, its event log (`--record`),
    whose header, when it has one, says the run's config, length and label (over `config`,
    `duration_ms` and the file's name)."""
    with open(decisions, encoding="utf-8") as stream:
        batches = group_ticks([parse(line) for line in stream if line.strip()])
    inbound: dict[int, list] | None = None
    header = jsonl.header(events) if events is not None else None
    if events is not None:
        inbound = defaultdict(list)
        with open(events, encoding="utf-8-sig") as stream:
            for line in stream:
                if line.strip():
                    data = json.loads(line)
                    if data.get("type") == jsonl.HEADER:  # the run's config, not an event
                        continue
                    inbound[data["tick"]].append(parse(line))
    if header is not None:
        config = header_config(header, config)
        if duration_ms is None and isinstance(header.get("duration_s"), (int, float)):
            duration_ms = round(header["duration_s"] * 1000)
        label = label or header.get("label")
    ticks = [
        (t, ms, ds, None if inbound is None else inbound.pop(t, []), None) for t, ms, ds in batches
    ]
    meta: dict[str, Any] = {"decisions": decisions.name, "policy": config.scheduler.policy}
    if events is not None:
        meta["events"] = events.name
    if header is not None:
        meta["seed"] = header.get("seed")
    return build(
        label or decisions.stem,
        ticks,
        config,
        duration_ms,
        meta,
        exact=events is not None,
        warmup_ms=warmup_ms,
    )


def header_config(header: dict[str, Any], fallback: Any) -> Any:
    """The config a log's header holds (that of the run), or `fallback` if it holds none."""
    from scheduler import config as config_module

    if not isinstance(header.get("config"), dict):
        return fallback
    return config_module.from_mapping(header["config"], {})


# --- the plots -------------------------------------------------------------------------


def layout(fig: go.Figure, title: str, x: str = "hour", y: str = "") -> go.Figure:
    fig.update_layout(
        title={"text": title, "x": 0.01},
        template="plotly_white",
        # room on the right for the toolbar, upright there: it covers no title
        margin={"l": 55, "r": 50, "t": 70, "b": 45},
        modebar={"orientation": "v"},
        height=360,
        legend={"orientation": "h", "x": 0, "y": 1.02, "yanchor": "bottom"},
        xaxis_title=x,
        yaxis_title=y,
    )
    return fig


def _shade_warmup(fig: go.Figure, runs: list[RunData]) -> go.Figure:
    return shade_warmup(fig, max((run.warmup_ms for run in runs), default=0))


def shade_warmup(fig: go.Figure, warmup_ms: int) -> go.Figure:
    """A plot over the run's time (in hours): its warm-up, left out of the figures, shaded."""
    if warmup_ms:
        fig.add_vrect(
            x0=0,
            x1=warmup_ms / 3_600_000,
            fillcolor="#90a4ae",
            opacity=0.15,
            line_width=0,
            annotation_text="warm-up, left out of the figures",
            annotation_position="top left",
            annotation_font_size=10,
        )
    return fig


def _names(runs: list[RunData]) -> list[str]:
    """Each run's prefix in a legend: none for a report of one run."""
    return [f"{r.label}: " if len(runs) > 1 else "" for r in runs]


def _both(runs: list[RunData], title: str) -> str:
    if len(runs) < 2:
        return title
    return f"{title} ({runs[0].label} solid, {runs[1].label} dashed)"


def plot_hourly(runs: list[RunData]) -> go.Figure:
    """Admissions and referrals per hour of the run, stacked; two runs side by side."""
    fig = go.Figure()
    for n, (run, name) in enumerate(zip(runs, _names(runs))):
        hourly = sorted(run.projection.hourly.items())
        hours = [h for h, _ in hourly]
        admitted = [c["admitted"] for _, c in hourly]
        for key, colour, base in (
            ("admitted", "#0288d1", None),
            ("referred", "#c62828", admitted),
        ):
            fig.add_trace(
                go.Bar(
                    x=hours,
                    y=[c[key] for _, c in hourly],
                    base=base,
                    name=f"{name}{key}",
                    offsetgroup=str(n),
                    marker={"color": colour, "pattern": {"shape": RUN_PATTERNS[n]}},
                )
            )
    fig.update_layout(barmode="group")
    title = "Admissions and referrals per hour"
    if len(runs) > 1:
        title += f" ({runs[0].label} plain, {runs[1].label} hatched)"
    return layout(fig, title, "hour of the run", "patients")


def plot_occupancy(runs: list[RunData]) -> go.Figure:
    fig = go.Figure()
    for n, (run, name) in enumerate(zip(runs, _names(runs))):
        p = run.projection
        rooms = len(p.rooms) or 1
        fig.add_trace(
            go.Scatter(
                x=[pt["t"] / 3600 for pt in p.series],
                y=[pt["occupied"] / rooms for pt in p.series],
                mode="lines",
                name=f"{name}occupied",
                line={"shape": "hv", "dash": RUN_DASHES[n], "color": "#0288d1"},
            )
        )
    fig.update_yaxes(tickformat=".0%", range=[0, 1.05])
    title = _both(runs, "Room occupancy (rooms with a patient, each minute)")
    return _shade_warmup(layout(fig, title, "hour", "share of rooms"), runs)


def plot_room_states(runs: list[RunData]) -> go.Figure:
    """The share of the rooms' time in each state; two runs side by side. A bottleneck of
    cleaners shows as rooms dirty, awaiting a cleaner."""
    fig = go.Figure()
    for n, run in enumerate(runs):
        shares = [run.figures.get(f"rooms.{state}", 0.0) for state in ROOM_STATES]
        fig.add_trace(
            go.Bar(
                x=[STATE_NAMES.get(state, state) for state in ROOM_STATES],
                y=shares,
                name=run.label,
                marker={
                    "color": [STATE_COLOURS[state] for state in ROOM_STATES],
                    "pattern": {"shape": RUN_PATTERNS[n]},
                },
                text=[f"{share:.1%}" for share in shares],
                textposition="outside",
            )
        )
    fig.update_layout(barmode="group", showlegend=len(runs) > 1)
    fig.update_yaxes(tickformat=".0%", rangemode="tozero")
    title = "Time the rooms spent in each state"
    if len(runs) > 1:
        title += f" ({runs[0].label} plain, {runs[1].label} hatched)"
    return layout(fig, title, "", "share of the rooms' time")


def plot_rooms_over_time(run: RunData) -> go.Figure:
    """How many rooms are in each state, each minute, stacked: one run's."""
    p = run.projection
    points = [pt for pt in p.series if "rooms" in pt]
    fig = go.Figure(
        [
            go.Scatter(
                x=[pt["t"] / 3600 for pt in points],
                y=[pt["rooms"].get(state, 0) for pt in points],
                name=STATE_NAMES.get(state, state),
                mode="lines",
                stackgroup="rooms",
                line={"shape": "hv", "width": 0, "color": STATE_COLOURS[state]},
            )
            for state in ROOM_STATES
        ]
    )
    prefix = f"{run.label}: " if run.meta.get("compared") else ""
    layout(fig, f"{prefix}Rooms in each state (each minute)", "hour", "rooms")
    return _shade_warmup(fig, [run])


def plot_waiting(runs: list[RunData]) -> go.Figure:
    fig = go.Figure()
    for n, (run, name) in enumerate(zip(runs, _names(runs))):
        p = run.projection
        t = [pt["t"] / 3600 for pt in p.series]
        for role in ROLES:
            fig.add_trace(
                go.Scatter(
                    x=t,
                    y=[pt["waiting"][role] for pt in p.series],
                    name=f"{name}{role}",
                    mode="lines",
                    line={"shape": "hv", "color": COLOURS[role], "dash": RUN_DASHES[n]},
                )
            )
    title = _both(runs, "Waiting-list length per role (each minute)")
    return _shade_warmup(layout(fig, title, "hour", "tasks waiting"), runs)


def nice_width(span: float) -> float:
    """The bin width of 1, 2 or 5 times a power of ten nearest above `span`."""
    if span <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(span))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= span)


def wait_bins(waits_ms: dict[int, int]) -> tuple[float, int]:
    """Bins for waits (wait in ms -> tasks): a round width in seconds, about WAIT_BINS of
    them up to the 99th percentile, and the number of the last one, which holds every
    longer wait."""
    total = sum(waits_ms.values())
    top = histogram_percentile(waits_ms, total, 99) / 1000 if total else 0.0
    width = nice_width(top / WAIT_BINS) if top > 0 else 1.0
    return width, max(1, math.ceil(top / width))


def binned(waits_ms: dict[int, int], width: float, last: int) -> list[int]:
    """How many waits fall in each bin of `width` seconds, bin `last` holding the rest."""
    counts = [0] * (last + 1)
    for wait, n in waits_ms.items():
        counts[min(int(wait / 1000 // width), last)] += n
    return counts


def plot_waits(runs: list[RunData]) -> go.Figure:
    """Each role's waits (creation to dispatch) in bins of a round width, the tasks on a
    linear scale; the median (dotted) and the 95th percentile (dashed) marked. Two runs are
    drawn over one another, in the same bins."""
    fig = make_subplots(rows=1, cols=len(ROLES), subplot_titles=[f"{r} wait" for r in ROLES])
    for column, role in enumerate(ROLES, start=1):
        merged: dict[int, int] = defaultdict(int)
        for run in runs:
            for wait, n in run.waits_ms[role].items():
                merged[wait] += n
        width, top_bin = wait_bins(merged)  # the same bins for both runs
        for n, (run, name) in enumerate(zip(runs, _names(runs))):
            waits = run.waits_ms[role]
            counts = binned(waits, width, top_bin)
            fig.add_trace(
                go.Bar(
                    x=[(k + 0.5) * width for k in range(len(counts))],
                    y=counts,
                    width=width,
                    name=f"{name}{role}",
                    marker={"color": COLOURS[role], "pattern": {"shape": RUN_PATTERNS[n]}},
                    opacity=0.85 if len(runs) == 1 else 0.55,
                    hovertext=[
                        f"{k * width:g}-{(k + 1) * width:g} s: {c} tasks"
                        if k < top_bin
                        else f"{k * width:g} s or more: {c} tasks"
                        for k, c in enumerate(counts)
                    ],
                    hoverinfo="text",
                    showlegend=len(runs) > 1,
                ),
                row=1,
                col=column,
            )
            mark_percentiles(fig, waits, column, n, run.label if len(runs) > 1 else "")
        fig.update_xaxes(title_text="wait (s)", rangemode="tozero", row=1, col=column)
    fig.update_yaxes(title_text="tasks", row=1, col=1)
    fig.update_layout(barmode="overlay", bargap=0)
    title = "Waits per role, creation to dispatch (dotted: median, dashed: 95th percentile)"
    if len(runs) > 1:
        title += f"; {runs[1].label} hatched"
    layout(fig, title, "", "")
    fig.update_layout(  # the legend under the plots: above, the roles' titles and the marks
        height=400,
        margin={"t": 80, "b": 90},
        legend={"orientation": "h", "x": 0, "y": -0.22, "yanchor": "top"},
    )
    return fig


MARK_COLOURS = ("#1d2330", "#6a1b9a")  # the percentiles' marks of the first run, the second


def mark_percentiles(
    fig: go.Figure, waits_ms: dict[int, int], column: int, n: int, label: str
) -> None:
    """The median (dotted) and 95th percentile (dashed) of run `n`'s waits on the subplot of
    `column`: a line across it, its value written at its top (the second run's lower down,
    so that the two runs' marks do not cover one another)."""
    total = sum(waits_ms.values())
    axis = "" if column == 1 else str(column)
    for k, (q, dash) in enumerate(((50, "dot"), (95, "dash"))):
        value = histogram_percentile(waits_ms, total, q) / 1000 if total else 0.0
        colour = MARK_COLOURS[n]
        fig.add_shape(
            type="line",
            x0=value,
            x1=value,
            y0=0,
            y1=1,
            xref=f"x{axis}",
            yref=f"y{axis} domain",
            line={"dash": dash, "color": colour, "width": 1.5},
            name=f"p{q}",
        )
        fig.add_annotation(
            x=value,
            y=0.97 - 0.09 * (2 * n + k),
            xref=f"x{axis}",
            yref=f"y{axis} domain",
            text=f"{label + ' ' if label else ''}p{q} {value:.3g} s",
            showarrow=False,
            xanchor="left",
            font={"size": 10, "color": colour},
            bgcolor="rgba(255,255,255,0.7)",
        )


def plot_utilisation(runs: list[RunData]) -> go.Figure:
    fig = go.Figure()
    for n, run in enumerate(runs):
        p = run.projection
        seconds = (p.time_ms / 1000) or 1.0
        busy: dict[str, float] = defaultdict(float)
        for staff_id, _, _, start, end in p.staff_log:
            busy[staff_id] += (end - start) / 1000
        for task in p.tasks.values():  # still at work when the run stopped
            if task.staff_id is not None and task.dispatched_ms is not None:
                busy[task.staff_id] += (p.time_ms - task.dispatched_ms) / 1000
        staff = list(p.staff.values())
        fig.add_trace(
            go.Bar(
                x=[s.staff_id for s in staff],
                y=[busy[s.staff_id] / seconds for s in staff],
                name=run.label,
                marker={
                    "color": [COLOURS.get(s.role, "#888") for s in staff],
                    "pattern": {"shape": RUN_PATTERNS[n]},
                },
                hovertext=[s.role for s in staff],
            )
        )
    fig.update_layout(barmode="group", showlegend=len(runs) > 1)
    fig.update_yaxes(tickformat=".0%", range=[0, 1.05])
    title = "Staff utilisation (share of the run on a task)"
    if len(runs) > 1:
        title += f" ({runs[0].label} plain, {runs[1].label} hatched)"
    return layout(fig, title, "", "busy")


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
    prefix = f"{run.label}: " if run.meta.get("compared") else ""
    layout(fig, f"{prefix}Staff timeline: who did what, when{shown}", "hour", "")
    fig.update_layout(height=max(360, 22 * len(order) + 120))
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
    for n, (run, label) in enumerate(zip(runs, _names(runs))):
        hours = by_hour(run)
        x = [h["hour"] for h in hours]
        dash = RUN_DASHES[n]
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
    layout(fig, _both(runs, "By hour of the simulated day (days pooled)"), "", "")
    fig.update_xaxes(title_text="hour of day", row=2, col=1)
    fig.update_layout(
        height=600,
        margin={"b": 110},
        legend={"orientation": "h", "x": 0, "y": -0.12, "yanchor": "top"},
    )
    return fig


def by_hour(run: RunData) -> list[dict[str, Any]]:
    """The run's figures by hour of the day: the KPI report's (a warm-up left out), or the
    projection's."""
    if run.kpi is not None:
        return run.kpi["by_hour"]
    with run.projection.lock:
        return run.projection.by_hour()


# Plots of every run at once, on the same axes; then each run's own, one after another.
PLOTS = (
    plot_hourly,
    plot_by_hour,
    plot_room_states,
    plot_occupancy,
    plot_waiting,
    plot_waits,
    plot_utilisation,
)
RUN_PLOTS = (plot_rooms_over_time, plot_timeline)

# --- the page --------------------------------------------------------------------------

FIGURE_NAMES = {
    "duration_s": "simulated time (s)",
    "warmup_s": "warm-up left out (s)",
    "arrivals": "arrivals",
    "admitted": "admitted",
    "referred": "referred",
    "referral_rate": "referral rate",
    "capacity": "capacity bound (referred at least)",
    "bottleneck": "bottleneck",
    "discharged": "discharged",
    "in_building": "in rooms at the end",
    "room_occupancy": "room occupancy",
    **{f"rooms.{s}": f"rooms {STATE_NAMES.get(s, s)} (time)" for s in ROOM_STATES},
    **{f"wait_mean_s.{r}": f"{r} wait, mean (s)" for r in ROLES},
    **{f"wait_p95_s.{r}": f"{r} wait, p95 (s)" for r in ROLES},
    **{f"utilisation.{r}": f"{r} utilisation" for r in ROLES},
    "sla_breaches": "tasks past their target wait",
    "ticks": "ticks",
}
# Figures that are shares: shown as percentages, their differences in percentage points.
SHARES = {
    "referral_rate",
    "capacity",
    "room_occupancy",
    *(f"rooms.{s}" for s in ROOM_STATES),
    *(f"utilisation.{r}" for r in ROLES),
}
LOWER_IS_BETTER = {
    "referred",
    "referral_rate",
    "sla_breaches",
    *(f"wait_mean_s.{r}" for r in ROLES),
    *(f"wait_p95_s.{r}" for r in ROLES),
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


def _value(key: str, value: Any) -> str:
    if value is None:
        return ""
    if key in SHARES and isinstance(value, (int, float)):
        return f"{value:.2%}"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _difference(key: str, diff: float) -> str:
    """A difference as the figure's own unit: percentage points for a share."""
    if key in SHARES:
        points = diff * 100
        return "0 points" if round(points, 2) == 0 else f"{points:+.2f} points"
    return f"{diff:+g}"


def figures_table(runs: list[RunData]) -> str:
    head = "".join(f"<th>{html.escape(r.label)}</th>" for r in runs)
    if len(runs) == 2:
        head += "<th>difference</th>"
    rows = []
    for key, name in FIGURE_NAMES.items():
        values: list[Any] = [r.figures.get(key) for r in runs]
        if all(v is None for v in values):
            continue
        cells = "".join(
            f'<td data-figure="{key}">{html.escape(_value(key, v))}</td>' for v in values
        )
        numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if len(runs) == 2 and len(numbers) == 2:
            diff = numbers[1] - numbers[0]
            better = (diff < 0) == (key in LOWER_IS_BETTER) if diff else None
            css = (
                ""
                if better is None or key not in LOWER_IS_BETTER
                else ("better" if better else "worse")
            )
            cells += f'<td class="{css}" data-difference="{key}">{_difference(key, diff)}</td>'
        elif len(runs) == 2:
            cells += "<td></td>"
        rows.append(f"<tr><td>{html.escape(name)}</td>{cells}</tr>")
    return f"<table class='figures'><tr><th>figure</th>{head}</tr>{''.join(rows)}</table>"


def meta_table(run: RunData) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>"
        for k, v in run.meta.items()
        if k not in ("config", "compared")
    )
    exact = (
        "Figures computed from the decisions and the events the scheduler applied: "
        "they are the run's KPI report."
        if run.exact
        else "Figures computed from the decisions alone: counts are exact; waits run from the "
        "tick that listed a task, occupancy and utilisation from tick to tick, the rooms' "
        "states from a point each minute."
    )
    return (
        f"<h3>{html.escape(run.label)}</h3><table class='meta'>{rows}</table>"
        f"<p class='note'>{exact}</p>"
    )


def page(title: str, sections: list[str], heading: str = "hospital report") -> str:
    """A report's HTML document: plotly.js inline, the sections in order."""
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{STYLE}</style>"
        f"<script>{get_plotlyjs()}</script></head><body>"
        f"<header><h1>{html.escape(heading)}</h1>{html.escape(title)}</header>"
        f"<main>{''.join(sections)}</main></body></html>"
    )


def plot_section(fig: go.Figure, div_id: str) -> str:
    div = pio.to_html(
        fig, include_plotlyjs=False, full_html=False, div_id=div_id, config=PLOT_CONFIG
    )
    return f"<section class='plot'>{div}</section>"


def plot_id(plot: Any) -> str:
    return "plot-" + plot.__name__.removeprefix("plot_").replace("_", "-")


def render(runs: list[RunData], title: str | None = None) -> str:
    """The report as one HTML document: plotly.js inline, every plot a div (`plot-<name>`
    for the plots of every run, `plot-<name>-<n>` for the n-th run's own)."""
    cols = len(runs)
    for run in runs:
        run.meta["compared"] = cols > 1
    title = title or (
        "Run " + runs[0].label if cols == 1 else f"{runs[0].label} against {runs[1].label}"
    )
    parts = [
        f"<section><h2>Figures</h2>{figures_table(runs)}</section>",
        f"<section><h2>Runs</h2><div class='grid' style='--cols:{cols}'>"
        + "".join(f"<div>{meta_table(r)}</div>" for r in runs)
        + "</div></section>",
    ]
    parts += [plot_section(plot(runs), plot_id(plot)) for plot in PLOTS]
    parts += [
        plot_section(plot(run), f"{plot_id(plot)}-{n}")
        for plot in RUN_PLOTS
        for n, run in enumerate(runs)
    ]
    return page(title, parts)
