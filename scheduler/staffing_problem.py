"""What `hospital staff` searches over, and how a candidate staffing is judged: the problem
(a config, targets, the staff keys that vary), the runs of a candidate on common seeds and
their figures with intervals (`Evaluator`, `Evaluation`), and the advice it ends with.
`scheduler/staffing.py` searches with stationary arrivals, `scheduler/staffing_hourly.py`
by the clock; both build on this module.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from scheduler import scenarios
from scheduler.capacity import CapacityBound, capacity_bound, room_costs
from scheduler.confidence import Interval, t_interval
from scheduler.config import Config
from scheduler.parallel import Runner
from scheduler.staffing_measure import StaffingJob, run_staffing_job
from scheduler.targets import HOURLY_METRICS, ROLES, Target

STAFF_KEYS = ("porters", "nurses", "doctors", "cleaners")
TITLE = {"porters": "porter", "nurses": "nurse", "doctors": "doctor", "cleaners": "cleaner"}
ROLE_OF = {"porters": "porter", "nurses": "medical", "doctors": "medical", "cleaners": "cleaner"}
KEYS_OF = {"porter": ("porters",), "medical": ("nurses", "doctors"), "cleaner": ("cleaners",)}
BETA = 0.5  # square-root staffing's safety factor for the starting point
UNLIMITED = 10_000  # staff of a role "without limit", for the capacity LP
CHECK_SEED = 1001  # the fresh check's first seed: none of the search's


class StaffingError(ValueError):
    """A problem that cannot be searched (a bad role, nothing to vary); one line."""


def vary_keys(names: Iterable[str]) -> tuple[str, ...]:
    """Staff keys from the names a user gives (`cleaners`, `cleaner`, `medical`...), in
    the config's order; none given: all of them."""
    wanted: set[str] = set()
    for name in names:
        name = name.strip().lower()
        if name in STAFF_KEYS:
            wanted.add(name)
        elif name + "s" in STAFF_KEYS:
            wanted.add(name + "s")
        elif name in KEYS_OF:
            wanted.update(KEYS_OF[name])
        else:
            raise StaffingError(
                f"--vary {name!r}: expected one of {', '.join(STAFF_KEYS)} (or medical)"
            )
    return tuple(k for k in STAFF_KEYS if k in wanted) or STAFF_KEYS


@dataclass(frozen=True)
class Problem:
    scenario: str  # a name of scenarios/ or a config file's path
    config: Config  # as loaded, with `overrides` applied
    targets: tuple[Target, ...]
    vary: tuple[str, ...] = STAFF_KEYS
    overrides: tuple[tuple[str, str], ...] = ()  # the user's, under every candidate's

    @classmethod
    def load(
        cls,
        scenario: str,
        targets: Sequence[Target],
        vary: Iterable[str] = (),
        overrides: Mapping[str, str] | None = None,
    ) -> Problem:
        if not targets:
            raise StaffingError("no target: give at least one --target, e.g. referral<0.05")
        config = scenarios.load(scenario, overrides or {})
        return cls(
            scenario,
            config,
            tuple(targets),
            vary_keys(vary),
            tuple(sorted((overrides or {}).items())),
        )

    @property
    def hourly(self) -> bool:
        """Arrivals that follow the clock: staffed hour by hour of the day."""
        return self.config.arrivals.process == "profile"

    def counts(self) -> dict[str, int]:
        """The staff as configured."""
        return {key: getattr(self.config.staff, key) for key in STAFF_KEYS}

    def fixed_roster(self) -> tuple[str, ...]:
        """The roster entries of the staff who are not varied: they stay as configured."""
        varied = {TITLE[key] for key in self.vary}
        return tuple(
            e for e in self.config.shifts.roster if e.split()[0].rsplit("-", 1)[0] not in varied
        )

    def minimum(self, key: str) -> int:
        """The fewest of a staff key the config accepts (and the rules need)."""
        if key in ("porters", "cleaners"):
            return 1
        mix = self.config.arrivals.acuity_mix
        if key == "doctors" and self.config.rules.skills and (mix[0] or mix[1]):
            return 1
        return 0

    def with_staff(self, counts: Mapping[str, int], roster: Sequence[str] = ()) -> Config:
        """The config with these counts, the fixed staff's roster and `roster` added."""
        return self.config.replace(
            staff=dict(counts), shifts={"roster": list(self.fixed_roster()) + list(roster)}
        )


