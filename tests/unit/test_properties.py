"""Property tests: random small hospitals run through `simulate` with the Auditor checking
every tick; determinism of the decisions; independence of the delivery order within a tick;
and, on random tick problems of up to hundreds of pairs, the cpsat policy's answer is the
optimum of the whole CP-SAT model and the tie-break's one answer (`tests/oracle.py`)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from rules.tie_break import EXACT_PAIRS, pair_count
from scheduler import events as ev
from scheduler.config import Config, RulesConfig
from scheduler.engine import Scheduler
from scheduler.full_model import FullModelPolicy
from scheduler.layout import ROLE_OF_KIND, Layout
from scheduler.policies import CpSatPolicy, GreedyPolicy
from scheduler.problem import Arrival, FreeStaff, OpenTask, Solution, TickProblem
from scheduler.simulation import simulate
from tests import oracle

# No example database: the suite writes nothing outside tests/.
FAST = settings(deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def clinical(draw, floors: list[str], rooms_per_floor: int, staff: dict[str, int]) -> dict:
    """Random clinical rules for a hospital: an acuity mix, rooms able to isolate and a share
    of patients needing them, a roster with breaks, target waits, reasons."""
    rooms = [f"{f}{n}" for f in floors for n in range(1, rooms_per_floor + 1)]
    isolation_rooms = draw(st.lists(st.sampled_from(rooms), max_size=2, unique=True))
    mix = draw(st.lists(st.sampled_from([0.0, 0.1, 0.3]), min_size=5, max_size=5))
    if not sum(mix):
        mix[2] = 1.0
    if mix[0] + mix[1] and not staff["doctors"]:
        mix[0] = mix[1] = 0.0
        mix[2] = mix[2] or 1.0
    ids = [
        f"{title}-{n}"
        for title in ("porter", "nurse", "doctor", "cleaner")
        for n in range(1, staff[f"{title}s"] + 1)
    ]
    roster = []
    for staff_id in draw(st.lists(st.sampled_from(ids), max_size=3, unique=True)):
        start = draw(st.integers(0, 3))
        roster.append(
            f"{staff_id} 00:0{start}-00:0{start + draw(st.integers(1, 4))}"
            # a break within the shift: the roster refuses one outside it
            + (f" break 00:0{start}:10-00:0{start}:40" if draw(st.booleans()) else "")
        )
    return {
        "hospital": {
            "isolation_rooms": isolation_rooms,
            "reserve_isolation_rooms": bool(isolation_rooms) and draw(st.booleans()),
        },
        "arrivals": {
            "acuity_mix": mix,
            "isolation_share": draw(st.sampled_from([0.0, 0.3])) if isolation_rooms else 0.0,
        },
        "shifts": {"roster": roster, "cycle_s": 480.0},
        "sla": {
            # 0.5 s: shorter than a tick, so a task may be escalated in the tick that queues it
            "visit_s": draw(st.sampled_from([0.0, 0.5, 5.0])),
            "visit_urgent_s": draw(st.sampled_from([0.0, 2.0])),
            "clean_s": draw(st.sampled_from([0.0, 0.5, 8.0])),
        },
        "scheduler": {"explain": draw(st.booleans())},
    }


@st.composite
def varying_demand(draw) -> dict:
    """Arrivals by a profile (busy from the first hour on), durations that vary around
    their means, which may be 0, as may every walk."""
    zero_walks = draw(st.booleans())
    return {
        "arrivals": {
            "process": "profile",
            "rates_per_hour": [draw(st.sampled_from([360.0, 1800.0, 3600.0]))]
            + draw(st.lists(st.sampled_from([0.0, 600.0]), min_size=23, max_size=23)),
        },
        "durations": {
            "treatment_s": draw(st.sampled_from([0.0, 3.0, 10.0])),
            "cleaning_s": draw(st.sampled_from([0.0, 9.0])),
            "treatment_cv": draw(st.sampled_from([0.0, 0.5, 2.0])),
            "cleaning_cv": draw(st.sampled_from([0.0, 1.0])),
            "terminal_cleaning_cv": draw(st.sampled_from([0.0, 0.5])),
            "distribution": draw(st.sampled_from(["lognormal", "gamma"])),
        },
        "travel": {"floor_s": 0.0, "room_s": 0.0, "corridor_s": 0.0} if zero_walks else {},
    }


@st.composite
def hospitals(
    draw, with_clinical_rules: bool = False, looking_ahead: bool = False
) -> tuple[Config, int]:
    """A random small hospital and a run length in ms (2-10 simulated minutes); looking
    ahead, with the cpsat policy, a horizon and a bound on holds."""
    nurses = draw(st.integers(0, 3))
    config = Config().replace(
        hospital={
            "floors": list("ABC"[: draw(st.integers(1, 3))]),
            "rooms_per_floor": draw(st.integers(1, 3)),
        },
        staff={
            "porters": draw(st.integers(1, 3)),
            "nurses": nurses,
            "doctors": draw(st.integers(0 if nurses else 1, 3)),
            "cleaners": draw(st.integers(1, 3)),
        },
        arrivals={
            "process": draw(st.sampled_from(["fixed", "poisson"])),
            "interval_s": draw(st.floats(0.5, 10.0)),
            "seed": draw(st.integers(0, 10_000)),
        },
        travel={"model": draw(st.sampled_from(["seed", "layout"]))},
        scheduler={"policy": draw(st.sampled_from(["cpsat", "greedy"])), "validate": True},
    )
    if with_clinical_rules:
        rules = draw(
            clinical(
                list(config.hospital.floors),
                config.hospital.rooms_per_floor,
                {
                    "porters": config.staff.porters,
                    "nurses": config.staff.nurses,
                    "doctors": config.staff.doctors,
                    "cleaners": config.staff.cleaners,
                },
            )
        )
        rules["scheduler"]["policy"] = config.scheduler.policy
        config = config.replace(**rules)
    if draw(st.integers(0, 3)) == 0:
        demand = draw(varying_demand())
        if with_clinical_rules and draw(st.booleans()):
            demand["durations"]["treatment_s_by_acuity"] = [20.0, 10.0, 10.0, 5.0, 0.0]
        config = config.replace(**demand)
    if looking_ahead:
        config = config.replace(
            scheduler={
                "policy": "cpsat",
                "lookahead_s": draw(st.sampled_from([5.0, 30.0, 120.0])),
                "max_hold_s": draw(st.sampled_from([2.0, 10.0, 60.0])),
            }
        )
    return config, draw(st.integers(2, 10)) * 60_000


def run(config: Config, duration_ms: int):
    scheduler = Scheduler(config)
    results = []
    simulate(config, scheduler, duration_ms, on_tick=results.append)
    return scheduler, results


@dataclass
class Fates:
    arrived: set[str] = field(default_factory=set)
    referred: set[str] = field(default_factory=set)
    discharged: set[str] = field(default_factory=set)
    in_rooms: dict[str, str] = field(default_factory=dict)  # admitted, not yet discharged


def fates_from_the_events(results) -> Fates:
    """Each patient's fate read from the run's events alone, not from any count the Auditor
    or the scheduler keeps: every arrival decided once (admitted or referred), every
    discharge of a patient admitted to that room, and nobody both referred and discharged."""
    fates = Fates()
    for result in results:
        for consumed in result.consumed:
            if isinstance(consumed, ev.PatientArrived):
                assert consumed.patient_id not in fates.arrived
                fates.arrived.add(consumed.patient_id)
        for decision in result.decisions:
            patient_id = getattr(decision, "patient_id", None)
            if isinstance(decision, (ev.PatientAdmitted, ev.PatientReferred)):
                assert patient_id in fates.arrived
                assert patient_id not in fates.referred and patient_id not in fates.in_rooms
                assert patient_id not in fates.discharged
            if isinstance(decision, ev.PatientAdmitted):
                fates.in_rooms[patient_id] = decision.room_id
            elif isinstance(decision, ev.PatientReferred):
                fates.referred.add(patient_id)
            elif isinstance(decision, ev.PatientDischarged):
                assert fates.in_rooms.pop(patient_id) == decision.room_id
                fates.discharged.add(patient_id)
    assert fates.arrived == fates.referred | fates.discharged | set(fates.in_rooms)
    return fates


@settings(FAST, max_examples=80)
@given(hospitals())
def test_every_invariant_holds_and_every_patient_is_accounted_for(hospital):
    config, duration_ms = hospital
    scheduler, results = run(config, duration_ms)  # the Auditor checks every tick
    event(f"{config.scheduler.policy} {config.travel.model} {config.arrivals.process}")
    assert scheduler.auditor is not None
    summary = scheduler.auditor.accounted_for()
    fates = fates_from_the_events(results)
    assert fates.arrived
    assert summary == {
        "arrived": len(fates.arrived),
        "referred": len(fates.referred),
        "discharged": len(fates.discharged),
        "in_building": len(fates.in_rooms),
    }
    rooms = len(config.hospital.floors) * config.hospital.rooms_per_floor
    assert len(set(fates.in_rooms.values())) == len(fates.in_rooms) <= rooms
    assert set(fates.in_rooms) == set(scheduler.hospital.patients)
    # The simulated workers only report what they were given: nothing is rejected.
    assert scheduler.counters["rejected"] == 0 and scheduler.counters["duplicates"] == 0
    # Every dispatched task was dispatched once; every task id is announced once as new.
    dispatched = Counter(
        d.task_id for r in results for d in r.decisions if d.TYPE == "task.dispatched"
    )
    assert max(dispatched.values(), default=1) == 1
    queued = Counter(d.task_id for r in results for d in r.decisions if d.TYPE == "task.queued")
    assert max(queued.values(), default=1) == 1


@settings(FAST, max_examples=60)
@given(hospitals(with_clinical_rules=True))
def test_with_clinical_rules_every_invariant_holds_and_replays_are_exact(hospital):
    """Mixed acuity, isolation, shifts with breaks and target waits: the Auditor checks the
    clinical invariants every tick; the same run again, with the events shuffled within
    each tick, gives the same bytes."""
    config, duration_ms = hospital
    scheduler, results = run(config, duration_ms)
    event(
        f"{config.scheduler.policy}, isolation {bool(config.hospital.isolation_rooms)}, "
        f"roster {bool(config.shifts.roster)}"
    )
    summary = scheduler.auditor.accounted_for()
    fates = fates_from_the_events(results)
    assert summary == {
        "arrived": len(fates.arrived),
        "referred": len(fates.referred),
        "discharged": len(fates.discharged),
        "in_building": len(fates.in_rooms),
    }
    assert scheduler.counters["rejected"] == 0
    replay = Scheduler(config)
    for result in results:
        again = replay.tick(result.tick, list(reversed(result.consumed)))
        assert [d.to_json() for d in again.decisions] == [d.to_json() for d in result.decisions]


@settings(FAST, max_examples=60)
@given(hospitals(with_clinical_rules=True, looking_ahead=True))
def test_looking_ahead_every_invariant_holds_and_replays_are_exact(hospital):
    """Looking ahead, with holds: the Auditor checks every tick (a held member is not idle,
    a room held for another class excuses a referral, holds are bounded and end), every
    patient is accounted for, and the events shuffled within each tick give the same bytes."""
    config, duration_ms = hospital
    scheduler, results = run(config, duration_ms)
    holds = Counter(d.TYPE for r in results for d in r.decisions if d.TYPE.endswith(".held"))
    event(f"staff holds {bool(holds['staff.held'])}, room holds {bool(holds['room.held'])}")
    summary = scheduler.auditor.accounted_for()
    fates = fates_from_the_events(results)
    assert summary["arrived"] == len(fates.arrived)
    assert summary["referred"] == len(fates.referred)
    replay = Scheduler(config)
    for result in results:
        again = replay.tick(result.tick, list(reversed(result.consumed)))
        assert [d.to_json() for d in again.decisions] == [d.to_json() for d in result.decisions]


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

ROOMS = [f"{floor}{n}" for floor in "ABC" for n in range(1, 5)]
LAYOUTS = {
    model: Layout(
        Config().replace(
            travel={"model": model}, hospital={"floors": ["A", "B", "C"], "rooms_per_floor": 4}
        )
    )
    for model in ("seed", "layout")
}


@st.composite
def tick_problems(draw, max_tasks=12, max_staff=6, clinical=False) -> TickProblem:
    """A random tick problem of a 12-room hospital, walking from either travel model; few
    distinct waiting times, so that ties are common. Up to a few hundred pairs. `clinical`:
    mixed acuity and isolation, rooms able to isolate, skills, target waits."""
    layout = LAYOUTS[draw(st.sampled_from(["seed", "layout"]))]
    now = 60_000
    times = st.sampled_from([0, 10_000, 30_000, now])
    acuity = st.integers(1, 5) if clinical else st.just(3)
    isolation = st.booleans() if clinical else st.just(False)
    tasks = []
    for n in range(draw(st.integers(0, max_tasks))):
        kind = draw(st.sampled_from(list(ROLE_OF_KIND)))
        tasks.append(
            OpenTask(
                f"task-{n}",
                kind,
                ROLE_OF_KIND[kind],
                draw(st.sampled_from(ROOMS)),
                f"patient-{n}",
                draw(times),
                draw(acuity),
            )
        )
    free_rooms = draw(st.lists(st.sampled_from(ROOMS), max_size=5, unique=True))
    arrivals = sorted(
        (
            Arrival(
                f"new-{n}",
                draw(st.sampled_from([58_000, 59_500, now])),
                draw(acuity),
                draw(isolation),
            )
            for n in range(draw(st.integers(0, 4)))
        ),
        key=lambda a: a.arrived_ms,
    )
    tasks += [
        OpenTask(
            f"arrival:{a.patient_id}",
            "escort_in",
            "porter",
            None,
            a.patient_id,
            a.arrived_ms,
            a.acuity,
        )
        for a in arrivals
    ]
    places = ["entrance", *ROOMS]
    grades = {"porter": ["porter"], "medical": ["nurse", "doctor"], "cleaner": ["cleaner"]}
    staff = [
        FreeStaff(
            f"{draw(st.sampled_from(grades[role]))}-{role}{n}", role, draw(st.sampled_from(places))
        )
        for role in ("porter", "medical", "cleaner")
        for n in range(draw(st.integers(0, max_staff)))
    ]
    clinical_fields = {}
    if clinical:
        clinical_fields = {
            "isolation_rooms": frozenset(draw(st.lists(st.sampled_from(ROOMS), max_size=4))),
            "reserve_isolation_rooms": draw(st.booleans()),
            "skills": draw(st.booleans()),
            "sla_ms": {
                (kind, urgent): draw(st.sampled_from([0, 20_000, 50_000]))
                for kind in ROLE_OF_KIND
                for urgent in (False, True)
            },
        }
    walking = {}
    for t in tasks:
        for s in staff:
            if t.role == s.role:
                walking[t.key, s.staff_id] = (
                    layout.walking_ms(s.location, t.kind, t.room_id)
                    if t.room_id
                    else layout.walk(s.location, "entrance")
                    if layout.model == "layout"
                    else 0
                )
    return TickProblem(
        now,
        tuple(arrivals),
        tuple(free_rooms),
        tuple(tasks),
        tuple(staff),
        walking,
        {r: layout.from_entrance(r) for r in free_rooms},
        **clinical_fields,
    )


weights_strategy = st.builds(
    RulesConfig,
    longest_wait_first=st.sampled_from([0, 1, 3]),
    minimise_walking=st.sampled_from([0, 1, 2]),
    free_rooms_fast=st.sampled_from([0, 30]),
    urgency=st.sampled_from([0, 60]),
    sla_breach=st.sampled_from([0, 1]),
)


def _obeys_the_hard_rules(problem: TickProblem, solution) -> None:
    """Checked from the problem's data, not its helpers, except the counts."""
    assert set(solution.bookings) == {a.patient_id for a in problem.admitted()}
    assert len(set(solution.bookings.values())) == len(solution.bookings)
    assert set(solution.bookings.values()) <= set(problem.free_rooms)
    arrival_of = {a.patient_id: a for a in problem.arrivals}
    for patient_id, room_id in solution.bookings.items():
        if arrival_of[patient_id].isolation:
            assert room_id in problem.isolation_rooms
        elif problem.reserve_isolation_rooms:
            assert room_id not in problem.isolation_rooms
    # Nobody referred while a room they may use is free, nor for someone less urgent.
    free_after = set(problem.free_rooms) - set(solution.bookings.values())
    for a in problem.arrivals:
        if a.patient_id not in solution.bookings:
            assert not any(problem.may_book(a, r) for r in free_after)
            for b in problem.arrivals:
                if b.patient_id in solution.bookings and (b.acuity, b.arrived_ms) > (
                    a.acuity,
                    a.arrived_ms,
                ):
                    assert not problem.may_book(a, solution.bookings[b.patient_id])
    assert len(set(solution.dispatches.values())) == len(solution.dispatches)
    staff_of = {s.staff_id: s for s in problem.staff}
    task_of = {t.key: t for t in problem.tasks}
    for role in problem.roles:
        got = sum(staff_of[s].role == role for s in solution.dispatches.values())
        assert got == problem.dispatches_due(role)
    for key, staff_id in solution.dispatches.items():
        task, staff = task_of[key], staff_of[staff_id]
        assert task.role == staff.role
        if problem.skills and task.kind == "visit" and task.acuity <= 2:
            assert staff.grade == "doctor"
        if task.for_arrival:
            assert task.patient_id in solution.bookings
    # No idle staff member while a task they may do waits.
    busy = set(solution.dispatches.values())
    for staff in problem.staff:
        if staff.staff_id not in busy:
            for task in problem.tasks:
                if task.key not in solution.dispatches and (
                    not task.for_arrival or task.patient_id in solution.bookings
                ):
                    assert not problem.may_do(task, staff)


