"""Staffing by hour of the day, for arrivals that follow the clock; then a roster of shifts.

    advice = advise_hourly(problem, settings, runner)
    advice.hourly.requirement["nurses"]     # 24 counts: nurses on duty in each hour
    advice.hourly.plans["nurses"]           # the shifts that cover them (rostering.Plan)

**The iterative staffing algorithm** (Feldman, Mandelbaum, Massey and Whitt 2008): staff
each hour, simulate, measure each hour, restaff each hour, until the staffing stops
changing. Here:

1. *Start*: each varied role's offered load hour by hour (`lagged_load`: the arrivals of
   the hours before, each patient holding the role for its part of a stay, at the capacity
   LP's shortest walks and mean work: an infinite-server view that lets long treatments
   carry load into later hours), a staff of ceil(a) each hour, at least one. The medical
   staff's need is split as in the stationary search, less the fixed medical staff on
   duty in that hour.
2. *Simulate* the staffing (each varied member on duty in the hours that need them:
   `rostering.requirement_roster`), on the same seeds each time.
3. *Restaff*: in each hour of the day a per-hour target misses (referral, a role's mean
   wait: the figures the KPI report has by hour), one more of the role it is about in that
   hour (medical: a nurse, or a doctor once more nurses stopped helping); a referral
   target, one more of the varied role whose tasks created in that hour waited longest (a
   patient waiting holds a room). A target judged on the whole run (p95 waits, time in
   system, breaches, by ESI) that misses adds one of its role (the varied role that waited
   longest, for those of no role) in the hour where that role waited longest. An hour is
   reported infeasible, with what binds, when no varied role can help it: a referral
   with no varied role waiting as long as a tick (the rooms are full), or a figure that
   one more of each of its role's varied keys left where it was, twice running (`Progress`).
4. Stop when a round changes nothing (every target met where it can be), or after
   `MAX_ROUNDS`.

Then each varied staff key's requirement is covered by a roster of shifts at least cost
(`rostering.cover`: allowed lengths and start hours), and that roster is simulated afresh
(seeds 1001..) to check it, which is what the analyst gets. The requirement only ever goes
up from the offered load, one member and one hour at a time: it is the staff each hour
needs to meet the targets as the algorithm finds them, not proven minimal hour by hour
(the stationary search proves its staffings minimal).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from scheduler import rostering
from scheduler.capacity import hourly_bounds, room_costs
from scheduler.config import staff_roster
from scheduler.demand import arrival_profile
from scheduler.hours import HOURS
from scheduler.parallel import Runner
from scheduler.shifts import Roster
from scheduler.staffing_problem import (
    KEYS_OF,
    ROLE_OF,
    STAFF_KEYS,
    TITLE,
    Advice,
    Evaluation,
    Evaluator,
    Infeasible,
    Problem,
    Settings,
    resource_text,
    unlimited,
)
from scheduler.targets import ROLES, Target

MAX_ROUNDS = 20
MINUTES = HOURS * 60

Requirement = tuple[tuple[str, tuple[int, ...]], ...]  # varied key -> staff on duty by hour


@dataclass
class HourlyAdvice:
    requirement: dict[str, list[int]]  # per varied key: staff on duty in each hour
    rounds: list[dict[str, Any]]  # each round's changes
    stable: bool  # the last round changed nothing
    plans: dict[str, rostering.Plan] = field(default_factory=dict)
    roster: list[str] = field(default_factory=list)  # the whole [shifts] roster
    counts: dict[str, int] = field(default_factory=dict)  # [staff] with the roster
    requirement_check: Evaluation | None = None  # the requirement itself, fresh seeds


# --- the offered load hour by hour ---------------------------------------------------------


def segments(problem: Problem) -> dict[str, list[tuple[float, float]]]:
    """When, after arrival, a patient keeps each role busy (seconds from, to), at the mean
    room's shortest walks and mean work."""
    costs = list(room_costs(problem.config).values())
    n = len(costs)
    escort_in = sum(c.escort_in_s for c in costs) / n
    visit = sum(c.visit_s for c in costs) / n
    escort_out = sum(c.escort_out_s for c in costs) / n
    clean = sum(c.clean_s for c in costs) / n
    t1, t2, t3 = escort_in, escort_in + visit, escort_in + visit + escort_out
    return {
        "porter": [(0.0, t1), (t2, t3)],
        "medical": [(t1, t2)],
        "cleaner": [(t3, t3 + clean)],
    }


