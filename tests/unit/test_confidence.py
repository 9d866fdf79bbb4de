"""Intervals over replications (`scheduler.confidence`), checked against hand-computed cases."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from scheduler.confidence import paired_difference, t_interval, welch_difference

# Student t quantiles at 97.5 %, from a printed table: 4 and 2 degrees of freedom.
T_4, T_2 = 2.776445, 4.302653


def test_a_t_interval_by_hand():
    # 1..5: mean 3, sample variance 10 / 4 = 2.5, standard error sqrt(2.5 / 5) = sqrt(0.5)
    interval = t_interval([1.0, 2.0, 3.0, 4.0, 5.0])
    assert interval.mean == 3.0 and interval.n == 5
    assert interval.half_width == pytest.approx(T_4 * math.sqrt(0.5), rel=1e-6)  # 1.963243
    assert interval.low == pytest.approx(3 - 1.963243, abs=1e-5)
    assert interval.high == pytest.approx(3 + 1.963243, abs=1e-5)


def test_equal_values_have_an_interval_of_width_0_and_one_value_none():
    assert t_interval([4.0, 4.0, 4.0]).half_width == 0.0
    one = t_interval([4.0])
    assert (one.mean, one.half_width, one.low, one.high, one.n) == (4.0, None, None, None, 1)
    assert one.as_dict() == {"mean": 4.0, "half_width": None, "low": None, "high": None, "n": 1}


def test_a_paired_difference_by_hand():
    # seed by seed: 10 - 9, 12 - 11, 14 - 14 = 1, 1, 0: mean 2/3, variance 1/3, se 1/3;
    # seed 4 ran under one policy only and is left out
    a = {1: 10.0, 2: 12.0, 3: 14.0, 4: 99.0}
    b = {1: 9.0, 2: 11.0, 3: 14.0}
    interval = paired_difference(a, b)
    assert interval.n == 3
    assert interval.mean == pytest.approx(2 / 3)
    assert interval.half_width == pytest.approx(T_2 / 3, rel=1e-6)  # 1.434218


def test_welch_is_scipys_unequal_variance_interval():
    a, b = [1.0, 2.0, 3.0, 5.0], [2.0, 4.0, 6.0]
    interval = welch_difference(a, b)
    expected = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert interval.low == pytest.approx(expected.low)
    assert interval.high == pytest.approx(expected.high)
    assert welch_difference([1.0], [2.0, 3.0]).half_width is None


def test_pairing_cancels_what_the_seeds_share():
    # Two policies on five seeds: the seeds differ a lot, the policies by about 1 on each.
    base = [100.0, 140.0, 90.0, 180.0, 120.0]
    a = {seed: value + 1.0 + 0.1 * seed for seed, value in enumerate(base, 1)}
    b = dict(enumerate(base, 1))
    paired = paired_difference(a, b)
    apart = welch_difference(list(a.values()), list(b.values()))
    assert paired.mean == pytest.approx(apart.mean)
    assert paired.half_width is not None and apart.half_width is not None
    assert paired.half_width < apart.half_width / 100
