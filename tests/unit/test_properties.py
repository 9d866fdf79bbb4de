"""Property tests: random small hospitals run through `simulate` with the Auditor checking
every tick; determinism of the decisions; independence of the delivery order within a tick;
and, on random seed-model tick problems, a unique optimum for the cpsat policy."""

from __future__ import annotations

from collections import Counter

import pytest

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from ortools.sat.python import cp_model

import scheduler.policies as policies
from scheduler import events as ev
from scheduler.config import Config
from scheduler.engine import Scheduler
from scheduler.layout import ROLE_OF_KIND
from scheduler.policies import CpSatPolicy, GreedyPolicy
from scheduler.problem import Arrival, FreeStaff, OpenTask, TickProblem
from scheduler.simulation import simulate

# No example database: the suite writes nothing outside tests/.
FAST = settings(deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def hospitals(draw) -> tuple[Config, int]:
    """A random small hospital and a run length in ms (2-10 simulated minutes)."""
    nurses = draw(st.integers(0, 3))
    config = Config().replace(
        hospital={"floors": list("ABC"[:draw(st.integers(1, 3))]),
                  "rooms_per_floor": draw(st.integers(1, 3))},
        staff={"porters": draw(st.integers(1, 3)), "nurses": nurses,
               "doctors": draw(st.integers(0 if nurses else 1, 3)),
               "cleaners": draw(st.integers(1, 3))},
        arrivals={"process": draw(st.sampled_from(["fixed", "poisson"])),
                  "interval_s": draw(st.floats(0.5, 10.0)),
                  "seed": draw(st.integers(0, 10_000))},
        travel={"model": draw(st.sampled_from(["seed", "layout"]))},
        scheduler={"policy": draw(st.sampled_from(["cpsat", "greedy"])), "validate": True},
    )
    return config, draw(st.integers(2, 10)) * 60_000


def run(config: Config, duration_ms: int):
    scheduler = Scheduler(config)
    results = []
    simulate(config, scheduler, duration_ms, on_tick=results.append)
    return scheduler, results


@settings(FAST, max_examples=80)
@given(hospitals())
def test_every_invariant_holds_and_every_patient_is_accounted_for(hospital):
    config, duration_ms = hospital
    scheduler, results = run(config, duration_ms)   # the Auditor checks every tick
    event(f"{config.scheduler.policy} {config.travel.model}")
    assert scheduler.auditor is not None
    decided = Counter(d.TYPE for r in results for d in r.decisions)
    arrived = sum(isinstance(e, ev.PatientArrived) for r in results for e in r.consumed)
    summary = scheduler.auditor.accounted_for()
    assert summary["arrived"] == arrived > 0
    assert summary["arrived"] == summary["referred"] + summary["discharged"] + summary["in_building"]
    assert summary["referred"] == decided["patient.referred"]
    assert summary["discharged"] == decided["patient.discharged"]
    assert decided["patient.admitted"] + decided["patient.referred"] == arrived
    rooms = len(config.hospital.floors) * config.hospital.rooms_per_floor
    assert 0 <= summary["in_building"] <= rooms
    assert summary["in_building"] == len(scheduler.hospital.patients)
    # The simulated workers only report what they were given: nothing is rejected.
    assert scheduler.counters["rejected"] == 0 and scheduler.counters["duplicates"] == 0
    # Every dispatched task was dispatched once; every task id is announced once as new.
    dispatched = Counter(d.task_id for r in results for d in r.decisions
                         if d.TYPE == "task.dispatched")
    assert max(dispatched.values(), default=1) == 1
    queued = Counter(d.task_id for r in results for d in r.decisions if d.TYPE == "task.queued")
    assert max(queued.values(), default=1) == 1


@settings(FAST, max_examples=20)
@given(hospitals())
def test_same_config_twice_gives_byte_identical_decisions(hospital):
    config, duration_ms = hospital
    first = [d.to_json() for r in run(config, duration_ms)[1] for d in r.decisions]
    second = [d.to_json() for r in run(config, duration_ms)[1] for d in r.decisions]
    assert first == second and first


@settings(FAST, max_examples=20)
@given(hospitals(), st.randoms(use_true_random=False))
def test_shuffled_delivery_within_a_tick_gives_identical_decisions(hospital, rng):
    config, duration_ms = hospital
    original, results = run(config, duration_ms)
    replay = Scheduler(config)
    for result in results:
        batch = list(result.consumed)
        rng.shuffle(batch)
        again = replay.tick(result.tick, batch)
        assert [d.to_json() for d in again.decisions] == [d.to_json() for d in result.decisions]
        assert [e.event_id for e in again.consumed] == [e.event_id for e in result.consumed]
    assert replay.auditor.accounted_for() == original.auditor.accounted_for()


# --- the cpsat policy on random tick problems -----------------------------------------------

@st.composite
def seed_problems(draw) -> TickProblem:
    """A random tick problem whose walking depends on the task only (the seed model)."""
    rooms = ["A1", "A2", "A3", "B1", "B2", "B3"]
    from_entrance = {r: 1000 * ("AB".index(r[0]) + 1 + int(r[1])) for r in rooms}
    now = 20_000
    n_tasks = draw(st.integers(0, 5))
    task_rooms = draw(st.permutations(rooms))[:n_tasks]
    tasks = []
    for n, room in enumerate(task_rooms):
        kind = draw(st.sampled_from(list(ROLE_OF_KIND)))
        tasks.append(OpenTask(f"task-{n}", kind, ROLE_OF_KIND[kind], room, f"patient-{n}",
                              draw(st.sampled_from([0, 5_000, 10_000, now]))))
    free_rooms = [r for r in rooms if r not in task_rooms][:draw(st.integers(0, 3))]
    arrivals = [Arrival(f"new-{n}", draw(st.sampled_from([19_000, 19_500, now])))
                for n in range(draw(st.integers(0, 3)))]
    tasks += [OpenTask(f"arrival:{a.patient_id}", "escort_in", "porter", None, a.patient_id,
                       a.arrived_ms) for a in arrivals]
    staff = [FreeStaff(f"{role}-{n}", role, "entrance")
             for role in ("porter", "medical", "cleaner")
             for n in range(draw(st.integers(0, 3)))]
    walking = {}
    for t in tasks:
        for s in staff:
            if t.role == s.role:
                walking[t.key, s.staff_id] = (0 if t.room_id is None or t.kind == "escort_out"
                                              else from_entrance[t.room_id])
    return TickProblem(now, tuple(arrivals), tuple(free_rooms), tuple(tasks), tuple(staff),
                       walking, {r: from_entrance[r] for r in free_rooms})


def _optimum_count(problem: TickProblem, monkeypatch) -> int | None:
    """How many assignments reach the optimum of the cpsat policy's model (None: forced)."""
    captured = {}
    base = cp_model.CpSolver

    class Recording(base):
        def solve(inner, model, *args, **kwargs):
            status = super().solve(model, *args, **kwargs)
            captured["model"], captured["value"] = model, round(inner.objective_value)
            return status

    with monkeypatch.context() as patch:
        patch.setattr(policies.cp_model, "CpSolver", Recording)
        CpSatPolicy().solve(problem)
    if "model" not in captured:
        return None
    model = captured["model"]
    objective = model.proto.objective
    model.add(sum(c * model.get_int_var_from_proto_index(v)
                  for v, c in zip(objective.vars, objective.coeffs))
              == captured["value"] - round(objective.offset))
    model.clear_objective()

    class Count(cp_model.CpSolverSolutionCallback):
        def __init__(self):
            super().__init__()
            self.n = 0

        def on_solution_callback(self):
            self.n += 1

    solver = base()
    solver.parameters.enumerate_all_solutions = True
    solver.parameters.num_workers = 1
    counter = Count()
    solver.solve(model, counter)
    return counter.n


@settings(FAST, max_examples=150)
@given(seed_problems())
def test_cpsat_on_seed_problems_obeys_the_hard_rules_and_has_a_unique_optimum(problem):
    solution = CpSatPolicy().solve(problem)
    greedy = GreedyPolicy().solve(problem)
    # Same number of admissions and of dispatches per role as the greedy policy, and
    # as the spec's counts.
    assert len(solution.bookings) == len(greedy.bookings) == problem.admissions_due()
    assert len(set(solution.bookings.values())) == len(solution.bookings)
    assert len(set(solution.dispatches.values())) == len(solution.dispatches)
    role_of = {s.staff_id: s.role for s in problem.staff}
    task_of = {t.key: t for t in problem.tasks}
    for role in problem.roles:
        got = sum(role_of[s] == role for s in solution.dispatches.values())
        assert got == problem.dispatches_due(role)
    for key, staff_id in solution.dispatches.items():
        assert task_of[key].role == role_of[staff_id]
        if task_of[key].for_arrival:
            assert task_of[key].patient_id in solution.bookings
    mp = pytest.MonkeyPatch()
    try:
        count = _optimum_count(problem, mp)
    finally:
        mp.undo()
    event("forced" if count is None else "solved")
    assert count in (None, 1)
