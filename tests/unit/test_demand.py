"""The hospital's demand (`scheduler/demand.py`): arrivals that follow the clock, durations
that vary around their means, and common random numbers — every policy sees the same
patients, with the same treatments and the same cleanings after them."""

from __future__ import annotations

import itertools
import statistics
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.stats import chi2

from scheduler import events as ev
from scheduler.config import Config
from scheduler.demand import (
    ArrivalProfile,
    Demand,
    Distribution,
    arrival_rate_per_hour,
    mean_arrival_rate_per_s,
    mean_cleaning_s,
    mean_treatment_s,
    patient_number,
)
from scheduler.engine import Scheduler
from scheduler.layout import Layout
from scheduler.simulation import simulate

DAY_MS = 86_400_000
# Quiet nights, a morning peak at 10:00-12:00 five times the night's rate, and two hours
# with no arrivals at all.
PEAKED = [2, 2, 2, 0, 0, 2, 4, 6, 10, 14, 20, 20, 14, 10, 8, 8, 8, 8, 6, 6, 4, 4, 2, 2]


def profile_config(**sections) -> Config:
    arrivals = {"process": "profile", "rates_per_hour": PEAKED} | sections.pop("arrivals", {})
    return Config().replace(arrivals=arrivals, **sections)


def arrivals_until(config: Config, until_ms: int, seed: int = 1) -> list[ev.PatientArrived]:
    stream = Demand(config, seed).arrivals()
    return list(itertools.takewhile(lambda a: a.time_ms < until_ms, stream))


def chi_square_p(observed: list[int], expected: list[float]) -> float:
    """The p-value of Poisson counts against their expected values (no parameter fitted:
    the degrees of freedom are the number of cells)."""
    cells = [(o, e) for o, e in zip(observed, expected) if e > 0]
    statistic = sum((o - e) ** 2 / e for o, e in cells)
    return float(chi2.sf(statistic, df=len(cells)))


# --- arrivals that follow the clock --------------------------------------------------------


