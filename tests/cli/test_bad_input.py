"""Bad input to the `hospital` command: one clear line on stderr and the exit code (2 for a
file or option that cannot be used, 1 for events the scheduler rejects), never a traceback,
never silence. The cases of issue 9 first, then the ones found around them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app

runner = CliRunner()
ARRIVAL = {"type": "patient.arrived", "event_id": "a1", "time": 0, "patient_id": "p1"}


def one_line(result, code, prefix="hospital: error:"):
    """The one stderr line of a clean failure with `code`."""
    assert not isinstance(result.exception, Exception) or isinstance(
        result.exception, SystemExit
    ), f"{type(result.exception).__name__}: {result.exception}"
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(prefix), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def log(tmp_path: Path, *lines: str | dict, name: str = "events.jsonl") -> Path:
    path = tmp_path / name
    path.write_text(
        "".join((json.dumps(line) if isinstance(line, dict) else line) + "\n" for line in lines)
    )
    return path


def solve(path: Path, *options: str):
    return runner.invoke(app, ["solve", str(path), *options])


# --- the cases of the issue -------------------------------------------------------------


def test_a_binary_events_file(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_bytes(json.dumps(ARRIVAL).encode() + b"\n\x00\xff\xfe\x9c garbage\n")
    line = one_line(solve(path), 2)
    assert f"{path}:2:" in line and "UTF-8" in line


def test_a_binary_or_directory_config(tmp_path):
    events = log(tmp_path, ARRIVAL)
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\x00\xff\xfe\x9c garbage")
    assert "not a text file" in one_line(solve(events, "--config", str(binary)), 2)
    assert "is a directory" in one_line(solve(events, "--config", str(tmp_path)), 2)


def test_a_misspelt_environment_key(tmp_path):
    result = runner.invoke(
        app, ["solve", str(log(tmp_path, ARRIVAL))], env={"HOSPITAL_STAFF_PORTERZ": "3"}
    )
    assert "HOSPITAL_STAFF_PORTERZ" in one_line(result, 2)


@pytest.mark.parametrize(
    "text, key",
    [
        ("[scheduler]\ntick_s = 0.0001\n", "scheduler.tick_s"),
        ("[staff]\nporters = 0\n", "staff.porters"),
        ('[arrivals]\nprocess = "profile"\n', "arrivals.rates_per_hour"),
        ("[arrivals]\nrates_per_hour = [1, 2]\n", "arrivals.rates_per_hour"),
        ("[arrivals]\nday_factors = [1, 1, 1, 1, 1, 1, -1]\n", "arrivals.day_factors"),
        ("[durations]\ntreatment_cv = -0.5\n", "durations.treatment_cv"),
        ('[durations]\ndistribution = "normal"\n', "durations.distribution"),
        ("[durations]\ntreatment_s_by_acuity = [10, 10]\n", "durations.treatment_s_by_acuity"),
    ],
)
def test_config_values_that_would_mislead(tmp_path, text, key):
    config = tmp_path / "c.toml"
    config.write_text(text)
    assert key in one_line(solve(log(tmp_path, ARRIVAL), "--config", str(config)), 2)


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_an_empty_events_file_says_so(tmp_path, content):
    path = tmp_path / "events.jsonl"
    path.write_text(content)
    assert "no events" in one_line(solve(path), 2)


def test_a_log_of_only_its_run_header_says_so(tmp_path):
    ran = runner.invoke(
        app,
        [
            "run",
            "--duration",
            "10s",
            "--speed",
            "max",
            "--no-db",
            "-q",
            "--record",
            str(tmp_path / "full.jsonl"),
        ],
    )
    assert ran.exit_code == 0, ran.output
    header = (tmp_path / "full.jsonl").read_text().splitlines()[0]
    assert "no events" in one_line(solve(log(tmp_path, header)), 2)


def test_a_tick_going_backwards_is_named_at_its_line(tmp_path):
    path = log(
        tmp_path,
        {**ARRIVAL, "tick": 0},
        {**ARRIVAL, "event_id": "a2", "patient_id": "p2", "time": 5, "tick": 5},
        {**ARRIVAL, "event_id": "a3", "patient_id": "p3", "time": 1, "tick": 3},
    )
    line = one_line(solve(path), 2)
    assert f"{path}:3:" in line and "tick 3" in line and "tick 5 of line 2" in line


def test_db_check_of_a_database_not_there_creates_nothing(tmp_path):
    db = tmp_path / "nothing.db"
    line = one_line(runner.invoke(app, ["db", "check", "--db", f"sqlite:///{db}"]), 3)
    assert "hospital db upgrade" in line
    assert not db.exists()


def test_help_names_the_environment_variables():
    for command in (["run", "--help"], ["solve", "--help"], ["db", "check", "--help"]):
        result = runner.invoke(app, command, env={"COLUMNS": "200"})
        assert "HOSPITAL_<SECTION>_<KEY>" in result.stdout, result.stdout
        assert "HOSPITAL__" not in result.stdout


@pytest.mark.parametrize("time", ["Infinity", "-Infinity", "NaN", "1e400", "1e300", "-1"])
def test_a_time_that_is_no_time(tmp_path, time):
    path = log(
        tmp_path,
        ARRIVAL,
        json.dumps({**ARRIVAL, "event_id": "a2"}).replace('"time": 0', f'"time": {time}'),
    )
    line = one_line(solve(path), 2)
    assert f"{path}:2:" in line and "'time'" in line


# --- around them: events ----------------------------------------------------------------


@pytest.mark.parametrize(
    "tick, words",
    [
        (-1, "'tick'"),
        (1.5, "'tick'"),
        ("3", "'tick'"),
        (True, "'tick'"),
        (10**30, "past"),
    ],
)
def test_a_tick_that_is_no_tick(tmp_path, tick, words):
    path = log(tmp_path, {**ARRIVAL, "tick": tick})
    line = one_line(solve(path), 2)
    assert f"{path}:1:" in line and words in line, line


@pytest.mark.parametrize(
    "text, words",
    [
        ("[" * 100_000 + "]" * 100_000, "nested"),
        ('{"type": "patient.arrived", "time": 1' + "0" * 5000 + "}", "not valid JSON"),
        (
            '{"type": "patient.arrived", "event_id": "a", "time": 1, "patient_id": "p", '
            '"acuity": 2.0}',
            "'acuity'",
        ),
        ('{"type": "run.header", "config": {}, "seed": 1}', "first line"),
        ('{"type": "' + "x" * 100_000 + '"}', "unknown event type"),
    ],
)
def test_more_lines_that_are_not_events(tmp_path, text, words):
    path = log(tmp_path, ARRIVAL, text)
    line = one_line(solve(path), 2)
    assert f"{path}:2:" in line and words in line and len(line) < 300, line[:300]


def test_a_byte_order_mark_and_crlf_line_ends_are_read(tmp_path):
    path = tmp_path / "events.jsonl"
    lines = [ARRIVAL, {**ARRIVAL, "event_id": "a2", "patient_id": "p2", "time": 2}]
    path.write_bytes(b"\xef\xbb\xbf" + b"".join(json.dumps(e).encode() + b"\r\n" for e in lines))
    result = solve(path)
    assert result.exit_code == 0, result.output
    assert result.stdout.count('"patient.admitted"') == 2


@pytest.mark.parametrize(
    "header, words",
    [
        ({"type": "run.header", "seed": 1}, "no config"),
        ({"type": "run.header", "config": [1], "seed": 1}, "must be a JSON object"),
        ({"type": "run.header", "config": {"staff": {"porters": "x"}}, "seed": 1}, "staff.porters"),
    ],
)
def test_a_malformed_run_header(tmp_path, header, words):
    path = log(tmp_path, header, ARRIVAL)
    line = one_line(solve(path), 2)
    assert f"{path}:1:" in line and words in line, line


def test_odd_characters_in_ids_stay_on_one_line(tmp_path):
    path = log(
        tmp_path,
        {
            "type": "visit.completed",
            "event_id": "v\n1",
            "time": 0,
            "task_id": "task\nHospital: error: forged\udc80",
            "staff_id": "n",
            "patient_id": "p",
            "room_id": "A1",
        },
    )
    result = solve(path)
    assert result.exit_code == 1, result.output
    rejected, total = result.stderr.strip().splitlines()
    assert rejected.startswith(f"hospital: rejected: {path}:1:") and "task\\n" in rejected
    assert total == "hospital: error: 1 event(s) rejected"


def test_explain_of_a_binary_or_deep_file(tmp_path):
    binary = tmp_path / "bin.jsonl"
    binary.write_bytes(b"\x9c\xff garbage\n")
    line = one_line(runner.invoke(app, ["explain", str(binary), "--patient", "p"]), 2)
    assert f"{binary}:1:" in line
    deep = log(tmp_path, "[" * 100_000, name="deep.jsonl")
    one_line(runner.invoke(app, ["explain", str(deep), "--patient", "p"]), 2)


@pytest.mark.parametrize(
    "decisions, events, words",
    [
        ("[" * 100_000, None, "decisions.jsonl:1:"),
        (json.dumps(ARRIVAL), None, "unknown event type 'patient.arrived'"),
        (None, "null", "events.jsonl:1:"),
        (None, json.dumps(ARRIVAL), "no 'tick'"),
        (None, json.dumps({**ARRIVAL, "time": float("inf"), "tick": 0}), "'time'"),
    ],
)
def test_report_of_bad_files(tmp_path, decisions, events, words):
    ran = runner.invoke(
        app,
        [
            "run",
            "--duration",
            "1m",
            "--speed",
            "max",
            "--no-db",
            "-q",
            "--out",
            str(tmp_path / "good.jsonl"),
        ],
    )
    assert ran.exit_code == 0, ran.output
    source = (
        log(tmp_path, decisions, name="decisions.jsonl") if decisions else tmp_path / "good.jsonl"
    )
    options = ["--events", str(log(tmp_path, events))] if events else []
    result = runner.invoke(
        app, ["report", str(source), *options, "--out", str(tmp_path / "r.html")]
    )
    assert words in one_line(result, 2)


# --- around them: options and config values ---------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        ["--duration", "inf"],
        ["--duration", "-5"],
        ["--duration", "1e300"],
        ["--duration", "100000000000d"],
        ["--speed", "1e-300"],
        ["--speed", "inf"],
        ["--seed", str(2**70)],
        ["--dashboard", "--dashboard-port", "70000"],
    ],
)
def test_odd_run_options_are_usage_errors(options):
    result = runner.invoke(
        app, ["run", "--no-db", "-q", "--speed", "max", "--duration", "1s", *options]
    )
    assert result.exit_code == 2, result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize("port", ["70000", "-1"])
def test_a_dashboard_port_out_of_range_is_one_line(port, tmp_path):
    result = runner.invoke(app, ["dashboard", "--db", f"sqlite:///{tmp_path}/h.db", "--port", port])
    assert result.exit_code == 2, result.output
    assert "expected a port from 0 to 65535" in result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize("workers", ["porter=²", "porter=100000", "porter=-1", "nurse=1"])
def test_odd_worker_counts_are_usage_errors(workers):
    result = runner.invoke(app, ["run", "--kafka", "--workers", workers, "--speed", "1"])
    assert result.exit_code == 2, result.output
    assert "--workers" in result.output


@pytest.mark.parametrize(
    "environ, key",
    [
        ({"HOSPITAL_HOSPITAL_ROOMS_PER_FLOOR": "100000000"}, "hospital.rooms_per_floor"),
        ({"HOSPITAL_STAFF_NURSES": "100000000"}, "staff.nurses"),
        ({"HOSPITAL_ARRIVALS_SEED": str(2**70)}, "arrivals.seed"),
    ],
)
def test_config_values_too_large_to_run(tmp_path, environ, key):
    result = runner.invoke(app, ["solve", str(log(tmp_path, ARRIVAL))], env=environ)
    assert key in one_line(result, 2)


def test_runs_and_report_of_a_database_not_there_create_nothing(tmp_path):
    db = tmp_path / "nothing.db"
    listed = runner.invoke(app, ["runs", "--db", f"sqlite:///{db}"])
    assert listed.exit_code == 0 and "no runs kept" in listed.stdout
    assert "no run kept" in one_line(
        runner.invoke(
            app, ["report", "--db", f"sqlite:///{db}", "--out", str(tmp_path / "r.html")]
        ),
        2,
    )
    assert not db.exists()
    assert runner.invoke(app, ["runs", "--db", f"sqlite:///{db}", "--limit", "-3"]).exit_code == 2


# --- issue 17, item 9: mistakes that were accepted without a word ------------------------


@pytest.mark.parametrize(
    "roster, words",
    [
        ("porter-1 07:00-07:00", "holds no time on duty"),
        ("porter-1 07:00-19:00 break 20:00-20:30", "break 20:00-20:30 is not within"),
    ],
)
def test_a_roster_entry_never_on_duty_or_a_break_off_its_shift(tmp_path, roster, words):
    config = tmp_path / "config.toml"
    config.write_text(f'[shifts]\nroster = ["{roster}"]\n')
    result = runner.invoke(
        app, ["run", "--duration", "1m", "--speed", "max", "--no-db", "-q", "--config", str(config)]
    )
    line = one_line(result, 2)
    assert "shifts.roster" in line and repr(roster) in line and words in line, line


@pytest.mark.parametrize("budget", ["-1", "0", "nan"])
def test_a_bench_budget_not_above_0(budget):
    line = one_line(runner.invoke(app, ["bench", "--budget-ms", budget]), 2)
    assert "--budget-ms" in line and "greater than 0" in line, line


@pytest.mark.parametrize(
    "seed, shown",
    [("abc", "'abc'"), (True, "True"), (2**64, str(2**64)), (1.5, "1.5"), (None, "None")],
)
def test_a_run_header_whose_seed_is_not_a_seed(tmp_path, seed, shown):
    path = log(tmp_path, {"type": "run.header", "config": {}, "seed": seed}, ARRIVAL)
    line = one_line(solve(path), 2)
    assert f"{path}:1:" in line and "seed" in line and shown in line, line


def test_a_run_header_without_a_seed(tmp_path):
    path = log(tmp_path, {"type": "run.header", "config": {}}, ARRIVAL)
    line = one_line(solve(path), 2)
    assert f"{path}:1:" in line and "seed" in line and "none" in line, line


def test_a_variable_that_would_decide_otherwise_is_refused_by_name(tmp_path):
    path = log(tmp_path, {"type": "run.header", "config": {}, "seed": 1}, ARRIVAL)
    result = runner.invoke(
        app,
        ["solve", str(path)],
        env={"HOSPITAL_STAFF_PORTERS": "3", "HOSPITAL_TRAVEL_MODEL": "layout"},
    )
    line = one_line(result, 2)
    for words in (
        "staff.porters (HOSPITAL_STAFF_PORTERS)",
        "travel.model (HOSPITAL_TRAVEL_MODEL)",
        "unset HOSPITAL_STAFF_PORTERS, HOSPITAL_TRAVEL_MODEL",
    ):
        assert words in line, line
