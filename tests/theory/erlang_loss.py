"""The exact referral rate of a hospital whose rooms are a time-varying Erlang loss system.

With staff to spare, no walking, no cleaning and exponential treatments, each room is held
from a patient's admission to their release for an exponential time, and an arrival who
finds every room held is referred: an M(t)/M/c/c queue. The number of rooms held is a
birth-death chain whose distribution p_n(t) (n = 0..c) follows the Kolmogorov forward
equations

    p_n' = lam(t) p_{n-1} - (lam(t) + n mu) p_n + (n + 1) mu p_{n+1}     (0 < n < c)
    p_0' = -lam(t) p_0 + mu p_1,     p_c' = lam(t) p_{c-1} - c mu p_c

and an arrival at time t is referred with probability p_c(t) (Poisson arrivals see the
chain as it is: PASTA). So the expected referrals of an hour are the integral of
lam(t) p_c(t) over it, and its referral rate that divided by the integral of lam(t).

    rates = [2, 2, ..., 14, ...]               # 24 hourly rates, as `[arrivals] rates_per_hour`
    day = periodic_day(rates, mean_hold_s=2700, rooms=8)
    day.referral_rate[10]                      # the share of 10:00-11:00's arrivals referred
    erlang_b(rooms=8, load=6.0)                # the stationary answer, for a constant rate

The rate here is constant within each hour, as the profile process's is, so the solver
integrates hour by hour (never across a jump of the rate, where an adaptive step would
lose accuracy) and carries the expected referrals along as one more component of the
state. Starting empty, it repeats the day until the distribution at midnight no longer
changes: the periodic regime a long simulation settles into.

A test oracle, kept with the tests: the scheduler has no use for it (its capacity bound
is a linear program over every role; this is the rooms' queue alone, under assumptions a
real hospital never meets).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.integrate import solve_ivp

HOUR_S = 3600.0


def erlang_b(rooms: int, load: float) -> float:
    """Erlang's loss formula: the stationary share of arrivals referred, `load` being the
    offered load in rooms (arrival rate x mean hold), by its stable recursion
    B(0) = 1, B(n) = a B(n-1) / (n + a B(n-1))."""
    blocking = 1.0
    for n in range(1, rooms + 1):
        blocking = load * blocking / (n + load * blocking)
    return blocking


def _forward_equations(rate_per_h: float, hold_rate_per_h: float, rooms: int):
    """The right-hand side of the forward equations with the rate lam of one hour, and the
    expected referrals so far (lam p_c) as the last component."""
    n = np.arange(rooms + 1)
    departures = n * hold_rate_per_h  # n mu: out of state n

    def derivative(_t: float, state: np.ndarray) -> np.ndarray:
        p = state[:-1]
        change = np.empty_like(state)
        flow_in_from_below = rate_per_h * p[:-1]  # n-1 -> n
        flow_down = departures[1:] * p[1:]  # n -> n-1
        change[:-1] = -(rate_per_h * (n < rooms) + departures) * p
        change[1:-1] += flow_in_from_below
        change[:-2] += flow_down
        change[-1] = rate_per_h * p[-1]  # arrivals referred: those that find c held
        return change

    return derivative


def _hour(p: np.ndarray, rate_per_h: float, hold_rate_per_h: float) -> tuple[np.ndarray, float]:
    """The distribution one hour on, and the expected referrals during the hour."""
    rooms = len(p) - 1
    solution = solve_ivp(
        _forward_equations(rate_per_h, hold_rate_per_h, rooms),
        (0.0, 1.0),
        np.append(p, 0.0),
        method="DOP853",
        rtol=1e-10,
        atol=1e-13,
    )
    if not solution.success:
        raise ArithmeticError(f"the forward equations did not integrate: {solution.message}")
    end = solution.y[:, -1]
    return end[:-1], float(end[-1])


@dataclass(frozen=True)
class PeriodicDay:
    """The periodic regime: by hour of the day, the expected arrivals and referrals, and
    the referral rate (their ratio; 0 in an hour without arrivals); the distribution of
    rooms held at midnight; and how many days it took to settle."""

    arrivals: tuple[float, ...]
    referrals: tuple[float, ...]
    at_midnight: tuple[float, ...]
    days: int

    @property
    def referral_rate(self) -> tuple[float, ...]:
        return tuple(r / a if a else 0.0 for r, a in zip(self.referrals, self.arrivals))

    def daily_referral_rate(self) -> float:
        return sum(self.referrals) / sum(self.arrivals)


def periodic_day(
    rates_per_hour: Sequence[float],
    mean_hold_s: float,
    rooms: int,
    *,
    tolerance: float = 1e-12,
    max_days: int = 1000,
) -> PeriodicDay:
    """Integrate the forward equations day after day, from an empty hospital, until the
    distribution at midnight moves by less than `tolerance` (largest change of any p_n)
    in a day; that day is the answer."""
    if rooms < 1 or mean_hold_s <= 0 or not rates_per_hour or min(rates_per_hour) < 0:
        raise ValueError("need at least one room, a positive mean hold and rates >= 0")
    hold_rate_per_h = HOUR_S / mean_hold_s
    p = np.zeros(rooms + 1)
    p[0] = 1.0
    for day in range(1, max_days + 1):
        start = p
        referrals = []
        for rate in rates_per_hour:
            p, referred = _hour(p, rate, hold_rate_per_h)
            referrals.append(referred)
        if np.max(np.abs(p - start)) < tolerance:
            return PeriodicDay(tuple(rates_per_hour), tuple(referrals), tuple(p), day)
    raise ArithmeticError(f"not periodic within {max_days} days")
