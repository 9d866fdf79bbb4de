"""Runs are kept: two consecutive runs on one database are both listed by `hospital runs` and
both reportable, and a kept run's report shows its KPI report's figures; the KPI JSON says
which run, seed and config made it."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from cli.main import app

pytestmark = pytest.mark.timeout(300)
runner = CliRunner()


def figures(page: str, column: int = 0) -> dict[str, str]:
    cells: dict[str, list[str]] = {}
    for key, value in re.findall(r'<td data-figure="([^"]+)">([^<]*)</td>', page):
        cells.setdefault(key, []).append(value)
    return {k: v[column] for k, v in cells.items()}


def assert_same_figures(shown: dict[str, str], kpi: dict) -> None:
    for key in ("arrivals", "admitted", "referred", "discharged", "ticks"):
        assert shown[key] == str(kpi[key]), key
    assert shown["referral_rate"] == f"{kpi['referral_rate']:.2%}"
    assert shown["room_occupancy"] == f"{kpi['room_occupancy']:.2%}"
    for role in ("porter", "medical", "cleaner"):
        assert shown[f"wait_mean_s.{role}"] == f"{kpi['wait_s'][role]['mean']:g}", role
        assert shown[f"utilisation.{role}"] == f"{kpi['utilisation'][role]:.2%}", role


def test_two_runs_on_one_database_are_both_kept_and_reportable(tmp_path):
    db = f"sqlite:///{tmp_path / 'h.db'}"
    kpis = []
    for n, options in enumerate((["--policy", "cpsat"], ["--policy", "greedy", "--seed", "7"])):
        report = tmp_path / f"kpi{n}.json"
        ran = runner.invoke(
            app,
            [
                "run",
                "--speed",
                "max",
                "--duration",
                "30m",
                "--db",
                db,
                "-q",
                "--report",
                str(report),
                *options,
            ],
        )
        assert ran.exit_code == 0, ran.output
        kpis.append(json.loads(report.read_text()))
    first, second = kpis
    assert first["run_id"] != second["run_id"]
    assert (first["seed"], second["seed"]) == (1, 7)
    assert second["config"]["scheduler"]["policy"] == "greedy"

    listed = runner.invoke(app, ["runs", "--db", db, "--json"])
    assert listed.exit_code == 0, listed.output
    rows = [json.loads(line) for line in listed.output.splitlines()]
    assert [r["run_id"] for r in rows] == [second["run_id"], first["run_id"]]  # latest first
    assert [r["policy"] for r in rows] == ["greedy", "cpsat"]
    assert all(r["status"] == "finished" and r["version"] for r in rows)
    assert rows[1]["figures"]["arrivals"] == first["arrivals"]
    table = runner.invoke(app, ["runs", "--db", db])
    assert first["run_id"] in table.output and second["run_id"] in table.output

    for kpi in kpis:
        out = tmp_path / f"{kpi['run_id']}.html"
        made = runner.invoke(app, ["report", kpi["run_id"], "--db", db, "--out", str(out)])
        assert made.exit_code == 0, made.output
        assert_same_figures(figures(out.read_text()), kpi)
    latest = tmp_path / "latest.html"
    assert runner.invoke(app, ["report", "--db", db, "--out", str(latest)]).exit_code == 0
    assert f">{second['run_id']}<" in latest.read_text()

    both = tmp_path / "both.html"
    made = runner.invoke(
        app,
        ["report", first["run_id"], "--compare", second["run_id"], "--db", db, "--out", str(both)],
    )
    assert made.exit_code == 0, made.output
    page = both.read_text()
    assert_same_figures(figures(page, 0), first)
    assert_same_figures(figures(page, 1), second)


def test_an_unknown_run_is_one_clear_error(tmp_path):
    db = f"sqlite:///{tmp_path / 'h.db'}"
    assert "no runs kept" in runner.invoke(app, ["runs", "--db", db]).output
    made = runner.invoke(app, ["report", "run-nope", "--db", db])
    assert made.exit_code == 2
    assert "no run 'run-nope' kept" in made.output


def test_no_db_keeps_nothing_and_the_report_still_names_seed_and_config(tmp_path):
    report = tmp_path / "kpi.json"
    ran = runner.invoke(
        app, ["run", "--speed", "max", "--duration", "5m", "--no-db", "-q", "--report", str(report)]
    )
    assert ran.exit_code == 0, ran.output
    kpi = json.loads(report.read_text())
    assert "run_id" not in kpi
    assert kpi["seed"] == 1 and kpi["config"]["hospital"]["floors"] == ["A", "B"]


def test_a_scheduler_service_keeps_its_run_and_a_new_run_of_its_id_sets_the_old_aside(tmp_path):
    """`hospital scheduler`'s keeping (the services themselves: tests/e2e/test_kept_by_hand):
    resumed, the run stays one row; started anew under the same id (--fresh), the kept one
    moves aside and both are listed and reportable."""
    from types import SimpleNamespace

    from cli.keeping import keeping_service
    from scheduler import config as config_module
    from scheduler.db.ledger import Ledger

    db = f"sqlite:///{tmp_path / 'h.db'}"
    settings = config_module.load(None, {})
    ledger = Ledger(db, settings, settings.scheduler.policy)
    past_the_end = SimpleNamespace(now_ms=lambda: 90_000)
    try:
        ledger.start_run("run-1", 0.0, 1.0, {})
        with keeping_service(
            ledger, settings, "run-1", new_run=True, until_ms=60_000, clock=past_the_end
        ):
            pass
        with (
            pytest.raises(KeyboardInterrupt),
            keeping_service(  # restarted, then Ctrl-C
                ledger,
                settings,
                "run-1",
                new_run=False,
                until_ms=60_000,
                clock=SimpleNamespace(now_ms=lambda: 30_000),
            ),
        ):
            raise KeyboardInterrupt
        listed = runner.invoke(app, ["runs", "--db", db, "--json"])
        rows = [json.loads(line) for line in listed.output.splitlines()]
        assert [(r["run_id"], r["status"], r["duration_s"]) for r in rows] == [
            ("run-1", "interrupted", 30.0)
        ]

        ledger.start_run("run-1", 0.0, 1.0, {})
        with keeping_service(
            ledger, settings, "run-1", new_run=True, until_ms=60_000, clock=past_the_end
        ):
            pass
    finally:
        ledger.close()
    listed = runner.invoke(app, ["runs", "--db", db, "--json"])
    rows = [json.loads(line) for line in listed.output.splitlines()]
    assert len(rows) == 2, listed.output
    assert rows[0]["run_id"] == "run-1" and rows[0]["status"] == "finished"
    assert re.fullmatch(r"run-1-\d{8}-\d{6}", rows[1]["run_id"]), rows[1]["run_id"]
    assert rows[1]["status"] == "interrupted"
    for row in rows:
        assert row["mode"] == "distributed" and row["figures"]["run_id"] == "run-1"
        made = runner.invoke(
            app, ["report", row["run_id"], "--db", db, "--out", str(tmp_path / "r.html")]
        )
        assert made.exit_code == 0, made.output
