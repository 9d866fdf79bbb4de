"""The region's projection (`dashboard.region.RegionView`) and report (`dashboard.region_report`)
on a small region of three hospitals: fed the ticks of a run, or of its record replayed, their
figures are the run's own `--report` figures; the matrix, the hourly counts, the tiles and the
transfers on the road add up to them; a warm-up leaves out what it says."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from dashboard import region_report
from dashboard.region import RegionView
from scheduler.region import config as region_config
from scheduler.region import events as rev
from scheduler.region.simulation import read_record, replay_region, simulate_region

DURATION_MS = 30 * 60_000
REGION = """
[region]
seed = 5
[transfers]
max_wait_s = 120
[travel]
minutes = [[0, 2, 3], [2, 0, 1.5], [3, 1.5, 0]]
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


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 30-minute run of the region, fed live to a view; its record and its report."""
    folder = tmp_path_factory.mktemp("region")
    path = folder / "region.toml"
    path.write_text(REGION)
    region = region_config.load(path)
    live = RegionView(region, "cpsat", sample_ms=60_000, duration_ms=DURATION_MS)
    record = folder / "rec.jsonl"
    result = simulate_region(region, "cpsat", DURATION_MS, record=record, on_tick=live.apply)
    live.finish(DURATION_MS)
    return region, record, result.report, live


def without_audit(report: dict) -> dict:
    region = {k: v for k, v in report["region"].items() if k != "invariants_checked"}
    return {"region": region, "hospitals": report["hospitals"]}


def the_kpi_report(figures: dict) -> dict:
    """The view's figures, as the run's `--report` has them (no report's additions)."""
    region = {k: v for k, v in figures["region"].items() if k != "p95_transfer_travel_s"}
    hospitals = {
        h: {k: v for k, v in f.items() if k not in ("rooms", "own_admitted")}
        for h, f in figures["hospitals"].items()
    }
    return {"region": region, "hospitals": hospitals}


def test_the_live_view_and_the_report_have_the_runs_own_figures(run):
    region, record, report, live = run
    assert report["region"]["transfers"] > 10 and report["region"]["referred_out"] > 0
    assert the_kpi_report(live.figures(DURATION_MS)) == without_audit(report)
    built = region_report.build(region, read_record(record, region), "cpsat")
    assert the_kpi_report(built.figures) == without_audit(report)
    assert built.view.series == live.series  # the replay's ticks are the run's


def test_the_matrix_hours_and_tables_add_up_to_the_figures(run):
    region, record, report, _ = run
    built = region_report.build(region, read_record(record, region), "cpsat")
    figures, view = built.figures, built.view
    matrix = figures["matrix"]
    assert sum(sum(row.values()) for row in matrix.values()) == report["region"]["transfers"]
    for hospital_id, own in report["hospitals"].items():
        assert sum(matrix[hospital_id].values()) == own["transfers_out"]
        assert hospital_id not in matrix[hospital_id]
        added = figures["hospitals"][hospital_id]
        assert added["rooms"] == 6
        # every own patient is admitted, or not taken (and then transferred or referred out)
        assert added["own_admitted"] + own["not_taken"] == own["arrivals"] - own["transfers_in"]
    # a transfer accepted but not yet arrived at the end is on the way
    on_the_way = report["region"]["in_flight"]["on_the_way"]
    received = sum(own["transfers_in"] for own in report["hospitals"].values())
    assert received + on_the_way == report["region"]["transfers"]
    assert sum(view.transfers_by_hour.values()) == report["region"]["transfers"]
    assert sum(view.referred_out_by_hour.values()) == report["region"]["referred_out"]
    travel = sorted(region.travel_ms[o, t] / 1000 for o in matrix for t in matrix[o])
    assert figures["region"]["p95_transfer_travel_s"] in travel
    assert min(travel) <= figures["region"]["mean_transfer_travel_s"] <= max(travel)
    # a point each minute; the occupancy of each hospital a share of its rooms
    assert len(view.series) >= DURATION_MS // 60_000
    assert all(0 <= share <= 1 for point in view.series for share in point["occupancy"])


def test_the_snapshot_tiles_and_road_agree_with_the_figures(run):
    region, _, report, live = run
    snap = live.snapshot()
    assert snap["finished"] and snap["time_s"] == DURATION_MS / 1000
    assert [h["id"] for h in snap["hospitals"]] == list(region.ids)
    pending = report["region"]["in_flight"]["requests_pending"]
    assert sum(h["waiting_for_transfer"] for h in snap["hospitals"]) == pending
    assert snap["on_the_road_count"] == report["region"]["in_flight"]["on_the_way"]
    for tile in snap["hospitals"]:
        own = report["hospitals"][tile["id"]]
        assert tile["transfers_in"] == own["transfers_in"]
        assert tile["referred_out"] == own["referred_out"]
        assert tile["occupancy_now"] == round(tile["in_rooms"] / tile["rooms"], 4)
        assert tile["occupancy_now"] <= tile["taken_now"] <= 1  # a patient's room is taken
    # each transfer on the road holds a room at its destination
    assert sum(live.held.values()) == snap["on_the_road_count"]
    assert all(live.held[t["to"]] > 0 for t in snap["on_the_road"])
    for trip in snap["on_the_road"]:
        origin, _, _ = trip["patient"].partition("/")
        assert trip["from"] == origin != trip["to"]
        assert trip["eta_s"] * 1000 - trip["left_s"] * 1000 == region.travel_ms[origin, trip["to"]]
        assert trip["eta_s"] > snap["time_s"] - 1
    json.dumps(snap)  # JSON-ready
    assert snap["series"][-1] == live.series[-1]
    assert live.snapshot(series_from=len(live.series))["series"] == []


def test_a_warm_up_leaves_out_the_patients_who_arrived_in_it(run):
    region, record, report, _ = run
    warmup_ms = 10 * 60_000
    recorded = read_record(record, region)
    built = region_report.build(region, recorded, "cpsat", warmup_ms=warmup_ms)
    figures = built.figures["region"]
    own_arrivals = 0
    for line in record.open():
        event = json.loads(line)
        if event["type"] == "patient.arrived" and "transferred_from" not in event:
            own_arrivals += event["time"] * 1000 > warmup_ms
    assert figures["arrivals"] == own_arrivals < report["region"]["arrivals"]
    assert figures["warmup_s"] == warmup_ms / 1000
    # every counted request ended in a transfer or out of the region, or still waits
    pending = figures["in_flight"]["requests_pending"]
    assert figures["requested"] == figures["transfers"] + figures["referred_out"] + pending
    assert figures["transfers"] < report["region"]["transfers"]
    # each hospital's figures are its own KPI report's with that warm-up
    assert (
        replay_region(region, recorded, "cpsat", warmup_ms=warmup_ms).report["hospitals"]
        == (the_kpi_report(built.figures)["hospitals"])
    )
    no_warmup = replay_region(region, recorded, "cpsat").report
    assert "warmup_s" not in no_warmup["region"]  # a run's report stays as it was


def test_the_html_report_is_self_contained_and_shows_the_figures(run, tmp_path: Path):
    region, record, report, _ = run
    built = region_report.build(region, read_record(record, region), "cpsat", meta={"seed": 5})
    page = region_report.render(built, "a small region")
    assert not re.search(r"<script[^>]+src=", page)  # plotly.js inline: no network
    for plot in region_report.PLOTS:
        assert f'id="{region_report.plot_id(plot)}"' in page
    shown: dict[str, str] = {}  # the region's table comes first, then the hospitals'
    for key, value in re.findall(r'<td data-figure="(\w+)">([^<]*)</td>', page):
        shown.setdefault(key, value)
    assert shown["transfers"] == str(report["region"]["transfers"])
    assert shown["referred_out"] == str(report["region"]["referred_out"])
    region_figures = report["region"]
    spread = f"{region_figures['occupancy_mean']:.2%} ± {region_figures['occupancy_spread']:.2%}"
    assert f"<th>{spread}</th></tr>" in page  # the hospitals' table's last row
    for origin, row in built.figures["matrix"].items():
        for to, n in row.items():
            assert f'data-from="{origin}" data-to="{to}">{n}</td>' in page


def test_answers_to_requests_never_seen_still_count(run):
    """A follower that could not read a request's row (skipped as unparsable) still takes
    its offers, answers and end: the transfers and referrals out count, only their waits
    are unknown."""
    region, record, report, _ = run
    blind = RegionView(region, "cpsat", sample_ms=60_000, duration_ms=DURATION_MS)
    lost = 0

    def without_requests(tick) -> None:
        nonlocal lost
        kept = [(h, d) for h, d in tick.decisions if not isinstance(d, rev.TransferRequested)]
        lost += len(tick.decisions) - len(kept)
        blind.apply(dataclasses.replace(tick, decisions=kept))

    replay_region(region, read_record(record, region), "cpsat", on_tick=without_requests)
    blind.finish(DURATION_MS)
    assert lost > 10
    figures = blind.figures(DURATION_MS)["region"]
    assert figures["transfers"] == report["region"]["transfers"]
    assert figures["referred_out"] == report["region"]["referred_out"]
    assert sum(blind.transfers_by_hour.values()) == report["region"]["transfers"]
