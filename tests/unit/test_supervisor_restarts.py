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


# --- a service that dies while it starts (issue 17, item 7) ------------------------------


class _Life:
    """One start of a fake service: what it writes to its log, and its exit code (None: it
    stays up)."""

    def __init__(self, log: bytes = b"", code: int | None = None):
        self.log, self.code = log, code


UP = b"2026-01-01 hospital.service: up: waiting for the run's clock in x.epoch\n"


@pytest.fixture
def lives(monkeypatch, clock):
    """Starts of `python -m cli ...` replaced by scripted lives, in order; the supervisor's
    sleeps advance the fake clock. Yields the list to fill, and gets each start's time."""
    scripted: list[_Life] = []
    starts: list[float] = []

    class FakeProcess:
        def __init__(self, args, stdout, **_):
            life = scripted.pop(0)
            stdout.write(life.log)
            self.code, self.pid = life.code, 4242
            starts.append(clock.now)

        def poll(self):
            return self.code

    monkeypatch.setattr(sup.subprocess, "Popen", FakeProcess)
    monkeypatch.setattr(sup.time, "sleep", lambda s: setattr(clock, "now", clock.now + s))
    yield scripted, starts


def starting(tmp_path, *names: str) -> sup.Supervisor:
    children = [sup.Child(name, [name], log_path=tmp_path / f"{name}.log") for name in names]
    supervisor = supervisor_of(children[0])
    supervisor.children = children
    for child in children:
        child.start()
    return supervisor


def test_a_service_killed_while_it_starts_is_started_again_after_its_delay(tmp_path, lives):
    scripted, starts = lives
    scripted += [_Life(UP), _Life(code=-9), _Life(UP)]  # the generator up; the scheduler
    supervisor = starting(tmp_path, "generator", "scheduler")  # killed, then up
    supervisor.wait_ready(timeout_s=180)
    scheduler = supervisor.children[1]
    assert scheduler.restarts == 1 and scheduler.failures == 1
    assert round(starts[2] - starts[1]) == 1  # the first delay of the backoff


def test_a_service_that_keeps_dying_at_start_fails_the_run_after_the_cap(tmp_path, lives):
    scripted, starts = lives
    scripted += [_Life(code=-9) for _ in range(1 + sup.MAX_RESTARTS)]
    supervisor = starting(tmp_path, "scheduler")
    with pytest.raises(sup.SupervisorError, match=r"scheduler keeps failing .8 times.*-9"):
        supervisor.wait_ready(timeout_s=180)
    gaps = [round(b - a) for a, b in itertools.pairwise(starts)]
    assert gaps == [1, 2, 4, 8, 16, 30, 30, 30]


def test_a_service_with_a_bad_configuration_ends_the_run_at_once_with_its_message(tmp_path, lives):
    scripted, starts = lives
    error = b"hospital: error: config: staff.porters: expected an integer, got 'x'\n"
    scripted += [_Life(b"some warning\n" + error, code=2)]
    supervisor = starting(tmp_path, "scheduler")
    with pytest.raises(sup.SupervisorError) as info:
        supervisor.wait_ready(timeout_s=180)
    message = str(info.value)
    assert message.startswith("scheduler exited at start (exit code 2): config: staff.porters")
    assert str(tmp_path / "scheduler.log") in message
    assert len(starts) == 1


def test_a_restarted_service_is_up_only_once_it_says_so_again(tmp_path, lives):
    scripted, _ = lives
    scripted += [_Life(UP, code=-9), _Life()]  # said it was up, and died; then silent
    supervisor = starting(tmp_path, "scheduler")
    with pytest.raises(sup.SupervisorError, match="scheduler not up after 180 s"):
        supervisor.wait_ready(timeout_s=180)
