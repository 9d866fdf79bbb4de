"""The region's live page: `hospital region run --dashboard 0 --speed N` serves it from the
package, its state changes as the region's ticks pass, its figures end as the run's, and the
run decides the same with the page on; in a real browser (headless chromium) the hospitals
show as tiles coloured by load and update without a reload."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from browser_artefacts import screenshot
from test_dashboard_server import address, sse_events

from dashboard.app import create_region_app
from dashboard.region import RegionView
from dashboard.server import DashboardServer
from scheduler.region import config as region_config
from scheduler.region.simulation import simulate_region

pytestmark = pytest.mark.timeout(180)
ROOT = Path(__file__).resolve().parents[2]
REGION = """
[region]
seed = 4
[transfers]
max_wait_s = 120
[travel]
minutes = [[0, 3, 4], [3, 0, 2], [4, 2, 0]]
[[hospitals]]
id = "busy"
scenario = "default"
[hospitals.set]
"arrivals.process" = "poisson"
"arrivals.interval_s" = 15.0
"durations.treatment_s" = 120.0
[[hospitals]]
id = "quiet"
scenario = "default"
[hospitals.set]
"arrivals.process" = "poisson"
"arrivals.interval_s" = 60.0
"durations.treatment_s" = 120.0
[[hospitals]]
id = "far"
scenario = "default"
[hospitals.set]
"arrivals.process" = "poisson"
"arrivals.interval_s" = 45.0
"durations.treatment_s" = 120.0
"""


def region_run(folder: Path, *args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "cli", "region", "run", "--config", "region.toml", *args],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        cwd=folder,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        **kwargs,
    )


def test_hospital_region_run_dashboard_serves_the_region_live(tmp_path: Path):
    (tmp_path / "region.toml").write_text(REGION)
    args = ("--duration", "20m", "--report", "r.json")
    proc = region_run(tmp_path, *args, "--out", "live.jsonl", "--speed", "150", "--dashboard", "0")
    try:
        url = address(proc.stderr)
        page = httpx.get(url, timeout=10)
        assert page.status_code == 200 and "hospital region" in page.text
        for source in re.findall(r'(?:src|href)="([^"]+)"', page.text):
            assert source.startswith("/")  # from the package, no network
            assert httpx.get(url.rstrip("/") + source, timeout=10).status_code == 200, source
        first = httpx.get(url + "api/state", timeout=10).json()
        assert [h["id"] for h in first["hospitals"]] == ["busy", "quiet", "far"]
        assert first["coordinator"] == "cpsat" and first["duration_s"] == 1200
        time.sleep(1.5)
        later = httpx.get(url + "api/state", timeout=10).json()
        assert later["tick"] > first["tick"] and later["version"] > first["version"]
        events = sse_events(url + "events", 2)
        assert [e["event"] for e in events] == ["state", "state"]
        states = [json.loads(e["data"]) for e in events]
        assert states[1]["tick"] >= states[0]["tick"] >= later["tick"]
        assert proc.wait(timeout=60) == 0, proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()
    last = states[-1]
    report = json.loads((tmp_path / "r.json").read_text())
    assert last["region"]["arrivals"] <= report["region"]["arrivals"]
    assert all(h["rooms"] == 6 for h in last["hospitals"])
    # the same decisions without the page
    quiet = region_run(tmp_path, *args, "--out", "alone.jsonl")
    assert quiet.wait(timeout=120) == 0
    assert (tmp_path / "live.jsonl").read_bytes() == (tmp_path / "alone.jsonl").read_bytes()


def test_the_region_page_shows_tiles_and_transfers_and_updates(browser, tmp_path: Path):
    path = tmp_path / "region.toml"
    path.write_text(REGION)
    region = region_config.load(path)
    view = RegionView(region, "cpsat", sample_ms=30_000, duration_ms=3_600_000, label="three")
    stop = threading.Event()

    def on_tick(out):
        view.apply(out)
        if stop.is_set():
            raise KeyboardInterrupt

    def run():
        try:
            simulate_region(region, "cpsat", 3_600_000, on_tick=on_tick, speed=120)
        except KeyboardInterrupt:
            pass

    thread = threading.Thread(target=run, daemon=True)
    with DashboardServer(view, interval_s=0.2, create=create_region_app) as server:
        thread.start()
        try:
            browser.get(server.url)
            tiles = "#hospitals .hospital"
            wait_for = time.monotonic() + 30
            while browser.execute_script(f"return document.querySelectorAll('{tiles}').length") < 3:
                assert time.monotonic() < wait_for, "no tiles"
                time.sleep(0.2)
            names = browser.execute_script(
                f"return [...document.querySelectorAll('{tiles}')].map(e => e.dataset.hospital)"
            )
            assert names == ["busy", "quiet", "far"]
            loads = browser.execute_script(
                f"return [...document.querySelectorAll('{tiles}')].map(e => e.dataset.load)"
            )
            assert set(loads) <= {"load-low", "load-mid", "load-high"}
            versions, road = set(), 0
            for _ in range(16):
                versions.add(browser.execute_script("return document.body.dataset.version"))
                road = max(
                    road,
                    browser.execute_script(
                        "return document.querySelectorAll('#road tbody tr').length"
                    ),
                )
                time.sleep(0.25)
            assert len(versions) >= 3, versions  # it updates without a reload
            assert road > 0  # a transfer on the road was shown (busy sends every few minutes)
            transfers = browser.execute_script(
                "return document.querySelector('[data-tile=transfers]').textContent"
            )
            assert int(transfers) > 0
            screenshot(browser, "region-dashboard", height=1200)
        finally:
            stop.set()
            thread.join(30)