@settings(FAST, max_examples=150)
@given(tick_problems(), weights_strategy)
def test_cpsat_reaches_the_full_models_optimum_and_its_tie_break(problem, weights):
    solution = CpSatPolicy(weights).solve(problem)
    _obeys_the_hard_rules(problem, solution)
    pairs = pair_count(problem)
    event("over 30 pairs" if pairs > EXACT_PAIRS else "up to 30 pairs")
    assert oracle.objective_value(problem, solution, weights) == oracle.optimum(problem, weights)
    assert oracle.is_the_tie_breaks_optimum(problem, solution, weights)
    if pairs <= EXACT_PAIRS:  # where the full model's 2^k tie-break is exact: the same answer
        assert solution == FullModelPolicy(weights).solve(problem)


@settings(FAST, max_examples=120)
@given(tick_problems(clinical=True), weights_strategy)
def test_with_clinical_rules_cpsat_reaches_the_optimum_and_greedy_keeps_the_hard_rules(
    problem, weights
):
    _obeys_the_hard_rules(problem, GreedyPolicy().solve(problem))
    solution = CpSatPolicy(weights).solve(problem)
    _obeys_the_hard_rules(problem, solution)
    assert oracle.objective_value(problem, solution, weights) == oracle.optimum(problem, weights)
    assert oracle.is_the_tie_breaks_optimum(problem, solution, weights)


