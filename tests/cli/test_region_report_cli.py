"""`hospital region report` as a user runs it: a region's record turned into one HTML file whose
figures are the run's `--report`; bad input (no such file, a hospital's record, another
region's, a decisions file, a warm-up as long as the run) is one line and exit code 2."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()
REGION = """
[region]
seed = 2
[transfers]
max_wait_s = 120
[travel]
minutes = [[0, 2], [2, 0]]
[[hospitals]]
id = "north"
scenario = "default"
[hospitals.set]
"arrivals.process" = "poisson"
"arrivals.interval_s" = 15.0
"durations.treatment_s" = 120.0
[[hospitals]]
id = "south"
scenario = "default"
[hospitals.set]
"arrivals.process" = "poisson"
"arrivals.interval_s" = 60.0
"durations.treatment_s" = 120.0
"""


def hospital(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=300,
    )


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> Path:
    """A folder with region.toml and a 20-minute run's record, decisions and report."""
    folder = tmp_path_factory.mktemp("region-report")
    (folder / "region.toml").write_text(REGION)
    ran = hospital(
        "region",
        "run",
        "--config",
        "region.toml",
        "--duration",
        "20m",
        "--record",
        "rec.jsonl",
        "--out",
        "dec.jsonl",
        "--report",
        "r.json",
        cwd=folder,
    )
    assert ran.returncode == 0, ran.stderr
    return folder


def test_the_report_is_written_with_the_runs_figures(recorded: Path):
    made = hospital(
        "region", "report", "rec.jsonl", "--config", "region.toml", "--out", "r.html", cwd=recorded
    )
    assert made.returncode == 0, made.stderr
    assert made.stderr.strip() == "report: r.html"
    page = (recorded / "r.html").read_text()
    figures = json.loads((recorded / "r.json").read_text())
    shown = re.findall(r'<tr data-hospital="(\w+)">(.*?)</tr>', page)
    assert [name for name, _ in shown] == ["north", "south"]
    for name, row in shown:
        cells = dict(re.findall(r'<td data-figure="(\w+)">([^<]*)</td>', row))
        for key in ("arrivals", "transfers_in", "transfers_out", "referred_out", "not_taken"):
            assert cells[key] == str(figures["hospitals"][name][key]), (name, key)
    assert "warm-up left out" not in page
    warm = hospital(
        "region", "report", "rec.jsonl", "--config", "region.toml", "--out", "w.html",
        "--warmup", "5m", "--coordinator", "nearest", cwd=recorded,
    )  # fmt: skip
    assert warm.returncode == 0, warm.stderr
    page = (recorded / "w.html").read_text()
    assert "warm-up left out (s)</td><td>300.0" in page and "<td>nearest</td>" in page


def test_bad_input_is_one_line_and_exit_2(recorded: Path, monkeypatch):
    monkeypatch.chdir(recorded)
    (recorded / "empty.jsonl").write_text("")
    (recorded / "other.toml").write_text(REGION.replace('"south"', '"east"'))
    single = runner.invoke(
        app, ["run", "--duration", "1m", "--speed", "max", "--no-db", "-q", "--record", "one.jsonl"]
    )
    assert single.exit_code == 0, single.output
    region = ["--config", "region.toml"]
    cases = {
        "no such file": ["nothing.jsonl", *region],
        "a hospital's record": ["one.jsonl", *region],
        "another region's": ["rec.jsonl", "--config", "other.toml"],
        "decisions, not a record": ["dec.jsonl", *region],
        "an empty file": ["empty.jsonl", *region],
        "a warm-up as long as the run": ["rec.jsonl", *region, "--warmup", "20m"],
        "no such coordinator": ["rec.jsonl", *region, "--coordinator", "best"],
        "an output in no directory": ["rec.jsonl", *region, "--out", "no/r.html"],
    }
    for case, args in cases.items():
        result = runner.invoke(app, ["region", "report", *args])
        assert result.exit_code == 2, (case, result.output)
        assert not isinstance(result.exception, Exception) or isinstance(
            result.exception, SystemExit
        ), (case, result.exception)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("hospital: error:"), (case, result.stderr)
    assert not (recorded / "report.html").exists()
