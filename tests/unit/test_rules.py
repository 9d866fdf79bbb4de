"""One test group per rule module: a small hand-built `TickProblem` where the rule shapes the
solution of a CP-SAT model built from `TickVars.build` + the rule (+ the hard rules where
needed), and its twin: a violation forced with `model.add(var == value)` is INFEASIBLE for a
hard rule; for a soft rule the preference flips when its weight is 0 or the data flips.
Then `CpSatPolicy` end to end on small problems.
"""

from __future__ import annotations

import pytest
from ortools.sat.python import cp_model

import rules
import scheduler.full_model as full_model
from rules import (
    free_rooms_fast,
    longest_wait_first,
    minimise_walking,
    no_idle_staff,
    one_room_one_patient,
    one_task_at_a_time,
    refer_only_when_full,
    right_role,
    tie_break,
)
from scheduler.config import Config, RulesConfig
from scheduler.full_model import FullModelPolicy, TickVars
from scheduler.layout import ENTRANCE, ROLE_OF_KIND, Layout
from scheduler.policies import CpSatPolicy, GreedyPolicy
from scheduler.problem import Arrival, FreeStaff, OpenTask, TickProblem
from tests import oracle

NOW = 10_000


# --- building problems -------------------------------------------------------------------


def task(key, kind, room="A1", patient=None, created=0):
    return OpenTask(key, kind, ROLE_OF_KIND[kind], room, patient or f"patient-{key}", created)


def arrival_task(patient_id, at=0):
    return OpenTask(f"arrival:{patient_id}", "escort_in", "porter", None, patient_id, at)


def staff(staff_id, role, location=ENTRANCE):
    return FreeStaff(staff_id, role, location)


def problem(
    arrivals=(), free_rooms=(), tasks=(), staff=(), walking=None, room_walking=None, now_ms=NOW
):
    """A problem; walking defaults to 0 everywhere unless given (missing pairs are 0)."""
    tasks, staff = tuple(tasks), tuple(staff)
    full_walking = {(t.key, s.staff_id): 0 for t in tasks for s in staff if t.role == s.role}
    full_walking.update(walking or {})
    rooms_walk = {r: 0 for r in free_rooms}
    rooms_walk.update(room_walking or {})
    arrivals = tuple(a if isinstance(a, Arrival) else Arrival(a, 0) for a in arrivals)
    return TickProblem(now_ms, arrivals, tuple(free_rooms), tasks, staff, full_walking, rooms_walk)


class Model:
    """A CP-SAT model from `TickVars.build` plus chosen rules, with helpers to force values."""

    def __init__(self, tick_problem: TickProblem):
        self.problem = tick_problem
        self.model = cp_model.CpModel()
        self.vars = TickVars.build(tick_problem, self.model)
        self.objective = 0

    def rule(self, module, weight=None) -> Model:
        self.objective += module.build(self.problem, self.model, self.vars, weight)
        return self

    def hard(self) -> Model:
        for module in rules.HARD:
            self.rule(module)
        return self

    def fix(self, family, a, b, value=1) -> Model:
        self.model.add(self.vars.var((family, a, b)) == value)
        return self

    def solve(self, extra_objective=0):
        objective = self.objective + extra_objective
        if not (isinstance(objective, int) and objective == 0):
            self.model.minimize(objective)
        solver = cp_model.CpSolver()
        solver.parameters.num_workers = 1
        status = solver.solve(self.model)
        solution = (
            self.vars.solution(solver) if status in (cp_model.OPTIMAL, cp_model.FEASIBLE) else None
        )
        return status, solution

    def count_optima(self, extra_objective=0) -> int:
        """How many assignments reach the optimum of the objective."""
        objective = self.objective + extra_objective
        solver = cp_model.CpSolver()
        solver.parameters.num_workers = 1
        self.model.minimize(objective)
        assert solver.solve(self.model) == cp_model.OPTIMAL
        best = round(solver.objective_value)
        self.model.clear_objective()
        self.model.add(objective == best)
        return _count_solutions(self.model)


def _count_solutions(model: cp_model.CpModel) -> int:
    class Counter(cp_model.CpSolverSolutionCallback):
        def __init__(self):
            super().__init__()
            self.count = 0

        def on_solution_callback(self):
            self.count += 1

    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    solver.parameters.enumerate_all_solutions = True
    counter = Counter()
    assert solver.solve(model, counter) == cp_model.OPTIMAL
    return counter.count


