"""The capacity bound: a linear program over the rooms' and the roles' time."""

from __future__ import annotations

import pytest

from scheduler import config as config_module
from scheduler.capacity import capacity_bound, room_costs


def default_config():
    return config_module.load(None, {})


def test_the_default_hospital_refers_at_least_17_3_percent_cleaners_the_bottleneck():
    bound = capacity_bound(default_config())
    # By hand: cleaners (2) spend walk + 9 s per admission, the rooms are held 3 * walk + 19 s;
    # filling the cheapest rooms first: A1 1/25, A2 and B1 1/28 each, then A3/B2 up to the
    # cleaners' limit: 0.04 + 2/28 + (2 - 0.44 - 24/28) / 13 = 0.16549 a second of 0.2.
    assert bound.max_rate == pytest.approx(0.04 + 2 / 28 + (2 - 0.44 - 24 / 28) / 13)
    assert bound.min_referral_rate == pytest.approx(0.1725, abs=5e-4)
    assert round(bound.min_referral_rate, 3) == 0.173
    assert bound.bottleneck == "cleaner"


def test_seed_model_costs_are_the_prototype_timings():
    costs = room_costs(default_config())
    b3 = costs["B3"]
    assert (b3.escort_in_s, b3.visit_s, b3.escort_out_s, b3.clean_s) == (5, 15, 0, 14)
    assert b3.hold_s == 34
    assert b3.busy_s == {"porter": 5, "medical": 15, "cleaner": 14}


def test_layout_model_takes_the_cheapest_case():
    config = default_config().replace(travel={"model": "layout"})
    b3 = room_costs(config)["B3"]
    assert (b3.escort_in_s, b3.visit_s, b3.escort_out_s, b3.clean_s) == (5, 10, 5, 9)


def tiny(**changes):
    """One room A1 (2 s from the entrance), one of each role, layout travel."""
    sections = {
        "hospital": {"floors": ["A"], "rooms_per_floor": 1},
        "staff": {"porters": 1, "nurses": 1, "doctors": 0, "cleaners": 1},
        "travel": {"model": "layout"},
        "arrivals": {"interval_s": 1.0},
        "durations": {"treatment_s": 10.0, "cleaning_s": 6.0},
    }
    for section, values in changes.items():
        sections[section] = {**sections.get(section, {}), **values}
    return default_config().replace(**sections)


def test_a_tiny_hospital_by_hand():
    # One room held 2 + 10 + 2 + 6 = 20 s a patient: 0.05 a second of 1 offered.
    bound = capacity_bound(tiny())
    assert bound.max_rate == pytest.approx(0.05)
    assert bound.min_referral_rate == pytest.approx(0.95)
    assert bound.bottleneck == "rooms"
    # Ten rooms on one floor, A1..A10 (walks 2..11 s): the one nurse (10 s a visit) now
    # limits to 0.1 a second; the rooms could take far more.
    bound = capacity_bound(tiny(hospital={"rooms_per_floor": 10}))
    assert bound.max_rate == pytest.approx(0.1)
    assert bound.bottleneck == "medical"
    # Arrivals slower than the capacity: no referral is needed.
    bound = capacity_bound(tiny(hospital={"rooms_per_floor": 10}, arrivals={"interval_s": 20.0}))
    assert bound.max_rate == pytest.approx(0.05)
    assert bound.min_referral_rate == 0.0
    assert bound.staff_rate == pytest.approx(0.1)


def test_treatments_by_acuity_cost_their_mean_over_the_mix():
    # Ten rooms, one nurse: visits of 40 s for a quarter of the patients, 0 s for the rest
    # cost her 10 s each on average, as a fixed 10 s treatment does.
    ten_rooms = {"hospital": {"rooms_per_floor": 10}}
    by_acuity = tiny(
        **ten_rooms,
        arrivals={"acuity_mix": [0, 0, 0.25, 0.75, 0]},
        durations={
            "treatment_s": 25.0,  # unused: every level has its own mean
            "treatment_s_by_acuity": [90.0, 90.0, 40.0, 0.0, 90.0],
            "treatment_cv": 0.7,
        },
    )
    assert room_costs(by_acuity)["A1"].visit_s == pytest.approx(10.0)
    assert capacity_bound(by_acuity).max_rate == pytest.approx(0.1)
    assert capacity_bound(by_acuity).bottleneck == "medical"
    assert capacity_bound(tiny(**ten_rooms)).max_rate == pytest.approx(0.1)


def test_a_profile_offers_its_mean_rate():
    # 12 patients an hour for 12 hours a day, none the other 12: 6 an hour in the long run.
    config = tiny(arrivals={"process": "profile", "rates_per_hour": [12.0] * 12 + [0.0] * 12})
    assert capacity_bound(config).arrival_rate == pytest.approx(6 / 3600)
