"""The staffing advisor of `hospital staff`: the smallest staff per role that meets targets.

    from scheduler import staffing, targets
    problem = staffing.Problem.load("ward", [targets.parse("wait.medical.p95<60")])
    advice = staffing.advise(problem, staffing.Settings(replications=5))
    advice.staffing          # {"porters": 4, "nurses": 9, "doctors": 3, "cleaners": 7}

**What varies.** The staff keys of the config (`porters`, `nurses`, `doctors`, `cleaners`)
named in `vary` (default all); the others stay as configured. A varied role is on duty all
the time (its `[shifts] roster` entries, if any, are dropped), unless the arrivals follow
the clock (`profile`): then it is staffed hour by hour of the day (`staffing_hourly.py`) and
covered by a roster of shifts (`rostering.py`).

**How (stationary arrivals).** Queueing theory first, then simulation, as Green et al.
(2006) staff an emergency department and as the iterative staffing algorithm of Feldman,
Mandelbaum, Massey and Whitt (2008) refines a staffing by simulation:

1. *What no staffing can do.* The capacity LP (`scheduler/capacity.py`) with the varied
   roles unlimited: a referral target below its bound is infeasible by the varied roles
   alone, and the LP's bottleneck (the rooms, or a role held fixed) is the binding
   resource. The other targets are tried at a generous *ceiling* staffing: one it misses
   is infeasible too, bound by its own role if that role is fixed, else by the rooms.
2. *Start.* Square-root staffing of each varied role: its offered load a (the admissions
   a second the LP allows, times the role's busy time per admission) plus beta * sqrt(a),
   beta = 0.5.
3. *Up.* While a target is missed: each varied role that may help it one more, all tried
   at once with the same seeds (common random numbers); keep the one that leaves the
   smallest relative shortfall.
4. *Down.* While some role one fewer still meets every target: keep the one with the most
   room to spare; stop when none does. The result is minimal: one fewer of any varied role
   misses a target (those runs are kept and reported as the evidence).

Every candidate is judged on the same seeds 1..N, each run less its warm-up
(`staffing_measure.py`); a target is met when the upper end of the 95 % interval of its
mean is below it (`targets.py`). The staffing found is then checked afresh on other seeds
(1001.., `check_replications` of them), so that the figures reported are not those it was
chosen on.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from scheduler.capacity import room_costs
from scheduler.confidence import Interval
from scheduler.config import Config
from scheduler.demand import mean_arrival_rate_per_s
from scheduler.parallel import Runner
from scheduler.staffing_hourly import advise_hourly
from scheduler.staffing_problem import (
    BETA,
    KEYS_OF,
    ROLE_OF,
    STAFF_KEYS,
    TITLE,
    Advice,
    Evaluation,
    Evaluator,
    Infeasible,
    Neighbour,
    Problem,
    Settings,
    StaffingError,
    lp_bound,
    resource_text,
    unlimited,
    vary_keys,
)
from scheduler.targets import ROLES, Target, show

__all__ = [  # what the command and the tests use from here, wherever it is defined
    "STAFF_KEYS",
    "TITLE",
    "Evaluation",
    "Evaluator",
    "Problem",
    "Settings",
    "StaffingError",
    "advise",
    "advice_dict",
    "staffed_config",
    "vary_keys",
]


def referral_infeasibility(problem: Problem) -> list[Infeasible]:
    """Referral targets below the capacity bound with the varied roles unlimited."""
    bound = lp_bound(problem, unlimited(problem))
    found = []
    for target in problem.targets:
        if target.metric != "referral" or target.below(bound.min_referral_rate):
            continue
        found.append(
            Infeasible(
                target,
                bound.bottleneck,
                f"with {' and '.join(problem.vary)} unlimited, "
                f"{resource_text(problem, bound.bottleneck)} bound referrals at "
                f"{bound.min_referral_rate:.1%} at least (capacity bound)",
            )
        )
    return found


def ceiling_infeasibility(
    problem: Problem, evaluation: Evaluation, ceiling: Mapping[str, int], known: Iterable[Target]
) -> list[Infeasible]:
    """Targets the ceiling staffing misses (and the LP did not already rule out)."""
    already = set(known)
    found = []
    for target in evaluation.missed(problem.targets):
        if target in already:
            continue
        role = target.role
        if role is not None and not set(KEYS_OF[role]) & set(problem.vary):
            resource, why = role, f"{resource_text(problem, role)} are not varied"
        else:
            bound = lp_bound(problem, ceiling)
            resource = bound.bottleneck
            why = f"{resource_text(problem, resource)} bind"
        found.append(
            Infeasible(
                target,
                resource,
                f"even with {_counts_text(ceiling, problem.vary)} it is "
                f"{show(target.metric, evaluation.judged(target))} (the upper end of its "
                f"interval): {why}",
            )
        )
    return found


def _counts_text(counts: Mapping[str, int], keys: Iterable[str]) -> str:
    return ", ".join(f"{counts[k]} {k}" for k in keys)


# --- the stationary search ------------------------------------------------------------------


def offered_load(problem: Problem) -> dict[str, float]:
    """Each role's offered load (busy staff on average) at the admissions the capacity LP
    allows with the varied roles unlimited: admissions a second times the role's mean busy
    time per admission (walks at their shortest, work at its mean)."""
    costs = list(room_costs(problem.config).values())
    admissions = lp_bound(problem, unlimited(problem)).max_rate
    return {role: admissions * sum(c.busy_s[role] for c in costs) / len(costs) for role in ROLES}


def square_root_staffing(problem: Problem, beta: float = BETA) -> dict[str, int]:
    """The starting point: a + beta * sqrt(a) of each varied role, a its offered load; the
    medical staff split between doctors (for the ESI 1-2 share, when they alone may see
    those) and nurses."""
    load = offered_load(problem)
    counts = problem.counts()
    need = {role: math.ceil(a + beta * math.sqrt(a)) for role, a in load.items()}
    start = dict(counts)
    for key in ("porters", "cleaners"):
        if key in problem.vary:
            start[key] = max(problem.minimum(key), need[ROLE_OF[key]])
    medical = need["medical"]
    mix = problem.config.arrivals.acuity_mix
    urgent = (mix[0] + mix[1]) / sum(mix) if problem.config.rules.skills else 0.0
    if "doctors" in problem.vary:
        others = counts["nurses"] if "nurses" not in problem.vary else 0
        share = urgent if "nurses" in problem.vary else 1.0
        start["doctors"] = max(problem.minimum("doctors"), math.ceil((medical - others) * share))
    if "nurses" in problem.vary:
        start["nurses"] = max(0, medical - start["doctors"])
    if start["nurses"] + start["doctors"] < 1:
        start["nurses"] = 1
    return start


def ceiling_staffing(problem: Problem) -> dict[str, int]:
    """A staffing generous enough that a target it misses is out of the varied roles'
    reach: each varied key at 1.5 a + 3 sqrt(a) + 2 of its role's load with every arrival
    admitted (a key of the medical staff alone carrying all of it)."""
    costs = list(room_costs(problem.config).values())
    rate = mean_arrival_rate_per_s(problem.config)
    ceiling = problem.counts()
    for key in problem.vary:
        role = ROLE_OF[key]
        a = rate * sum(c.busy_s[role] for c in costs) / len(costs)
        ceiling[key] = max(problem.minimum(key) + 1, math.ceil(1.5 * a + 3 * math.sqrt(a)) + 2)
    return ceiling


Counts = tuple[tuple[str, int], ...]  # a candidate: the varied keys' counts, sorted by key


def as_candidate(counts: Mapping[str, int], keys: Iterable[str]) -> Counts:
    return tuple((k, counts[k]) for k in keys)


def stationary_overrides(problem: Problem) -> Callable[[Counts], dict[str, str]]:
    roster = ",".join(problem.fixed_roster())
    dropped = len(problem.fixed_roster()) != len(problem.config.shifts.roster)

    def overrides(candidate: Counts) -> dict[str, str]:
        out = {f"HOSPITAL_STAFF_{key.upper()}": str(n) for key, n in candidate}
        if dropped:
            out["HOSPITAL_SHIFTS_ROSTER"] = roster
        return out

    return overrides


@dataclass
class Search:
    """The stationary search's outcome."""

    counts: dict[str, int] | None  # None: no staffing meets the feasible targets
    evaluation: Evaluation | None
    neighbours: list[Neighbour]
    steps: list[dict[str, Any]]  # each staffing tried in turn, and why


