"""`hospital report`: one self-contained HTML file whose figures are the run's KPI report,
with its plots; `--compare` puts two runs side by side with the differences."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from cli.main import app
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
        report = simulate_run(config, 2 * 3600_000, record=files["events"], out=files["decisions"])
        config_file = folder / f"{policy}.toml"
        config_file.write_text(
            f'[scheduler]\npolicy = "{policy}"\n[arrivals]\nprocess = "poisson"\n'
        )
        out[policy] = {**files, "kpi": report, "config": config_file}
    return out


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
    assert len(re.findall(r'id="plot-\d+-0"', page)) == 6
    assert page.count('id="plot-by-hour"') == 1


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
    assert re.search(
        rf"<td>referred</td>(<td[^>]*>[^<]*</td>){{2}}<td[^>]*>{re.escape(f'{diff:+d}')}</td>", page
    )
    assert len(re.findall(r'id="plot-\d+-1"', page)) == 6
    assert ">greedy<" in page and ">cpsat<" in page
    # by hour of the day: one plot, the two runs overlaid
    assert page.count('id="plot-by-hour"') == 1
    assert '"name":"cpsat: referral rate"' in page and '"name":"greedy: medical wait"' in page


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
