"""`hospital report`: one self-contained HTML file whose figures are the run's KPI report,
with its plots; `--compare` puts two runs side by side with the differences."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from cli.main import app, run_header
from scheduler import config as config_module
from scheduler.runs import simulate_run

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two hours of the default hospital under each policy: decisions, events, KPIs."""
    folder = tmp_path_factory.mktemp("runs")
    out = {}
    for policy in ("cpsat", "greedy"):
        config = config_module.load(None, {}).replace(
            scheduler={"policy": policy}, arrivals={"process": "poisson"}
        )
        files = {"decisions": folder / f"{policy}.jsonl", "events": folder / f"{policy}-ev.jsonl"}
        report = simulate_run(
            config,
            2 * 3600_000,
            record=files["events"],
            out=files["decisions"],
            header=run_header(2 * 3600_000, None),  # as `hospital run --record` writes it
        )
        config_file = folder / f"{policy}.toml"
        config_file.write_text(
            f'[scheduler]\npolicy = "{policy}"\n[arrivals]\nprocess = "poisson"\n'
        )
        out[policy] = {**files, "kpi": report, "config": config_file}
    return out


PLOTS = (
    "plot-hourly",
    "plot-by-hour",
    "plot-room-states",
    "plot-occupancy",
    "plot-waiting",
    "plot-waits",
    "plot-utilisation",
)
RUN_PLOTS = ["plot-rooms-over-time-0", "plot-timeline-0"]


def figures(page: str, column: int = 0) -> dict[str, str]:
    cells: dict[str, list[str]] = {}
    for key, value in re.findall(r'<td data-figure="([^"]+)">([^<]*)</td>', page):
        cells.setdefault(key, []).append(value)
    return {k: v[column] for k, v in cells.items()}