def search(
    problem: Problem,
    evaluator: Evaluator,
    feasible: Sequence[Target],
    ceiling: Mapping[str, int],
    start: Mapping[str, int],
) -> Search:
    """Up from `start` until every feasible target is met, then down until one fewer of
    any varied key misses one (module docstring, steps 3 and 4)."""
    keys = problem.vary
    base = problem.counts()
    steps: list[dict[str, Any]] = []

    def counts_of(candidate: Counts) -> dict[str, int]:
        return {**base, **dict(candidate)}

    def step(candidate: Counts, why: str) -> None:
        steps.append({"staffing": dict(candidate), "why": why})

    current = as_candidate({k: min(start[k], ceiling[k]) for k in keys}, keys)
    (evaluation,) = evaluator.evaluate([current])
    step(current, "square-root staffing")
    while not evaluation.meets(feasible):
        missed = evaluation.missed(feasible)
        helpful = {k for t in missed for k in (KEYS_OF[t.role] if t.role else keys)} & set(keys)
        ups = [
            _moved(current, k, +1) for k in keys if k in helpful and dict(current)[k] < ceiling[k]
        ]
        if not ups:
            return Search(None, evaluation, [], steps)
        tried = evaluator.evaluate(ups)
        evaluation = min(tried, key=lambda e: e.shortfall(feasible))
        current = evaluation.candidate
        step(current, "one more: " + ", ".join(t.metric for t in missed) + " missed")
    neighbours: list[Neighbour] = []
    while True:
        downs = [
            (k, _moved(current, k, -1))
            for k in keys
            if dict(current)[k] > problem.minimum(k) and _medical_left(counts_of(current), k)
        ]
        tried = evaluator.evaluate([c for _, c in downs])
        neighbours = [Neighbour(k, e, e.missed(feasible)) for (k, _), e in zip(downs, tried)]
        keeping = [n for n in neighbours if not n.missed]
        if not keeping:
            break
        best = max(keeping, key=lambda n: n.evaluation.slack(feasible))
        current, evaluation = best.evaluation.candidate, best.evaluation
        step(current, f"one {best.key[:-1]} fewer still meets every target")
    return Search(counts_of(current), evaluation, neighbours, steps)