def resource_text(problem: Problem, resource: str, counts: Mapping[str, int] | None = None) -> str:
    """A resource as the analyst knows it: "the rooms (24)", "the medical staff (6 nurses +
    2 doctors)"."""
    counts = counts or problem.counts()
    if resource == "rooms":
        rooms = len(problem.config.hospital.floors) * problem.config.hospital.rooms_per_floor
        return f"the rooms ({rooms})"
    if resource == "medical":
        return f"the medical staff ({counts['nurses']} nurses + {counts['doctors']} doctors)"
    key = KEYS_OF[resource][0]
    return f"the {key} ({counts[key]})"


# --- judging a candidate ----------------------------------------------------------------------


@dataclass
class Evaluation:
    """A candidate staffing's runs and its figures over them: each a mean with its 95 %
    interval, for the whole window and for each hour of the day that had arrivals."""

    candidate: Any
    seeds: tuple[int, ...]
    records: list[dict[str, Any]]
    figures: dict[str, Interval] = field(default_factory=dict)
    late: dict[str, Interval] = field(default_factory=dict)  # the runs' second half
    by_hour: dict[int, dict[str, Interval]] = field(default_factory=dict)
    utilisation: dict[str, Interval] = field(default_factory=dict)

    @classmethod
    def of(cls, candidate: Any, seeds: tuple[int, ...], records: list[dict[str, Any]]):
        evaluation = cls(candidate, seeds, records)
        for metric in records[0]["figures"]:
            evaluation.figures[metric] = t_interval([r["figures"][metric] for r in records])
            evaluation.late[metric] = t_interval([r["late"][metric] for r in records])
        for role in ROLES:
            evaluation.utilisation[role] = t_interval([r["utilisation"][role] for r in records])
        for hour in range(24):
            rows = [r["by_hour"][hour] for r in records if r["by_hour"][hour]["arrivals"]]
            if rows:
                evaluation.by_hour[hour] = {
                    metric: t_interval([row[metric] for row in rows])
                    for metric in ("arrivals", *HOURLY_METRICS)
                }
        return evaluation

    def met(self, target: Target) -> bool:
        """Whether the target is met: on the whole window, and by its second half's mean
        (`Target.judged`)."""
        return target.met_by(self.figures[target.metric], self.late.get(target.metric))

    def judged(self, target: Target) -> float:
        return target.judged(self.figures[target.metric], self.late.get(target.metric))

    def rising(self, target: Target) -> bool:
        """Met over the whole window, missed by its second half: not settled."""
        return target.met_by(self.figures[target.metric]) and not self.met(target)

    def missed(self, targets: Iterable[Target]) -> list[Target]:
        return [t for t in targets if not self.met(t)]

    def meets(self, targets: Iterable[Target]) -> bool:
        return not self.missed(targets)

    def shortfall(self, targets: Iterable[Target]) -> float:
        return sum(t.shortfall(self.figures[t.metric], self.late.get(t.metric)) for t in targets)

    def slack(self, targets: Sequence[Target]) -> float:
        return min(
            (t.slack(self.figures[t.metric], self.late.get(t.metric)) for t in targets),
            default=math.inf,
        )


@dataclass(frozen=True)
class Settings:
    replications: int = 5
    hours: float | None = None  # judged, after the warm-up; None: 4 h, 3 days by the clock
    warmup_h: float | None = None  # None: an hour, or the longest stay if longer
    check_replications: int = 10
    policy: str | None = None  # None: the config's
    # By the clock: the shifts a roster may use (hours long; hours of the day they start)
    shift_lengths: tuple[int, ...] = (8, 12)
    shift_starts: tuple[int, ...] = tuple(range(24))


