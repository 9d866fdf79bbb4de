"""`hospital bench` as a user runs it, and the aggregation behind it."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cli.main import app
from scheduler import bench

runner = CliRunner()
JOB_KEYS = {
    "scenario",
    "policy",
    "seed",
    "hours",
    "budget_ms",
    "wall_s",
    "referral_rate",
    "mean_time_in_system_s",
    "wait_porter_s",
    "wait_medical_s",
    "wait_cleaner_s",
    "first_tick_ms",
    "solve_p50_ms",
    "solve_p95_ms",
    "solve_max_ms",
    "ticks_over_budget",
    "limited_share",
    "worst_gap",
    "peak_rss_mb",
    "ticks",
    "ticks_solved",
}


def test_bench_writes_json_and_markdown(tmp_path):
    out_json, out_md = tmp_path / "bench.json", tmp_path / "bench.md"
    result = runner.invoke(
        app,
        [
            "bench",
            "--scenario",
            "default",
            "--policy",
            "greedy",
            "--seeds",
            "1",
            "--hours",
            "0.05",
            "--out-json",
            str(out_json),
            "--out-md",
            str(out_md),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "default" in result.output and "greedy" in result.output
    data = json.loads(out_json.read_text())
    assert data["settings"]["scenarios"] == ["default"]
    assert data["capacity"]["default"]["min_referral_rate"] == pytest.approx(0.1725, abs=5e-4)
    (job,) = data["jobs"]
    assert job.keys() >= JOB_KEYS
    assert job["budget_ms"] == 1000 and job["seed"] == 1 and job["arrivals"] == 37
    assert job["peak_rss_mb"] > 0 and job["ticks_solved"] > 0
    (row,) = data["summary"]
    assert row["scenario"] == "default" and row["policy"] == "greedy"
    assert {key for key, _, _ in bench.METRICS} <= row.keys()
    assert row["referral_rate"]["mean"] == job["referral_rate"]
    markdown = out_md.read_text()
    assert "| scenario | policy | min referred (bound) | referred |" in markdown
    assert "| default | greedy | 17.25% (cleaner) |" in markdown
    assert "tick p95 ms" in markdown and "peak RSS MB" in markdown
    # the first tick's solve time apart, in the table, the JSON and the Markdown
    assert job["first_tick_ms"] > 0 and row["first_tick_ms"]["mean"] == job["first_tick_ms"]
    assert "| first tick ms | tick p50 ms |" in markdown
    assert "first tick ms" in " ".join(result.output.split())


def test_bench_rejects_an_unknown_scenario():
    result = runner.invoke(app, ["bench", "--scenario", "clinic", "--seeds", "1"])
    assert result.exit_code == 2
    assert "clinic" in result.output and "campus-overload" in result.output


def record(seed, referral_rate, p95, policy="cpsat"):
    base = {key: 0.0 for key, _, _ in bench.METRICS}
    return {
        **base,
        "scenario": "ward",
        "policy": policy,
        "seed": seed,
        "referral_rate": referral_rate,
        "solve_p95_ms": p95,
    }


def test_summary_is_the_mean_min_and_max_over_seeds():
    records = [
        record(1, 0.1, 4.0),
        record(2, 0.3, 2.0),
        record(3, 0.2, 9.0),
        record(1, 0.5, 1.0, "greedy"),
    ]
    cpsat, greedy = bench.summarise(records)
    assert (cpsat["scenario"], cpsat["policy"], cpsat["seeds"]) == ("ward", "cpsat", [1, 2, 3])
    assert cpsat["referral_rate"] == pytest.approx({"mean": 0.2, "min": 0.1, "max": 0.3})
    assert cpsat["solve_p95_ms"] == pytest.approx({"mean": 5.0, "min": 2.0, "max": 9.0})
    assert greedy["seeds"] == [1] and greedy["referral_rate"]["mean"] == 0.5


def test_cells_show_the_seeds_range_only_when_there_is_one():
    assert bench.cell({"mean": 0.2, "min": 0.1, "max": 0.3}, "{:.1%}") == "20.0% (10.0%–30.0%)"
    assert bench.cell({"mean": 4.0, "min": 4.0, "max": 4.0}, "{:.1f}") == "4.0"


def test_jobs_cover_scenarios_policies_and_seeds():
    jobs = bench.jobs_for(["ward", "campus"], ["cpsat", "greedy"], 3, 0.5)
    assert len(jobs) == 12
    assert jobs[0] == bench.Job("ward", "cpsat", 1, 0.5, None)
    assert {j.seed for j in jobs} == {1, 2, 3}