def _moved(candidate: Counts, key: str, by: int) -> Counts:
    return tuple((k, n + by if k == key else n) for k, n in candidate)


def _medical_left(counts: Mapping[str, int], key: str) -> bool:
    """Whether one fewer of `key` still leaves somebody to see the patients."""
    if key not in ("nurses", "doctors"):
        return True
    return counts["nurses"] + counts["doctors"] > 1


# --- the advice -------------------------------------------------------------------------------


def advise(
    problem: Problem,
    settings: Settings,
    runner: Runner,
    on_batch: Callable[[int], None] | None = None,
) -> Advice:
    """The smallest staffing of the varied roles that meets the targets, with every target
    no staffing of them can meet named with its binding resource; checked on fresh seeds."""
    if problem.hourly:  # by the clock: its own search
        return advise_hourly(problem, settings, runner, on_batch)
    started = time.perf_counter()
    evaluator = Evaluator(problem, settings, runner, stationary_overrides(problem), on_batch)
    infeasible = referral_infeasibility(problem)
    ceiling = ceiling_staffing(problem)
    top = as_candidate(ceiling, problem.vary)
    (at_ceiling,) = evaluator.evaluate([top])
    infeasible += ceiling_infeasibility(
        problem, at_ceiling, ceiling, [i.target for i in infeasible]
    )
    ruled_out = {i.target for i in infeasible}
    feasible = [t for t in problem.targets if t not in ruled_out]
    staffing, evaluation, neighbours, steps = None, None, [], []
    if feasible:
        found = search(problem, evaluator, feasible, ceiling, square_root_staffing(problem))
        staffing, evaluation, neighbours, steps = (
            found.counts,
            found.evaluation,
            found.neighbours,
            found.steps,
        )
    check = None
    if staffing is not None:
        (check,) = evaluator.evaluate([as_candidate(staffing, problem.vary)], fresh=True)
    return Advice(
        problem,
        settings,
        evaluator.hours,
        evaluator.warmup_h,
        evaluator.policy,
        infeasible,
        staffing,
        evaluation,
        check,
        neighbours,
        steps,
        evaluator.runs,
        round(time.perf_counter() - started, 3),
        runner.describe(),
    )


