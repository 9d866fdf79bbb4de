"""The KPI report with a warm-up left out (issue 22: hour 0 admits its first patients into an
empty hospital and skews a short run's figures), and the time rooms spend in each state.

The checks lean on a run being the prefix of a longer one: the same config and seed give the
same first hours whatever the run's length. So a run's room-time and staff-time over [0, E]
is its warm-up's over [0, W] (the run of length W) plus the figures after it, and its hours
after the warm-up are the hours of the run with the warm-up left out.
"""

from __future__ import annotations

import json

import pytest

from scheduler import config as config_module
from scheduler.hours import HOUR_MS
from scheduler.kpi import ROLES, ROOM_STATES
from scheduler.runs import replay, simulate_run

WARMUP = HOUR_MS
END = 3 * HOUR_MS


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The default hospital with arrivals by the clock and treatments that vary, over three
    hours: whole, with its first hour left out, and that first hour alone."""
    rates = [900.0, 500.0, 700.0] + [600.0] * 21
    config = config_module.load(None, {}).replace(
        arrivals={"process": "profile", "rates_per_hour": rates},
        durations={"treatment_cv": 0.5, "cleaning_cv": 0.3},
    )
    folder = tmp_path_factory.mktemp("warmup")
    events, decisions = folder / "ev.jsonl", folder / "dec.jsonl"
    whole = simulate_run(config, END, seed=5, record=events, out=decisions)
    warm = simulate_run(config, END, seed=5, warmup_ms=WARMUP)
    first = simulate_run(config, WARMUP, seed=5)
    return config, whole, warm, first, events, decisions


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_without_a_warm_up_nothing_is_left_out(runs):
    _, whole, _, _, _, _ = runs
    assert whole["warmup_s"] == 0.0
    assert whole["arrivals"] == sum(h["arrivals"] for h in whole["by_hour"])


def test_the_patients_counted_are_those_who_arrived_after_the_warm_up(runs):
    _, whole, warm, _, events, decisions = runs
    assert warm["warmup_s"] == 3600.0 and warm["duration_s"] == 10800.0
    arrived = {
        e["patient_id"]: e["time"] * 1000 for e in lines(events) if e["type"] == "patient.arrived"
    }
    later = {p for p, t in arrived.items() if t > WARMUP}
    assert warm["arrivals"] == len(later) < whole["arrivals"]
    referred = [d["patient_id"] for d in lines(decisions) if d["type"] == "patient.referred"]
    assert warm["referred"] == len([p for p in referred if p in later]) > 0
    admitted = [d["patient_id"] for d in lines(decisions) if d["type"] == "patient.admitted"]
    assert warm["admitted"] == len([p for p in admitted if p in later])
    assert warm["referral_rate"] == round(warm["referred"] / warm["arrivals"], 4)
    assert sum(level["arrivals"] for level in warm["by_acuity"].values()) == warm["arrivals"]


def test_the_hours_after_the_warm_up_are_the_whole_runs(runs):
    _, whole, warm, _, _, _ = runs
    assert [h["hour"] for h in warm["by_hour"]] == [1, 2]
    assert warm["by_hour"] == whole["by_hour"][1:]
    for role in ROLES:  # the waits: those of the tasks created after the warm-up
        tasks = sum(h["wait_s"][role]["tasks"] for h in warm["by_hour"])
        assert warm["wait_s"][role]["tasks"] == tasks > 0


def test_room_and_staff_time_is_integrated_from_the_warm_up(runs):
    _, whole, warm, first, _, _ = runs
    after = (END - WARMUP) / END

    def split(figure):  # the whole run's, from its first hour and the rest
        return figure(first) * WARMUP / END + figure(warm) * after

    assert split(lambda r: r["room_occupancy"]) == pytest.approx(whole["room_occupancy"], abs=2e-4)
    for role in ROLES:
        share = split(lambda r, role=role: r["utilisation"][role])
        assert share == pytest.approx(whole["utilisation"][role], abs=2e-4)
    for state in ROOM_STATES:
        share = split(lambda r, state=state: r["room_states"][state])
        assert share == pytest.approx(whole["room_states"][state], abs=2e-4)


def test_the_rooms_states_share_the_rooms_time(runs):
    _, whole, warm, _, _, _ = runs
    for report in (whole, warm):
        states = report["room_states"]
        assert list(states) == list(ROOM_STATES)
        assert sum(states.values()) == pytest.approx(1.0, abs=5e-4)
        # a room holds a patient from the booking until the escort out: booked or occupied
        assert states["booked"] + states["occupied"] == pytest.approx(
            report["room_occupancy"], abs=2e-4
        )
        assert all(share > 0 for share in states.values()), states


def test_a_replay_with_the_warm_up_reports_as_the_run(runs):
    config, _, warm, _, events, _ = runs
    replayed = replay(config, events, warmup_ms=WARMUP).report
    # the replay ends at its last tick, the run at its duration: the counts and waits agree
    for key in ("arrivals", "referred", "discharged", "wait_s", "by_acuity", "sla_breaches"):
        assert replayed[key] == warm[key], key
