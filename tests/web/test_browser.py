"""In a real browser (headless chromium): the dashboard shows rooms, staff, waiting lists,
tiles and charts during a run and updates as ticks pass without a reload, for the small
hospital and for one of 200 rooms; a generated report's plots render. Screenshots are
written as test artefacts."""

from __future__ import annotations

import threading
import time

import pytest
from browser_artefacts import screenshot
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from dashboard import report
from dashboard.embedded import LiveProjection
from dashboard.projection import ROLES
from dashboard.server import DashboardServer
from scheduler import config as config_module
from scheduler import scenarios
from scheduler.runs import new_kpi, simulate_run

pytestmark = pytest.mark.timeout(240)


class LiveRun:
    """A run on a thread at a given speed, feeding a dashboard; stops when asked."""

    def __init__(self, config, speed: float, duration_ms: int, label: str | None = None):
        kpi = new_kpi(config)
        self.projection = LiveProjection.for_config(
            config, kpi=kpi, sample_ms=5_000, label=label, duration_ms=duration_ms
        )
        self.stop = threading.Event()

        def on_tick(scheduler, result):
            self.projection.on_tick(scheduler, result)
            if self.stop.is_set():
                raise KeyboardInterrupt

        def run():
            try:
                simulate_run(config, duration_ms, speed=speed, on_tick=on_tick, kpi=kpi)
            except KeyboardInterrupt:
                pass

        self.thread = threading.Thread(target=run, daemon=True)

    def __enter__(self):
        self.server = DashboardServer(self.projection).start()
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(30)
        self.server.stop()


def text(driver, css: str) -> str:
    """An element's text, read in one script (the page redraws its parts as it updates)."""
    return driver.execute_script("return document.querySelector(arguments[0]).textContent", css)


def count(driver, css: str) -> int:
    return driver.execute_script("return document.querySelectorAll(arguments[0]).length", css)


def attributes(driver, css: str, name: str) -> list[str]:
    return driver.execute_script(
        "return [...document.querySelectorAll(arguments[0])]"
        ".map(e => e.getAttribute(arguments[1]))",
        css,
        name,
    )


def test_the_dashboard_shows_the_run_and_updates_live(browser):
    """The default hospital with the clinical rules on: two rooms able to isolate, patients
    of every ESI level, some needing isolation, target waits."""
    config = config_module.load(None, {}).replace(
        hospital={"isolation_rooms": ["A1", "B1"]},
        arrivals={"acuity_mix": [0.1, 0.2, 0.4, 0.2, 0.1], "isolation_share": 0.2},
        sla={"clean_s": 3.0, "visit_s": 2.0},
    )
    with LiveRun(config, speed=30, duration_ms=30 * 60_000, label="clinic trial") as run:
        browser.get(run.server.url)
        browser.execute_script("window.loadedMarker = 'same page'")
        wait = WebDriverWait(browser, 30)
        wait.until(lambda d: count(d, "#rooms .room") == 6)
        wait.until(lambda d: text(d, "[data-tile=arrivals]") != "–")
        assert set(attributes(browser, "#rooms .room", "data-room")) == {
            "A1",
            "A2",
            "A3",
            "B1",
            "B2",
            "B3",
        }
        assert set(attributes(browser, "#rooms .room", "data-state")) <= {
            "free",
            "booked",
            "occupied",
            "dirty",
            "cleaning",
        }
        assert count(browser, "#staff tbody tr") == 7
        assert attributes(browser, "#queues .queue", "data-role") == [
            "porter",
            "medical",
            "cleaner",
        ]
        for tile in ("referral_rate", "occupancy_now", "wait_porter", "busy"):
            assert text(browser, f"[data-tile={tile}]") != "–", tile
        first_tick, first_arrivals = (
            int(text(browser, "#tick")),
            int(text(browser, "[data-tile=arrivals]")),
        )
        wait.until(lambda d: int(text(d, "#tick")) >= first_tick + 30)
        wait.until(lambda d: int(text(d, "[data-tile=arrivals]")) > first_arrivals)
        assert browser.execute_script("return window.loadedMarker") == "same page"
        assert text(browser, "#status") == "live"
        check_the_marks(browser, wait)
        for chart in ("chart-occupancy", "chart-waiting", "chart-hourly", "chart-by-hour"):
            wait.until(lambda d, chart=chart: count(d, f"#{chart} .main-svg") > 0)
        wait.until(lambda d: int(attributes(d, "body", "data-charts")[0] or 0) >= 10)
        screenshot(browser, "dashboard", docs="dashboard.png", height=1300)