def all_dispatch(m: Model):
    return sum(m.vars.dispatch.values())


def all_book(m: Model):
    return sum(m.vars.book.values())


# --- hard: one_room_one_patient -------------------------------------------------------------


class TestOneRoomOnePatient:
    def test_each_room_takes_one_patient_and_each_patient_one_room(self):
        p = problem(arrivals=["p1", "p2", "p3"], free_rooms=["A1", "A2"])
        # Maximise bookings: 2 rooms take 2 of the 3 patients, one each.
        m = Model(p).rule(one_room_one_patient)
        status, sol = m.solve(-all_book(m))
        assert status == cp_model.OPTIMAL
        assert len(sol.bookings) == 2
        assert len(set(sol.bookings.values())) == 2
        # Without the rule, all 6 (patient, room) pairs would be taken.
        unconstrained = Model(p)
        free = cp_model.CpSolver()
        unconstrained.model.minimize(-all_book(unconstrained))
        assert free.solve(unconstrained.model) == cp_model.OPTIMAL
        assert round(-free.objective_value) == 6

    @pytest.mark.parametrize(
        "forced",
        [
            [("p1", "A1"), ("p2", "A1")],  # two patients in one room
            [("p1", "A1"), ("p1", "A2")],  # one patient in two rooms
        ],
    )
    def test_twin_double_booking_is_infeasible(self, forced):
        m = Model(problem(arrivals=["p1", "p2"], free_rooms=["A1", "A2"])).rule(
            one_room_one_patient
        )
        for patient_id, room_id in forced:
            m.fix("book", patient_id, room_id)
        assert m.solve()[0] == cp_model.INFEASIBLE

    def test_twin_without_the_rule_the_double_booking_is_feasible(self):
        m = Model(problem(arrivals=["p1", "p2"], free_rooms=["A1", "A2"]))
        m.fix("book", "p1", "A1").fix("book", "p2", "A1")
        assert m.solve()[0] == cp_model.OPTIMAL

    def test_a_room_that_is_not_free_cannot_be_booked(self):
        # A1 is dirty or taken: only A2 is in free_rooms, so there is no variable for A1.
        m = Model(problem(arrivals=["p1"], free_rooms=["A2"])).hard()
        assert set(m.vars.book) == {("p1", "A2")}
        with pytest.raises(KeyError):
            m.fix("book", "p1", "A1")
        status, sol = m.solve()
        assert sol.bookings == {"p1": "A2"}


# --- hard: refer_only_when_full -------------------------------------------------------------


class TestReferOnlyWhenFull:
    @pytest.mark.parametrize(
        "arrivals, rooms, admitted",
        [
            (["p1", "p2"], ["A1"], 1),
            (["p1", "p2", "p3"], ["A1", "A2"], 2),
            (["p1"], ["A1", "A2", "A3"], 1),
            (["p1", "p2"], [], 0),
        ],
    )
    def test_admits_as_many_as_rooms_allow_even_when_minimising_bookings(
        self, arrivals, rooms, admitted
    ):
        m = Model(problem(arrivals=arrivals, free_rooms=rooms))
        m.rule(one_room_one_patient).rule(refer_only_when_full)
        status, sol = m.solve(all_book(m))  # try to refer everybody
        assert status == cp_model.OPTIMAL
        assert len(sol.bookings) == admitted

    def test_without_the_rule_everybody_could_be_referred(self):
        m = Model(problem(arrivals=["p1", "p2"], free_rooms=["A1"])).rule(one_room_one_patient)
        assert m.solve(all_book(m))[1].bookings == {}

    def test_twin_referring_while_a_room_is_free_is_infeasible(self):
        m = Model(problem(arrivals=["p1", "p2"], free_rooms=["A1", "A2", "A3"]))
        m.rule(one_room_one_patient).rule(refer_only_when_full)
        for room_id in ("A1", "A2", "A3"):  # p2 referred while rooms are free
            m.fix("book", "p2", room_id, 0)
        assert m.solve()[0] == cp_model.INFEASIBLE

    def test_twin_admitting_more_than_due_is_infeasible(self):
        m = Model(problem(arrivals=["p1", "p2"], free_rooms=["A1", "A2"]))
        m.rule(refer_only_when_full)
        m.fix("book", "p1", "A1").fix("book", "p2", "A2").fix("book", "p1", "A2")
        assert m.solve()[0] == cp_model.INFEASIBLE