def lagged_load(problem: Problem) -> dict[str, list[float]]:
    """Each role's offered load (staff busy on average) in each hour of the day, every
    arrival admitted: by the minute, the arrivals of each earlier minute times the share of
    that minute's patients still holding the role (the day repeating)."""
    profile = arrival_profile(problem.config)
    assert profile is not None
    per_minute = [profile.hourly[m // 60 % len(profile.hourly)] / 60 for m in range(MINUTES)]
    loads = {}
    for role, spans in segments(problem).items():
        busy = [0.0] * MINUTES
        for start, end in spans:
            for lag in range(int(start // 60), math.ceil(end / 60) + 1):
                # the share of a minute's patients (arriving evenly through it) busy with
                # the role `lag` minutes later: the overlap of [lag, lag+1) with the span
                share = _overlap(lag * 60.0 - 30, lag * 60.0 + 30, start, end) / 60
                if share <= 0:
                    continue
                for minute in range(MINUTES):
                    busy[(minute + lag) % MINUTES] += per_minute[minute] * share
        loads[role] = [sum(busy[h * 60 : h * 60 + 60]) / 60 for h in range(HOURS)]
    return loads


def _overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


def on_duty(problem: Problem, key: str, hour: int) -> int:
    """How many of a fixed staff key its roster has on duty at the middle of an hour."""
    config = problem.config
    everyone = {staff_id for staff_id, _ in staff_roster(config)}
    roster = Roster(config.shifts.roster, config.shifts.cycle_s, everyone)
    ids = [f"{TITLE[key]}-{n}" for n in range(1, getattr(config.staff, key) + 1)]
    return sum(roster.on_duty(staff_id, hour * 3_600_000 + 1_800_000) for staff_id in ids)


def initial_requirement(problem: Problem) -> dict[str, list[int]]:
    """Step 1: ceil(offered load) each hour, at least one, the medical staff split."""
    load = lagged_load(problem)
    mix = problem.config.arrivals.acuity_mix
    urgent = (mix[0] + mix[1]) / sum(mix) if problem.config.rules.skills else 0.0
    out: dict[str, list[int]] = {}
    for key in problem.vary:
        hours = []
        for hour in range(HOURS):
            need = math.ceil(load[ROLE_OF[key]][hour])
            if key == "doctors":
                if "nurses" in problem.vary:
                    need = math.ceil(need * urgent)
                else:
                    need -= on_duty(problem, "nurses", hour)
            elif key == "nurses" and "doctors" not in problem.vary:
                need -= on_duty(problem, "doctors", hour)
            elif key == "nurses":
                need -= math.ceil(need * urgent)
            hours.append(max(1 if key != "nurses" else 0, need, problem.minimum(key)))
        out[key] = hours
    return out


# --- simulating a requirement ----------------------------------------------------------------


def as_requirement(hours: Mapping[str, Sequence[int]]) -> Requirement:
    return tuple((key, tuple(hours[key])) for key in STAFF_KEYS if key in hours)


def requirement_overrides(problem: Problem) -> Callable[[Requirement], dict[str, str]]:
    """A requirement as config variables: the staff counts, and a roster that has exactly
    the required staff on duty each hour (the fixed staff's entries kept)."""

    def overrides(requirement: Requirement) -> dict[str, str]:
        out, entries = {}, list(problem.fixed_roster())
        for key, hours in requirement:
            out[f"HOSPITAL_STAFF_{key.upper()}"] = str(max(1, max(hours)))
            entries += rostering.requirement_roster(TITLE[key], hours)
        out["HOSPITAL_SHIFTS_ROSTER"] = ",".join(entries)
        return out

    return overrides


# --- restaffing --------------------------------------------------------------------------


def _key_for(problem: Problem, role: str) -> str | None:
    """The varied staff key that serves `role` (medical: nurses if they are varied, as they
    see most patients, else doctors)."""
    keys = [k for k in KEYS_OF[role] if k in problem.vary]
    return keys[0] if keys else None


def _longest_waiting(problem: Problem, figures: Mapping[str, Any]) -> str | None:
    """The varied role whose tasks waited longest (mean) in the figures given; None when
    none waited as long as a tick (more of them would change nothing)."""
    roles = [r for r in ROLES if _key_for(problem, r)]
    waits = {r: figures[f"wait.{r}.mean"].mean for r in roles}
    best = max(roles, key=lambda r: waits[r], default=None)
    tick_s = problem.config.scheduler.tick_s
    return best if best is not None and waits[best] >= tick_s else None


@dataclass
class Round:
    added: dict[str, list[int]]  # key -> hours given one more
    infeasible: list[Infeasible]


@dataclass
class Progress:
    """Per (figure, hour) that missed last round: the figure then, how many rounds in a row
    one more did not bring it down, and which of its role's varied keys is being tried
    (medical: nurses, then doctors). Twice without progress moves on to the next key; with
    none left, what the figure waits on is not the varied roles."""

    before: dict[tuple[str, int], float] = field(default_factory=dict)
    strikes: dict[tuple[str, int], int] = field(default_factory=dict)
    turn: dict[tuple[str, int], int] = field(default_factory=dict)

    def key(self, problem: Problem, role: str, metric: str, hour: int, judged: float) -> str | None:
        """The varied key to add one of for this miss; None when every one was tried."""
        keys = [k for k in KEYS_OF[role] if k in problem.vary]
        spot = (metric, hour)
        if spot in self.before and judged >= self.before[spot] * 0.99:
            self.strikes[spot] = self.strikes.get(spot, 0) + 1
        else:
            self.strikes[spot] = 0
        self.before[spot] = judged
        if self.strikes[spot] >= 2:
            self.turn[spot], self.strikes[spot] = self.turn.get(spot, 0) + 1, 0
        turn = self.turn.get(spot, 0)
        return keys[turn] if turn < len(keys) else None

    def keep_only(self, spots: set[tuple[str, int]]) -> None:
        """Forget the spots that did not miss this round: progress counts rounds in a row."""
        for table in (self.before, self.strikes):
            for spot in [s for s in table if s not in spots]:
                del table[spot]


def restaff(
    problem: Problem,
    evaluation: Evaluation,
    requirement: dict[str, list[int]],
    floors: Mapping[int, float],
    ceiling: Mapping[str, int],
    progress: Progress,
) -> Round:
    """Step 3 (see the module's docstring): one more where a target misses."""
    added: dict[str, list[int]] = {}
    beyond: dict[Target, list[int]] = {}  # targets no varied role can help, and their hours
    stuck: set[Target] = set()
    missed: set[tuple[str, int]] = set()

    def add(role: str | None, hour: int, target: Target, judged: float) -> None:
        missed.add((target.metric, hour))
        key = None
        if role and _key_for(problem, role):
            key = progress.key(problem, role, target.metric, hour, judged)
            if key is None:
                stuck.add(target)
        if key is None:
            beyond.setdefault(target, []).append(hour)
        elif requirement[key][hour] < ceiling[key] and hour not in added.get(key, []):
            requirement[key][hour] += 1
            added.setdefault(key, []).append(hour)

    for target in problem.targets:
        if target.hourly:
            for hour, figures in evaluation.by_hour.items():
                interval = figures[target.metric]
                if not target.met_by(interval):
                    role = target.role or _longest_waiting(problem, figures)
                    add(role, hour, target, target.judged(interval))
        elif not evaluation.met(target):
            role = target.role or _longest_waiting(problem, evaluation.figures)
            by_hour = evaluation.by_hour
            worst = max(by_hour, key=lambda h: by_hour[h][f"wait.{role}.mean"].mean) if role else -1
            add(role, worst, target, evaluation.judged(target))
    progress.keep_only(missed)
    infeasible = []
    for target, missed_in in beyond.items():
        resource, reason = _why(problem, target, floors, target in stuck)
        hours = tuple(h for h in missed_in if h >= 0)
        infeasible.append(Infeasible(target, resource, reason, hours))
    return Round(added, infeasible)


def _why(
    problem: Problem, target: Target, floors: Mapping[int, float], stuck: bool
) -> tuple[str, str]:
    """The binding resource, and a sentence, for a target no varied role can help."""
    role = target.role
    if role and not _key_for(problem, role):
        return role, f"{resource_text(problem, role)} are not varied"
    if role and stuck:
        tried = " then ".join(TITLE[k] + "s" for k in KEYS_OF[role] if k in problem.vary)
        fixed = [k for k in KEYS_OF[role] if k not in problem.vary]
        counts = problem.counts()
        return role, (
            f"more {tried} did not bring it down (twice each)"
            + (f"; the {fixed[0]} ({counts[fixed[0]]}) are not varied" if fixed else "")
        )
    bounds = ", ".join(f"{h:02d}h {floors[h]:.1%}" for h in sorted(floors) if floors[h] > 0)
    return "rooms", (
        f"no varied role waits enough to matter there: {resource_text(problem, 'rooms')} "
        "are full"
        + (f" (the capacity bound with the varied roles unlimited: {bounds})" if bounds else "")
    )


# --- the advice -------------------------------------------------------------------------------


def hour_floors(problem: Problem, hours: float) -> dict[int, float]:
    """The capacity bound's referral floor of each hour of the day, varied roles unlimited."""
    config = problem.with_staff(unlimited(problem))
    return {
        b.hour: b.min_referral_rate
        for b in hourly_bounds(config, round(max(hours, 24) * 3_600_000))
    }


def advise_hourly(
    problem: Problem,
    settings: Settings,
    runner: Runner,
    on_batch: Callable[[int], None] | None = None,
) -> Advice:
    started = time.perf_counter()
    evaluator = Evaluator(problem, settings, runner, requirement_overrides(problem), on_batch)
    floors = hour_floors(problem, evaluator.hours)
    requirement = initial_requirement(problem)
    ceiling = {k: max(max(v) * 3, max(v) + 10) for k, v in requirement.items()}
    rounds: list[dict[str, Any]] = []
    infeasible: list[Infeasible] = []
    stable = False
    evaluation: Evaluation | None = None
    progress = Progress()
    for _ in range(MAX_ROUNDS):
        (evaluation,) = evaluator.evaluate([as_requirement(requirement)])
        step = restaff(problem, evaluation, requirement, floors, ceiling, progress)
        infeasible = step.infeasible
        rounds.append({"added": step.added})
        if not step.added:
            stable = True
            break
    assert evaluation is not None
    advice = HourlyAdvice({k: list(v) for k, v in requirement.items()}, rounds, stable)
    for key in problem.vary:
        advice.plans[key] = rostering.cover(
            requirement[key], settings.shift_lengths, settings.shift_starts
        )
    entries = list(problem.fixed_roster())
    counts = problem.counts()
    for key, plan in advice.plans.items():
        entries += rostering.shift_roster(TITLE[key], plan)
        counts[key] = max(1, plan.staff)
    advice.roster, advice.counts = entries, counts
    roster_env = {
        **{f"HOSPITAL_STAFF_{k.upper()}": str(n) for k, n in counts.items()},
        "HOSPITAL_SHIFTS_ROSTER": ",".join(entries),
    }
    checker = Evaluator(problem, settings, runner, lambda _: roster_env, on_batch)
    (check,) = checker.evaluate(["roster"], fresh=True)
    return Advice(
        problem,
        settings,
        evaluator.hours,
        evaluator.warmup_h,
        evaluator.policy,
        infeasible,
        counts,
        evaluation,
        check,
        [],
        rounds,
        evaluator.runs + checker.runs,
        round(time.perf_counter() - started, 3),
        runner.describe(),
        advice,
    )