@settings(FAST, max_examples=25)
@given(tick_problems(max_tasks=40, max_staff=12))
def test_cpsat_tie_break_on_long_waiting_lists(problem):
    solution = CpSatPolicy().solve(problem)
    event("over 100 pairs" if pair_count(problem) > 100 else "up to 100 pairs")
    assert oracle.objective_value(problem, solution, RulesConfig()) == oracle.optimum(
        problem, RulesConfig()
    )
    assert oracle.is_the_tie_breaks_optimum(problem, solution, RulesConfig())


def test_eight_escorts_out_four_porters_one_answer_among_the_24_optima():
    """The issue's example: 8 equal escorts out, 4 porters at the entrance, seed walking.
    The rules alone leave 8*7*6*5 optima (any 4 tasks... all equally old); the tie-break
    picks one: the last porter the first task, and so on."""
    tasks = tuple(OpenTask(f"t{n}", "escort_out", "porter", "A1", f"p{n}", 0) for n in range(8))
    staff = tuple(FreeStaff(f"porter-{n}", "porter", "entrance") for n in range(1, 5))
    problem = TickProblem(
        60_000, (), (), tasks, staff, {(t.key, s.staff_id): 0 for t in tasks for s in staff}, {}
    )
    solution = CpSatPolicy().solve(problem)
    assert solution.dispatches == {
        "t0": "porter-4",
        "t1": "porter-3",
        "t2": "porter-2",
        "t3": "porter-1",
    }
    assert oracle.is_the_tie_breaks_optimum(problem, solution, RulesConfig())
    other = Solution({}, {"t0": "porter-1", "t1": "porter-2", "t2": "porter-3", "t3": "porter-4"})
    assert oracle.objective_value(problem, other, RulesConfig()) == oracle.optimum(
        problem, RulesConfig()
    )
    assert not oracle.is_the_tie_breaks_optimum(problem, other, RulesConfig())