# --- hard: one_task_at_a_time ---------------------------------------------------------------


class TestOneTaskAtATime:
    def test_each_staff_member_gets_at_most_one_task(self):
        p = problem(
            tasks=[
                task("t1", "escort_out"),
                task("t2", "escort_out", "A2"),
                task("t3", "escort_out", "A3"),
            ],
            staff=[staff("porter-1", "porter"), staff("porter-2", "porter")],
        )
        m = Model(p).rule(one_task_at_a_time)
        status, sol = m.solve(-all_dispatch(m))  # dispatch as much as possible
        assert len(sol.dispatches) == 2
        assert sorted(sol.dispatches.values()) == ["porter-1", "porter-2"]

    def test_an_arrivals_escort_waits_for_its_admission(self):
        # No free room: the arrival is referred, so its escort may not be dispatched.
        p = problem(
            arrivals=["p1"],
            free_rooms=[],
            tasks=[arrival_task("p1")],
            staff=[staff("porter-1", "porter")],
        )
        m = Model(p).rule(one_task_at_a_time)
        assert m.solve(-all_dispatch(m))[1].dispatches == {}

    def test_twin_two_tasks_for_one_staff_member_is_infeasible(self):
        p = problem(
            tasks=[task("t1", "visit"), task("t2", "visit", "A2")],
            staff=[staff("nurse-1", "medical")],
        )
        m = Model(p).rule(one_task_at_a_time)
        m.fix("dispatch", "t1", "nurse-1").fix("dispatch", "t2", "nurse-1")
        assert m.solve()[0] == cp_model.INFEASIBLE

    def test_twin_one_task_for_two_staff_members_is_infeasible(self):
        p = problem(
            tasks=[task("t1", "clean")],
            staff=[staff("cleaner-1", "cleaner"), staff("cleaner-2", "cleaner")],
        )
        m = Model(p).rule(one_task_at_a_time)
        m.fix("dispatch", "t1", "cleaner-1").fix("dispatch", "t1", "cleaner-2")
        assert m.solve()[0] == cp_model.INFEASIBLE

    def test_twin_escorting_a_patient_who_is_not_admitted_is_infeasible(self):
        p = problem(
            arrivals=["p1"],
            free_rooms=["A1"],
            tasks=[arrival_task("p1")],
            staff=[staff("porter-1", "porter")],
        )
        m = Model(p).rule(one_task_at_a_time)
        m.fix("dispatch", "arrival:p1", "porter-1").fix("book", "p1", "A1", 0)
        assert m.solve()[0] == cp_model.INFEASIBLE


# --- hard: no_idle_staff --------------------------------------------------------------------


class TestNoIdleStaff:
    def test_dispatches_min_of_tasks_and_staff_per_role_even_when_minimising(self):
        p = problem(
            tasks=[
                task("t1", "escort_out"),
                task("t2", "escort_out", "A2"),
                task("t3", "visit", "A3"),
            ],
            staff=[
                staff("porter-1", "porter"),
                staff("nurse-1", "medical"),
                staff("nurse-2", "medical"),
                staff("cleaner-1", "cleaner"),
            ],
        )
        m = Model(p).rule(one_task_at_a_time).rule(no_idle_staff)
        status, sol = m.solve(all_dispatch(m))  # try to leave everybody idle
        assert status == cp_model.OPTIMAL
        kinds = sorted(p.tasks[[t.key for t in p.tasks].index(k)].kind for k in sol.dispatches)
        assert kinds == ["escort_out", "visit"]
        assert sol.dispatches["t3"] in ("nurse-1", "nurse-2")

    def test_an_admitted_arrival_is_escorted_at_once_by_a_free_porter(self):
        p = problem(
            arrivals=["p1"],
            free_rooms=["A1"],
            tasks=[arrival_task("p1")],
            staff=[staff("porter-1", "porter")],
        )
        m = Model(p).hard()
        status, sol = m.solve(all_dispatch(m) + all_book(m))
        assert sol.bookings == {"p1": "A1"}
        assert sol.dispatches == {"arrival:p1": "porter-1"}

    def test_without_the_rule_staff_could_stay_idle(self):
        p = problem(tasks=[task("t1", "escort_out")], staff=[staff("porter-1", "porter")])
        m = Model(p).rule(one_task_at_a_time)
        assert m.solve(all_dispatch(m))[1].dispatches == {}

    def test_twin_idle_porter_while_a_task_waits_is_infeasible(self):
        p = problem(
            tasks=[task("t1", "escort_out"), task("t2", "escort_out", "A2")],
            staff=[staff("porter-1", "porter")],
        )
        m = Model(p).rule(one_task_at_a_time).rule(no_idle_staff)
        m.fix("dispatch", "t1", "porter-1", 0).fix("dispatch", "t2", "porter-1", 0)
        assert m.solve()[0] == cp_model.INFEASIBLE

    def test_twin_idle_porter_beside_an_admitted_arrival_is_infeasible(self):
        p = problem(
            arrivals=["p1"],
            free_rooms=["A1"],
            tasks=[arrival_task("p1")],
            staff=[staff("porter-1", "porter")],
        )
        m = Model(p).hard().fix("dispatch", "arrival:p1", "porter-1", 0)
        assert m.solve()[0] == cp_model.INFEASIBLE


