"""The supervisor's restart policy: exponential backoff, a count of failures in a row that a
stable run resets, and a cap (scheduler/distributed/supervisor.py)."""

from __future__ import annotations

import itertools

import pytest

from scheduler.distributed import supervisor as sup


class _Exited:
    def __init__(self, code: int | None):
        self.code = code

    def poll(self) -> int | None:
        return self.code


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = _Clock()
    monkeypatch.setattr(sup.time, "monotonic", fake)
    return fake


def failing_child(monkeypatch, clock, starts: list[float]) -> sup.Child:
    """A child that exits with 3 as soon as it is started; `starts` gets each start's time."""

    def start(child: sup.Child) -> None:
        child.started_at, child.restart_at = clock.now, None
        child.process = _Exited(3)
        starts.append(clock.now)

    monkeypatch.setattr(sup.Child, "start", start)
    child = sup.Child("scheduler", [])
    child.start()
    return child


def supervisor_of(child: sup.Child) -> sup.Supervisor:
    return sup.Supervisor(
        config=None,
        config_path=None,
        db_url="",
        duration_ms=0,
        speed=1,
        seed=None,
        workers={},
        log_dir=None,
        children=[child],
    )


def test_delays_double_up_to_a_cap():
    assert [sup.restart_delay(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 30, 30, 30]


def test_restarts_wait_their_delay_then_the_run_fails_after_the_cap(monkeypatch, clock):
    starts: list[float] = []
    child = failing_child(monkeypatch, clock, starts)
    supervisor = supervisor_of(child)
    with pytest.raises(sup.SupervisorError, match="keeps failing .8 times in a row"):
        for _ in range(10_000):
            supervisor.watch()
            clock.now += 0.25
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert len(starts) == 1 + sup.MAX_RESTARTS
    assert [round(g) for g in gaps] == [1, 2, 4, 8, 16, 30, 30, 30]


def test_a_service_up_long_enough_starts_counting_again(monkeypatch, clock):
    starts: list[float] = []
    child = failing_child(monkeypatch, clock, starts)
    supervisor = supervisor_of(child)
    for _ in range(3):  # three failures in a row: 1 s, 2 s, then 4 s
        supervisor.watch()
        while child.restart_at is not None:
            clock.now += 0.25
            supervisor.watch()
    assert child.failures == 3
    child.process = _Exited(None)  # this one stays up...
    clock.now += sup.STABLE_S
    supervisor.watch()
    child.process = _Exited(137)  # ...a minute, then dies
    supervisor.watch()
    assert child.failures == 1 and child.restart_at == pytest.approx(clock.now + 1)
