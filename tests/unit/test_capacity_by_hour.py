"""The capacity bound hour by hour (`scheduler.capacity.hourly_bounds`): the long-run LP at
each hour's arrival rate, the days of a week pooled by their expected arrivals."""

from __future__ import annotations

import pytest

from scheduler import config as config_module
from scheduler.capacity import capacity_bound, hourly_bounds

HOUR_MS = 3_600_000


def tiny(**arrivals):
    """One room A1 held 2 + 10 + 2 + 6 = 20 s a patient: 180 admissions an hour at most."""
    return config_module.load(None, {}).replace(
        hospital={"floors": ["A"], "rooms_per_floor": 1},
        staff={"porters": 1, "nurses": 1, "doctors": 0, "cleaners": 1},
        travel={"model": "layout"},
        durations={"treatment_s": 10.0, "cleaning_s": 6.0},
        arrivals=arrivals,
    )


def test_each_hour_is_the_lp_at_its_rate():
    rates = [90.0, 180.0, 360.0, 720.0] + [0.0] * 20
    config = tiny(process="profile", rates_per_hour=rates)
    bounds = hourly_bounds(config, 4 * HOUR_MS)
    assert [b.hour for b in bounds] == [0, 1, 2, 3]
    assert [b.arrivals_per_hour for b in bounds] == rates[:4]
    # by hand: 180 an hour admitted at most, so 0, 0, 1/2 and 3/4 referred
    assert [b.min_referral_rate for b in bounds] == pytest.approx([0.0, 0.0, 0.5, 0.75])
    for bound in bounds:  # the same LP, with that rate as the arrival process's
        flat = tiny(process="poisson", interval_s=3600 / bound.arrivals_per_hour)
        assert bound.min_referral_rate == pytest.approx(capacity_bound(flat).min_referral_rate)


def test_day_factors_are_pooled_by_expected_arrivals():
    # hour 0 of day 0: 120 an hour, nothing referred; of day 1: 360 an hour, half referred.
    # Pooled over the two days: (120 * 0 + 360 * 0.5) / (120 + 360) = 0.375
    config = tiny(
        process="profile",
        rates_per_hour=[120.0] * 24,
        day_factors=[1.0, 3.0, 1.0, 1.0, 1.0, 1.0, 1.0],
    )
    bounds = hourly_bounds(config, 48 * HOUR_MS)
    assert len(bounds) == 24
    assert bounds[0].arrivals_per_hour == pytest.approx(240.0)
    assert bounds[0].min_referral_rate == pytest.approx(0.375)
    # a run of day 0 alone never sees day 1's rate
    assert hourly_bounds(config, 24 * HOUR_MS)[0].min_referral_rate == 0.0


def test_a_part_of_an_hour_counts_for_its_part_and_a_flat_process_is_the_long_run():
    config = tiny(process="poisson", interval_s=10.0)  # 360 an hour
    bounds = hourly_bounds(config, 90 * 60_000)
    assert [b.hour for b in bounds] == [0, 1]
    long_run = capacity_bound(config).min_referral_rate
    assert [b.min_referral_rate for b in bounds] == pytest.approx([long_run, long_run])
    assert hourly_bounds(config, 0) == []
