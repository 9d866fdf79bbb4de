"""Objective terms are integers: time is counted in tenths of a second."""

UNIT_MS = 100


def per_second(ms: int, weight: float) -> int:
    """`weight` per second of `ms`, in objective units."""
    return round(ms * weight / UNIT_MS)
