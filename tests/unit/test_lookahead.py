"""Looking ahead (`[scheduler] lookahead_s`): the forecast is a function of the config and the
state; each role's plan is solved exactly (its optimum against a brute force over every
assignment, on small random ticks with a horizon), and what a tick carries out of it keeps
the hard rules with its holds; `lookahead_s = 0` is the myopic scheduler."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from scheduler import lookahead as plans
from scheduler.config import Config, RulesConfig
from scheduler.engine import Scheduler
from scheduler.forecast import Busy, Outlook, Pending, State
from scheduler.layout import Layout
from scheduler.policies import CpSatPolicy
from scheduler.problem import (
    Arrival,
    ExpectedTask,
    FreeStaff,
    FutureStaff,
    Lookahead,
    OpenTask,
    RoomReservation,
    TickProblem,
)
from scheduler.shifts import Roster
from scheduler.simulation import simulate

FAST = settings(deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
ROOMS = ("A1", "A2", "A3", "B1", "B2")
NOW = 60_000


# --- the forecast --------------------------------------------------------------------------------


def acuity_config(**scheduler) -> Config:
    return Config().replace(
        arrivals={"interval_s": 4.0, "acuity_mix": [0.1, 0.2, 0.4, 0.2, 0.1]},
        scheduler={"lookahead_s": 60.0, **scheduler},
    )


def outlook(config: Config) -> Outlook:
    layout = Layout(config)
    return Outlook(config, layout, Roster((), 86_400, set()))


def state(**changes) -> State:
    base = {
        "busy": (
            Busy("task-1", "escort_in", "porter-1", "entrance", "A2", "p1", 2, False, 58_000),
            Busy("task-2", "clean", "cleaner-1", "entrance", "B1", "p0", 3, False, 55_000),
        ),
        "free_staff": ("porter-2", "nurse-1", "nurse-2", "doctor-1", "cleaner-2"),
        "off_duty": (),
        "staff_location": dict.fromkeys(
            ["porter-1", "porter-2", "nurse-1", "nurse-2", "doctor-1", "cleaner-1", "cleaner-2"],
            "entrance",
        ),
        "staff_role": {
            "porter-1": "porter",
            "porter-2": "porter",
            "nurse-1": "medical",
            "nurse-2": "medical",
            "doctor-1": "medical",
            "cleaner-1": "cleaner",
            "cleaner-2": "cleaner",
        },
        "free_rooms": ("A1",),
        "waiting_escorts": (),
        "pending": (Pending("visit", "A3", 3, False),),
        "held_staff": {},
        "held_rooms": {},
        "spent_staff": frozenset(),
        "spent_rooms": frozenset(),
    }
    return State(**{**base, **changes})


def test_the_forecast_is_a_function_of_the_config_and_the_state():
    config = acuity_config()
    first, second = (outlook(config).lookahead(NOW, state()) for _ in range(2))
    plain = {"walking": None, "task_ms": None}
    assert dataclasses.replace(first, **plain) == dataclasses.replace(second, **plain)
    for room in ROOMS:
        assert first.walking("entrance", "visit", room) == second.walking("entrance", "visit", room)
        assert first.task_ms("A1", "clean", room, 3) == second.task_ms("A1", "clean", room, 3)


def test_the_forecast_expects_releases_next_steps_and_arrivals():
    forecast = outlook(acuity_config()).lookahead(NOW, state())
    # porter-1 set off at 58 s on a 3 s escort to A2 (seed travel: 1 + 2): free at 61 s,
    # when p1's visit (ESI 2) comes; cleaner-1 cleans B1 (2 + 1 + 9 s from 55 s): 67 s.
    free = {u.staff_id: u.free_ms for u in forecast.future_staff}
    assert free == {"porter-1": 61_000, "cleaner-1": 67_000}
    visit = next(e for e in forecast.expected_tasks if e.key == "next:task-1")
    assert (visit.kind, visit.room_id, visit.acuity, visit.due_ms) == ("visit", "A2", 2, 61_000)
    assert visit.certain and "ESI 2" in visit.about
    # The fixed process's next arrival is at 64 s: a visit of each ESI level with the mix's
    # share, after the mean escort (its escort in is beyond the porters' horizon: the mean
    # escort of the seed model, 1.75 s).
    assert forecast.horizon_ms == {"porter": 1750, "medical": 13_500, "cleaner": 12_500}
    arrivals = [e for e in forecast.expected_tasks if e.key.startswith("arrival:64000")]
    assert {e.kind for e in arrivals} == {"visit"}
    assert sum(e.probability for e in arrivals) == pytest.approx(1.0)
    assert not any(e.certain for e in arrivals)


def test_rooms_are_kept_for_the_urgent_expected_before_another_comes_free():
    # B1's cleaning ends at 67 s (A3's turnover later): one arrival before, at 64 s, 30 %
    # of them ESI 1-2: 0.3 expected, no room kept. Started at 59 s, it ends at 71 s: two
    # arrivals, 0.6 expected, one room kept until then.
    near = outlook(acuity_config()).lookahead(NOW, state())
    assert near.reservations == ()
    far = outlook(acuity_config()).lookahead(
        NOW,
        state(
            busy=(Busy("task-2", "clean", "cleaner-1", "entrance", "B1", "p0", 3, False, 59_000),),
            pending=(),
        ),
    )
    assert far.reservations == (RoomReservation("urgent", 1, pytest.approx(0.6), 11_000),)


def test_without_looking_ahead_the_problem_carries_no_forecast():
    scheduler = Scheduler(Config())
    assert scheduler.hospital.outlook is None
    greedy = Scheduler(acuity_config(policy="greedy"))
    assert greedy.hospital.outlook is None  # first come, first served: no forecast


# --- the plans, exactly --------------------------------------------------------------------------


@st.composite
def ticks_with_a_horizon(draw) -> TickProblem:
    """A small medical or porter tick: free members, waiting tasks, members free later,
    expected tasks (certain next steps and arrivals), some members held or spent."""
    role = draw(st.sampled_from(["medical", "porter"]))
    grades = ["nurse", "doctor"] if role == "medical" else ["porter"]
    kinds = ["visit"] if role == "medical" else ["escort_in", "escort_out"]
    ids = [f"{g}-{n}" for g in grades for n in range(1, 4)]
    chosen = draw(st.lists(st.sampled_from(ids), min_size=1, max_size=4, unique=True))
    n_free = draw(st.integers(1, len(chosen)))
    place = st.sampled_from(["entrance", *ROOMS])
    free = tuple(FreeStaff(s, role, draw(place)) for s in chosen[:n_free])
    later = tuple(
        FutureStaff(s, role, draw(place), NOW + draw(st.integers(1, 20)) * 1000)
        for s in chosen[n_free:]
    )
    tasks = tuple(
        OpenTask(
            f"task-{n}",
            draw(st.sampled_from(kinds)),
            role,
            draw(st.sampled_from(ROOMS)),
            f"p{n}",
            NOW - draw(st.integers(0, 30)) * 1000,
            draw(st.integers(1, 5)),
        )
        for n in range(draw(st.integers(1, 4)))
    )
    expected = tuple(
        ExpectedTask(
            f"next:{n}",
            draw(st.sampled_from(kinds)),
            role,
            draw(st.sampled_from(ROOMS)),
            draw(st.integers(1, 5)),
            NOW + draw(st.integers(1, 15)) * 1000,
            1.0,
            f"task {n}",
        )
        for n in range(draw(st.integers(0, 2)))
    ) + tuple(
        ExpectedTask(
            f"arrival:{n}",
            kinds[0],
            role,
            None,
            draw(st.integers(1, 5)),
            NOW + draw(st.integers(1, 15)) * 1000,
            draw(st.sampled_from([0.1, 0.3, 1.0])),
            f"arrival {n}",
            certain=False,
        )
        for n in range(draw(st.integers(0, 3)))
    )
    held = {s.staff_id: NOW + 5000 for s in free if draw(st.integers(0, 4)) == 0}
    spent = {s.staff_id for s in free if s.staff_id not in held and draw(st.integers(0, 4)) == 0}
    layout = Layout(Config().replace(hospital={"floors": ["A", "B"], "rooms_per_floor": 3}))

    def walking(location: str, kind: str, room: str | None) -> int:
        if room is None:
            return 0
        return layout.walking_ms(location, kind, room)

    def task_ms(location: str, kind: str, room: str | None, acuity: int) -> int:
        return walking(location, kind, room) + (10_000 if kind == "visit" else 0)

    lookahead = Lookahead(
        horizon_ms={"medical": 13_000, "porter": 8_000, "cleaner": 11_000},
        max_hold_ms=draw(st.sampled_from([3_000, 10_000])),
        tick_ms=1000,
        future_staff=later,
        expected_tasks=expected,
        held_staff=held,
        may_hold_staff=frozenset(s.staff_id for s in free) - spent,
        walking=walking,
        task_ms=task_ms,
    )
    walks = {
        (t.key, s.staff_id): walking(s.location, t.kind, t.room_id) for t in tasks for s in free
    }
    return TickProblem(
        NOW,
        (),
        (),
        tasks,
        free,
        walks,
        {},
        skills=True,
        lookahead=lookahead,
    )


def brute_force(cost: list[list[int]], allowed: list[list[bool]]) -> tuple[int, int]:
    """(pairs, total cost) of the best assignment: the most allowed pairs, then the least
    cost, over every way of giving each row at most one column of its own."""
    rows, cols = len(cost), len(cost[0]) if cost else 0
    best = (0, 0)
    options = [[None, *(c for c in range(cols) if allowed[r][c])] for r in range(rows)]
    for choice in itertools.product(*options):
        taken = [c for c in choice if c is not None]
        if len(taken) != len(set(taken)):
            continue
        value = (len(taken), -sum(cost[r][c] for r, c in enumerate(choice) if c is not None))
        best = max(best, value)
    return best[0], -best[1]


@settings(FAST, max_examples=300)
@given(ticks_with_a_horizon(), st.sampled_from([RulesConfig(), RulesConfig(urgency=600.0)]))
def test_a_roles_plan_is_solved_exactly(problem, weights):
    policy = CpSatPolicy(weights)
    plan = plans.plan_of(policy, problem, list(problem.tasks), list(problem.staff))
    if plan is None:
        event("nothing in the horizon")
        return
    cost, allowed = plan.matrix()
    event(f"{len(cost)} rows x {len(cost[0])} columns")
    chosen = plans.assign(cost, weights.tie_break, allowed)
    got = (len(chosen), sum(cost[r][c] for r, c in chosen))
    assert got == brute_force(cost, allowed)


@settings(FAST, max_examples=300)
@given(ticks_with_a_horizon())
def test_what_a_tick_carries_out_of_its_plan_keeps_the_hard_rules(problem):
    solution = CpSatPolicy().solve(problem)
    lookahead = problem.lookahead
    assert lookahead is not None
    busy = set(solution.dispatches.values())
    assert len(busy) == len(solution.dispatches)
    staff = {s.staff_id: s for s in problem.staff}
    tasks = {t.key: t for t in problem.tasks}
    for key, staff_id in solution.dispatches.items():
        assert problem.may_do(tasks[key], staff[staff_id])
    for staff_id, hold in solution.staff_holds.items():
        event("a hold")
        assert staff_id not in busy and staff_id in lookahead.may_hold_staff
        assert staff_id not in lookahead.held_staff  # a live hold is not declared again
        assert NOW < hold.until_ms <= NOW + lookahead.max_hold_ms
        assert hold.reason.startswith("kept free")
    held = set(solution.staff_holds) | set(lookahead.held_staff)
    for member in problem.staff:
        if member.staff_id in busy or member.staff_id in held:
            continue
        for task in problem.tasks:  # an idle member, not held: nothing they may do waits
            assert task.key in solution.dispatches or not problem.may_do(task, member)


def test_a_doctor_is_kept_for_an_esi_2_visit_due_now_rather_than_a_fresh_esi_4_one():
    """The issue's example: the one doctor, an ESI 4 visit waiting, the escort in of an ESI 2
    patient ending in 2 s: the doctor is held for it."""
    free = (FreeStaff("doctor-1", "medical", "entrance"),)
    task = OpenTask("task-9", "visit", "medical", "B3", "p9", NOW, 4)
    expected = ExpectedTask("next:task-8", "visit", "medical", "A1", 2, NOW + 2000, 1.0, "p8")
    lookahead = Lookahead(
        horizon_ms={"medical": 13_000},
        max_hold_ms=60_000,
        tick_ms=1000,
        expected_tasks=(expected,),
        may_hold_staff=frozenset({"doctor-1"}),
    )
    problem = TickProblem(
        NOW,
        (),
        (),
        (task,),
        free,
        {("task-9", "doctor-1"): 5000},
        {},
        skills=True,
        lookahead=lookahead,
    )
    solution = CpSatPolicy().solve(problem)
    assert solution.dispatches == {}
    assert solution.staff_holds["doctor-1"].until_ms == NOW + 2000
    # Myopic, the doctor takes it (no idle staff while a task waits).
    myopic = CpSatPolicy().solve(TickProblem(NOW, (), (), (task,), free, problem.walking_ms, {}))
    assert myopic.dispatches == {"task-9": "doctor-1"}


def test_a_room_is_kept_for_the_urgent_and_the_esi_4_arrival_referred_with_a_hold():
    arrivals = (Arrival("p1", NOW, 4),)
    lookahead = Lookahead(
        horizon_ms={},
        max_hold_ms=60_000,
        tick_ms=1000,
        reservations=(RoomReservation("urgent", 1, 0.8, 12_000),),
        may_hold_rooms=frozenset({"A1", "B2"}),
    )
    problem = TickProblem(
        NOW, arrivals, ("A1", "B2"), (), (), {}, {"A1": 2000, "B2": 4000}, lookahead=lookahead
    )
    solution = CpSatPolicy().solve(problem)
    # Two rooms: the ESI 4 patient takes the far one, the near one is kept (no hold to
    # declare: nobody was turned away from it).
    assert solution.bookings == {"p1": "B2"} and solution.room_holds == {}
    one_room = TickProblem(NOW, arrivals, ("A1",), (), (), {}, {"A1": 2000}, lookahead=lookahead)
    solution = CpSatPolicy().solve(one_room)
    assert solution.bookings == {}
    hold = solution.room_holds["A1"]
    assert (hold.reserved_for, hold.until_ms) == ("urgent", NOW + 12_000)
    assert "0.8 expected" in hold.reason


# --- whole runs ----------------------------------------------------------------------------------


def test_a_run_looking_ahead_holds_staff_and_rooms_and_keeps_every_invariant():
    config = acuity_config(validate=True)
    scheduler = Scheduler(config)
    kinds: set[str] = set()
    simulate(
        config,
        scheduler,
        20 * 60_000,
        on_tick=lambda result: kinds.update(d.TYPE for d in result.decisions),
    )
    assert {"staff.held", "room.held"} <= kinds
    assert scheduler.auditor is not None and scheduler.auditor.accounted_for()


def test_the_kpi_report_counts_the_holds_and_the_wait_from_arrival_to_the_visit():
    from scheduler import events as ev
    from scheduler.runs import simulate_run

    config = acuity_config()
    arrived: dict[str, tuple[int, int]] = {}
    waits: dict[int, list[int]] = {}
    holds = {"staff": 0, "room": 0}

    def on_tick(scheduler, result) -> None:
        for e in result.consumed:
            if isinstance(e, ev.PatientArrived):
                arrived[e.patient_id] = (e.time_ms, e.acuity)
        for d in result.decisions:
            if isinstance(d, ev.TaskDispatched) and d.kind == "visit":
                at, level = arrived[d.patient_id]
                waits.setdefault(level, []).append(d.time_ms - at)
            elif isinstance(d, ev.StaffHeld):
                holds["staff"] += 1
            elif isinstance(d, ev.RoomHeld):
                holds["room"] += 1

    report = simulate_run(config, 20 * 60_000, on_tick=on_tick)
    assert report["holds"] == holds and holds["staff"] and holds["room"]
    for level, figures in report["by_acuity"].items():
        mine = waits[int(level)]
        assert figures["arrival_to_visit_s"]["tasks"] == len(mine)
        assert figures["arrival_to_visit_s"]["mean"] == round(sum(mine) / len(mine) / 1000, 3)
    assert "holds" not in simulate_run(acuity_config(lookahead_s=0.0), 5 * 60_000)