def test_report_figures_are_the_kpi_report(runs, tmp_path):
    run = runs["cpsat"]
    out = tmp_path / "report.html"
    result = CliRunner().invoke(
        app,
        [
            "report",
            str(run["decisions"]),
            "--events",
            str(run["events"]),
            "--duration",
            "2h",
            "--config",
            str(run["config"]),
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    page = out.read_text()
    kpi = run["kpi"]
    shown = figures(page)
    for key in ("arrivals", "admitted", "referred", "discharged", "ticks"):
        assert shown[key] == str(kpi[key]), key
    assert shown["referral_rate"] == f"{kpi['referral_rate']:.2%}"
    assert shown["room_occupancy"] == f"{kpi['room_occupancy']:.2%}"
    for role in ("porter", "medical", "cleaner"):
        assert shown[f"wait_mean_s.{role}"] == f"{kpi['wait_s'][role]['mean']:g}"
        assert shown[f"utilisation.{role}"] == f"{kpi['utilisation'][role]:.2%}"
    # self-contained: plotly.js inline, nothing loaded from anywhere
    assert "<script src=" not in page and "<link" not in page
    assert "Plotly.newPlot" in page
    for plot in PLOTS:
        assert page.count(f'id="{plot}"') == 1, plot
    assert re.findall(r'id="(plot-[a-z-]+-\d)"', page) == RUN_PLOTS
    # the time rooms spent in each state, the capacity bound and its bottleneck
    for state in ("free", "booked", "occupied", "dirty", "cleaning"):
        assert shown[f"rooms.{state}"] == f"{kpi['room_states'][state]:.2%}", state
    assert shown["capacity"] == "17.25%" and shown["bottleneck"] == "cleaner"
    for role in ("porter", "medical", "cleaner"):
        assert shown[f"wait_p95_s.{role}"] == f"{kpi['wait_s'][role]['p95']:g}", role


def test_compare_puts_two_runs_side_by_side(runs, tmp_path):
    a, b = runs["cpsat"], runs["greedy"]
    out = tmp_path / "compare.html"
    result = CliRunner().invoke(
        app,
        [
            "report",
            str(a["decisions"]),
            "--events",
            str(a["events"]),
            "--config",
            str(a["config"]),
            "--compare",
            str(b["decisions"]),
            "--compare-events",
            str(b["events"]),
            "--compare-config",
            str(b["config"]),
            "--duration",
            "2h",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert figures(page, 0)["arrivals"] == str(a["kpi"]["arrivals"])
    assert figures(page, 1)["arrivals"] == str(b["kpi"]["arrivals"])
    assert figures(page, 1)["referred"] == str(b["kpi"]["referred"])
    assert "<th>difference</th>" in page
    diff = b["kpi"]["referred"] - a["kpi"]["referred"]
    assert differences(page)["referred"] == f"{diff:+d}"
    # a difference of shares in percentage points, not in per cent of the first
    points = (b["kpi"]["referral_rate"] - a["kpi"]["referral_rate"]) * 100
    assert differences(page)["referral_rate"] == f"{points:+.2f} points"
    assert ">greedy<" in page and ">cpsat<" in page
    # each plot shows both runs overlaid, on the same axes (item 6); a run's own plots
    # (its timeline, its rooms over time) one after the other
    for plot in PLOTS:
        assert page.count(f'id="{plot}"') == 1, plot
    assert re.findall(r'id="(plot-[a-z-]+-\d)"', page) == [
        "plot-rooms-over-time-0",
        "plot-rooms-over-time-1",
        "plot-timeline-0",
        "plot-timeline-1",
    ]
    assert '"name":"cpsat: referral rate"' in page and '"name":"greedy: medical wait"' in page
    for name in ("cpsat: porter", "greedy: porter", "cpsat: occupied", "greedy: occupied"):
        assert f'"name":"{name}"' in page, name


def differences(page: str) -> dict[str, str]:
    return dict(re.findall(r'<td class="[^"]*" data-difference="([^"]+)">([^<]*)</td>', page))


def test_compare_reads_each_runs_policy_length_and_label_from_its_events(runs, tmp_path):
    """Issue 22, item 2: with neither --config nor --duration, the greedy run was labelled
    "policy cpsat" and shown with the time of its last tick rather than its length."""
    a, b = runs["cpsat"], runs["greedy"]
    out = tmp_path / "compare.html"
    result = CliRunner().invoke(
        app,
        ["report", str(b["decisions"]), "--events", str(b["events"]), "--compare",
         str(a["decisions"]), "--compare-events", str(a["events"]), "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert re.findall(r"<tr><td>policy</td><td>([^<]*)</td></tr>", page) == ["greedy", "cpsat"]
    assert figures(page, 0)["duration_s"] == figures(page, 1)["duration_s"] == "7200"
    assert figures(page, 0)["referred"] == str(b["kpi"]["referred"])


def test_a_report_leaves_a_warm_up_out_of_its_figures(runs, tmp_path):
    run = runs["cpsat"]
    out = tmp_path / "warm.html"
    options = ["report", str(run["decisions"]), "--out", str(out), "--warmup", "1h"]
    refused = CliRunner().invoke(app, options)
    assert refused.exit_code == 2 and "--warmup needs the run's events" in refused.output
    result = CliRunner().invoke(app, [*options, "--events", str(run["events"])])
    assert result.exit_code == 0, result.output
    page = out.read_text()
    shown = figures(page)
    assert shown["warmup_s"] == "3600"
    second_hour = run["kpi"]["by_hour"][1]
    assert shown["arrivals"] == str(second_hour["arrivals"])
    assert shown["referred"] == str(second_hour["referred"])
    assert "warm-up, left out of the figures" in page


def test_a_report_from_decisions_alone_counts_exactly(runs, tmp_path):
    run = runs["cpsat"]
    out = tmp_path / "alone.html"
    result = CliRunner().invoke(app, ["report", str(run["decisions"]), "--out", str(out)])
    assert result.exit_code == 0, result.output
    shown = figures(out.read_text())
    for key in ("arrivals", "admitted", "referred", "discharged"):
        assert shown[key] == str(run["kpi"][key]), key


def test_a_missing_file_is_one_clear_error(tmp_path):
    result = CliRunner().invoke(app, ["report", str(tmp_path / "nope.jsonl")])
    assert result.exit_code == 2
    assert "no such decisions file" in result.output