# --- hard: right_role -----------------------------------------------------------------------


class TestRightRole:
    @pytest.mark.parametrize(
        "kind, role, ok",
        [
            ("escort_in", "porter", True),
            ("escort_out", "porter", True),
            ("visit", "medical", True),
            ("clean", "cleaner", True),
            ("visit", "porter", False),
            ("escort_in", "medical", False),
            ("clean", "porter", False),
            ("escort_out", "cleaner", False),
        ],
    )
    def test_eligible(self, kind, role, ok):
        assert right_role.eligible(task("t", kind), staff("s", role)) is ok

    def test_variables_exist_for_eligible_pairs_only_and_the_task_gets_the_right_role(self):
        p = problem(
            tasks=[task("v", "visit")],
            staff=[
                staff("porter-1", "porter"),
                staff("cleaner-1", "cleaner"),
                staff("nurse-1", "medical"),
            ],
        )
        m = Model(p).hard()
        assert set(m.vars.dispatch) == {("v", "nurse-1")}
        assert m.solve()[1].dispatches == {"v": "nurse-1"}

    def test_twin_a_visit_with_only_a_porter_free_cannot_be_dispatched(self):
        p = problem(tasks=[task("v", "visit")], staff=[staff("porter-1", "porter")])
        m = Model(p).hard()
        assert m.solve()[1].dispatches == {}  # the visit waits: feasible
        m.model.add(sum(m.vars.for_task("v")) == 1)  # force it to be done now
        assert m.solve()[0] == cp_model.INFEASIBLE


# --- soft: longest_wait_first ---------------------------------------------------------------


class TestLongestWaitFirst:
    def _tasks(self, newer_created=9_000, older_created=1_000, newer_first=True):
        newer = task("newer", "escort_out", "A1", created=newer_created)
        older = task("older", "escort_out", "A2", created=older_created)
        return problem(
            tasks=[newer, older] if newer_first else [older, newer],
            staff=[staff("porter-1", "porter")],
        )

    def test_the_longest_waiting_task_is_dispatched(self):
        for newer_first in (True, False):
            m = Model(self._tasks(newer_first=newer_first)).hard().rule(longest_wait_first, 1)
            assert m.solve()[1].dispatches == {"older": "porter-1"}

    def test_twin_data_flipped(self):
        m = Model(self._tasks(newer_created=1_000, older_created=9_000)).hard()
        m.rule(longest_wait_first, 1)
        assert m.solve()[1].dispatches == {"newer": "porter-1"}

    def test_twin_weight_zero_leaves_the_choice_to_the_order(self):
        on = CpSatPolicy(RulesConfig(longest_wait_first=1, minimise_walking=0, free_rooms_fast=0))
        off = CpSatPolicy(RulesConfig(longest_wait_first=0, minimise_walking=0, free_rooms_fast=0))
        on_answers = {tuple(on.solve(self._tasks(newer_first=f)).dispatches) for f in (True, False)}
        off_answers = {
            tuple(off.solve(self._tasks(newer_first=f)).dispatches) for f in (True, False)
        }
        assert on_answers == {("older",)}
        assert off_answers == {("older",), ("newer",)}  # only the tie-break decides

    def test_the_longest_waiting_arrival_is_admitted_whatever_the_weight(self):
        # Admission order is a hard rule (acuity_order): urgency, then arrival time.
        for weight in (1, 0):
            for arrivals in (
                [Arrival("late", 9_500), Arrival("early", 9_000)],
                [Arrival("early", 9_000), Arrival("late", 9_500)],
            ):
                p = problem(arrivals=arrivals, free_rooms=["A1"])
                m = Model(p).hard().rule(longest_wait_first, weight)
                assert m.solve()[1].bookings == {"early": "A1"}
                weights = RulesConfig(
                    longest_wait_first=weight, minimise_walking=0, free_rooms_fast=0
                )
                assert CpSatPolicy(weights).solve(p).bookings == {"early": "A1"}


