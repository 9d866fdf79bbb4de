"""`hospital bench` as a user runs it, and the aggregation behind it."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cli.main import app
from scheduler import bench, bench_tables

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


def run_bench_cli(tmp_path, *options):
    out_json, out_md = tmp_path / "bench.json", tmp_path / "bench.md"
    result = runner.invoke(
        app,
        ["bench", "--scenario", "default", *options, "--hours", "0.05"]
        + ["--out-json", str(out_json), "--out-md", str(out_md)],
    )
    assert result.exit_code == 0, result.output
    return result.output, json.loads(out_json.read_text()), out_md.read_text()


def test_bench_writes_json_and_markdown(tmp_path):
    # `--seeds`, the old name of `--replications`, still works; one replication: no interval
    output, data, markdown = run_bench_cli(tmp_path, "--policy", "greedy", "--seeds", "1")
    assert "default" in output and "greedy" in output
    assert data["settings"]["scenarios"] == ["default"]
    assert data["settings"]["replications"] == 1
    assert data["capacity"]["default"]["min_referral_rate"] == pytest.approx(0.1725, abs=5e-4)
    (job,) = data["jobs"]
    assert job.keys() >= JOB_KEYS
    assert job["budget_ms"] == 1000 and job["seed"] == 1 and job["arrivals"] == 37
    assert job["peak_rss_mb"] > 0 and job["ticks_solved"] > 0
    (row,) = data["summary"]
    assert row["scenario"] == "default" and row["policy"] == "greedy"
    assert {key for key, _, _ in bench.METRICS} <= row.keys()
    assert row["referral_rate"]["mean"] == job["referral_rate"]
    assert row["referral_rate"]["half_width"] is None  # one replication: n/a
    assert data["differences"] == []  # one policy: nothing to compare
    assert "| scenario | KPI | greedy |" in markdown
    assert f"| default | arrivals | {job['arrivals']:.1f} ± n/a |" in markdown
    assert "| default | 17.25% (cleaner) | 00h | 17.25% |" in markdown
    assert "± n/a" in output and "capacity bound: 17.25%" in output
    assert "bottleneck: cleaner" in output
    # the scheduler's own figures: in the JSON, in the tables only with --detail
    assert job["first_tick_ms"] > 0 and row["first_tick_ms"]["mean"] == job["first_tick_ms"]
    for developers in ("tick p95 ms", "peak RSS MB", "first tick ms", "wall s"):
        assert developers not in markdown and developers not in " ".join(output.split())
    # a scenario without an ESI mix nor target waits: no rows for them
    assert "wait ESI" not in markdown and "past target" not in markdown


def test_bench_detail_shows_the_schedulers_own_figures(tmp_path):
    """Issue 22, item 6: the analyst's KPIs by default, the developers' figures (tick times,
    memory) behind --detail."""
    output, _, markdown = run_bench_cli(tmp_path, "--policy", "greedy", "--seeds", "1", "--detail")
    assert "tick p95 ms" in markdown and "peak RSS MB" in markdown
    assert "| first tick ms | tick p50 ms |" in markdown
    assert "first tick ms" in " ".join(output.split())


def test_bench_shows_waits_by_esi_and_target_waits_past_and_leaves_a_warm_up_out(tmp_path):
    """A scenario with the clinical rules: its rows hold the waits of each ESI level's
    patients and the tasks past their target wait; a warm-up is left out of every job."""
    out_json, out_md = tmp_path / "bench.json", tmp_path / "bench.md"
    result = runner.invoke(
        app,
        ["bench", "--scenario", "ward-acuity", "--hours", "0.5", "--warmup", "15m"]
        + ["--seeds", "1", "--out-json", str(out_json), "--out-md", str(out_md)],
    )
    assert result.exit_code == 0, result.output
    data, markdown = json.loads(out_json.read_text()), out_md.read_text()
    assert data["settings"]["warmup_s"] == 900.0
    assert "KPIs after a warm-up of 15 min" in markdown
    for n in (1, 2, 3, 4, 5):
        assert f"| wait ESI {n} s |" in markdown
    assert "| tasks past target wait |" in markdown
    for job in data["jobs"]:
        assert job["warmup_ms"] == 900_000 and job["esi_levels"] == [1, 2, 3, 4, 5]
        assert job["sla_breaches"] >= 0 and job["sla_targets"] is True
    (diff,) = data["differences"]
    assert "wait_esi1_s" in diff and "sla_breaches" in diff


def test_replications_give_intervals_and_paired_differences(tmp_path):
    output, data, markdown = run_bench_cli(tmp_path, "--replications", "2")
    assert data["settings"]["replications"] == 2
    assert [(j["policy"], j["seed"]) for j in data["jobs"]] == [
        ("cpsat", 1),
        ("cpsat", 2),
        ("greedy", 1),
        ("greedy", 2),
    ]
    cpsat, greedy = data["summary"]
    assert cpsat["replications"] == 2 and cpsat["seeds"] == [1, 2]
    # the default hospital's arrivals are fixed, its durations too: every seed the same run
    for key, _, _ in bench.KPI_METRICS:
        assert cpsat[key]["half_width"] == 0.0, key
    (diff,) = data["differences"]
    assert (diff["policy"], diff["baseline"], diff["seeds"]) == ("cpsat", "greedy", [1, 2])
    expected = cpsat["wait_cleaner_s"]["mean"] - greedy["wait_cleaner_s"]["mean"]
    assert diff["wait_cleaner_s"]["mean"] == pytest.approx(expected)
    assert diff["arrivals"]["mean"] == 0.0  # the same patients
    hours = [(h["policy"], h["hour"]) for h in data["by_hour"]]
    assert hours == [("cpsat", 0), ("greedy", 0)]
    assert data["by_hour"][0]["arrivals"]["mean"] == data["jobs"][0]["arrivals"]
    (hour,) = data["capacity"]["default"]["by_hour"]
    assert hour == {
        "hour": 0,
        "arrivals_per_hour": 720.0,
        "min_referral_rate": hour["min_referral_rate"],
    }
    assert hour["min_referral_rate"] == pytest.approx(0.1725, abs=5e-4)
    assert "| scenario | KPI | cpsat | greedy | cpsat - greedy (paired) |" in markdown
    assert "cpsat - greedy (paired)" in " ".join(output.split())
    assert "replications (seeds 1–2)" in markdown


def test_bench_rejects_an_unknown_scenario():
    result = runner.invoke(app, ["bench", "--scenario", "clinic", "--seeds", "1"])
    assert result.exit_code == 2
    assert "clinic" in result.output and "campus-overload" in result.output


def record(seed, referral_rate, p95, policy="cpsat", time_in_system=100.0):
    base = {key: 0.0 for key, _, _ in bench.METRICS}
    return {
        **base,
        "scenario": "ward",
        "policy": policy,
        "seed": seed,
        "referral_rate": referral_rate,
        "mean_time_in_system_s": time_in_system,
        "solve_p95_ms": p95,
    }


def test_summary_is_the_mean_and_interval_over_replications():
    records = [
        record(1, 0.1, 4.0),
        record(2, 0.3, 2.0),
        record(3, 0.2, 9.0),
        record(1, 0.5, 1.0, "greedy"),
    ]
    cpsat, greedy = bench.summarise(records)
    assert (cpsat["scenario"], cpsat["policy"], cpsat["seeds"]) == ("ward", "cpsat", [1, 2, 3])
    # 0.1, 0.3, 0.2: mean 0.2, sample sd 0.1, t(97.5 %, 2 degrees) = 4.302653
    half = 4.302653 * 0.1 / 3**0.5
    assert cpsat["referral_rate"] == pytest.approx(
        {"mean": 0.2, "half_width": half, "low": 0.2 - half, "high": 0.2 + half}
        | {"n": 3, "min": 0.1, "max": 0.3},
        rel=1e-6,
    )
    assert cpsat["solve_p95_ms"]["mean"] == pytest.approx(5.0)
    assert greedy["seeds"] == [1] and greedy["referral_rate"]["mean"] == 0.5
    assert greedy["referral_rate"]["half_width"] is None


def test_differences_pair_the_policies_by_seed():
    records = [record(s, 0.1 * s, 1.0, "cpsat", 100.0 * s) for s in (1, 2, 3)]
    records += [record(s, 0.1 * s + 0.05, 1.0, "greedy", 100.0 * s + 10 + s) for s in (1, 2, 3, 4)]
    (diff,) = bench.differences(records)
    assert diff["seeds"] == [1, 2, 3]  # greedy's seed 4 has no pair
    # time in system: -11, -12, -13 seed by seed
    half = 4.302653 * 1.0 / 3**0.5
    assert diff["mean_time_in_system_s"]["mean"] == pytest.approx(-12.0)
    assert diff["mean_time_in_system_s"]["half_width"] == pytest.approx(half, rel=1e-6)
    assert diff["mean_time_in_system_s"]["unpaired_half_width"] > 50 * half
    assert diff["referral_rate"]["mean"] == pytest.approx(-0.05)


def test_cells_show_the_interval_or_n_a():
    stats = bench.stats([0.1, 0.3, 0.2])
    assert bench_tables.level_cell(stats, "{:.1%}") == "20.0% ± 24.8%"
    assert bench_tables.level_cell(bench.stats([4.0]), "{:.1f}") == "4.0 ± n/a"
    assert bench_tables.diff_cell(stats, "{:.1%}") == "+20.0% [-4.8%, +44.8%]"
    assert bench_tables.diff_cell(bench.stats([-0.0001, 0.0001]), "{:.1f}") == "0.0 [0.0, 0.0]"
    assert bench_tables.diff_cell(bench.stats([-2.0]), "{:.1f}") == "-2.0 [n/a]"


def test_jobs_cover_scenarios_policies_and_seeds():
    jobs = bench.jobs_for(["ward", "campus"], ["cpsat", "greedy"], 3, 0.5)
    assert len(jobs) == 12
    assert jobs[0] == bench.Job("ward", "cpsat", 1, 0.5, None)
    assert {j.seed for j in jobs} == {1, 2, 3}


def test_the_policies_jobs_share_seeds_and_see_the_same_patients():
    """Replication N is seed N under every policy: the same arrivals and treatments, so
    that the paired interval is narrower than the one taking the runs apart."""
    import gc

    jobs = bench.jobs_for(["ward"], ["cpsat", "greedy"], 4, 0.25)
    seeds = {policy: [j.seed for j in jobs if j.policy == policy] for policy in ("cpsat", "greedy")}
    assert seeds["cpsat"] == seeds["greedy"] == [1, 2, 3, 4]
    records = [bench.run_job(job) for job in jobs]
    gc.unfreeze()  # run_job freezes the collector's objects, as a fresh process may
    arrivals = {(r["policy"], r["seed"]): r["arrivals"] for r in records}
    for seed in (1, 2, 3, 4):
        assert arrivals["cpsat", seed] == arrivals["greedy", seed]
    assert len({arrivals["cpsat", seed] for seed in (1, 2, 3, 4)}) > 1  # the seeds differ
    (diff,) = bench.differences(records)
    time_in_system = diff["mean_time_in_system_s"]
    assert time_in_system["half_width"] < time_in_system["unpaired_half_width"] / 2


def test_bench_takes_a_config_file_and_the_overrides(tmp_path, monkeypatch):
    """A hospital of one's own by its path, with the HOSPITAL_* variables and --set over
    it: each changes what is run (and what the capacity bound is of)."""
    dept = tmp_path / "dept.toml"
    dept.write_text("[staff]\ncleaners = 1\n")
    monkeypatch.setenv("HOSPITAL_STAFF_PORTERS", "3")
    _, data, _ = run_bench_cli(
        tmp_path, "--scenario", str(dept), "--policy", "greedy", "--seeds", "1",
        "--set", "staff.cleaners=4",
    )  # fmt: skip
    assert data["settings"]["scenarios"] == ["default", str(dept)]
    assert data["settings"]["overrides"] == {
        "HOSPITAL_STAFF_CLEANERS": "4",
        "HOSPITAL_STAFF_PORTERS": "3",
    }
    default, own = data["jobs"]
    # 4 cleaners instead of 2 (or of the file's 1): the cleaners stop being the bottleneck
    assert data["capacity"][str(dept)]["min_referral_rate"] < 0.1725
    assert data["capacity"]["default"]["min_referral_rate"] < 0.1725
    assert default["referred"] == own["referred"]  # the file changed only what --set sets


@pytest.mark.parametrize(
    "options, message",
    [
        (["--scenario", "no/such.toml"], "no config file 'no/such.toml'"),
        (["--set", "staff.cleaners"], "expected SECTION.KEY=VALUE"),
        (["--set", "staff.cleanerz=3"], "no key 'cleanerz' in [staff]"),
        (["--set", "staff.cleaners=many"], "expected an integer"),
    ],
)
def test_bench_refuses_a_bad_file_or_override_in_one_line(options, message):
    result = runner.invoke(app, ["bench", "--hours", "0.01", "--seeds", "1", *options])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
