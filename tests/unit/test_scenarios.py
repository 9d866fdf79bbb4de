"""The named scenarios in scenarios/: complete configs of the expected sizes."""

from __future__ import annotations

import dataclasses

import pytest

from scheduler import config as config_module
from scheduler import scenarios
from scheduler.config import ConfigError, staff_roster

# name: (rooms from, rooms to, staff from, staff to)
SIZES = {
    "default": (6, 6, 7, 7),
    "layout": (6, 6, 7, 7),
    "ward": (35, 45, 25, 35),
    "hospital": (180, 220, 100, 140),
    "campus": (540, 660, 320, 400),
}
OVERLOADED = ("ward", "hospital", "campus")


def test_every_named_scenario_is_there():
    assert scenarios.names()[:8] == list(scenarios.ORDER)
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
    assert config.arrivals.process == "poisson"
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


def test_an_unknown_scenario_names_the_available_ones():
    with pytest.raises(ConfigError) as raised:
        scenarios.path("clinic")
    message = str(raised.value)
    assert "clinic" in message and "ward" in message and "campus-overload" in message


def test_the_environment_does_not_change_a_scenario():
    assert scenarios.load("ward") == scenarios.load("ward", {})
    changed = scenarios.load("ward", {"HOSPITAL_STAFF_PORTERS": "1"})
    assert changed.staff.porters == 1
