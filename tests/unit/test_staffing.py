"""The staffing advisor's parts without simulation: targets, the capacity bound's verdict of
infeasible, the starting point, the offered load by hour, rosters and the shift cover."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from scheduler import config as config_module
from scheduler import rostering, staffing, staffing_hourly, targets
from scheduler.confidence import Interval
from scheduler.shifts import Roster

# The analyst's department of issue 22, the README's example: 24 rooms on 3 floors, 4
# porters, 6 nurses + 2 doctors, 5 cleaners, a patient every 40 s (Poisson), treatments of
# 15 min, cleanings of 20.
DEPARTMENT = Path(__file__).resolve().parents[2] / "examples" / "department.toml"


@pytest.fixture
def department():
    return str(DEPARTMENT)


# --- targets -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "metric", "bound", "inclusive"),
    [
        ("referral<0.05", "referral", 0.05, False),
        ("referral < 5%", "referral", 0.05, False),
        ("wait.cleaner.p95<600", "wait.cleaner.p95", 600.0, False),
        ("wait.cleaner.mean<=10m", "wait.cleaner.mean", 600.0, True),
        ("time_in_system<2h", "time_in_system", 7200.0, False),
        ("sla_breaches<1%", "sla_breaches", 0.01, False),
        ("referral.esi2<0.02", "referral.esi2", 0.02, False),
        ("wait.medical.esi1.p95<90s", "wait.medical.esi1.p95", 90.0, False),
        ("WAIT.PORTER.MEAN<30", "wait.porter.mean", 30.0, False),
    ],
)
def test_targets_are_read_with_their_units(text, metric, bound, inclusive):
    target = targets.parse(text)
    assert (target.metric, target.inclusive) == (metric, inclusive)
    assert target.bound == pytest.approx(bound)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("wait.nurse.p95<600", "unknown figure 'wait.nurse.p95' (known: referral, wait.porter"),
        ("referral>0.05", "a target is an upper bound"),
        ("referral<5m", "referral is a share"),
        ("wait.cleaner.p95<5%", "is in seconds"),
        ("referral<lots", "'lots' is not a number"),
        ("referral", "expected METRIC<VALUE"),
    ],
)
def test_a_bad_target_is_refused_in_one_line(text, says):
    with pytest.raises(targets.TargetError) as caught:
        targets.parse(text)
    assert says in str(caught.value) and "\n" not in str(caught.value)


def test_a_target_is_judged_on_the_upper_end_of_its_interval():
    target = targets.parse("wait.cleaner.mean<600")
    assert target.met_by(Interval(500.0, 90.0, 5))  # up to 590
    assert not target.met_by(Interval(500.0, 110.0, 5))  # the mean is below, its interval not
    assert target.met_by(Interval(599.0, None, 1))  # one run: its value
    assert targets.parse("referral<=0.05").met_by(Interval(0.05, 0.0, 5))
    assert not targets.parse("referral<0.05").met_by(Interval(0.05, 0.0, 5))


def test_roles_to_vary():
    assert staffing.vary_keys(["cleaner"]) == ("cleaners",)
    assert staffing.vary_keys(["cleaners", "medical"]) == ("nurses", "doctors", "cleaners")
    assert staffing.vary_keys([]) == staffing.STAFF_KEYS
    with pytest.raises(staffing.StaffingError, match="--vary 'surgeons'"):
        staffing.vary_keys(["surgeons"])


# --- what no staffing of the varied roles can do ----------------------------------------------


def test_the_cleaner_question_referrals_are_bound_by_the_medical_staff(department):
    # With cleaners unlimited, 8 medical staff treat at most 8 patients per 15 min plus the
    # shortest walks (32 an hour) of the 90 an hour that come: at least 64 % referred.
    problem = staffing.Problem.load(department, [targets.parse("referral<5%")], vary=["cleaners"])
    (infeasible,) = staffing.referral_infeasibility(problem)
    assert infeasible.resource == "medical"
    assert "the medical staff (6 nurses + 2 doctors)" in infeasible.reason
    assert "64." in infeasible.reason


def test_rooms_bind_when_every_role_is_unlimited(department):
    # 24 rooms each held at least 35 minutes admit at most ~41 an hour of the 90: over half
    # are referred whatever the staff.
    problem = staffing.Problem.load(department, [targets.parse("referral<0.5")])
    (infeasible,) = staffing.referral_infeasibility(problem)
    assert infeasible.resource == "rooms" and "the rooms (24)" in infeasible.reason
    assert "at 54." in infeasible.reason
    problem = staffing.Problem.load(department, [targets.parse("referral<0.6")])
    assert staffing.referral_infeasibility(problem) == []


def test_square_root_staffing_starts_above_the_offered_load(department):
    problem = staffing.Problem.load(department, [targets.parse("wait.cleaner.mean<600")])
    load = staffing.offered_load(problem)
    start = staffing.square_root_staffing(problem)
    assert start["cleaners"] >= load["cleaner"] > 10  # 32 an hour x 20 min = 10.7 busy
    assert start["nurses"] + start["doctors"] >= load["medical"]
    ceiling = staffing.ceiling_staffing(problem)
    assert all(ceiling[key] > start[key] for key in staffing.STAFF_KEYS)


# --- by the clock ---------------------------------------------------------------------------


def test_the_offered_load_follows_the_clock_with_a_lag(tmp_path):
    # 60 patients an hour from 08:00 to 09:00 and none otherwise, each holding a nurse for
    # an hour (and walks of a few seconds): the nurses' load is 30 in 08h (half of the
    # hour's patients on average), 30 in 09h (the rest), about 0 at other times.
    path = tmp_path / "clock.toml"
    rates = [0.0] * 24
    rates[8] = 60.0
    path.write_text(
        f'[arrivals]\nprocess = "profile"\nrates_per_hour = {rates}\n'
        "[durations]\ntreatment_s = 3600.0\ncleaning_s = 0.0\n"
        "[travel]\nfloor_s = 0.0\nroom_s = 0.0\n"
    )
    problem = staffing.Problem.load(str(path), [targets.parse("wait.medical.mean<60")])
    load = staffing_hourly.lagged_load(problem)["medical"]
    assert load[8] == pytest.approx(30, abs=1) and load[9] == pytest.approx(30, abs=1)
    assert max(load[:8] + load[10:]) < 1


def test_a_requirement_becomes_a_roster_with_breaks_for_the_gaps():
    requirement = [1] * 24
    for hour in (8, 9, 10, 17, 18):
        requirement[hour] = 2
    requirement[12] = 3
    entries = rostering.requirement_roster("nurse", requirement)
    assert entries == [
        "nurse-2 08:00-19:00 break 11:00-12:00 break 13:00-17:00",
        "nurse-3 12:00-13:00",
    ]  # nurse-1 is on duty all day: no entry
    roster = Roster(tuple(entries), 86_400, {"nurse-1", "nurse-2", "nurse-3"})
    for hour in range(24):
        on = sum(roster.on_duty(f"nurse-{k}", hour * 3_600_000 + 1) for k in (1, 2, 3))
        assert on == requirement[hour]


def test_the_shift_cover_covers_every_hour_at_least_cost():
    requirement = [2, 2, 2, 2, 2, 2, 3, 5, 8, 9, 9, 9, 8, 8, 7, 7, 6, 6, 5, 4, 4, 3, 3, 2]
    plan = rostering.cover(requirement, lengths=(8, 12), starts=range(24))
    assert all(on >= need for on, need in zip(plan.on_duty(), requirement))
    assert plan.cost >= plan.required == sum(requirement)
    assert plan.cost <= 1.25 * plan.required  # whole shifts cost something, not much
    # Only 8-hour shifts at 07:00, 15:00 and 23:00: three blocks, each its busiest hour's.
    plan = rostering.cover(requirement, lengths=(8,), starts=(7, 15, 23))
    assert sorted(plan.shifts) == [(7, 8, 9), (15, 8, 7), (23, 8, 3)]
    assert plan.cost == 8 * (9 + 7 + 3)
    entries = rostering.shift_roster("cleaner", plan)
    assert entries[0] == "cleaner-1 07:00-15:00" and entries[-1] == "cleaner-19 23:00-07:00"
    # The same requirement always gives the same roster.
    again = rostering.cover(requirement, lengths=(8, 12), starts=range(24))
    assert again == rostering.cover(requirement, lengths=(8, 12), starts=range(24))


def test_a_shift_cover_that_cannot_be_refuses_in_one_line():
    with pytest.raises(rostering.RosterPlanError, match="no allowed shift covers 00:00-01:00"):
        rostering.cover([1] * 24, lengths=(8,), starts=(7, 15))


def test_the_config_written_loads_as_written(tmp_path):
    config = config_module.Config().replace(
        staff={"cleaners": 3},
        shifts={"roster": ["cleaner-1 07:00-15:00", "cleaner-2 15:00-23:00 break 18:00-18:30"]},
    )
    path = tmp_path / "staffed.toml"
    path.write_text(rostering.config_toml(config, "written by a test"))
    assert config_module.load(path, {}) == config
    assert "[database]" not in path.read_text() and "[kafka]" not in path.read_text()
    assert tomllib.loads(path.read_text())["shifts"]["roster"][0] == "cleaner-1 07:00-15:00"


def test_a_figure_still_rising_in_the_second_half_misses_its_target():
    # The department's 10 cleaners: 567 s over the whole window, 677 s over its second
    # half. The whole window's interval is below 600 s; where the queue has got to is not.
    def record(seed, whole, late):
        return {
            "seed": seed,
            "figures": {"wait.cleaner.mean": whole},
            "late": {"wait.cleaner.mean": late},
            "utilisation": dict.fromkeys(targets.ROLES, 0.9),
            "by_hour": [{"arrivals": 0}] * 24,
        }

    target = targets.parse("wait.cleaner.mean<10m")
    rising = staffing.Evaluation.of(
        "10", (1, 2, 3), [record(1, 560.0, 670.0), record(2, 567.0, 677.0), record(3, 574.0, 684.0)]
    )
    assert target.met_by(rising.figures[target.metric])  # the whole window alone: met
    assert rising.missed([target]) == [target] and rising.rising(target)
    assert rising.judged(target) == pytest.approx(677.0)
    settled = staffing.Evaluation.of(
        "11", (1, 2, 3), [record(1, 130.0, 140.0), record(2, 120.0, 125.0), record(3, 125.0, 120.0)]
    )
    assert settled.meets([target]) and not settled.rising(target)
