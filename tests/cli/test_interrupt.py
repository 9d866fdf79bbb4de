"""Ctrl-C, SIGTERM and SIGKILL of a live embedded run (`hospital run --speed 20`), as a user
sends them to the real process: what is left behind must be consistent and replayable. And
output paths that cannot be written are refused before the run starts."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from cli.main import app

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
runner = CliRunner()


def hospital(*args: str, cwd: Path, **options) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "cli", *args],
        cwd=cwd,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **options,
    )


def db_ticks(url: str) -> int:
    """Ticks committed in the run's database so far (0 before its tables exist)."""
    if url.startswith("sqlite:///"):
        try:
            with sqlite3.connect(url.removeprefix("sqlite:///"), timeout=5) as db:
                return db.execute("SELECT count(*) FROM ticks").fetchone()[0]
        except sqlite3.OperationalError:  # no such table yet
            return 0
    engine = create_engine(url)
    try:
        with engine.connect() as db:
            return db.execute(text("SELECT count(*) FROM ticks")).scalar_one()
    except Exception:  # noqa: BLE001 - the tables are being made afresh
        return 0
    finally:
        engine.dispose()


def live_run(tmp_path: Path, url: str, policy: str) -> subprocess.Popen:
    """A 10-minute run at 20x (30 s of wall time), its ticks in the database as they come."""
    run = hospital(
        "run",
        "--speed",
        "20",
        "--duration",
        "10m",
        "--policy",
        policy,
        "--record",
        "R",
        "--out",
        "O",
        "--report",
        "J",
        "--db",
        url,
        cwd=tmp_path,
    )
    deadline = time.monotonic() + 20
    # The record is opened once the database is made afresh (a PostgreSQL one may hold an
    # earlier run till then); then a few ticks committed while it runs, not at its end.
    while not (tmp_path / "R").exists() or db_ticks(url) < 5:
        assert run.poll() is None, run.communicate()
        assert time.monotonic() < deadline, "no tick in the database after 20 s"
        time.sleep(0.1)
    return run


def stored(url: str) -> dict:
    engine = create_engine(url)
    try:
        with engine.connect() as db:
            return {
                "ticks": [t for (t,) in db.execute(text("SELECT tick FROM ticks ORDER BY tick"))],
                "last_time": db.execute(text("SELECT max(time) FROM ticks")).scalar(),
                "decisions": [
                    e
                    for (e,) in db.execute(
                        text("SELECT event_id FROM decisions ORDER BY tick, position")
                    )
                ],
                "events": db.execute(text("SELECT count(*) FROM inbound_events")).scalar(),
                "status": db.execute(text("SELECT status FROM kept_runs ORDER BY started_at DESC"))
                .scalars()
                .first(),
            }
    finally:
        engine.dispose()


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def solved(tmp_path: Path) -> bytes:
    result = runner.invoke(app, ["solve", str(tmp_path / "R"), "--out", str(tmp_path / "O2")])
    assert result.exit_code == 0, result.output
    return (tmp_path / "O2").read_bytes()


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'h.db'}"


@pytest.mark.parametrize("policy", ["cpsat", "greedy"])
@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_a_live_run_at_a_tick_boundary_with_everything_consistent(
    tmp_path, policy, signum, code
):
    url = sqlite_url(tmp_path)
    run = live_run(tmp_path, url, policy)
    started = time.monotonic()
    run.send_signal(signum)
    stdout, stderr = run.communicate(timeout=20)
    assert time.monotonic() - started < 10  # not the 30 s of the whole run
    assert run.returncode == code, stderr
    name = signal.Signals(signum).name
    assert "Run summary (interrupted at" in stdout and f"by {name})" in stdout
    assert f"hospital: stopped by {name} at " in stderr and "Traceback" not in stderr

    report = json.loads((tmp_path / "J").read_text())
    assert report["interrupted_by"] == name and report["policy"] == policy
    record, decisions = lines(tmp_path / "R")[1:], lines(tmp_path / "O")
    ticks = sorted({r["tick"] for r in record})
    db = stored(url)
    # The database, the record and the decisions hold the same ticks, the last one the
    # report's: every tick decided, none half-written.
    assert db["ticks"] == ticks and len(ticks) == report["ticks"] >= 5
    assert db["last_time"] * 1000 == report["interrupted_at_ms"] == report["duration_s"] * 1000
    assert db["decisions"] == [d["event_id"] for d in decisions]
    assert db["events"] == len(record)
    assert db["status"] == "interrupted"
    assert solved(tmp_path) == (tmp_path / "O").read_bytes()


