"""The targets of `hospital staff`: "referral<5%", "wait.cleaner.p95<10m", read and judged.

    target = parse("wait.cleaner.p95<10m")    # Target("wait.cleaner.p95", 600.0, ...)
    target.met_by(interval)                   # the upper end of its 95 % interval below 600 s

Every figure a target may name is one where less is better, so a target is an upper bound:
`<` or `<=`. The figures (`METRICS`) are those of the KPI report, measured over a run less
its warm-up (`scheduler/staffing.py`):

    referral                  share of arrivals referred (0.05 or 5%)
    wait.ROLE.mean|p95        wait of ROLE's tasks (porter, medical, cleaner), in seconds
    time_in_system            mean time from arrival to exit of the patients who left, s
    sla_breaches              share of the tasks that waited past their target wait ([sla])
    referral.esiN             share of ESI N arrivals referred
    wait.esiN.mean|p95        wait of the tasks of ESI N patients (every role), s
    wait.medical.esiN.mean|p95  wait of ESI N patients for their visit, s

A duration may carry a unit (`90s`, `10m`, `2h`; seconds without one), a share a `%`.

**Met.** A target is met when the *upper end* of the 95 % Student t interval of its mean
over the replications is below it (at or below, for `<=`): the staffing meets it on
average with 97.5 % confidence (one-sided), not just in the runs that happened to be drawn.
With one replication there is no interval, and the mean is judged. Where the runs' second
half is given (`late`), its mean must be below the target too: a figure still rising at the
end of the runs (a queue that has not settled) is judged on where it has got to, not on an
average that its early, emptier hours flatter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from scheduler.confidence import Interval

ROLES = ("porter", "medical", "cleaner")
LEVELS = (1, 2, 3, 4, 5)
SHARES = ("referral", "sla_breaches") + tuple(f"referral.esi{n}" for n in LEVELS)
METRICS: tuple[str, ...] = (
    "referral",
    *(f"wait.{role}.{stat}" for role in ROLES for stat in ("mean", "p95")),
    "time_in_system",
    "sla_breaches",
    *(f"referral.esi{n}" for n in LEVELS),
    *(f"wait.esi{n}.{stat}" for n in LEVELS for stat in ("mean", "p95")),
    *(f"wait.medical.esi{n}.{stat}" for n in LEVELS for stat in ("mean", "p95")),
)
# What a figure of each hour of the day is measured for (the KPI report's `by_hour`): the
# per-hour staffing judges these in every hour, the others over the whole run.
HOURLY_METRICS = ("referral", *(f"wait.{role}.mean" for role in ROLES))

_TARGET = re.compile(r"^\s*([a-z0-9_.]+)\s*(<=|<|>=|>|=)\s*([^\s]+)\s*$")
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
_NUMBER = re.compile(r"^([0-9]*\.?[0-9]+(?:e-?[0-9]+)?)(%|s|m|min|h)?$")


class TargetError(ValueError):
    """A target that cannot be read; the message says why, in one line."""


@dataclass(frozen=True)
class Target:
    metric: str
    bound: float
    inclusive: bool = False  # `<=` rather than `<`

    @property
    def text(self) -> str:
        return f"{self.metric} {'<=' if self.inclusive else '<'} {show(self.metric, self.bound)}"

    @property
    def role(self) -> str | None:
        """The role whose wait the target is about (None: no single role's)."""
        parts = self.metric.split(".")
        return parts[1] if parts[0] == "wait" and parts[1] in ROLES else None

    @property
    def hourly(self) -> bool:
        return self.metric in HOURLY_METRICS

    def below(self, value: float) -> bool:
        return value <= self.bound if self.inclusive else value < self.bound

    def judged(self, interval: Interval, late: Interval | None = None) -> float:
        """The figure the target is judged on: the upper end of the interval (the mean with
        no interval), or the mean of the runs' second half if that is higher."""
        value = interval.mean if interval.high is None else interval.high
        return value if late is None else max(value, late.mean)

    def met_by(self, interval: Interval, late: Interval | None = None) -> bool:
        return self.below(self.judged(interval, late))

    def shortfall(self, interval: Interval, late: Interval | None = None) -> float:
        """How far the judged figure is past the bound, relative to it (0 when met)."""
        value = self.judged(interval, late)
        if self.below(value):
            return 0.0
        excess = max(value - self.bound, 0.0)
        return excess / self.bound if self.bound > 0 else excess + 1.0

    def slack(self, interval: Interval, late: Interval | None = None) -> float:
        """How far below the bound the judged figure is, relative to it."""
        room = self.bound - self.judged(interval, late)
        return room / self.bound if self.bound > 0 else room


def parse(text: str) -> Target:
    """A target such as "referral<0.05", "referral<5%", "wait.cleaner.p95<10m"."""
    match = _TARGET.match(text.lower())
    if not match:
        raise TargetError(f"--target {text!r}: expected METRIC<VALUE, e.g. referral<0.05")
    metric, operator, value = match.groups()
    if metric not in METRICS:
        raise TargetError(f"--target {text!r}: unknown figure {metric!r} (known: {known()})")
    if operator not in ("<", "<="):
        raise TargetError(
            f"--target {text!r}: a target is an upper bound (< or <=): less is better "
            "in every figure"
        )
    number = _NUMBER.match(value)
    if not number:
        raise TargetError(f"--target {text!r}: {value!r} is not a number")
    amount, unit = float(number.group(1)), number.group(2) or ""
    if metric in SHARES:
        if unit not in ("", "%"):
            raise TargetError(f"--target {text!r}: {metric} is a share: 0.05 or 5%")
        bound = amount / 100 if unit == "%" else amount
    else:
        if unit == "%":
            raise TargetError(f"--target {text!r}: {metric} is in seconds (90s, 10m, 2h)")
        bound = amount * _UNITS[unit]
    return Target(metric, bound, operator == "<=")


def known() -> str:
    """The figures a target may name, briefly: the ESI ones as patterns."""
    plain = [m for m in METRICS if "esi" not in m]
    return ", ".join(
        plain + ["referral.esiN", "wait.esiN.mean|p95", "wait.medical.esiN.mean|p95 (N 1-5)"]
    )


def show(metric: str, value: float | None) -> str:
    """A figure as a person reads it: a share in %, a time in seconds."""
    if value is None:
        return "n/a"
    if metric in SHARES:
        return f"{value:.2%}"
    return f"{value:,.1f} s" if abs(value) < 1000 else f"{value:,.0f} s"


def show_interval(metric: str, interval: Interval) -> str:
    """mean ± half-width, in the metric's unit."""
    if interval.half_width is None:
        return show(metric, interval.mean)
    if metric in SHARES:
        return f"{interval.mean:.2%} ± {interval.half_width:.2%}"
    return f"{show(metric, interval.mean)} ± {show(metric, interval.half_width)}"