def test_arrivals_by_hour_of_day_over_20_days_match_the_rates():
    arrivals = arrivals_until(profile_config(), 20 * DAY_MS)
    by_hour = Counter(a.time_ms // 3_600_000 % 24 for a in arrivals)
    observed = [by_hour[hour] for hour in range(24)]
    expected = [20 * rate for rate in PEAKED]
    assert chi_square_p(observed, expected) > 0.01, (observed, expected)
    # the hours of rate 0 have no arrival at all; the peak is the peak
    assert observed[3] == observed[4] == 0
    assert min(observed[10], observed[11]) > 3 * max(observed[0], observed[1], observed[2])
    assert len(arrivals) == pytest.approx(20 * sum(PEAKED), rel=0.05)


def test_day_factors_scale_each_day_of_the_week():
    factors = [1.0, 1.0, 1.0, 1.0, 1.5, 0.5, 0.0]  # day 6 of each week: nobody
    config = profile_config(arrivals={"day_factors": factors})
    arrivals = arrivals_until(config, 8 * 7 * DAY_MS)
    by_day = Counter(a.time_ms // DAY_MS % 7 for a in arrivals)
    observed = [by_day[day] for day in range(7)]
    expected = [8 * factor * sum(PEAKED) for factor in factors]
    assert chi_square_p(observed, expected) > 0.01, (observed, expected)
    assert observed[6] == 0 and observed[4] > observed[0] > observed[5]


def test_the_profile_is_the_inverse_of_its_cumulative_intensity():
    profile = ArrivalProfile(PEAKED, [1, 1, 1, 1, 1, 0.5, 0.5])
    assert profile.period_s == 7 * 86_400
    assert profile.rate_per_hour(10.5 * 3600) == 20
    assert profile.rate_per_hour(6 * 86_400 + 10.5 * 3600) == 10  # day 6: half
    assert profile.rate_per_hour(7 * 86_400 + 10.5 * 3600) == 20  # the week repeats
    assert profile.expected(86_400) == sum(PEAKED)
    for t in (0.0, 1.0, 3599.0, 5 * 3600 + 1, 86_400 * 3 + 32_345.6, 86_400 * 40 + 7.0):
        assert profile.time_of(profile.expected(t)) == pytest.approx(t, abs=1e-6)
    # expected arrivals reached inside hours of rate 0 are reached at their end
    assert profile.time_of(profile.expected(3 * 3600)) == pytest.approx(5 * 3600)
    assert profile.mean_rate_per_hour() == pytest.approx(sum(PEAKED) / 24 * 6 / 7)


def test_expectations_for_a_planner():
    config = profile_config(
        arrivals={"acuity_mix": [0.1, 0.2, 0.4, 0.2, 0.1]},
        durations={"treatment_s_by_acuity": [30.0, 20.0, 10.0, 5.0, 5.0]},
    )
    assert mean_treatment_s(config, 1) == 30 and mean_treatment_s(config, 4) == 5
    assert mean_treatment_s(config) == pytest.approx(3 + 4 + 4 + 1 + 0.5)  # over the mix
    assert mean_treatment_s(Config(), 1) == mean_treatment_s(Config()) == 10
    assert (mean_cleaning_s(config), mean_cleaning_s(config, "clean_terminal")) == (9, 13.5)
    assert arrival_rate_per_hour(config, 10 * 3600 + 59) == 20
    assert arrival_rate_per_hour(Config(), 10 * 3600) == 720  # fixed: one every 5 s
    assert mean_arrival_rate_per_s(config) == pytest.approx(sum(PEAKED) / 86_400)
    assert mean_arrival_rate_per_s(Config()) == 1 / 5


def arrivals_seen(config: Config, duration_ms: int) -> list[ev.Event]:
    """The arrivals a simulated run's scheduler consumed."""
    arrived: list[ev.Event] = []
    simulate(
        config,
        Scheduler(config),
        duration_ms,
        on_tick=lambda result: arrived.extend(
            e for e in result.consumed if isinstance(e, ev.PatientArrived)
        ),
    )
    return arrived


@settings(
    deadline=None, database=None, max_examples=25, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    rates=st.lists(st.sampled_from([0.0, 60.0, 600.0, 2400.0]), min_size=24, max_size=24).filter(
        any
    ),
    seed=st.integers(-(2**63), 2**63 - 1),
    mix=st.sampled_from([[0, 0, 1, 0, 0], [0.1, 0.2, 0.4, 0.2, 0.1]]),
)
def test_the_profile_process_is_reproducible_and_independent_of_the_policy(rates, seed, mix):
    config = Config().replace(
        hospital={"isolation_rooms": ["A1"]},
        arrivals={
            "process": "profile",
            "rates_per_hour": rates,
            "acuity_mix": mix,
            "isolation_share": 0.2,
            "seed": seed,
        },
        durations={"treatment_cv": 0.5},
        scheduler={"validate": False},
    )
    seen = {
        policy: arrivals_seen(config.replace(scheduler={"policy": policy}), 10 * 60_000)
        for policy in ("cpsat", "greedy")
    }
    assert seen["cpsat"] == seen["greedy"] == arrivals_until(config, 10 * 60_000 + 1, seed)
    assert arrivals_until(config, 3_600_000, seed) == arrivals_until(config, 3_600_000, seed)


def test_a_patients_acuity_is_found_again_from_their_id():
    mixed = {"acuity_mix": [0.1, 0.2, 0.4, 0.2, 0.1], "isolation_share": 0.3}
    for process in ("fixed", "poisson", "profile"):
        config = profile_config(
            hospital={"isolation_rooms": ["A1"]}, arrivals={"process": process, **mixed}
        )
        demand = Demand(config, 5)
        arrivals = arrivals_until(config, DAY_MS, 5)
        for arrival in reversed(arrivals):  # the last first: the replay runs up to it
            found = demand.patient(arrival.patient_id, by_ms=arrival.time_ms)
            assert found == (arrival.acuity, arrival.isolation), (process, arrival)
        assert len({a.acuity for a in arrivals}) == 5 and any(a.isolation for a in arrivals)
        for other in ("visitor-1", "patient-0", "patient-01", "patient-x"):
            assert demand.patient(other) is None


def test_a_patient_not_arrived_by_then_is_not_replayed_for():
    """A made-up `patient-N` costs a worker no more than the patients arrived so far."""
    config = Config().replace(arrivals={"acuity_mix": [0, 0.5, 0.5, 0, 0]})
    demand = Demand(config, 1)
    assert demand.patient("patient-1000000000000", by_ms=60_000) is None
    assert len(demand._replayed) == 13  # 0 s to 60 s, one every 5 s
    assert demand.patient("patient-20", by_ms=100_000) is not None


def test_patient_numbers():
    assert patient_number("patient-12") == 12
    assert [patient_number(i) for i in ("patient-", "patient-0", "patient-٣", "p-1")] == [
        None,
        None,
        None,
        None,
    ]


# --- durations that vary ------------------------------------------------------------------

DRAWS = 10_000
BY_ACUITY = [40.0, 25.0, 10.0, 6.0, 3.0]


@pytest.mark.parametrize(
    "distribution, treatment_cv, cleaning_cv, terminal_cv",
    [
        ("lognormal", 0.5, 0.3, 1.0),
        ("lognormal", 1.0, 0.7, 0.2),
        ("gamma", 0.5, 0.3, 1.0),
        ("gamma", 1.0, 0.7, 0.2),
    ],
)
def test_durations_have_their_configured_mean_and_cv(
    distribution, treatment_cv, cleaning_cv, terminal_cv
):
    config = Config().replace(
        durations={
            "distribution": distribution,
            "treatment_s_by_acuity": BY_ACUITY,
            "treatment_cv": treatment_cv,
            "cleaning_cv": cleaning_cv,
            "terminal_cleaning_cv": terminal_cv,
        }
    )
    demand = Demand(config, 3)
    patients = [f"patient-{n}" for n in range(1, DRAWS + 1)]
    kinds = {
        f"ESI {level}": (lambda p, level=level: demand.treatment_s(p, level), mean, treatment_cv)
        for level, mean in enumerate(BY_ACUITY, start=1)
    } | {
        "cleaning": (demand.cleaning_s, 9.0, cleaning_cv),
        "terminal": (lambda p: demand.cleaning_s(p, "clean_terminal"), 13.5, terminal_cv),
    }
    for name, (draw, mean, cv) in kinds.items():
        durations = [draw(p) for p in patients]
        sample_mean = statistics.fmean(durations)
        sample_cv = statistics.stdev(durations) / sample_mean
        assert sample_mean == pytest.approx(mean, rel=0.02), name
        assert sample_cv == pytest.approx(cv, rel=0.05), name


def test_gamma_of_cv_1_is_the_exponential():
    exponential = Distribution(10.0, 1.0, "gamma")
    for u in (0.01, 0.5, 0.9, 0.999):
        assert exponential.quantile(u) == pytest.approx(-10.0 * statistics.log(1 - u))


def test_a_duration_grows_with_its_uniform_and_is_fixed_at_cv_0():
    for distribution in ("lognormal", "gamma"):
        quantile = Distribution(10.0, 0.8, distribution).quantile
        uniforms = [n / 1000 for n in range(1, 1000)]
        drawn = [quantile(u) for u in uniforms]
        assert drawn == sorted(drawn) and drawn[0] < 10 < drawn[-1]
        assert Distribution(10.0, 0.0, distribution).quantile(0.99) == 10.0
        assert Distribution(0.0, 0.8, distribution).quantile(0.99) == 0.0


def task(kind: str, patient_id: str, time_ms: int = 0) -> ev.TaskDispatched:
    return ev.TaskDispatched("d", time_ms, 1, "task-9", kind, "x-1", patient_id, "A1")


def test_a_task_takes_its_patients_draw_whatever_its_id_or_staff():
    config = Config().replace(
        arrivals={"acuity_mix": [0.5, 0, 0.5, 0, 0]},
        durations={"treatment_cv": 0.5, "cleaning_cv": 0.5, "treatment_s_by_acuity": BY_ACUITY},
    )
    demand = Demand(config, 1)
    acuity = demand.patient("patient-7")[0]
    visit = task("visit", "patient-7", 30_000)
    assert demand.work_ms(visit) == round(demand.treatment_s("patient-7", acuity) * 1000)
    other = ev.TaskDispatched("e", 90_000, 9, "task-55", "visit", "doctor-1", "patient-7", "B2")
    assert demand.work_ms(other) == demand.work_ms(visit)
    assert demand.work_ms(task("clean", "patient-7")) == round(
        demand.cleaning_s("patient-7") * 1000
    )
    assert demand.work_ms(task("escort_in", "patient-7")) == 0
    # another seed, other draws; the same seed in another process, the same
    assert Demand(config, 2).work_ms(visit) != demand.work_ms(visit)
    assert Demand(config, 1).work_ms(visit) == demand.work_ms(visit)
    # someone the arrivals did not make: around the mix's mean
    assert demand.work_ms(task("visit", "walk-in")) == round(
        demand.treatment_s("walk-in", None) * 1000
    )


def test_fixed_durations_are_the_configured_ones():
    demand = Demand(Config(), 1)
    assert [demand.work_ms(task(k, "patient-3")) for k in ("visit", "clean", "clean_terminal")] == [
        10_000,
        9_000,
        13_500,
    ]


# --- common random numbers: two policies, the same patients ----------------------------------


def treated_patients(config: Config) -> dict[str, dict[str, object]]:
    """What a run shows of each patient: arrival, ESI level, isolation, and the lengths of
    their treatment and of the cleaning after them, read from the recorded events (a task's
    work is its completion time less its dispatch time and the walk)."""
    layout = Layout(config)
    patients: dict[str, dict[str, object]] = {}
    dispatched: dict[str, ev.TaskDispatched] = {}

    def each_tick(result) -> None:
        for decision in result.decisions:
            if isinstance(decision, ev.TaskDispatched):
                dispatched[decision.task_id] = decision
        for event in result.consumed:
            if isinstance(event, ev.PatientArrived):
                patients[event.patient_id] = {
                    "arrived_ms": event.time_ms,
                    "acuity": event.acuity,
                    "isolation": event.isolation,
                }
            elif isinstance(event, (ev.VisitCompleted, ev.CleaningCompleted)):
                done = dispatched[event.task_id]
                walk = layout.walking_ms(done.origin, done.kind, done.room_id)
                work = "treatment_ms" if done.kind == "visit" else done.kind + "_ms"
                patients[done.patient_id][work] = event.time_ms - done.time_ms - walk

    simulate(config, Scheduler(config), 3 * 3_600_000, on_tick=each_tick)
    return patients


def test_cpsat_and_greedy_see_identical_patients_treatments_and_cleanings():
    config = profile_config(
        hospital={"isolation_rooms": ["A1", "B1"]},
        arrivals={
            "rates_per_hour": [300.0] * 24,
            "acuity_mix": [0.1, 0.2, 0.4, 0.2, 0.1],
            "isolation_share": 0.2,
        },
        durations={
            "treatment_cv": 0.5,
            "cleaning_cv": 0.5,
            "terminal_cleaning_cv": 0.5,
            "treatment_s_by_acuity": [20.0, 15.0, 10.0, 8.0, 5.0],
        },
        travel={"model": "layout"},
    )
    runs = {
        policy: treated_patients(config.replace(scheduler={"policy": policy}))
        for policy in ("cpsat", "greedy")
    }
    cpsat, greedy = runs["cpsat"], runs["greedy"]
    assert len(cpsat) > 800
    assert {p: v["arrived_ms"] for p, v in cpsat.items()} == {
        p: v["arrived_ms"] for p, v in greedy.items()
    }
    demand = Demand(config)
    compared = Counter()
    for patient_id, seen in cpsat.items():
        other = greedy[patient_id]
        for key in ("acuity", "isolation", "treatment_ms", "clean_ms", "clean_terminal_ms"):
            if key in seen and key in other:
                assert seen[key] == other[key], (patient_id, key)
                compared[key] += 1
        if "treatment_ms" in seen:  # and it is the patient's own draw
            expected_s = demand.treatment_s(patient_id, seen["acuity"])
            assert seen["treatment_ms"] == round(expected_s * 1000)
    # the policies may refer and treat different patients, but most are in both runs
    assert compared["treatment_ms"] > 0.75 * len(cpsat), compared
    assert compared["clean_ms"] > 0.6 * len(cpsat) and compared["clean_terminal_ms"] > 100
    treatments = [v["treatment_ms"] for v in cpsat.values() if "treatment_ms" in v]
    assert len(set(treatments)) > 0.9 * len(treatments)  # they do vary


def test_zero_durations_and_zero_walking_run():
    config = profile_config(
        arrivals={"rates_per_hour": [3600.0] * 24},
        durations={"treatment_s": 0.0, "cleaning_s": 0.0, "cleaning_cv": 1.0},
        travel={"floor_s": 0.0, "room_s": 0.0, "corridor_s": 0.0, "model": "layout"},
    )
    scheduler = Scheduler(config)
    simulate(config, scheduler, 10 * 60_000)
    summary = scheduler.auditor.accounted_for()  # and it checked every tick
    assert summary["arrived"] > 500 and summary["discharged"] > 400
