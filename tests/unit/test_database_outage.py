"""LiveScheduler.serve: a database error is waited out, but one that keeps coming back while
the database answers (no tick committed between two recoveries) ends the process (exit 3)."""

from __future__ import annotations

import threading

import pytest

from scheduler.db.store import StoreError
from scheduler.distributed import scheduler_service as service


class _Ledger:
    def __init__(self) -> None:
        self.tick = 7

    def last_tick(self) -> int:
        return self.tick


class _Scheduler:
    last_tick = 7


def live(monkeypatch, ticks_between: int) -> tuple[service.LiveScheduler, list[int]]:
    live = service.LiveScheduler.__new__(service.LiveScheduler)
    live.ledger, live.stop, live.scheduler = _Ledger(), threading.Event(), _Scheduler()
    runs: list[int] = []

    def run() -> None:
        runs.append(1)
        live.ledger.tick += ticks_between  # what the run committed before failing
        if len(runs) < 20:
            raise StoreError("database write failed: server closed the connection")

    def recover(error) -> None:
        live.scheduler.last_tick = live.ledger.tick

    monkeypatch.setattr(live, "run", run)
    monkeypatch.setattr(live, "recover_database", recover)
    return live, runs


def test_failures_between_which_ticks_are_committed_are_outages(monkeypatch):
    scheduler, runs = live(monkeypatch, ticks_between=1)
    scheduler.serve()
    assert len(runs) == 20


def test_a_failure_that_comes_back_without_progress_ends_the_process(monkeypatch):
    scheduler, runs = live(monkeypatch, ticks_between=0)
    with pytest.raises(StoreError, match="server closed"):
        scheduler.serve()
    assert len(runs) == 1 + service.MAX_RECOVERIES_WITHOUT_PROGRESS
