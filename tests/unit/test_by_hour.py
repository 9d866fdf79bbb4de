"""The KPI report by hour of the simulated day (`by_hour`, `scheduler.hours`): its figures add
up to the run's totals, the days pooled, on a run that crosses midnight."""

from __future__ import annotations

import pytest

from scheduler import config as config_module
from scheduler.demand import Demand
from scheduler.hours import HOUR_MS, covered_ms, hour_of, split_by_hour
from scheduler.kpi import ROLES
from scheduler.runs import simulate_run

DAY_MS = 24 * HOUR_MS


def test_an_hour_holds_the_times_after_its_start_up_to_its_end():
    assert [hour_of(t) for t in (0, 1, HOUR_MS, HOUR_MS + 1)] == [0, 0, 0, 1]
    assert [hour_of(t) for t in (DAY_MS - 1, DAY_MS, DAY_MS + 1)] == [23, 23, 0]
    assert hour_of(3 * DAY_MS + 7 * HOUR_MS + 5) == 7


def test_the_hours_cover_the_run():
    covered = covered_ms(DAY_MS + 90 * 60_000)  # a day and an hour and a half
    assert covered[0] == 2 * HOUR_MS and covered[1] == HOUR_MS + HOUR_MS // 2
    assert covered[2:] == [HOUR_MS] * 22
    assert sum(covered) == DAY_MS + 90 * 60_000
    assert list(split_by_hour(DAY_MS - 10, DAY_MS + 20)) == [(23, 10), (0, 20)]


@pytest.fixture(scope="module")
def day_and_more():
    """25 hours of the default hospital with arrivals by the clock: quiet nights, a morning
    peak past what the rooms can take, treatments that vary."""
    rates = [200.0] * 7 + [900.0, 1100.0, 900.0] + [500.0] * 8 + [300.0] * 6
    config = config_module.load(None, {}).replace(
        arrivals={"process": "profile", "rates_per_hour": rates},
        durations={"treatment_cv": 0.5},
    )
    duration = 25 * HOUR_MS
    return config, duration, simulate_run(config, duration, seed=3)


def test_by_hour_adds_up_to_the_totals(day_and_more):
    config, duration, report = day_and_more
    by_hour = report["by_hour"]
    assert [h["hour"] for h in by_hour] == list(range(24))
    assert sum(h["arrivals"] for h in by_hour) == report["arrivals"]
    assert sum(h["referred"] for h in by_hour) == report["referred"] > 0
    for role in ROLES:
        tasks = sum(h["wait_s"][role]["tasks"] for h in by_hour)
        assert tasks == report["wait_s"][role]["tasks"] > 0
        total_s = sum(h["wait_s"][role]["mean"] * h["wait_s"][role]["tasks"] for h in by_hour)
        # each hour's mean is rounded to the ms: the sum is within half a ms a task
        assert total_s / tasks == pytest.approx(report["wait_s"][role]["mean"], abs=1e-3)
    covered = covered_ms(duration)
    pooled = sum(h["room_occupancy"] * covered[h["hour"]] for h in by_hour) / duration
    assert pooled == pytest.approx(report["room_occupancy"], abs=1e-4)
    for hour in by_hour:
        rate = hour["referred"] / hour["arrivals"] if hour["arrivals"] else 0.0
        assert hour["referral_rate"] == round(rate, 4)


def test_by_hour_pools_the_days_by_the_arrivals_times(day_and_more):
    config, duration, report = day_and_more
    arrivals = [0] * 24
    for patient in Demand(config, 3).arrivals():
        if patient.time_ms > duration:
            break
        arrivals[hour_of(patient.time_ms)] += 1
    assert [h["arrivals"] for h in report["by_hour"]] == arrivals
    # hour 0 of both days against one hour of the same rate: about twice the arrivals
    assert arrivals[0] > 1.5 * arrivals[1]
    # the morning peak refers, the night hardly
    peak, night = report["by_hour"][8], report["by_hour"][3]
    assert peak["referral_rate"] > 0.3 > night["referral_rate"]
    assert peak["room_occupancy"] > night["room_occupancy"]


def test_a_short_run_reports_the_hours_it_reached():
    config = config_module.load(None, {})
    report = simulate_run(config, 90 * 60_000)
    assert [h["hour"] for h in report["by_hour"]] == [0, 1]
    # the arrival at 1:00:00 exactly is hour 0's, as its tick is (a tick holds what came
    # since the one before): 720 arrivals from 0:00:00 to 1:00:00, both included
    assert report["by_hour"][0]["arrivals"] == 721
    assert sum(h["arrivals"] for h in report["by_hour"]) == report["arrivals"]
