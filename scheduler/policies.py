"""The policies that decide a tick: `cpsat` (the rules as one CP-SAT model) and `greedy`
(first come, first served, first free resource). Both take a `TickProblem` and return a
`Solution`, so they can be swapped and compared.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from ortools.sat.python import cp_model

import rules
from rules.right_role import eligible
from scheduler.config import RulesConfig
from scheduler.problem import Infeasible, Solution, TickProblem


class Policy(Protocol):
    name: str

    def solve(self, problem: TickProblem) -> Solution: ...


class GreedyPolicy:
    """The original prototype: arrivals in order take the first free room, tasks in order of
    creation take the first free staff member of their role."""

    name = "greedy"

    def solve(self, problem: TickProblem) -> Solution:
        free_rooms = list(problem.free_rooms)
        bookings = {a.patient_id: free_rooms.pop(0) for a in problem.arrivals if free_rooms}
        free_staff = list(problem.staff)
        dispatches = {}
        for task in sorted(problem.tasks, key=lambda t: (t.created_ms, not t.for_arrival)):
            if task.for_arrival and task.patient_id not in bookings:
                continue
            staff = next((s for s in free_staff if eligible(task, s)), None)
            if staff is not None:
                free_staff.remove(staff)
                dispatches[task.key] = staff.staff_id
        return Solution(bookings, dispatches)


@dataclass
class TickVars:
    """The decision variables of one tick, built in the problem's (deterministic) order."""

    book: dict[tuple[str, str], cp_model.IntVar] = field(default_factory=dict)
    dispatch: dict[tuple[str, str], cp_model.IntVar] = field(default_factory=dict)
    role_of_staff: dict[str, str] = field(default_factory=dict)
    kind_of_task: dict[str, str] = field(default_factory=dict)

    @classmethod
    def build(cls, problem: TickProblem, model: cp_model.CpModel) -> TickVars:
        tick_vars = cls(role_of_staff={s.staff_id: s.role for s in problem.staff},
                        kind_of_task={t.key: t.kind for t in problem.tasks})
        for arrival in problem.arrivals:
            for room_id in problem.free_rooms:
                tick_vars.book[arrival.patient_id, room_id] = model.new_bool_var(
                    f"book[{arrival.patient_id},{room_id}]")
        for task in problem.tasks:
            for staff in problem.staff:
                if eligible(task, staff):
                    tick_vars.dispatch[task.key, staff.staff_id] = model.new_bool_var(
                        f"dispatch[{task.key},{staff.staff_id}]")
        return tick_vars

    def admitted(self, patient_id: str):
        return sum(var for (p, _), var in self.book.items() if p == patient_id)

    def for_task(self, key: str) -> list[cp_model.IntVar]:
        return [var for (k, _), var in self.dispatch.items() if k == key]

    def for_staff(self, staff_id: str) -> list[cp_model.IntVar]:
        return [var for (_, s), var in self.dispatch.items() if s == staff_id]

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


class CpSatPolicy:
    """Each tick as one CP-SAT model: the hard rules as constraints, the soft rules as a
    weighted objective, the tie-break below them all. One worker and a fixed seed, with no
    time limit, so the same problem always gets the same answer."""

    name = "cpsat"

    def __init__(self, weights: RulesConfig | None = None):
        self.weights = weights or RulesConfig()
        self.solved = 0   # ticks that needed the solver
        self.forced = 0   # ticks with one possible decision, taken without it

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
        for rule in rules.SOFT:
            weight = getattr(self.weights, rule.__name__.rsplit(".", 1)[-1])
            if weight:
                objective += rule.build(problem, model, tick_vars, weight)
        if self.weights.tie_break:
            scale = rules.tie_break.upper_bound(problem) + 1
            objective = scale * objective + rules.tie_break.build(problem, model, tick_vars)
        model.minimize(objective)
        solver = cp_model.CpSolver()
        solver.parameters.num_workers = 1
        solver.parameters.random_seed = 0
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
    raise ValueError(f"unknown policy {name!r}: expected cpsat or greedy")
