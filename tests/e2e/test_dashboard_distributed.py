"""The dashboard beside the distributed mode: `hospital run --kafka --dashboard` follows the
new run in the database while the services run; its tiles and /metrics end at the run's KPI
report."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from .conftest import ROOT, Topics, child_env

pytestmark = [pytest.mark.services, pytest.mark.timeout(300)]


def test_run_kafka_dashboard_follows_the_run(topics: Topics, database, tmp_path):
    report = tmp_path / "kpi.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cli",
            "run",
            "--kafka",
            "--speed",
            "20",
            "--duration",
            "5m",
            "--db",
            database.url,
            "--report",
            str(report),
            "-q",
            "--dashboard",
            "--dashboard-port",
            "0",
            "--seed",
            "7",
            "--label",
            "e2e dashboard",
        ],
        env=child_env(topics.env),
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = None
        deadline = time.monotonic() + 60
        while url is None and time.monotonic() < deadline:
            match = re.search(r"dashboard: (http://127\.0\.0\.1:\d+/)", proc.stderr.readline())
            url = match and match.group(1)
        assert url, "no address printed"
        seen_ticks = []
        last = None
        while proc.poll() is None and time.monotonic() < deadline + 200:
            try:
                state = httpx.get(url + "api/state", timeout=5).json()
                metrics = httpx.get(url + "metrics", timeout=5).text
            except httpx.HTTPError:
                break  # the run is over and the dashboard with it
            seen_ticks.append(state["tick"])
            last = (state, metrics)
            time.sleep(0.5)
        proc.stderr.read()
        assert proc.wait(timeout=200) == 0
    finally:
        proc.kill()
        proc.wait()
    assert len({t for t in seen_ticks if t >= 0}) >= 2, seen_ticks  # it moved as it ran
    figures = json.loads(report.read_text())
    state, metrics = last
    assert state["run_id"] == figures["run_id"]
    assert state["duration_s"] == 300.0  # the run's end, stored with it: the page's progress
    families = {f.name: f for f in text_string_to_metric_families(metrics)}
    arrivals = families["hospital_arrivals"].samples[0].value
    assert 0 < arrivals <= figures["arrivals"]
    lag = {s.labels["topic"]: s.value for s in families["hospital_consumer_lag_messages"].samples}
    assert set(lag) == {topics.config.kafka.inbound_topic}, lag
    assert lag[topics.config.kafka.inbound_topic] >= 0

    # the run is kept: listed, and reportable with the KPI report's figures
    listed = subprocess.run(
        [sys.executable, "-m", "cli", "runs", "--db", database.url, "--json"],
        env=child_env(topics.env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    kept = next(r for r in rows if r["run_id"] == figures["run_id"])
    assert kept["mode"] == "distributed" and kept["status"] == "finished"
    assert (kept["label"], kept["seed"]) == ("e2e dashboard", 7)  # issue 22, item 4
    from scheduler.db import kept_runs
    from scheduler.db.store import connect

    engine = connect(database.url)
    try:  # the kept config is the one the run used: with its seed
        assert kept_runs.find(engine, figures["run_id"]).config["arrivals"]["seed"] == 7
    finally:
        engine.dispose()
    assert kept["figures"]["arrivals"] == figures["arrivals"]
    page = tmp_path / "report.html"
    made = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli",
            "report",
            figures["run_id"],
            "--db",
            database.url,
            "--out",
            str(page),
        ],
        env=child_env(topics.env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0, made.stderr
    shown = dict(re.findall(r'<td data-figure="([^"]+)">([^<]*)</td>', page.read_text()))
    for key in ("arrivals", "admitted", "referred", "discharged"):
        assert shown[key] == str(figures[key]), key
