"""The questions of an operations analyst (issue 22), as `hospital run`, `runs` and `solve`
answer them: a warm-up left out of the KPIs, the capacity bound and its bottleneck in the
summary and the report, the time rooms spend in each state, runs told apart by a label and
their real seed, and the summary's waits shown at the scheduler's resolution."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from cli.main import app

runner = CliRunner()


def run(tmp_path, *options, env=None):
    report = tmp_path / "r.json"
    result = runner.invoke(
        app,
        ["run", "--speed", "max", "--quiet", "--report", str(report), *map(str, options)],
        env=env,
    )
    assert result.exit_code == 0, result.output
    return result, json.loads(report.read_text())


def test_the_summary_and_report_say_the_bound_and_its_bottleneck(tmp_path):
    result, report = run(tmp_path, "--duration", "30m", "--no-db")
    bound = report["capacity"]
    assert bound["bottleneck"] == "cleaner" and round(bound["min_referral_rate"], 4) == 0.1725
    assert "17.3% at least, bottleneck: cleaner" in result.stdout
    # and the rooms' time by state, dirty rooms apart from rooms being cleaned
    assert set(report["room_states"]) == {"free", "booked", "occupied", "dirty", "cleaning"}
    assert "rooms dirty, awaiting a cleaner (time)" in result.stdout


def test_a_wait_shorter_than_a_tick_reads_as_such(tmp_path):
    """Issue 22, item 6: "porter wait mean / p95: 0.01 s / 0.00 s" read as a bug."""
    result, report = run(tmp_path, "--duration", "30m", "--no-db")
    porter = report["wait_s"]["porter"]
    assert porter["mean"] > 0 and porter["p95"] < 1  # waits of less than a tick
    (line,) = [line for line in result.stdout.splitlines() if "porter wait" in line]
    assert f"{porter['mean']:.2f} s / within a tick (1 s)" in line, line
    (line,) = [line for line in result.stdout.splitlines() if "cleaner wait" in line]
    assert "within a tick" not in line and f"{report['wait_s']['cleaner']['p95']:.1f} s" in line


def test_a_warm_up_is_left_out_of_the_report_and_said(tmp_path):
    result, report = run(tmp_path, "--duration", "2h", "--warmup", "1h", "--no-db")
    assert report["warmup_s"] == 3600.0 and report["duration_s"] == 7200.0
    assert [h["hour"] for h in report["by_hour"]] == [1]
    assert "figures from (warm-up left out)" in result.stdout and "01:00:00" in result.stdout
    _, whole = run(tmp_path, "--duration", "2h", "--no-db")
    assert report["arrivals"] == whole["by_hour"][1]["arrivals"] < whole["arrivals"]


def test_a_warm_up_as_long_as_the_run_is_refused(tmp_path):
    result = runner.invoke(app, ["run", "--duration", "1h", "--warmup", "1h", "--no-db"])
    assert result.exit_code == 2
    assert "the warm-up must be shorter than the run" in result.output


def test_runs_tell_two_runs_apart_by_label_config_and_real_seed(tmp_path):
    """Issue 22, item 4: `hospital runs` had no label and no config name, and a report's
    config said arrivals.seed = 1 of a run made with --seed 7."""
    db = f"sqlite:///{tmp_path / 'runs.db'}"
    config = tmp_path / "dept.toml"
    config.write_text("[staff]\ncleaners = 3\n")
    for seed, label in ((1, "three cleaners"), (7, "three cleaners, seed 7")):
        _, report = run(
            tmp_path,
            "--duration",
            "5m",
            "--seed",
            seed,
            "--db",
            db,
            "--config",
            config,
            "--label",
            label,
        )
        assert report["label"] == label and report["seed"] == seed
        assert report["config"]["arrivals"]["seed"] == seed
    listed = runner.invoke(app, ["runs", "--db", db])
    assert listed.exit_code == 0, listed.output
    rows = [line for line in listed.stdout.splitlines() if "run-" in line]
    assert "three cleaners, seed 7" in rows[0] and "dept.toml" in rows[0] and " 7 " in rows[0]
    assert "three cleaners " in rows[1] and "dept.toml" in rows[1]
    kept = [
        json.loads(line)
        for line in runner.invoke(app, ["runs", "--db", db, "--json"]).stdout.splitlines()
    ]
    assert [(r["label"], r["config_file"], r["seed"]) for r in kept] == [
        ("three cleaners, seed 7", "dept.toml", 7),
        ("three cleaners", "dept.toml", 1),
    ]
    # the kept config is the one the run used: with its seed
    from scheduler.db import kept_runs
    from scheduler.db.store import connect

    engine = connect(db)
    try:
        assert [r.config["arrivals"]["seed"] for r in kept_runs.runs(engine)] == [7, 1]
    finally:
        engine.dispose()


def test_a_label_is_one_printable_line(tmp_path):
    result = runner.invoke(app, ["run", "--duration", "1m", "--no-db", "--label", "a\nb"])
    assert result.exit_code == 2 and "printable" in result.output


def test_a_terminal_clean_shorter_than_a_routine_one_is_warned_about_and_the_run_goes_on(
    tmp_path,
):
    """Issue 22, item 3."""
    config = tmp_path / "c.toml"
    config.write_text(
        '[hospital]\nisolation_rooms = ["A1"]\n[arrivals]\nisolation_share = 0.2\n'
        "[durations]\ncleaning_s = 1200.0\nterminal_cleaning_s = 84.0\n"
    )
    result, _ = run(tmp_path, "--duration", "10m", "--no-db", "--config", config)
    assert "hospital: warning: config: durations.terminal_cleaning_s (84 s) is shorter" in (
        result.stderr
    )


def test_solve_reports_with_a_warm_up_and_the_bound(tmp_path):
    events = tmp_path / "ev.jsonl"
    _, ran = run(tmp_path, "--duration", "2h", "--warmup", "30m", "--no-db", "--record", events)
    report = tmp_path / "solved.json"
    result = runner.invoke(
        app,
        [
            "solve",
            str(events),
            "--warmup",
            "30m",
            "--report",
            str(report),
            "--out",
            str(tmp_path / "dec.jsonl"),
        ],
    )
    assert result.exit_code == 0, result.output
    solved = json.loads(report.read_text())
    for key in ("arrivals", "referred", "wait_s", "warmup_s", "by_acuity"):
        assert solved[key] == ran[key], key
    assert solved["capacity"]["bottleneck"] == ran["capacity"]["bottleneck"] == "cleaner"
    header = json.loads(events.read_text().splitlines()[0])
    assert header["duration_s"] == 7200.0  # the run's length, for `hospital report`
