"""The dashboard's server on a free loopback port: the page and everything it loads come from
the package, the live feed is server-sent events that change as ticks pass, and /metrics
parses. The commands start it and print its address."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from dashboard.projection import Projection
from dashboard.server import DashboardServer
from scheduler import config as config_module
from scheduler.runs import simulate_run

pytestmark = pytest.mark.timeout(120)


def sse_events(url: str, count: int, timeout: float = 20.0, headers=None) -> list[dict]:
    """The first `count` events of a feed: {'event', 'id', 'data'}."""
    events, current = [], {}
    deadline = time.monotonic() + timeout
    with httpx.stream("GET", url, timeout=timeout, headers=headers or {}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if time.monotonic() > deadline:
                break
            if not line:
                if "data" in current:
                    events.append(current)
                    if len(events) == count:
                        break
                current = {}
                continue
            key, _, value = line.partition(":")
            current[key] = value.strip()
    return events


@pytest.fixture
def config():
    return config_module.load(None, {})


def test_the_page_and_its_assets_are_served_from_the_package(config):
    with DashboardServer(Projection.for_config(config)) as server:
        assert server.host == "127.0.0.1"
        page = httpx.get(server.url, timeout=10)
        assert page.status_code == 200
        sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert sources and all(s.startswith("/") for s in sources), sources
        for source in sources:
            asset = httpx.get(server.url.rstrip("/") + source, timeout=10)
            assert asset.status_code == 200, source
            assert b"https://cdn" not in asset.content[:200_000] or source.endswith("plotly.min.js")
        state = httpx.get(server.url + "api/state", timeout=10).json()
        assert [f["floor"] for f in state["floors"]] == ["A", "B"]


def test_the_feed_changes_as_ticks_pass_and_resumes_where_it_stopped(config):
    projection = Projection.for_config(config, sample_ms=5_000)
    with DashboardServer(projection, interval_s=0.05) as server:
        run = threading.Thread(
            target=simulate_run,
            args=(config, 120_000),
            kwargs={"speed": 40, "on_tick": lambda s, r: projection.apply_result(r)},
        )
        run.start()
        try:
            events = sse_events(server.url + "events", 6)
        finally:
            run.join()
        assert len(events) == 6 and all(e["event"] == "state" for e in events)
        states = [json.loads(e["data"]) for e in events]
        ticks = [s["tick"] for s in states]
        assert ticks == sorted(ticks) and ticks[-1] > ticks[0]
        # each event carries only the series points the client does not have yet
        points = sum(len(s["series"]) for s in states)
        assert states[-1]["series_from"] + len(states[-1]["series"]) == points
        # a client that reconnects with Last-Event-ID gets only what it missed
        again = sse_events(server.url + "events", 1, headers={"Last-Event-ID": events[-1]["id"]})
        resumed = json.loads(again[0]["data"])
        assert resumed["series_from"] == points


def test_metrics_parse(config):
    projection = Projection.for_config(config)
    report = simulate_run(config, 300_000, on_tick=lambda s, r: projection.apply_result(r))
    with DashboardServer(projection) as server:
        text = httpx.get(server.url + "metrics", timeout=10).text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["hospital_arrivals"].samples[0].value == report["arrivals"]
    assert families["hospital_tick_solve_seconds"].type == "histogram"


def address(stream, timeout=30.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = stream.readline()
        match = re.search(r"dashboard: (http://127\.0\.0\.1:\d+/)", line)
        if match:
            return match.group(1)
    raise AssertionError("no address printed")


def hospital(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "cli", *args],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        **kwargs,
    )


def test_hospital_run_dashboard_serves_the_run():
    proc = hospital(
        "run",
        "--duration",
        "2m",
        "--speed",
        "20",
        "--no-db",
        "-q",
        "--dashboard",
        "--dashboard-port",
        "0",
    )
    try:
        url = address(proc.stderr)
        first = httpx.get(url + "api/state", timeout=10).json()
        time.sleep(1.5)
        later = httpx.get(url + "api/state", timeout=10).json()
        assert later["tick"] > first["tick"]
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
        proc.wait()


def test_hospital_dashboard_follows_a_decisions_file(tmp_path):
    decisions = tmp_path / "dec.jsonl"
    follower = hospital("dashboard", "--follow", str(decisions), "--port", "0")
    try:
        url = address(follower.stderr)
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "cli",
                "run",
                "--duration",
                "10m",
                "--speed",
                "max",
                "--no-db",
                "-q",
                "--out",
                str(decisions),
                "--report",
                str(tmp_path / "r.json"),
            ],
            capture_output=True,
            timeout=60,
        )
        assert run.returncode == 0, run.stderr
        report = json.loads((tmp_path / "r.json").read_text())
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            tiles = httpx.get(url + "api/state", timeout=10).json()["tiles"]
            if tiles["arrivals"] == report["arrivals"]:
                break
            time.sleep(0.3)
        assert tiles["arrivals"] == report["arrivals"]
        assert tiles["referred"] == report["referred"]
        assert tiles["discharged"] == report["discharged"]
    finally:
        follower.terminate()
        follower.wait(timeout=10)


def test_hospital_dashboard_follows_a_run_in_its_database(tmp_path):
    url_db = f"sqlite:///{tmp_path / 'h.db'}"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli",
            "run",
            "--duration",
            "10m",
            "--speed",
            "max",
            "--db",
            url_db,
            "-q",
            "--report",
            str(tmp_path / "r.json"),
        ],
        capture_output=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    follower = hospital("dashboard", "--db", url_db, "--port", "0")
    try:
        url = address(follower.stderr)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            tiles = httpx.get(url + "api/state", timeout=10).json()["tiles"]
            if tiles["arrivals"] == report["arrivals"]:
                break
            time.sleep(0.3)
        assert tiles["arrivals"] == report["arrivals"]
        assert tiles["wait_mean_s"] == {r: w["mean"] for r, w in report["wait_s"].items()}
    finally:
        follower.terminate()
        follower.wait(timeout=10)


def test_a_port_in_use_is_one_clear_error(tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "cli",
                "dashboard",
                "--follow",
                str(tmp_path / "dec.jsonl"),
                "--port",
                str(port),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=Path(__file__).resolve().parents[2],
        )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"hospital: error: dashboard: cannot listen on 127.0.0.1:{port}: Address already in use"
    )


def test_dashboard_hold_keeps_the_page_after_the_run_until_ctrl_c(tmp_path):
    """... showing the run's end: its tiles are the KPI report's."""
    import signal

    proc = hospital(
        "run",
        "--duration",
        "2m",
        "--speed",
        "max",
        "--no-db",
        "-q",
        "--report",
        str(tmp_path / "r.json"),
        "--dashboard",
        "--dashboard-port",
        "0",
        "--dashboard-hold",
    )
    try:
        url = address(proc.stderr)
        deadline = time.monotonic() + 30
        while "stays up until Ctrl-C" not in proc.stderr.readline():
            assert time.monotonic() < deadline
        state = httpx.get(url + "api/state", timeout=10).json()
        assert state["finished"] and state["time_s"] == 120
        report = json.loads((tmp_path / "r.json").read_text())
        tiles = state["tiles"]
        for key in ("arrivals", "referred", "discharged", "room_occupancy", "utilisation"):
            assert tiles[key] == report[key], key
        assert tiles["wait_mean_s"] == {r: w["mean"] for r, w in report["wait_s"].items()}
        in_rooms = sum(1 for f in state["floors"] for r in f["rooms"] if r["patient"])
        assert in_rooms == tiles["in_building"]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
        proc.wait()