@pytest.mark.services
def test_a_live_run_on_postgresql_commits_each_tick_and_stops_cleanly(tmp_path):
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgresql"):
        pytest.skip("DATABASE_URL is not set to a PostgreSQL URL")
    run = live_run(tmp_path, url, "cpsat")
    run.send_signal(signal.SIGINT)
    _, stderr = run.communicate(timeout=20)
    assert run.returncode == 130, stderr
    db, decisions = stored(url), lines(tmp_path / "O")
    assert db["decisions"] == [d["event_id"] for d in decisions]
    assert db["ticks"] == sorted({r["tick"] for r in lines(tmp_path / "R")[1:]})
    assert solved(tmp_path) == (tmp_path / "O").read_bytes()


def test_hospital_status_shows_the_live_run_as_it_goes(tmp_path):
    url = sqlite_url(tmp_path)
    run = live_run(tmp_path, url, "greedy")
    try:
        status = subprocess.run(
            [sys.executable, "-m", "cli", "status", "--db", url],
            capture_output=True,
            text=True,
            timeout=60,
            env=ENV,
        )
        assert status.returncode == 0, status.stderr
        assert "no tick yet" not in status.stdout and ", tick " in status.stdout
    finally:
        run.send_signal(signal.SIGINT)
        run.communicate(timeout=20)


def prefixes(shorter: list, longer: list) -> bool:
    return longer[: len(shorter)] == shorter


def test_a_killed_live_run_leaves_whole_ticks_with_the_database_never_ahead(tmp_path):
    url = sqlite_url(tmp_path)
    run = live_run(tmp_path, url, "cpsat")
    run.kill()
    run.communicate(timeout=20)
    record_ticks = sorted({r["tick"] for r in lines(tmp_path / "R")[1:]})  # whole lines
    decisions = [d["event_id"] for d in lines(tmp_path / "O")]
    db = stored(url)
    # The files are flushed before the database commits: it is never ahead of them.
    assert len(db["ticks"]) >= 5 and prefixes(db["ticks"], record_ticks)
    assert prefixes(db["decisions"], decisions)
    assert db["status"] == "running"
    assert_whole_ticks(tmp_path)


def test_a_run_killed_at_full_speed_leaves_whole_ticks(tmp_path):
    url = sqlite_url(tmp_path)
    run = hospital(
        "run",
        "--speed",
        "max",
        "--duration",
        "24h",
        "--record",
        "R",
        "--out",
        "O",
        "--db",
        url,
        cwd=tmp_path,
    )
    deadline = time.monotonic() + 30
    while db_ticks(url) < 500:  # the first batch committed
        assert run.poll() is None and time.monotonic() < deadline, run.communicate()
        time.sleep(0.05)
    run.kill()
    run.communicate(timeout=20)
    record_ticks = sorted({r["tick"] for r in lines(tmp_path / "R")[1:]})
    db = stored(url)
    # The database holds its batches of 500 ticks; the files what their buffers wrote.
    assert len(db["ticks"]) % 500 == 0
    assert prefixes(db["ticks"], record_ticks) or prefixes(record_ticks, db["ticks"])
    assert_whole_ticks(tmp_path)