# --- soft: minimise_walking -----------------------------------------------------------------


def layout_problem(tasks, staff_list, arrivals=(), free_rooms=(), floors=("A", "B"), rooms=3):
    """A problem whose walking comes from the `layout` travel model."""
    layout = Layout(
        Config().replace(
            travel={"model": "layout"}, hospital={"floors": list(floors), "rooms_per_floor": rooms}
        )
    )
    walking = {}
    for t in tasks:
        for s in staff_list:
            if t.role == s.role:
                walking[t.key, s.staff_id] = (
                    layout.walking_ms(s.location, t.kind, t.room_id)
                    if t.room_id
                    else layout.walk(s.location, ENTRANCE)
                )
    room_walking = {r: layout.from_entrance(r) for r in free_rooms}
    return problem(
        arrivals=arrivals,
        free_rooms=free_rooms,
        tasks=tasks,
        staff=staff_list,
        walking=walking,
        room_walking=room_walking,
    )


class TestMinimiseWalking:
    def _visit(self, near_first=True):
        # A visit in A2: nurse-near is in A1 (1 s along the corridor), nurse-far in B3
        # (through the entrance: 5 s + 3 s).
        nurses = [staff("nurse-near", "medical", "A1"), staff("nurse-far", "medical", "B3")]
        return layout_problem([task("v", "visit", "A2")], nurses if near_first else nurses[::-1])

    def test_walking_costs_of_the_layout_model(self):
        p = self._visit()
        assert p.walking_ms == {("v", "nurse-near"): 1_000, ("v", "nurse-far"): 8_000}

    def test_the_nearest_staff_member_is_chosen(self):
        for near_first in (True, False):
            m = Model(self._visit(near_first)).hard().rule(minimise_walking, 1)
            assert m.solve()[1].dispatches == {"v": "nurse-near"}

    def test_twin_weight_zero_leaves_the_choice_to_the_order(self):
        on = CpSatPolicy(RulesConfig(minimise_walking=1))
        off = CpSatPolicy(RulesConfig(minimise_walking=0))
        assert {on.solve(self._visit(f)).dispatches["v"] for f in (True, False)} == {"nurse-near"}
        assert {off.solve(self._visit(f)).dispatches["v"] for f in (True, False)} == {
            "nurse-near",
            "nurse-far",
        }

    def test_twin_data_flipped(self):
        p = layout_problem(
            [task("v", "visit", "B2")],
            [staff("nurse-near", "medical", "A1"), staff("nurse-far", "medical", "B3")],
        )
        m = Model(p).hard().rule(minimise_walking, 1)
        assert m.solve()[1].dispatches == {"v": "nurse-far"}

    def test_bookings_prefer_the_nearest_room(self):
        orders = (["B3", "A1", "B1"], ["A1", "B1", "B3"], ["B1", "B3", "A1"])
        for rooms in orders:
            p = layout_problem([], [], arrivals=["p1"], free_rooms=rooms)
            assert p.room_walking_ms == {"B3": 5_000, "A1": 2_000, "B1": 3_000}
            m = Model(p).hard().rule(minimise_walking, 1)
            assert m.solve()[1].bookings == {"p1": "A1"}
        off = CpSatPolicy(RulesConfig(longest_wait_first=0, minimise_walking=0, free_rooms_fast=0))
        chosen = {
            off.solve(layout_problem([], [], arrivals=["p1"], free_rooms=rooms)).bookings["p1"]
            for rooms in orders
        }
        assert len(chosen) > 1  # with no walking preference only the order decides


# --- soft: free_rooms_fast ------------------------------------------------------------------