class Evaluator:
    """Runs candidates through a runner (same seeds for all: common random numbers) and
    keeps every evaluation, so that a candidate is never run twice."""

    def __init__(
        self,
        problem: Problem,
        settings: Settings,
        runner: Runner,
        overrides_of: Callable[[Any], dict[str, str]],
        on_batch: Callable[[int], None] | None = None,
    ):
        self.problem, self.settings, self.runner = problem, settings, runner
        self.overrides_of = overrides_of
        self.on_batch = on_batch
        self.hours = settings.hours or default_hours(problem.config)
        self.warmup_h = (
            settings.warmup_h if settings.warmup_h is not None else default_warmup_h(problem.config)
        )
        self.policy = settings.policy or problem.config.scheduler.policy
        self.cache: dict[tuple[Any, tuple[int, ...]], Evaluation] = {}
        self.runs = 0

    def seeds(self, fresh: bool = False) -> tuple[int, ...]:
        if fresh:
            return tuple(range(CHECK_SEED, CHECK_SEED + self.settings.check_replications))
        return tuple(range(1, self.settings.replications + 1))

    def evaluate(self, candidates: Sequence[Any], fresh: bool = False) -> list[Evaluation]:
        """Each candidate's evaluation; those not yet run go in one batch of jobs."""
        seeds = self.seeds(fresh)
        todo = list(dict.fromkeys(c for c in candidates if (c, seeds) not in self.cache))
        jobs = [
            StaffingJob(
                self.problem.scenario,
                self.policy,
                seed,
                self.hours,
                overrides=tuple(
                    sorted({**dict(self.problem.overrides), **self.overrides_of(c)}.items())
                ),
                warmup_h=self.warmup_h,
                candidate=n,
            )
            for n, c in enumerate(todo)
            for seed in seeds
        ]
        if jobs:
            records = self.runner.run(list(jobs), run_staffing_job)
            self.runs += len(jobs)
            for n, candidate in enumerate(todo):
                mine = [r for r in records if r["candidate"] == n]
                self.cache[candidate, seeds] = Evaluation.of(candidate, seeds, mine)
            if self.on_batch:
                self.on_batch(len(jobs))
        return [self.cache[c, seeds] for c in candidates]


def default_hours(config: Config) -> float:
    """Hours judged per run: three days when the arrivals follow the clock (each hour of
    the day three times, less noise in the figures of each hour), else 4."""
    return 72.0 if config.arrivals.process == "profile" else 4.0


def default_warmup_h(config: Config) -> float:
    """An hour, or as long as the longest stay if longer (the slowest treatment and a
    terminal cleaning, at their means, with every walk), in whole hours."""
    costs = room_costs(config)
    durations = config.durations
    longest_treatment = max((*durations.treatment_s_by_acuity, durations.treatment_s))
    longest_clean = max(durations.cleaning_s, durations.terminal_cleaning_s)
    walks = max((c.escort_in_s + c.escort_out_s for c in costs.values()), default=0.0)
    return float(max(1, math.ceil((longest_treatment + longest_clean + walks) / 3600)))


# --- what no staffing of the varied roles can do ------------------------------------------------


@dataclass(frozen=True)
class Infeasible:
    target: Target
    resource: str  # "rooms", or a role: what binds
    reason: str  # a sentence for the analyst
    hours: tuple[int, ...] = ()  # by the clock: the hours of the day it fails in (none: all)


def unlimited(problem: Problem, counts: Mapping[str, int] | None = None) -> dict[str, int]:
    """The counts with every varied key without limit."""
    base = dict(counts or problem.counts())
    return {key: UNLIMITED if key in problem.vary else base[key] for key in STAFF_KEYS}


def lp_bound(problem: Problem, counts: Mapping[str, int]) -> CapacityBound:
    return capacity_bound(problem.with_staff(counts))


@dataclass
class Neighbour:
    """A staffing one fewer of a key than the one found, and what it misses."""

    key: str
    evaluation: Evaluation
    missed: list[Target]


@dataclass
class Advice:
    problem: Problem
    settings: Settings
    hours: float
    warmup_h: float
    policy: str
    infeasible: list[Infeasible]
    staffing: dict[str, int] | None  # the whole staff (varied and fixed); None: none found
    search: Evaluation | None  # the staffing's figures on the search's seeds
    check: Evaluation | None  # ... and on fresh seeds
    neighbours: list[Neighbour]
    steps: list[dict[str, Any]]
    runs: int
    wall_s: float
    engine: str
    hourly: Any = None  # `staffing_hourly.HourlyAdvice` when staffed by the clock
