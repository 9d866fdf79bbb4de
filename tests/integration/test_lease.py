"""The scheduler's lease on a real (SQLite) database: one holder at a time, a standby takes an
expired lease with the next epoch, and a deposed holder's commit is refused whole."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from scheduler.config import load
from scheduler.db.lease import Lease, LeaseHeld, LeaseLost, process_alive
from scheduler.db.ledger import Ledger
from scheduler.db.models import Tick
from scheduler.db.store import connect
from scheduler.engine import Scheduler

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def url(tmp_path):
    url = f"sqlite:///{tmp_path / 'run.db'}"
    Ledger(url, load(None, {}), "greedy").close()  # migrated
    return url


def test_one_holder_then_the_standby_takes_the_expired_lease(url):
    a, b = Lease(connect(url), "A", lease_s=0.5), Lease(connect(url), "B", lease_s=0.5)
    assert a.wait(standby=False, stop=threading.Event()) and a.epoch == 1
    with pytest.raises(LeaseHeld, match="scheduler A .* is active .*--standby"):
        b.wait(standby=False, stop=threading.Event())
    assert b.try_acquire(take_own=False) is not None  # not while A renews
    a.renew()
    started = time.monotonic()
    assert b.wait(standby=True, stop=threading.Event())  # A stops renewing: expires
    assert 0.2 < time.monotonic() - started < 2
    assert b.epoch == 2
    with pytest.raises(LeaseLost, match="epoch 1 was taken over"):
        a.renew()
    assert a.epoch is None and not a.may_send()


@pytest.fixture
def process():
    """A process of this host to hold a lease under: alive until killed."""
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield sleeper
    sleeper.kill()
    sleeper.wait()


def held_by(url: str, holder: str, pid: int, host: str | None = None) -> Lease:
    """The lease taken by `holder` as if by the process `pid` (on `host`), for long."""
    lease = Lease(connect(url), holder, lease_s=60)
    lease.pid, lease.host = pid, host or lease.host
    assert lease.wait(standby=False, stop=threading.Event()) and lease.epoch == 1
    return lease


def test_a_restarted_scheduler_takes_its_own_lease_at_once(url, process):
    process.kill()
    process.wait()  # its process died (killed, crashed): its lease, of 60 s, still runs
    first = held_by(url, "A", process.pid)
    again = Lease(connect(url), "A")  # the same scheduler, restarted: no need to wait
    started = time.monotonic()
    assert again.wait(standby=False, stop=threading.Event()) and again.epoch == 2
    assert time.monotonic() - started < 1
    with pytest.raises(LeaseLost):
        first.renew()  # the earlier process, were it alive, is fenced off


def test_a_live_scheduler_under_the_same_id_keeps_its_lease(url, process):
    """Same id, same host, another pid that is alive: another scheduler, refused as
    active or as standby; once its process is gone, the lease is taken back at once."""
    first = held_by(url, "A", process.pid)
    second = Lease(connect(url), "A")
    for standby in (False, True):
        with pytest.raises(LeaseHeld, match=rf"pid {process.pid}\) is active .* under this one"):
            second.wait(standby=standby, stop=threading.Event())
    first.renew()  # still its lease
    process.kill()
    process.wait()
    assert second.wait(standby=False, stop=threading.Event()) and second.epoch == 2


def test_the_same_id_on_another_host_waits_for_its_lease_to_run_out(url):
    first = Lease(connect(url), "A", lease_s=0.5)
    first.host = "elsewhere"
    assert first.wait(standby=False, stop=threading.Event())
    second = Lease(connect(url), "A")
    with pytest.raises(LeaseHeld, match="on another host under this one's id"):
        second.wait(standby=False, stop=threading.Event())
    time.sleep(0.6)  # it stopped renewing
    assert second.wait(standby=False, stop=threading.Event()) and second.epoch == 2


def test_a_process_dead_and_not_yet_reaped_is_not_alive(process):
    assert process_alive(process.pid) and process_alive(os.getpid())
    process.kill()
    time.sleep(0.5)  # a zombie until its parent waits for it
    assert not process_alive(process.pid)
    process.wait()
    assert not process_alive(process.pid)


def test_released_lease_is_taken_at_once_and_a_stopped_standby_gives_up(url):
    a, b = Lease(connect(url), "A"), Lease(connect(url), "B")
    assert a.wait(standby=False, stop=threading.Event())
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    assert not b.wait(standby=True, stop=stop)  # A holds it: B gives up on stop
    a.release()
    assert b.try_acquire(take_own=False) is None and b.epoch == 2


def test_a_deposed_holders_commit_writes_nothing(url):
    config = load(None, {})
    ledger = Ledger(url, config, "greedy")
    ledger.start_run("run-1", 0.0, 1.0, {})
    ledger.lease = Lease(connect(url), "A", lease_s=0.3)
    assert ledger.lease.wait(standby=False, stop=threading.Event())
    scheduler = Scheduler(config)
    ledger.commit_ticks([(scheduler.tick(1, []), [])], {("in", 0): 5})
    assert Lease(connect(url), "B").wait(standby=True, stop=threading.Event())
    with pytest.raises(LeaseLost):
        ledger.commit_ticks([(scheduler.tick(2, []), [])], {("in", 0): 9})
    with Session(ledger.engine) as session:
        assert session.scalar(select(func.max(Tick.tick))) == 1
    assert ledger.offsets() == {("in", 0): 5}
    ledger.close()


def test_the_scheduler_command_refuses_a_fresh_standby_and_a_second_active(url, tmp_path):
    def scheduler(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "cli", "scheduler", "--db", url, *args],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            check=False,
            env={**os.environ, "PYTHONPATH": str(ROOT)},  # this checkout's code
        )

    done = scheduler("--standby", "--fresh")
    assert done.returncode == 2 and "--standby" in done.stderr and "Traceback" not in done.stderr
    held = Lease(connect(url), "other-host")
    assert held.wait(standby=False, stop=threading.Event())
    done = scheduler("--run-id", "r1", "--scheduler-id", "me")
    assert done.returncode == 2, done.stderr
    assert "scheduler other-host" in done.stderr and "--standby" in done.stderr
    assert "Traceback" not in done.stderr