class TestFreeRoomsFast:
    def _porter_choice(self):
        # One porter. The escort in has waited 10 s (worth 100 units of longest_wait_first)
        # and costs 2 s walking (20 units); the escort out is brand new and free to walk.
        return problem(
            tasks=[
                task("in", "escort_in", "A1", created=0),
                task("out", "escort_out", "A2", created=NOW),
            ],
            staff=[staff("porter-1", "porter")],
            walking={("in", "porter-1"): 2_000, ("out", "porter-1"): 0},
        )

    def test_rule_alone_prefers_the_escort_out(self):
        m = Model(self._porter_choice()).hard().rule(free_rooms_fast, 30)
        assert m.solve()[1].dispatches == {"out": "porter-1"}

    def test_policy_prefers_escort_out_over_a_longer_waiting_escort_in(self):
        assert CpSatPolicy().solve(self._porter_choice()).dispatches == {"out": "porter-1"}

    def test_twin_weight_zero_serves_the_longest_waiting_escort_in(self):
        off = CpSatPolicy(RulesConfig(free_rooms_fast=0))
        assert off.solve(self._porter_choice()).dispatches == {"in": "porter-1"}

    def test_twin_weight_smaller_than_the_wait(self):
        # 5 s of bonus (50) is less than the escort in's net 80: the escort in wins.
        assert CpSatPolicy(RulesConfig(free_rooms_fast=5)).solve(
            self._porter_choice()
        ).dispatches == {"in": "porter-1"}

    def test_bonus_counts_escorts_out_only(self):
        m = Model(self._porter_choice())
        term = free_rooms_fast.build(m.problem, m.model, m.vars, 30)
        assert "dispatch[out,porter-1]" in str(term)
        assert "dispatch[in,porter-1]" not in str(term)


# --- soft, last: tie_break ------------------------------------------------------------------


def _symmetric_problem():
    """Everything equal: two porter tasks, three porters, two arrivals, three rooms."""
    return problem(
        arrivals=["p1", "p2"],
        free_rooms=["A1", "A2", "A3"],
        tasks=[task("t1", "escort_out", "B1"), task("t2", "escort_out", "B2")],
        staff=[
            staff("porter-1", "porter"),
            staff("porter-2", "porter"),
            staff("porter-3", "porter"),
        ],
    )


class TestTieBreak:
    def test_without_tie_break_the_hard_rules_leave_many_optima(self):
        m = Model(_symmetric_problem()).hard()
        assert m.count_optima() > 1

    def test_with_tie_break_the_optimum_is_unique(self):
        m = Model(_symmetric_problem()).hard()
        assert m.count_optima(tie_break.build(m.problem, m.model, m.vars)) == 1

    def test_the_unique_optimum_is_a_valid_solution_of_the_hard_rules(self):
        m = Model(_symmetric_problem()).hard()
        m.rule(tie_break)
        status, sol = m.solve()
        assert status == cp_model.OPTIMAL
        assert len(sol.dispatches) == 2 and len(set(sol.dispatches.values())) == 2
        assert len(sol.bookings) == 2 and len(set(sol.bookings.values())) == 2

    def test_twin_tie_break_follows_the_order_of_the_problem(self):
        # Nothing else distinguishes the porters: reversing their order changes the answer.
        p = _symmetric_problem()
        reversed_staff = TickProblem(
            p.now_ms,
            p.arrivals,
            p.free_rooms,
            p.tasks,
            p.staff[::-1],
            p.walking_ms,
            p.room_walking_ms,
        )
        first = Model(p).hard().rule(tie_break).solve()[1]
        second = Model(reversed_staff).hard().rule(tie_break).solve()[1]
        assert first.dispatches != second.dispatches

    def test_upper_bound_is_the_tie_break_with_every_variable_set(self):
        p = _symmetric_problem()
        m = Model(p)
        for var in [*m.vars.book.values(), *m.vars.dispatch.values()]:
            m.model.add(var == 1)
        m.model.minimize(tie_break.build(p, m.model, m.vars))
        solver = cp_model.CpSolver()
        assert solver.solve(m.model) == cp_model.OPTIMAL
        assert round(solver.objective_value) == tie_break.upper_bound(p) > 0


# --- CpSatPolicy end to end -----------------------------------------------------------------


