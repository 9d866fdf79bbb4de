"""`hospital region` as a user runs it: a region simulated and its record replayed to the
same decisions, byte for byte; a bad region or record is one line and exit code 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from cli.main import app

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()

REGION = """
[region]
seed = 3
[transfers]
max_wait_s = 120
[travel]
minutes = [[0, 1, 2], [1, 0, 1.5], [2, 1.5, 0]]
[[hospitals]]
id = "busy"
scenario = "default"
[hospitals.set]
"arrivals.process" = "poisson"
"arrivals.interval_s" = 20.0
"durations.treatment_s" = 120.0
[[hospitals]]
id = "quiet"
scenario = "default"
[hospitals.set]
"arrivals.process" = "poisson"
"arrivals.interval_s" = 80.0
"durations.treatment_s" = 120.0
[[hospitals]]
id = "far"
config = "far.toml"
"""


def region_file(tmp_path: Path) -> Path:
    (tmp_path / "far.toml").write_text(
        '[arrivals]\nprocess = "poisson"\ninterval_s = 80.0\n[durations]\ntreatment_s = 120.0\n'
    )
    path = tmp_path / "region.toml"
    path.write_text(REGION)
    return path


def hospital(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=300,
    )


def test_region_run_and_solve_give_the_same_decisions(tmp_path: Path):
    config = region_file(tmp_path)
    ran = hospital(
        "region",
        "run",
        "--config",
        str(config),
        "--duration",
        "30m",
        "--coordinator",
        "cpsat",
        "--record",
        "rec.jsonl",
        "--out",
        "dec.jsonl",
        "--report",
        "r.json",
        cwd=tmp_path,
    )
    assert ran.returncode == 0, ran.stderr
    assert "referred out of the region" in ran.stdout
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["region"]["transfers"] > 0
    assert set(report["hospitals"]) == {"busy", "quiet", "far"}
    solved = hospital(
        "region",
        "solve",
        "rec.jsonl",
        "--config",
        str(config),
        "--out",
        "dec2.jsonl",
        cwd=tmp_path,
    )
    assert solved.returncode == 0, solved.stderr
    assert (tmp_path / "dec2.jsonl").read_bytes() == (tmp_path / "dec.jsonl").read_bytes()
    kinds = {json.loads(line)["type"] for line in (tmp_path / "dec.jsonl").open()}
    assert {"transfer.requested", "transfer.offered", "transfer.accepted"} <= kinds


def test_solve_with_another_coordinator_decides_otherwise(tmp_path: Path):
    config = region_file(tmp_path)
    args = ["--config", str(config)]
    ran = runner.invoke(
        app,
        [
            "region",
            "run",
            *args,
            "--duration",
            "20m",
            "--coordinator",
            "nearest",
            "--record",
            str(tmp_path / "rec"),
            "--out",
            str(tmp_path / "a"),
        ],
    )
    assert ran.exit_code == 0, ran.output
    same = runner.invoke(
        app, ["region", "solve", str(tmp_path / "rec"), *args, "--out", str(tmp_path / "b")]
    )
    other = runner.invoke(
        app,
        [
            "region",
            "solve",
            str(tmp_path / "rec"),
            *args,
            "--coordinator",
            "none",
            "--out",
            str(tmp_path / "c"),
        ],
    )
    assert same.exit_code == other.exit_code == 0
    assert "did not fit" in other.output  # the recorded transfers' arrivals: rejected
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes()
    assert (tmp_path / "a").read_bytes() != (tmp_path / "c").read_bytes()


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[[hospitals]]\nid = "a"\nscenario = "default"\n')
    cases = [
        ["region", "run", "--config", str(bad)],
        ["region", "run", "--config", "no-such-region"],
        ["region", "run", "--config", str(region_file(tmp_path)), "--coordinator", "best"],
        ["region", "solve", str(bad), "--config", str(region_file(tmp_path))],
    ]
    for args in cases:
        result = hospital(*args, cwd=tmp_path)
        assert result.returncode == 2, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("hospital: error:"), result.stderr


def test_hospital_bench_takes_a_named_region(tmp_path: Path):
    out_json = tmp_path / "bench.json"
    result = runner.invoke(
        app,
        [
            "bench",
            "--scenario",
            "region-5",
            "--replications",
            "2",
            "--hours",
            "0.25",
            "--out-json",
            str(out_json),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "fluid bound" in result.output
    figures = json.loads(out_json.read_text())
    assert {run["coordinator"] for run in figures["runs"]} == {"cpsat", "nearest", "even", "none"}
    assert {run["seed"] for run in figures["runs"]} == {1, 2}
    assert 0 < figures["bounds"]["region-5"]["min_referred_out_rate"] < 1


def test_the_dashboard_of_a_distributed_region_refuses_bad_input_in_one_line(tmp_path):
    from tests.cli.test_bad_input import one_line

    def dashboard(*args: str):
        return runner.invoke(app, ["dashboard", *args])

    assert "region" in one_line(dashboard("--region", str(tmp_path / "none.toml")), 2)
    assert "PostgreSQL" in one_line(
        dashboard("--region", "region-5", "--db", f"sqlite:///{tmp_path}/h.db"), 2
    )
    assert "--coordinator" in one_line(
        dashboard("--region", "region-5", "--coordinator", "nobody"), 2
    )
    follow = tmp_path / "decisions.jsonl"
    follow.write_text("")
    assert "--follow" in one_line(dashboard("--region", "region-5", "--follow", str(follow)), 2)
    missing = str(tmp_path / "none.toml")
    run = ["run", "--kafka", "--region", missing, "--speed", "10", "--dashboard"]
    assert "region" in one_line(runner.invoke(app, run), 2)