# --- the advice as data ---------------------------------------------------------------------


def interval_dict(interval: Interval) -> dict[str, Any]:
    return dict(interval.as_dict())


def evaluation_dict(evaluation: Evaluation | None, targets: Sequence[Target]) -> Any:
    if evaluation is None:
        return None
    return {
        "seeds": list(evaluation.seeds),
        "figures": {m: interval_dict(i) for m, i in evaluation.figures.items()},
        "utilisation": {r: interval_dict(i) for r, i in evaluation.utilisation.items()},
        "by_hour": {
            str(h): {m: interval_dict(i) for m, i in figures.items()}
            for h, figures in evaluation.by_hour.items()
        },
        "late": {m: interval_dict(i) for m, i in evaluation.late.items()},
        "targets": {t.text: evaluation.met(t) for t in targets},
    }


def advice_dict(advice: Advice) -> dict[str, Any]:
    """The whole advice as JSON-ready data (`hospital staff --out-json`)."""
    problem, targets = advice.problem, advice.problem.targets
    out: dict[str, Any] = {
        "scenario": problem.scenario,
        "targets": [t.text for t in targets],
        "vary": list(problem.vary),
        "configured": problem.counts(),
        "settings": {
            "replications": advice.settings.replications,
            "check_replications": advice.settings.check_replications,
            "hours": advice.hours,
            "warmup_h": advice.warmup_h,
            "policy": advice.policy,
            "overrides": dict(problem.overrides),
            "met": "the upper end of the 95 % t interval of the mean is below the target",
        },
        "infeasible": [
            {
                "target": i.target.text,
                "resource": i.resource,
                "reason": i.reason,
                "hours": list(i.hours),
            }
            for i in advice.infeasible
        ],
        "staffing": advice.staffing,
        "search": evaluation_dict(advice.search, targets),
        "check": evaluation_dict(advice.check, targets),
        "minimal": [
            {"one_fewer": n.key, "missed": [t.text for t in n.missed]} for n in advice.neighbours
        ],
        "steps": advice.steps,
        "runs": advice.runs,
        "wall_s": advice.wall_s,
        "engine": advice.engine,
    }
    if advice.hourly is not None:
        hourly = advice.hourly
        out["by_hour"] = {
            "requirement": hourly.requirement,
            "stable": hourly.stable,
            "rounds": len(hourly.rounds),
            "roster": hourly.roster,
            "plans": {k: plan.as_dict() for k, plan in hourly.plans.items()},
        }
    return out


def staffed_config(advice: Advice) -> Config | None:
    """The config with the staffing found (by the clock: its roster of shifts); None when
    no staffing was found."""
    if advice.hourly is not None:
        return advice.problem.config.replace(
            staff=advice.hourly.counts, shifts={"roster": advice.hourly.roster}
        )
    if advice.staffing is None:
        return None
    return advice.problem.with_staff(advice.staffing)
