"""An oracle for the `cpsat` policy, independent of how it solves: the whole tick as one
CP-SAT model, asked two questions about a proposed solution.

1. Is it optimal for the rules? The model's optimum without tie-break equals its objective.
2. Is it the tie-break's one answer? The tie-break ranks the pairs (`rules.tie_break`'s
   order) and prefers, at the highest-ranked pair where two optima differ, the one without
   it (as weights 2^k would, at any size). Another optimum ranked before the proposed one
   would agree with it on every pair above some pair k that the proposal uses and the other
   does not: the model asks for exactly that, and must find it infeasible.

Both checks are linear in the number of pairs, so they work on ticks far beyond the 30 pairs
where 2^k weights still fit the model.
"""

from __future__ import annotations

from ortools.sat.python import cp_model

import rules
from rules.tie_break import _ordered_pairs
from scheduler.config import RulesConfig
from scheduler.full_model import TickVars
from scheduler.policies import soft_rules
from scheduler.problem import Solution, TickProblem


def _model(problem: TickProblem, weights: RulesConfig):
    model = cp_model.CpModel()
    tick_vars = TickVars.build(problem, model)
    for rule in rules.HARD:
        rule.build(problem, model, tick_vars)
    objective = 0
    for rule, weight in soft_rules(weights):
        objective += rule.build(problem, model, tick_vars, weight)
    return model, tick_vars, objective


def _solver() -> cp_model.CpSolver:
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    solver.parameters.catch_sigint_signal = False
    return solver


def chosen(solution: Solution, pair: tuple[str, str, str]) -> bool:
    family, first, second = pair
    taken = solution.bookings if family == "book" else solution.dispatches
    return taken.get(first) == second


def objective_value(problem: TickProblem, solution: Solution, weights: RulesConfig) -> int:
    """The rules' objective of a solution (evaluated by fixing every variable to it)."""
    model, tick_vars, objective = _model(problem, weights)
    for (p, r), var in tick_vars.book.items():
        model.add(var == int(solution.bookings.get(p) == r))
    for (k, s), var in tick_vars.dispatch.items():
        model.add(var == int(solution.dispatches.get(k) == s))
    model.minimize(objective)
    solver = _solver()
    status = solver.solve(model)
    assert status == cp_model.OPTIMAL, (
        f"the solution breaks a hard rule: {solver.status_name(status)}"
    )
    return round(solver.objective_value)


def optimum(problem: TickProblem, weights: RulesConfig) -> int:
    model, _, objective = _model(problem, weights)
    model.minimize(objective)
    solver = _solver()
    assert solver.solve(model) == cp_model.OPTIMAL
    return round(solver.objective_value)


def is_the_tie_breaks_optimum(
    problem: TickProblem, solution: Solution, weights: RulesConfig
) -> bool:
    """True when no optimum of the rules is ranked before `solution` by the tie-break
    (`solution` must itself be optimal: check that with `objective_value` and `optimum`)."""
    best = optimum(problem, weights)
    model, tick_vars, objective = _model(problem, weights)
    model.add(objective == best)
    prefix_equal = model.new_constant(1)  # agrees with the proposal on every pair so far
    drops = []
    for family, first, second, _, _ in reversed(_ordered_pairs(problem)):  # highest first
        var = tick_vars.var((family, first, second))
        taken = chosen(solution, (family, first, second))
        if taken:  # the other optimum may be better here: it agrees above, and drops it
            drop = model.new_bool_var("")
            model.add_implication(drop, prefix_equal)
            model.add(var == 0).only_enforce_if(drop)
            drops.append(drop)
        still_equal = model.new_bool_var("")
        model.add_implication(still_equal, prefix_equal)
        model.add(var == int(taken)).only_enforce_if(still_equal)
        prefix_equal = still_equal
    if not drops:
        return True
    model.add_bool_or(drops)
    return _solver().solve(model) == cp_model.INFEASIBLE
