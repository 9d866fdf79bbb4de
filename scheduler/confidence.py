"""Confidence intervals over replications: a figure's mean over the runs of seeds 1..N, and
the difference between two policies run on the same seeds.

    t_interval([20.1, 19.8, 20.6])                 # mean ± Student t half-width
    paired_difference({1: 3.0, 2: 2.5}, {1: 4.1, 2: 3.2})   # a - b, seed by seed
    welch_difference([...], [...])                 # a - b, the runs taken apart

**Paired, not apart.** With common random numbers (`scheduler/demand.py`) the two policies'
runs of one seed see the same patients with the same treatments, so most of what varies
from one seed to the next varies in both alike; the differences seed by seed cancel it,
and their interval is far narrower than Welch's over the two sets of runs taken apart.

With a single value there is no interval: `half_width` is None, which the tables show as
"n/a".
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

LEVEL = 0.95


def t_quantile(level: float, df: float) -> float:
    """The Student t quantile of a two-sided interval at `level` with `df` degrees."""
    from scipy.stats import t  # only for the bench and its tests: not on a run's path

    return float(t.ppf((1 + level) / 2, df))


@dataclass(frozen=True)
class Interval:
    mean: float
    half_width: float | None  # None: a single value, no interval
    n: int

    @property
    def low(self) -> float | None:
        return None if self.half_width is None else self.mean - self.half_width

    @property
    def high(self) -> float | None:
        return None if self.half_width is None else self.mean + self.half_width

    def as_dict(self) -> dict[str, float | int | None]:
        return {
            "mean": self.mean,
            "half_width": self.half_width,
            "low": self.low,
            "high": self.high,
            "n": self.n,
        }


def t_interval(values: Sequence[float], level: float = LEVEL) -> Interval:
    """The mean of `values` with a Student t interval: t(level, n - 1) * s / sqrt(n), s the
    sample standard deviation."""
    n = len(values)
    if n == 0:
        raise ValueError("no values: no mean")
    mean = statistics.fmean(values)
    if n == 1:
        return Interval(mean, None, 1)
    sd = statistics.stdev(values)
    half = t_quantile(level, n - 1) * sd / math.sqrt(n) if sd else 0.0
    return Interval(mean, half, n)


def paired_difference(
    a: Mapping[int, float], b: Mapping[int, float], level: float = LEVEL
) -> Interval:
    """The mean of a[seed] - b[seed] over the seeds both have, with its t interval."""
    seeds = sorted(a.keys() & b.keys())
    return t_interval([a[seed] - b[seed] for seed in seeds], level)


def welch_difference(a: Sequence[float], b: Sequence[float], level: float = LEVEL) -> Interval:
    """mean(a) - mean(b) with Welch's interval, the two samples taken as independent."""
    if not a or not b:
        raise ValueError("no values: no mean")
    mean = statistics.fmean(a) - statistics.fmean(b)
    if len(a) < 2 or len(b) < 2:
        return Interval(mean, None, min(len(a), len(b)))
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return Interval(mean, 0.0, min(len(a), len(b)))
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return Interval(mean, t_quantile(level, df) * se, min(len(a), len(b)))