def test_a_run_interrupted_at_full_speed_is_kept_with_the_time_it_reached(tmp_path):
    """Ctrl-C of a 24 h `--speed max` run: `hospital runs` shows the simulated time it
    reached, and `hospital report` of the kept run the figures of the run's own KPI report
    (staff busy, rooms occupied up to that time, not up to the 24 h it was to run)."""
    url = sqlite_url(tmp_path)
    run = hospital("run", "--speed", "max", "--duration", "24h", "--report", "J", "--db", url,
                   cwd=tmp_path)  # fmt: skip
    deadline = time.monotonic() + 60
    while db_ticks(url) < 1000:  # two batches committed: hours of the 24
        assert run.poll() is None and time.monotonic() < deadline, run.communicate()
        time.sleep(0.05)
    run.send_signal(signal.SIGINT)
    _, stderr = run.communicate(timeout=60)
    assert run.returncode == 130, stderr
    report = json.loads((tmp_path / "J").read_text())
    reached_s = report["interrupted_at_ms"] / 1000
    assert 1000 <= reached_s < 24 * 3600 and report["duration_s"] == reached_s

    listed = runner.invoke(app, ["runs", "--db", url, "--json"])
    [kept] = [json.loads(line) for line in listed.output.splitlines()]
    assert (kept["status"], kept["duration_s"]) == ("interrupted", reached_s)
    assert kept["figures"]["room_occupancy"] == report["room_occupancy"]

    page = tmp_path / "report.html"
    made = runner.invoke(app, ["report", "--db", url, "--out", str(page)])
    assert made.exit_code == 0, made.output
    shown = dict(re.findall(r'<td data-figure="([^"]+)">([^<]*)</td>', page.read_text()))
    assert shown["duration_s"] == f"{reached_s:g}"
    assert shown["room_occupancy"] == f"{report['room_occupancy']:.2%}"
    for role in ("porter", "medical", "cleaner"):
        assert shown[f"utilisation.{role}"] == f"{report['utilisation'][role]:.2%}", role


def assert_whole_ticks(tmp_path: Path) -> None:
    """The record and the decisions end with whole ticks (whole lines, `lines` parses
    each): `hospital solve` of the record and the decisions agree as far as both go, and
    where one goes on, it is with a later tick."""
    decisions = lines(tmp_path / "O")
    replayed = list(map(json.loads, solved(tmp_path).splitlines()))
    shorter, longer = sorted((decisions, replayed), key=len)
    assert shorter and prefixes(shorter, longer)
    if len(longer) > len(shorter):
        assert longer[len(shorter)]["tick"] > shorter[-1]["tick"]


def test_the_live_view_ends_its_line_before_the_summary(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "cli", "run", "--speed", "1000", "--duration", "1m", "--no-db"],
        cwd=tmp_path,
        env=ENV,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout
    assert "duplicates 0\n" in done.stdout and "duplicates 0Run" not in done.stdout


@pytest.mark.parametrize(
    "options, message",
    [
        (["--report", "missing/J"], "--report missing/J: no directory missing"),
        (["--out", "."], "--out .: is a directory"),
        (["--record", "file/R"], "--record file/R: file is not a directory"),
        (["--record", "X", "--out", "./X"], "--record and --out X: one file for two outputs"),
    ],
)
def test_run_refuses_an_output_it_could_not_write_before_it_starts(tmp_path, options, message):
    (tmp_path / "file").write_text("")
    started = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli",
            "run",
            "--speed",
            "20",
            "--duration",
            "10m",
            "--db",
            sqlite_url(tmp_path),
            "--record",
            "R",
            *options,
        ],
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert time.monotonic() - started < 15
    assert done.returncode == 2 and done.stderr == f"hospital: error: {message}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # no database, no file


@pytest.mark.parametrize("option", ["--out", "--report"])
def test_solve_refuses_an_output_it_could_not_write_before_it_replays(tmp_path, option):
    events = tmp_path / "ev.jsonl"
    events.write_text("")
    result = runner.invoke(app, ["solve", str(events), option, str(tmp_path / "no" / "x")])
    assert result.exit_code == 2
    assert (
        result.stderr == f"hospital: error: {option} {tmp_path}/no/x: no directory {tmp_path}/no\n"
    )


def test_report_refuses_an_html_file_it_could_not_write_before_it_reads_the_run(tmp_path):
    out = tmp_path / "no" / "report.html"
    result = runner.invoke(app, ["report", str(tmp_path / "missing.jsonl"), "--out", str(out)])
    assert result.exit_code == 2
    assert result.stderr == f"hospital: error: --out {out}: no directory {out.parent}\n"


def test_a_first_signal_asks_to_stop_a_second_aborts_and_leaving_restores_the_handlers():
    from cli.common import StopSignals

    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with StopSignals() as signals:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.01)  # the handler runs between two bytecodes of this thread
        assert signals.stop.is_set() and signals.received == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
