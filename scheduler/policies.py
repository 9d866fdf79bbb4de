"""The policies that decide a tick: `cpsat` (the optimum of the rules' CP-SAT model) and
`greedy` (first come, first served, first free resource). Both take a `TickProblem` and
return a `Solution`, so they can be swapped and compared.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from ortools.sat.python import cp_model

import rules
from scheduler.assignment import assign
from scheduler.config import RulesConfig
from scheduler.problem import Arrival, FreeStaff, Infeasible, OpenTask, Solution, TickProblem


class Policy(Protocol):
    name: str

    def solve(self, problem: TickProblem) -> Solution: ...


class GreedyPolicy:
    """The original prototype, following every hard rule as a careful dispatcher would:
    arrivals admitted in order of urgency then arrival (`TickProblem.admitted`), each into the
    first free room it may use (those needing isolation placed first, the others kept out of
    isolation rooms while other rooms are free); tasks in order of urgency then creation, each
    to the first free staff member who may do it (nurses before doctors, by roster order)."""

    name = "greedy"

    def solve(self, problem: TickProblem) -> Solution:
        free_rooms = list(problem.free_rooms)
        bookings = {}
        admitted = sorted(problem.admitted(), key=lambda a: not a.isolation)
        for arrival in admitted:
            fitting = [r for r in free_rooms if problem.may_book(arrival, r)]
            plain = [r for r in fitting if r not in problem.isolation_rooms]
            room = (plain or fitting)[0]
            free_rooms.remove(room)
            bookings[arrival.patient_id] = room
        free_staff = list(problem.staff)
        dispatches = {}
        for task in sorted(problem.tasks, key=lambda t: (t.acuity, t.created_ms, not t.for_arrival)):
            if task.for_arrival and task.patient_id not in bookings:
                continue
            staff = next((s for s in free_staff if problem.may_do(task, s)), None)
            if staff is not None:
                free_staff.remove(staff)
                dispatches[task.key] = staff.staff_id
        return Solution(bookings, dispatches)


@dataclass
class TickVars:
    """The decision variables of one tick, built in the problem's (deterministic) order, with
    indexes by task, staff member and patient so that rules never scan them all."""

    book: dict[tuple[str, str], cp_model.IntVar] = field(default_factory=dict)
    dispatch: dict[tuple[str, str], cp_model.IntVar] = field(default_factory=dict)
    role_of_staff: dict[str, str] = field(default_factory=dict)
    kind_of_task: dict[str, str] = field(default_factory=dict)
    _by_task: dict[str, list[cp_model.IntVar]] = field(default_factory=dict)
    _by_staff: dict[str, list[cp_model.IntVar]] = field(default_factory=dict)
    _by_patient: dict[str, list[cp_model.IntVar]] = field(default_factory=dict)
    _by_room: dict[str, list[cp_model.IntVar]] = field(default_factory=dict)

    @classmethod
    def build(cls, problem: TickProblem, model: cp_model.CpModel) -> TickVars:
        tick_vars = cls(role_of_staff={s.staff_id: s.role for s in problem.staff},
                        kind_of_task={t.key: t.kind for t in problem.tasks})
        for arrival in problem.arrivals:
            for room_id in problem.free_rooms:
                if problem.may_book(arrival, room_id):
                    var = model.new_bool_var(f"book[{arrival.patient_id},{room_id}]")
                    tick_vars.book[arrival.patient_id, room_id] = var
                    tick_vars._by_patient.setdefault(arrival.patient_id, []).append(var)
                    tick_vars._by_room.setdefault(room_id, []).append(var)
        for role in problem.roles:
            for task in problem.tasks_of(role):
                for staff in problem.staff_of(role):
                    if problem.may_do(task, staff):
                        var = model.new_bool_var(f"dispatch[{task.key},{staff.staff_id}]")
                        tick_vars.dispatch[task.key, staff.staff_id] = var
                        tick_vars._by_task.setdefault(task.key, []).append(var)
                        tick_vars._by_staff.setdefault(staff.staff_id, []).append(var)
        return tick_vars

    def admitted(self, patient_id: str):
        return sum(self._by_patient.get(patient_id, []))

    def for_patient(self, patient_id: str) -> list[cp_model.IntVar]:
        return self._by_patient.get(patient_id, [])

    def for_room(self, room_id: str) -> list[cp_model.IntVar]:
        return self._by_room.get(room_id, [])

    def for_task(self, key: str) -> list[cp_model.IntVar]:
        return self._by_task.get(key, [])

    def for_staff(self, staff_id: str) -> list[cp_model.IntVar]:
        return self._by_staff.get(staff_id, [])

    def var(self, pair: tuple[str, str, str]) -> cp_model.IntVar:
        family, a, b = pair
        return (self.book if family == "book" else self.dispatch)[a, b]

    def solution(self, solver: cp_model.CpSolver) -> Solution:
        return Solution(
            bookings={p: r for (p, r), var in self.book.items() if solver.boolean_value(var)},
            dispatches={k: s for (k, s), var in self.dispatch.items() if solver.boolean_value(var)},
        )


class _Model(cp_model.CpModel):
    """A CpModel without the deprecated camelCase aliases that its constructor installs one
    by one: that costs a millisecond a model, more than solving a typical tick."""

    def _add_pre_pep8_methods(self) -> None:
        pass


def _soft_rules(weights: RulesConfig) -> list[tuple[Any, float]]:
    """The soft rules that are switched on, with their weights."""
    found = [(rule, getattr(weights, rule.__name__.rsplit(".", 1)[-1])) for rule in rules.SOFT]
    return [(rule, weight) for rule, weight in found if weight]


class CpSatPolicy:
    """The rules' CP-SAT model, solved part by part. The model's parts are independent: the
    bookings (which free room each admitted arrival takes) and, for each role, which waiting
    task each free staff member takes; they share no variable once the admitted arrivals are
    known, and the hard rules fix those (`TickProblem.admitted`: by urgency, then arrival,
    as many as the free rooms can take). Every soft rule's
    term is a cost per pair, so each part is an assignment problem, solved exactly with the
    tie-break (`scheduler.assignment`): the same optimum as `FullModelPolicy`, the whole
    model in CP-SAT, in a fraction of the time, and unique at any size."""

    name = "cpsat"
    limited = 0        # ticks where a limit cut the search: none, every part is exact
    worst_gap = 0.0

    def __init__(self, weights: RulesConfig | None = None):
        self.weights = weights or RulesConfig()
        soft = _soft_rules(self.weights)

        def parts(name: str) -> list[tuple[Any, float]]:
            return [(getattr(rule, name), weight) for rule, weight in soft
                    if hasattr(rule, name)]

        self._task_cost, self._pair_cost = parts("task_cost"), parts("pair_cost")
        self._arrival_cost, self._room_cost = parts("arrival_cost"), parts("room_cost")
        self.solved = 0   # ticks where some part had a choice
        self.forced = 0   # ticks where no part had any: one possible decision

    def solve(self, problem: TickProblem) -> Solution:
        admitted = problem.admitted()
        sizes = [(len(problem.free_rooms), len(admitted))]
        bookings = self._bookings(problem, admitted)
        tasks_of: dict[str, list[OpenTask]] = {}
        for task in problem.tasks:
            if not task.for_arrival or task.patient_id in bookings:
                tasks_of.setdefault(task.role, []).append(task)
        staff_of: dict[str, list[FreeStaff]] = {}
        for staff in problem.staff:
            staff_of.setdefault(staff.role, []).append(staff)
        dispatches: dict[str, str] = {}
        for role, staff in staff_of.items():
            tasks = tasks_of.get(role)
            if not tasks:
                continue
            sizes.append((len(staff), len(tasks)))
            allowed = None
            if problem.skills and role == "medical":
                allowed = [[problem.may_do(t, s) for t in tasks] for s in staff]
            for s, t in assign(self._dispatch_costs(problem, tasks, staff), self.weights.tie_break,
                               allowed):
                dispatches[tasks[t].key] = staff[s].staff_id
        if all(min(size) == 0 or size == (1, 1) for size in sizes):
            self.forced += 1
        else:
            self.solved += 1
        return Solution(bookings, dispatches)

    def _bookings(self, problem: TickProblem, admitted: tuple[Arrival, ...]) -> dict[str, str]:
        rooms = problem.free_rooms
        if not admitted:
            return {}
        by_room = [sum(cost(problem, r, weight) for cost, weight in self._room_cost)
                   for r in rooms]
        by_arrival = [sum(cost(problem, a, weight) for cost, weight in self._arrival_cost)
                      for a in admitted]
        matrix = [[r + a for a in by_arrival] for r in by_room]
        allowed = None
        if problem.isolation_rooms:
            allowed = [[problem.may_book(a, r) for a in admitted] for r in rooms]
        return {admitted[a].patient_id: rooms[r]
                for r, a in assign(matrix, self.weights.tie_break, allowed)}

    def _dispatch_costs(self, problem: TickProblem, tasks: list[OpenTask],
                        staff: list[FreeStaff]) -> list[list[int]]:
        """Staff (rows) by tasks (columns): what each dispatch costs under the soft rules."""
        by_task = [sum(cost(problem, t, weight) for cost, weight in self._task_cost)
                   for t in tasks]
        if not self._pair_cost:
            return [by_task] * len(staff)
        return [[c + sum(cost(problem, t, s, weight) for cost, weight in self._pair_cost)
                 for c, t in zip(by_task, tasks)] for s in staff]


class FullModelPolicy:
    """The reference: the whole tick as one CP-SAT model, every hard rule a constraint, the
    soft rules a weighted objective, the tie-break below them all (exact up to
    `rules.tie_break.EXACT_PAIRS` pairs). One worker and a fixed seed, no time limit. Slow on
    a large hospital; the tests hold `CpSatPolicy` to its answers."""

    name = "cpsat-full"

    def __init__(self, weights: RulesConfig | None = None):
        self.weights = weights or RulesConfig()
        self.solved = 0
        self.forced = 0

    def solve(self, problem: TickProblem) -> Solution:
        if _is_forced(problem):
            self.forced += 1
            return GreedyPolicy().solve(problem)
        self.solved += 1
        model = _Model()
        tick_vars = TickVars.build(problem, model)
        objective = 0
        for rule in rules.HARD:
            rule.build(problem, model, tick_vars)
        for rule, weight in _soft_rules(self.weights):
            objective += rule.build(problem, model, tick_vars, weight)
        if self.weights.tie_break:
            scale = rules.tie_break.upper_bound(problem) + 1
            objective = scale * objective + rules.tie_break.build(problem, model, tick_vars)
        model.minimize(objective)
        solver = cp_model.CpSolver()
        solver.parameters.num_workers = 1
        solver.parameters.random_seed = 0
        solver.parameters.catch_sigint_signal = False
        status = solver.solve(model)
        if status != cp_model.OPTIMAL:
            raise Infeasible(f"tick at {problem.now_ms} ms: solver status {solver.status_name(status)}")
        return tick_vars.solution(solver)


def _is_forced(problem: TickProblem) -> bool:
    """True when the hard rules leave exactly one decision: no choice of arrivals or rooms,
    and in each role no choice of tasks or staff. Then the solver has nothing to decide."""
    due = problem.admissions_due()
    if due and not (len(problem.arrivals) == 1 and len(problem.free_rooms) == 1):
        return False
    for role in problem.roles:
        tasks = [t for t in problem.tasks_of(role) if not t.for_arrival or due]
        if problem.dispatches_due(role) and not (len(tasks) == 1 and len(problem.staff_of(role)) == 1):
            return False
    return True


def make_policy(name: str, weights: RulesConfig | None = None) -> Policy:
    if name == "greedy":
        return GreedyPolicy()
    if name == "cpsat":
        return CpSatPolicy(weights)
    if name == FullModelPolicy.name:
        return FullModelPolicy(weights)
    raise ValueError(f"unknown policy {name!r}: expected cpsat or greedy")
