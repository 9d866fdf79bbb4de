"""The `hospital` command as a user runs it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from cli.common import parse_duration
from cli.main import app

runner = CliRunner()
KPI_KEYS = {
    "arrivals",
    "admitted",
    "referred",
    "referral_rate",
    "discharged",
    "wait_s",
    "mean_length_of_stay_s",
    "room_occupancy",
    "utilisation",
    "ticks_solved",
    "tick_solve_ms",
}


def run_and_solve(tmp_path, *options, env=None):
    files = {name: tmp_path / name for name in ("ev.jsonl", "dec.jsonl", "dec2.jsonl", "r.json")}
    ran = runner.invoke(
        app,
        [
            "run",
            "--speed",
            "max",
            "--duration",
            "20m",
            "--seed",
            "1",
            "--no-db",
            "--quiet",
            "--record",
            str(files["ev.jsonl"]),
            "--out",
            str(files["dec.jsonl"]),
            "--report",
            str(files["r.json"]),
            *options,
        ],
        env=env,
    )
    assert ran.exit_code == 0, ran.output
    solved = runner.invoke(
        app, ["solve", str(files["ev.jsonl"]), "--out", str(files["dec2.jsonl"]), *options], env=env
    )
    assert solved.exit_code == 0, solved.output
    return files, json.loads(files["r.json"].read_text())


@pytest.mark.parametrize(
    "options, env",
    [
        ((), None),
        (("--policy", "greedy"), None),
        ((), {"HOSPITAL_TRAVEL_MODEL": "layout"}),
    ],
)
def test_solve_reproduces_the_run_byte_for_byte(tmp_path, options, env):
    files, report = run_and_solve(tmp_path, *options, env=env)
    decisions = files["dec.jsonl"].read_bytes()
    assert decisions and decisions == files["dec2.jsonl"].read_bytes()
    assert report.keys() >= KPI_KEYS
    assert set(report["wait_s"]) == {"porter", "medical", "cleaner"}
    assert report["arrivals"] == report["admitted"] + report["referred"] == 241
    assert report["accounted_for"]["arrived"] == 241


VARYING = {
    "HOSPITAL_ARRIVALS_PROCESS": "profile",
    "HOSPITAL_ARRIVALS_RATES_PER_HOUR": ",".join(["900"] * 12 + ["300"] * 12),
    "HOSPITAL_ARRIVALS_ACUITY_MIX": "0.1,0.2,0.4,0.2,0.1",
    "HOSPITAL_ARRIVALS_ISOLATION_SHARE": "0.1",
    "HOSPITAL_HOSPITAL_ISOLATION_ROOMS": "A1,B1",
    "HOSPITAL_DURATIONS_TREATMENT_CV": "0.5",
    "HOSPITAL_DURATIONS_CLEANING_CV": "0.5",
    "HOSPITAL_DURATIONS_TERMINAL_CLEANING_CV": "1",
    "HOSPITAL_DURATIONS_TREATMENT_S_BY_ACUITY": "20,15,10,8,5",
}


def test_solve_reproduces_a_run_looking_ahead_byte_for_byte_holds_and_all(tmp_path):
    """Looking ahead (`HOSPITAL_SCHEDULER_LOOKAHEAD_S`): the holds are decisions like the
    others, and `solve` of the record, with no config given (the header carries
    `lookahead_s`), makes them again."""
    env = VARYING | {"HOSPITAL_SCHEDULER_LOOKAHEAD_S": "60", "HOSPITAL_SCHEDULER_EXPLAIN": "1"}
    files, report = run_and_solve(tmp_path, env=env)
    decisions = files["dec.jsonl"].read_bytes()
    assert decisions == files["dec2.jsonl"].read_bytes()
    types = {json.loads(line)["type"] for line in decisions.splitlines()}
    assert {"staff.held", "room.held"} <= types
    assert report["invariants_checked"]
    solved = runner.invoke(app, ["solve", str(files["ev.jsonl"])])
    assert solved.exit_code == 0 and solved.output.encode() == decisions
    header = json.loads(files["ev.jsonl"].read_text().splitlines()[0])
    assert header["config"]["scheduler"]["lookahead_s"] == 60.0
    # Myopic, the same events decide otherwise: the header is what replays exactly.
    refused = runner.invoke(
        app, ["solve", str(files["ev.jsonl"])], env={"HOSPITAL_SCHEDULER_LOOKAHEAD_S": "0"}
    )
    assert refused.exit_code == 2 and "lookahead_s" in refused.output


def test_holds_kept_in_sqlite_are_exported_and_replayed(tmp_path):
    """Looking ahead, a run kept in SQLite (its ticks written by the writer process, in
    batches of 500): `hospital export` gives its decisions, holds and all, and `solve` of
    the exported events gives them again."""
    config = tmp_path / "la.toml"
    config.write_text(
        "[arrivals]\ninterval_s = 4.0\nacuity_mix = [0.1, 0.2, 0.4, 0.2, 0.1]\n"
        "[scheduler]\nlookahead_s = 60.0\n"
    )
    db = f"sqlite:///{tmp_path / 'run.db'}"
    out, events, exported, solved = (
        tmp_path / name for name in ("dec.jsonl", "ev.jsonl", "ex.jsonl", "solved.jsonl")
    )
    ran = runner.invoke(
        app,
        [
            "run",
            "--config",
            str(config),
            "--speed",
            "max",
            "--duration",
            "15m",
            "--db",
            db,
            "--quiet",
            "--out",
            str(out),
        ],
    )
    assert ran.exit_code == 0, ran.output
    done = runner.invoke(
        app, ["export", "--db", db, "--events", str(events), "--out", str(exported)]
    )
    assert done.exit_code == 0, done.output
    assert exported.read_bytes() == out.read_bytes()
    assert b'"staff.held"' in out.read_bytes() and b'"room.held"' in out.read_bytes()
    replayed = runner.invoke(
        app, ["solve", str(events), "--config", str(config), "--out", str(solved)]
    )
    assert replayed.exit_code == 0, replayed.output
    assert solved.read_bytes() == out.read_bytes()


@pytest.mark.parametrize("policy", ["cpsat", "greedy"])
@pytest.mark.parametrize("distribution", ["lognormal", "gamma"])
def test_solve_reproduces_a_profile_and_varying_durations_byte_for_byte(
    tmp_path, policy, distribution
):
    env = VARYING | {"HOSPITAL_DURATIONS_DISTRIBUTION": distribution}
    files, report = run_and_solve(tmp_path, "--policy", policy, env=env)
    decisions = files["dec.jsonl"].read_bytes()
    assert decisions and decisions == files["dec2.jsonl"].read_bytes()
    assert report["arrivals"] == pytest.approx(300, rel=0.2)  # 900 an hour, for 20 minutes
    # replayed with no config at all: the log's header carries the demand keys
    solved = runner.invoke(app, ["solve", str(files["ev.jsonl"])])
    assert solved.exit_code == 0 and solved.output.encode() == decisions


def test_policy_option_changes_the_policy(tmp_path):
    _, report = run_and_solve(tmp_path, "--policy", "greedy")
    assert report["policy"] == "greedy"
    _, report = run_and_solve(tmp_path)
    assert report["policy"] == "cpsat"


def test_run_prints_the_summary(tmp_path):
    result = runner.invoke(app, ["run", "--speed", "max", "--duration", "5m", "--no-db", "-q"])
    assert result.exit_code == 0, result.output
    assert "Run summary" in result.output and "referred" in result.output


def test_a_run_without_a_database_does_not_load_the_database_layer(tmp_path):
    """SQLAlchemy and Alembic are half a second of every start: a `--no-db` run does
    without them, also when its report shows the configured database URL."""
    code = (
        "import sys\n"
        "from cli.main import app\n"
        "try:\n"
        "    app(['run', '--duration', '1m', '--speed', 'max', '--no-db', '--quiet'])\n"
        "except SystemExit as exit:\n"
        "    assert not exit.code, exit.code\n"
        "print(sorted({'alembic', 'sqlalchemy', 'scheduler.db.store'} & set(sys.modules)))\n"
    )
    for url in ("sqlite:///hospital.db", "postgresql+psycopg2://hospital@127.0.0.1/hospital"):
        done = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            check=True,
            env={**os.environ, "DATABASE_URL": url},
        )
        assert done.stdout.splitlines()[-1] == "[]", url


def test_run_keeps_the_run_in_sqlite(tmp_path):
    db = tmp_path / "run.db"
    result = runner.invoke(
        app, ["run", "--speed", "max", "--duration", "5m", "-q", "--db", f"sqlite:///{db}"]
    )
    assert result.exit_code == 0, result.output
    assert db.stat().st_size > 0


def test_solve_writes_to_stdout_without_out(tmp_path):
    files, _ = run_and_solve(tmp_path)
    result = runner.invoke(app, ["solve", str(files["ev.jsonl"])])
    assert result.exit_code == 0
    assert result.stdout.encode() == files["dec.jsonl"].read_bytes()


def one_line_error(result, code):
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hospital: error:"), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def test_bad_config_value_names_the_key(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[staff]\nporters = -1\n")
    line = one_line_error(runner.invoke(app, ["run", "--config", str(bad), "--no-db"]), 2)
    assert "staff.porters" in line


def test_bad_environment_override_names_the_key():
    result = runner.invoke(app, ["run", "--no-db"], env={"HOSPITAL_STAFF_PORTERS": "many"})
    assert "staff.porters" in one_line_error(result, 2)


def test_missing_config_file():
    assert "not found" in one_line_error(
        runner.invoke(app, ["solve", "x.jsonl", "--config", "/nonexistent.toml"]), 2
    )


@pytest.mark.parametrize(
    "line, message",
    [
        ("{not json", "not valid JSON"),
        ('{"type": "patient.teleported", "event_id": "e", "time": 1}', "unknown event type"),
        ('{"type": "patient.arrived", "event_id": "e", "time": 1}', "patient_id"),
        ("[1, 2]", "JSON object"),
    ],
)
def test_malformed_event_log_names_the_line(tmp_path, line, message):
    log = tmp_path / "events.jsonl"
    log.write_text(
        '{"type": "patient.arrived", "event_id": "a1", "time": 0, "patient_id": "p1"}\n'
        + line
        + "\n"
    )
    error = one_line_error(runner.invoke(app, ["solve", str(log)]), 2)
    assert f"{log}:2:" in error and message in error


def test_impossible_transition_is_rejected_and_reported(tmp_path):
    log = tmp_path / "events.jsonl"
    log.write_text(
        '{"type": "patient.arrived", "event_id": "a1", "time": 0, "patient_id": "p1"}\n'
        '{"type": "visit.completed", "event_id": "v1", "time": 3, "task_id": "task-99", '
        '"staff_id": "nurse-1", "patient_id": "p1", "room_id": "A1"}\n'
    )
    result = runner.invoke(app, ["solve", str(log)])
    assert result.exit_code == 1
    assert f"hospital: rejected: {log}:2: " in result.stderr and "task-99" in result.stderr
    # the good event was still decided
    assert '"patient.admitted"' in result.stdout


def test_missing_event_log():
    assert "cannot read" in one_line_error(runner.invoke(app, ["solve", "/nonexistent.jsonl"]), 2)


@pytest.mark.parametrize(
    "text, ms",
    [
        ("8h", 28_800_000),
        ("90m", 5_400_000),
        ("1h30m", 5_400_000),
        ("45s", 45_000),
        ("2.5", 2500),
        ("1d", 86_400_000),
    ],
)
def test_durations(text, ms):
    assert parse_duration(text) == ms


def test_bad_duration_and_speed_are_usage_errors():
    assert runner.invoke(app, ["run", "--duration", "soon", "--no-db"]).exit_code == 2
    assert runner.invoke(app, ["run", "--speed", "-3", "--no-db"]).exit_code == 2


def test_help_lists_the_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("run", "solve", "db"):
        assert command in result.output


def test_solve_replays_a_recorded_log_with_no_config_given(tmp_path):
    """A log of `hospital run --record` names its config and seed: `hospital solve` needs
    nothing else, and a --config that decides otherwise is one clear error."""
    config = tmp_path / "c.toml"
    config.write_text('[staff]\nporters = 1\n[travel]\nmodel = "layout"\n')
    events, decisions = tmp_path / "ev.jsonl", tmp_path / "dec.jsonl"
    ran = CliRunner().invoke(
        app,
        [
            "run",
            "--config",
            str(config),
            "--speed",
            "max",
            "--duration",
            "10m",
            "--no-db",
            "--quiet",
            "--policy",
            "greedy",
            "--record",
            str(events),
            "--out",
            str(decisions),
        ],
    )
    assert ran.exit_code == 0, ran.output
    header = json.loads(events.read_text().splitlines()[0])
    assert header["type"] == "run.header" and header["config"]["staff"]["porters"] == 1
    assert header["config"]["scheduler"]["policy"] == "greedy" and header["seed"] == 1

    again = tmp_path / "dec2.jsonl"
    solved = CliRunner().invoke(app, ["solve", str(events), "--out", str(again)])
    assert solved.exit_code == 0, solved.output
    assert again.read_bytes() == decisions.read_bytes()

    same = CliRunner().invoke(
        app, ["solve", str(events), "--policy", "greedy", "--config", str(config)]
    )
    assert same.exit_code == 0, same.output
    mismatch = CliRunner().invoke(app, ["solve", str(events), "--policy", "cpsat"])
    assert mismatch.exit_code == 2
    assert "recorded with another config: scheduler.policy differ" in mismatch.stderr
    assert "Traceback" not in mismatch.output
    # A variable that would decide otherwise is refused as --config is, naming it; one that
    # decides nothing in a replay (where the broker is) changes nothing.
    other = CliRunner().invoke(app, ["solve", str(events)], env={"HOSPITAL_STAFF_PORTERS": "3"})
    assert other.exit_code == 2 and "staff.porters (HOSPITAL_STAFF_PORTERS)" in other.stderr
    assert "unset HOSPITAL_STAFF_PORTERS" in other.stderr
    same_value = CliRunner().invoke(
        app, ["solve", str(events)], env={"HOSPITAL_STAFF_PORTERS": "1"}
    )
    assert same_value.exit_code == 0 and same_value.stdout.encode() == decisions.read_bytes()
    broker = CliRunner().invoke(app, ["solve", str(events)], env={"HOSPITAL_KAFKA_PARTITIONS": "7"})
    assert broker.exit_code == 0 and broker.stdout.encode() == decisions.read_bytes()


def test_a_broken_invariant_ends_run_and_solve_in_one_line_not_a_traceback(tmp_path, monkeypatch):
    """The validator's alarm is a scheduler's bug: `run` and `solve` say it in one line,
    exit 1, with no traceback (the region commands already did)."""
    from scheduler.validator import Auditor

    record = tmp_path / "events.jsonl"
    made = runner.invoke(
        app, ["run", "--duration", "2m", "--speed", "max", "--record", str(record)]
    )
    assert made.exit_code == 0, made.output

    def alarm(self, tick, inbound, decisions):
        if tick >= 30:
            self.fail(tick, "a planted alarm")

    monkeypatch.setattr(Auditor, "check_tick", alarm)
    for args in (["run", "--duration", "2m", "--speed", "max"], ["solve", str(record)]):
        result = runner.invoke(app, args)
        assert result.exit_code == 1, (args, result.output)
        errors = [line for line in result.output.splitlines() if line.startswith("hospital:")]
        assert len(errors) == 1 and re.fullmatch(
            r"hospital: error: invariant broken: tick \d+: a planted alarm", errors[0]
        ), result.output
        assert "Traceback" not in result.output
        assert isinstance(result.exception, SystemExit)