def check_the_marks(browser, wait) -> None:
    """Issue 22, item 7: the rooms able to isolate and the patients' ESI levels are marked,
    the target waits past have a tile, the run's name and progress are in the header, and
    how long a staff member has been on their task says so."""
    isolating = attributes(browser, "#rooms .room.isolation", "data-room")
    assert sorted(isolating) == ["A1", "B1"]
    assert attributes(browser, '#rooms .room[data-isolation="false"]', "data-room") == [
        "B2", "B3", "A2", "A3",
    ]  # fmt: skip
    # the patients in rooms, in the waiting lists and on the staff's tasks carry their ESI
    wait.until(lambda d: count(d, "#rooms .room .esi[data-esi]") > 0)
    levels = attributes(browser, ".esi[data-esi]", "data-esi")
    assert set(levels) <= {"1", "2", "3", "4", "5"} and levels
    wait.until(lambda d: len(set(attributes(d, ".esi[data-esi]", "data-esi"))) >= 2)
    wait.until(lambda d: int(text(d, "[data-tile=sla_breaches]") or 0) > 0)
    assert text(browser, "#label") == "clinic trial"
    assert "of 00:30:00" in text(browser, ".clock")
    progress = float(browser.execute_script("return document.querySelector('#progress').value"))
    assert 0 < progress < 1
    assert text(browser, "#staff thead").count("on it for") == 1
    wait.until(lambda d: count(d, "#staff td.for .age") > 0)
    since = browser.execute_script(
        "return [...document.querySelectorAll('#staff td.for .age')].map(e => e.title)"
    )
    assert all(t.startswith("on this task for ") for t in since), since


def test_the_dashboard_stays_responsive_with_200_rooms(browser):
    config = scenarios.load("hospital")
    with LiveRun(config, speed=20, duration_ms=60 * 60_000) as run:
        browser.get(run.server.url)
        wait = WebDriverWait(browser, 60)
        wait.until(lambda d: count(d, "#rooms .room") == 200)
        assert count(browser, "#staff tbody tr") == 120
        versions = []
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            started = time.monotonic()
            versions.append(int(attributes(browser, "body", "data-version")[0] or 0))
            assert time.monotonic() - started < 1.0  # the page answers at once
            time.sleep(0.25)
        assert len(set(versions)) >= 4, versions  # updates, several times in 4 s
        screenshot(browser, "dashboard-200-rooms", height=1400)


def test_a_report_renders_its_plots(browser, tmp_path):
    """Two hours of the ward with treatments and cleanings that vary, under each policy:
    every plot draws its data, and the waits' chart shows its bars (issue 22, item 1: one
    bar per distinct wait on a continuous axis, under a pixel wide, on a log scale that drew
    a count of 1 at no height) with the median and 95th percentile marked."""
    config = scenarios.load("ward").replace(durations={"treatment_cv": 0.5, "cleaning_cv": 0.5})
    decisions, events = tmp_path / "dec.jsonl", tmp_path / "ev.jsonl"
    simulate_run(config, 2 * 3600_000, record=events, out=decisions)
    greedy = config.replace(scheduler={"policy": "greedy"})
    decisions2, events2 = tmp_path / "dec2.jsonl", tmp_path / "ev2.jsonl"
    simulate_run(greedy, 2 * 3600_000, record=events2, out=decisions2)
    runs = [
        report.from_files(decisions, config, events, 2 * 3600_000, "cpsat"),
        report.from_files(decisions2, greedy, events2, 2 * 3600_000, "greedy"),
    ]
    for name, page in (
        ("report", report.render(runs[:1])),
        ("report-compare", report.render(runs)),
    ):
        path = tmp_path / f"{name}.html"
        path.write_text(page)
        browser.get(path.as_uri())
        wanted = len(report.PLOTS) + len(report.RUN_PLOTS) * (1 if name == "report" else 2)
        WebDriverWait(browser, 60).until(
            lambda d, wanted=wanted: (
                len(d.find_elements(By.CSS_SELECTOR, ".js-plotly-plot .main-svg")) >= wanted
            )
        )
        plots = browser.find_elements(By.CSS_SELECTOR, ".js-plotly-plot")
        assert len(plots) == wanted
        # each plot drew its data: bars or lines in its plot area
        for plot in plots:
            assert plot.find_elements(
                By.CSS_SELECTOR, ".plot .trace, .barlayer .point, .scatterlayer .trace"
            ), plot.get_attribute("id")
        check_the_waits_chart(browser, runs if name == "report-compare" else runs[:1])
        screenshot(browser, name, docs=f"{name}.png")


def check_the_waits_chart(browser, runs) -> None:
    """The waits' bars are wider than a few pixels and as many as the bins; a bin with a
    share of the tasks has a height, an empty one none; the median and the 95th percentile
    of each role are marked."""
    bars = browser.execute_script(
        "return [...document.querySelectorAll('#plot-waits .barlayer .point path')]"
        ".map(p => { const b = p.getBBox(); return [b.width, b.height]; })"
    )
    counted = []  # in the order of the traces: by role, then by run
    for role in ROLES:
        merged: dict[int, int] = {}
        for run in runs:
            for wait, n in run.waits_ms[role].items():
                merged[wait] = merged.get(wait, 0) + n
        bins = report.wait_bins(merged)
        counted += [report.binned(run.waits_ms[role], *bins) for run in runs]
    tasks = [n for counts in counted for n in counts]
    assert len(bars) == len(tasks) and sum(tasks) > 100
    assert min(width for width, _ in bars) >= 4, bars
    assert max(height for _, height in bars) > 50
    for (_, height), n, tallest in zip(
        bars, tasks, (max(counts) for counts in counted for _ in counts)
    ):
        if n == 0 or n >= tallest / 50:  # a bin of under 2 % of the tallest may be a hairline
            assert (height > 0) == (n > 0), (height, n, tallest)
    marks = browser.execute_script(
        "return [...document.querySelectorAll('#plot-waits .annotation-text')]"
        ".map(e => e.textContent)"
    )
    for q in ("p50", "p95"):
        assert len([m for m in marks if f"{q} " in m]) == len(ROLES) * len(runs), marks