class SearchOrder:
    """Monkeypatches the policy's solver: another random seed, randomised variable order,
    and optionally a solution hint that steers the search to another assignment."""

    def __init__(self, monkeypatch, seed=0, permute=False, hint=None):
        base = cp_model.CpSolver

        class Solver(base):
            def solve(inner, model, *args, **kwargs):
                inner.parameters.random_seed = seed
                inner.parameters.permute_variable_randomly = permute
                inner.parameters.permute_presolve_constraint_order = permute
                if hint is not None:
                    for index in range(len(model.proto.variables)):
                        var = model.get_bool_var_from_proto_index(index)
                        model.add_hint(var, var.name in hint)
                return super().solve(model, *args, **kwargs)

        monkeypatch.setattr(full_model.cp_model, "CpSolver", Solver)


def policy_optima(tick_problem, monkeypatch, weights=None) -> tuple[object, int]:
    """The policy's solution and how many assignments reach the optimum of its model."""
    captured = {}
    base = cp_model.CpSolver

    class Recording(base):
        def solve(inner, model, *args, **kwargs):
            status = super().solve(model, *args, **kwargs)
            captured["model"], captured["value"] = model, round(inner.objective_value)
            return status

    with monkeypatch.context() as patch:
        patch.setattr(full_model.cp_model, "CpSolver", Recording)
        solution = FullModelPolicy(weights).solve(tick_problem)
    model = captured["model"]
    objective = model.proto.objective
    expr = sum(
        c * model.get_int_var_from_proto_index(v) for v, c in zip(objective.vars, objective.coeffs)
    )
    model.clear_objective()
    model.add(expr == captured["value"] - round(objective.offset))
    return solution, _count_solutions(model)


# A layout-model problem (found by brute force) where two assignments tie on walking AND on
# the tie-break: cleaners s0 at the entrance, s1 in B1, s2 at the entrance; B1, A3, B2 dirty.
# A = {t0->s1, t1->s0, t2->s2} and C = {t0->s0, t1->s2, t2->s1} both walk 0+4+4 = 3+4+1 = 8 s,
# and, every staff member being used, the tie-break's staff term is the same for both while
# its pairing term i * (n - j) (0-based) is 2+6+3 = 3+2+6 = 11 for both (a product of a task
# weight and a staff weight cannot rank every assignment once walking depends on the pair).
LAYOUT_TIE = layout_problem(
    [
        task("t0", "clean", "B1", created=1_000),
        task("t1", "clean", "A3", created=1_000),
        task("t2", "clean", "B2", created=0),
    ],
    [
        staff("s0", "cleaner", ENTRANCE),
        staff("s1", "cleaner", "B1"),
        staff("s2", "cleaner", ENTRANCE),
    ],
)


