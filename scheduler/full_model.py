"""The reference: the whole tick as one OR-tools CP-SAT model, every hard rule a constraint,
the soft rules a weighted objective, the tie-break below them all. The `cpsat` policy solves
the same model part by part (`scheduler.policies`); the tests hold it to this one's answers.
Imported only where it is used: OR-tools costs most of a second to import.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ortools.sat.python import cp_model

import rules
from scheduler.config import RulesConfig
from scheduler.policies import GreedyPolicy, is_forced, soft_rules
from scheduler.problem import Infeasible, Solution, TickProblem


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
        tick_vars = cls(
            role_of_staff={s.staff_id: s.role for s in problem.staff},
            kind_of_task={t.key: t.kind for t in problem.tasks},
        )
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
        if is_forced(problem):
            self.forced += 1
            return GreedyPolicy().solve(problem)
        self.solved += 1
        model = _Model()
        tick_vars = TickVars.build(problem, model)
        objective = 0
        for rule in rules.HARD:
            rule.build(problem, model, tick_vars)
        for rule, weight in soft_rules(self.weights):
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
            raise Infeasible(
                f"tick at {problem.now_ms} ms: solver status {solver.status_name(status)}"
            )
        return tick_vars.solution(solver)
