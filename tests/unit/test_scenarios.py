"""The named scenarios in scenarios/: complete configs of the expected sizes."""

from __future__ import annotations

import dataclasses

import pytest

from scheduler import config as config_module
from scheduler import scenarios
from scheduler.config import ConfigError, staff_roster
from scheduler.demand import mean_treatment_s

# name: (rooms from, rooms to, staff from, staff to)
SIZES = {
    "default": (6, 6, 7, 7),
    "layout": (6, 6, 7, 7),
    "ward": (35, 45, 25, 35),
    "ed-day": (30, 40, 45, 65),
    "hospital": (180, 220, 100, 140),
    "campus": (540, 660, 320, 400),
}
OVERLOADED = ("ward", "hospital", "campus")


def test_every_named_scenario_is_there():
    assert scenarios.names()[: len(scenarios.ORDER)] == list(scenarios.ORDER)
    assert scenarios.SCENARIO_DIR.is_dir()


@pytest.mark.parametrize("name", scenarios.ORDER)
def test_each_scenario_loads_and_has_its_size(name):
    config = config_module.load(scenarios.path(name), {})
    assert config == scenarios.load(name)
    rooms = len(config.hospital.floors) * config.hospital.rooms_per_floor
    staff = len(staff_roster(config))
    low_rooms, high_rooms, low_staff, high_staff = SIZES[name.removesuffix("-overload")]
    assert low_rooms <= rooms <= high_rooms
    assert low_staff <= staff <= high_staff
    text = scenarios.path(name).read_text()
    assert text.startswith(f"# Scenario `{name}`")
    if name in ("default", "layout"):
        return
    assert config.arrivals.process == ("profile" if name.startswith("ed-day") else "poisson")
    assert config.travel.model == "layout"


def test_default_is_the_repository_config_and_layout_differs_only_in_travel():
    repository = config_module.load(scenarios.SCENARIO_DIR.parent / "config.toml", {})
    assert scenarios.load("default") == repository == config_module.load(None, {})
    assert scenarios.load("layout") == repository.replace(travel={"model": "layout"})


@pytest.mark.parametrize("name", OVERLOADED)
def test_overload_twin_differs_only_in_the_arrival_interval(name):
    base, twin = scenarios.load(name), scenarios.load(f"{name}-overload")
    assert twin.arrivals.interval_s < base.arrivals.interval_s / 2
    same_interval = dataclasses.replace(
        twin, arrivals=dataclasses.replace(twin.arrivals, interval_s=base.arrivals.interval_s)
    )
    assert same_interval == base


def test_ed_day_is_an_emergency_department_with_its_day_and_its_clinical_rules():
    """Arrivals by the hour, as the header derives them: the 10:00-12:00 peak twice the mean
    and 60 % of the day's arrivals from 09:00 to 18:00 (HES); treatments by ESI level, in real
    minutes, that vary; cleans of 30-44 min; shifts; doctors for ESI 1-2; isolation; targets."""
    config = scenarios.load("ed-day")
    rates = config.arrivals.rates_per_hour
    mean = sum(rates) / 24
    assert sum(rates) == pytest.approx(120)
    assert rates[10] == rates[11] == pytest.approx(2 * mean)
    assert sum(rates[9:18]) / sum(rates) == pytest.approx(0.6)
    assert max(rates) / min(rates) > 5  # quiet nights
    durations = config.durations
    minutes = [s / 60 for s in durations.treatment_s_by_acuity]
    assert minutes == pytest.approx([195, 255, 304 - 31, 193 - 31, 98 - 31])  # Tanabe 2004
    assert durations.treatment_s == pytest.approx(mean_treatment_s(config))  # over the mix
    assert durations.treatment_cv > 0 and durations.distribution == "lognormal"
    assert 30 * 60 <= durations.cleaning_s <= 44 * 60
    assert config.rules.skills and config.staff.doctors >= 1 and config.arrivals.acuity_mix[1]
    assert config.hospital.isolation_rooms and config.arrivals.isolation_share > 0
    assert config.shifts.roster and config.sla.visit_urgent_s
    assert config.scheduler.tick_s == 1.0


def test_ed_day_overload_differs_from_ed_day_only_in_its_arrivals():
    """1.5 times the base day's arrivals every hour, and 20 more in 14:00-15:00."""
    base, twin = scenarios.load("ed-day"), scenarios.load("ed-day-overload")
    surge = [1.5 * rate for rate in base.arrivals.rates_per_hour]
    surge[14] += 20
    assert twin.arrivals.rates_per_hour == pytest.approx(surge)
    assert twin.replace(arrivals={"rates_per_hour": base.arrivals.rates_per_hour}) == base


def test_an_unknown_scenario_names_the_available_ones():
    with pytest.raises(ConfigError) as raised:
        scenarios.path("clinic")
    message = str(raised.value)
    assert "clinic" in message and "ward" in message and "campus-overload" in message


def test_the_environment_does_not_change_a_scenario():
    assert scenarios.load("ward") == scenarios.load("ward", {})
    changed = scenarios.load("ward", {"HOSPITAL_STAFF_PORTERS": "1"})
    assert changed.staff.porters == 1