class TestCpSatPolicy:
    def test_longest_waiting_task_served_first_among_three(self):
        p = problem(
            tasks=[
                task("t1", "visit", "A1", created=8_000),
                task("t2", "visit", "A2", created=2_000),
                task("t3", "visit", "A3", created=5_000),
            ],
            staff=[staff("nurse-1", "medical"), staff("nurse-2", "medical")],
        )
        sol = CpSatPolicy(RulesConfig(minimise_walking=0)).solve(p)
        assert set(sol.dispatches) == {"t2", "t3"}

    def test_nearest_staff_under_layout_model(self):
        # Two cleaners, two dirty rooms on different floors, each cleaner beside one of them.
        p = layout_problem(
            [task("ca", "clean", "A3"), task("cb", "clean", "B3")],
            [staff("cleaner-1", "cleaner", "B2"), staff("cleaner-2", "cleaner", "A2")],
        )
        sol = CpSatPolicy().solve(p)
        assert sol.dispatches == {"ca": "cleaner-2", "cb": "cleaner-1"}

    def test_serves_the_same_tasks_as_greedy_where_first_come_first_served_is_best(self):
        """A genuine choice (two porters, three escorts out, equal walking): the rules and
        first come, first served agree on the two oldest; each porter takes one."""
        p = problem(
            tasks=[
                task("late", "escort_out", "A1", created=8_000),
                task("first", "escort_out", "A2", created=2_000),
                task("second", "escort_out", "A3", created=5_000),
            ],
            staff=[staff("porter-1", "porter"), staff("porter-2", "porter")],
        )
        policy = CpSatPolicy()
        cpsat, greedy = policy.solve(p), GreedyPolicy().solve(p)
        assert (policy.forced, policy.solved) == (0, 1)
        assert set(cpsat.dispatches) == set(greedy.dispatches) == {"first", "second"}
        assert sorted(cpsat.dispatches.values()) == ["porter-1", "porter-2"]

    def test_walks_less_than_greedy_where_the_nearest_cleaner_is_not_the_first_free(self):
        """Greedy gives the first task to the first free cleaner, on the other floor; the
        rules' optimum sends each cleaner to the room beside them. Compared by the rules'
        own objective (`tests/oracle.py`): cpsat's is lower, not merely different."""
        p = layout_problem(
            [task("ca", "clean", "A3"), task("cb", "clean", "B3")],
            [staff("cleaner-1", "cleaner", "B2"), staff("cleaner-2", "cleaner", "A2")],
        )
        policy = CpSatPolicy()
        cpsat, greedy = policy.solve(p), GreedyPolicy().solve(p)
        assert (policy.forced, policy.solved) == (0, 1)
        assert greedy.dispatches == {"ca": "cleaner-1", "cb": "cleaner-2"}
        assert cpsat.dispatches == {"ca": "cleaner-2", "cb": "cleaner-1"}
        weights = RulesConfig()
        assert oracle.objective_value(p, cpsat, weights) < oracle.objective_value(
            p, greedy, weights
        )

    def test_a_problem_with_one_possible_answer_is_counted_as_forced(self):
        p = problem(
            arrivals=["p1"],
            free_rooms=["A1"],
            tasks=[arrival_task("p1")],
            staff=[staff("porter-1", "porter")],
        )
        policy = CpSatPolicy()
        assert policy.solve(p).dispatches == {"arrival:p1": "porter-1"}
        assert (policy.forced, policy.solved) == (1, 0)

    def test_same_problem_solved_twice_gives_the_same_answer(self):
        p = _symmetric_problem()
        policy = CpSatPolicy()
        assert policy.solve(p) == policy.solve(p)
        assert policy.solved == 2

    def test_each_answer_is_the_full_models(self):
        for p in (_symmetric_problem(), LAYOUT_TIE, self._porter_pressure()):
            assert CpSatPolicy().solve(p) == FullModelPolicy().solve(p)

    @staticmethod
    def _porter_pressure():
        tasks = [task(f"t{n}", "escort_out", f"A{n % 3 + 1}", created=n * 300) for n in range(6)]
        return layout_problem(
            tasks,
            [
                staff("porter-1", "porter", "A2"),
                staff("porter-2", "porter", "B1"),
                staff("porter-3", "porter"),
            ],
        )


class TestFullModelPolicy:
    """The reference model in CP-SAT: its optimum is unique and independent of the search."""

    def test_seed_problem_has_a_unique_optimum(self, monkeypatch):
        solution, optima = policy_optima(_symmetric_problem(), monkeypatch)
        assert optima == 1

    @pytest.mark.parametrize("seed, permute", [(1, False), (7, True), (123, True)])
    def test_tie_break_is_independent_of_the_search(self, monkeypatch, seed, permute):
        p = _symmetric_problem()
        expected = FullModelPolicy().solve(p)
        SearchOrder(monkeypatch, seed=seed, permute=permute)
        assert FullModelPolicy().solve(p) == expected

    def test_tie_break_is_independent_of_a_hint_towards_another_optimum(self, monkeypatch):
        p = _symmetric_problem()
        expected = FullModelPolicy().solve(p)
        # Another solution, optimal for every rule but the tie-break.
        other = {"dispatch[t1,porter-1]", "dispatch[t2,porter-2]", "book[p1,A3]", "book[p2,A1]"}
        SearchOrder(monkeypatch, hint=other)
        assert FullModelPolicy().solve(p) == expected

    def test_layout_problem_has_a_unique_optimum(self, monkeypatch):
        solution, optima = policy_optima(LAYOUT_TIE, monkeypatch)
        assert optima == 1

    def test_layout_answer_is_independent_of_the_search(self, monkeypatch):
        expected = FullModelPolicy().solve(LAYOUT_TIE)
        other_optimum = {("t0", "s1"), ("t1", "s0"), ("t2", "s2")}
        if set(expected.dispatches.items()) == other_optimum:
            other_optimum = {("t0", "s0"), ("t1", "s2"), ("t2", "s1")}
        SearchOrder(monkeypatch, hint={f"dispatch[{t},{s}]" for t, s in other_optimum})
        assert FullModelPolicy().solve(LAYOUT_TIE) == expected
