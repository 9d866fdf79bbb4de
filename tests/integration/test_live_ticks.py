"""The live scheduler's ticks, without a broker: what it does with the events it has read
(duplicates, events it cannot parse, events a tick raises on, events from the future), and
which run it serves. The ledger is SQLite; the end-to-end tests run the same code on
PostgreSQL and Kafka."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from kafka import TopicPartition
from sqlalchemy.orm import Session

from scheduler import events as ev
from scheduler.config import Config
from scheduler.db import kept_runs
from scheduler.db.lease import lease_status
from scheduler.db.ledger import Ledger
from scheduler.distributed import bus
from scheduler.distributed.clock import LiveClock
from scheduler.distributed.scheduler_service import (
    LiveScheduler,
    Pending,
    RunChoiceError,
    resolve_run,
    restore,
)
from scheduler.engine import Scheduler
from scheduler.hospital import Hospital
from scheduler.problem import Infeasible
from scheduler.simulation import arrivals
from scheduler.validator import InvariantViolation

ROOT = Path(__file__).resolve().parents[2]
RUN = "run-live"


@pytest.fixture
def config() -> Config:
    return Config()


@pytest.fixture
def live(config, tmp_path):
    ledger = Ledger(f"sqlite:///{tmp_path / 'run.db'}", config, config.scheduler.policy)
    ledger.start_run(RUN, 0.0, 1.0, {("inbound", 0): 0})
    scheduler = LiveScheduler(config, ledger, run_id=RUN, clock=LiveClock(0.0, 1.0))
    scheduler.scheduler = Scheduler(config)
    yield scheduler
    ledger.close()


def first_arrivals(config: Config, up_to_ms: int) -> list[ev.PatientArrived]:
    return list(
        itertools.takewhile(lambda a: a.time_ms <= up_to_ms, arrivals(config, config.arrivals.seed))
    )


class Feeder:
    """Hands events to `LiveScheduler.tick` as if read from one partition."""

    def __init__(self, live: LiveScheduler):
        self.live, self.offset = live, 0

    def __call__(self, events: list[ev.Event], boundary: int, dead: list | None = None) -> None:
        self.offset += len(events) + len(dead or [])
        self.live.tick(
            boundary, Pending(list(events), list(dead or []), {("inbound", 0): self.offset})
        )


def applied_at(ledger: Ledger) -> dict[str, int]:
    """Event id -> the tick that applied it (an event applied twice fails here)."""
    seen: dict[str, int] = {}
    for tick, inbound, _ in ledger.history():
        for event in inbound:
            assert event.event_id not in seen, f"{event.event_id} applied twice"
            seen[event.event_id] = tick
    return seen


def dead_letters(ledger: Ledger) -> list[dict]:
    import json

    return [json.loads(m.payload) for m in ledger.unpublished(limit=100_000) if m.dead_letter]


def same_state(a: Scheduler, b: Scheduler) -> bool:
    return (
        a.last_tick,
        sorted(a.seen),
        a.hospital.rooms,
        a.hospital.staff,
        a.hospital.tasks,
        list(a.hospital.waiting),
        a.hospital.patients,
    ) == (
        b.last_tick,
        sorted(b.seen),
        b.hospital.rooms,
        b.hospital.staff,
        b.hospital.tasks,
        list(b.hospital.waiting),
        b.hospital.patients,
    )


# --- duplicates ----------------------------------------------------------------------------


def test_resent_old_events_neither_make_ticks_nor_delay_the_next_arrival(live, config):
    """A restarted generator re-sends every arrival since time 0: 61 of them, read together
    with the next real arrival, must not move the tick (it was moved to 361, and the next
    arrival decided 57 s late)."""
    feed = Feeder(live)
    sent = first_arrivals(config, 305_000)
    old, new = sent[:-1], sent[-1]
    assert len(old) == 61 and new.time_ms == 305_000
    for arrival in old:
        feed([arrival], arrival.time_ms // 1000)
    assert live.scheduler.last_tick == 300
    feed([*old, new], 305)
    where = applied_at(live.ledger)
    assert where[new.event_id] == 305, f"decided at tick {where[new.event_id]}, not 305"
    assert [tick for tick, _, _ in live.ledger.history(300)] == [305]
    assert live.counters["duplicates"] == 61
    assert dead_letters(live.ledger) == []  # a duplicate is dropped, not dead-lettered


def test_an_event_read_twice_in_one_batch_is_applied_once(live, config):
    feed = Feeder(live)
    arrival = first_arrivals(config, 0)[0]
    feed([arrival, arrival], 1)
    assert applied_at(live.ledger) == {arrival.event_id: 0}


def test_late_events_join_the_next_tick_instead_of_making_ticks_of_their_own(live, config):
    feed = Feeder(live)
    sent = first_arrivals(config, 100_000)
    feed(sent[-1:], 100)
    feed(sent[:-1], 101)  # 20 arrivals stamped in the past, delivered late
    assert set(applied_at(live.ledger).values()) == {100, 101}


# --- what cannot be applied ----------------------------------------------------------------


def message(value: bytes, offset: int) -> SimpleNamespace:
    return SimpleNamespace(value=value, key=b"k", offset=offset, headers=bus.headers(RUN, "test"))


def test_a_message_the_parser_chokes_on_is_dead_lettered_and_counted(live, config, monkeypatch):
    """Any exception out of the parser (`"time": Infinity` raised OverflowError, not
    BadEvent) dead-letters the message: it used to crash the scheduler at every restart."""
    infinity = (
        b'{"type": "patient.arrived", "event_id": "x", "time": Infinity, '
        b'"patient_id": "p", "acuity": 3}'
    )
    parse = ev.parse_json

    def fragile(value, *args):
        if value == b"boom":
            raise RuntimeError("the parser broke")
        return parse(value, *args)

    monkeypatch.setattr(ev, "parse_json", fragile)
    arrival = first_arrivals(config, 0)[0]
    pending = Pending([], [], {})
    tp = TopicPartition("inbound", 0)
    live._take(
        pending, {tp: [message(infinity, 0), message(b"boom", 1), message(bus.encode(arrival), 2)]}
    )
    assert [e.event_id for e in pending.events] == [arrival.event_id]
    assert live.tick(1, pending)
    letters = dead_letters(live.ledger)
    assert [x["message"] for x in letters] == [infinity.decode(), "boom"]
    assert "RuntimeError" in letters[1]["reason"] and letters[0]["reason"]
    assert live.counters["dead_lettered"] == 2
    assert live.ledger.offsets()[("inbound", 0)] == 3
    assert applied_at(live.ledger) == {arrival.event_id: 0}


def test_a_tick_that_raises_dead_letters_the_event_that_makes_it_and_goes_on(
    live, config, monkeypatch
):
    feed = Feeder(live)
    sent = first_arrivals(config, 100_000)
    for arrival in sent[:5]:
        feed([arrival], arrival.time_ms // 1000)
    culprit = ev.PatientArrived("arrival-bad", sent[5].time_ms, "patient-bad", acuity=3)
    apply = Hospital.apply

    def apply_then_break(self, event, effects):
        apply(self, event, effects)  # the state changes, then the tick fails
        if event.event_id == culprit.event_id:
            raise InvariantViolation(f"{event.event_id} breaks the hospital")

    monkeypatch.setattr(Hospital, "apply", apply_then_break)
    feed([sent[5], culprit], 26)  # one tick, 25: one event of it is bad
    feed([sent[6]], 31)
    where = applied_at(live.ledger)
    assert where[sent[5].event_id] == 25 and where[sent[6].event_id] == 30
    assert culprit.event_id not in where
    [letter] = dead_letters(live.ledger)
    assert culprit.event_id in letter["message"]
    assert "InvariantViolation" in letter["reason"] and "breaks the hospital" in letter["reason"]
    assert live.counters["failed_ticks"] == 1
    # What was committed replays to the state in memory: no trace of the failed try.
    monkeypatch.setattr(Hospital, "apply", apply)
    assert same_state(restore(config, live.ledger), live.scheduler)


def test_a_tick_that_raises_whatever_its_events_dead_letters_them_all_and_goes_on(
    live, config, monkeypatch
):
    feed = Feeder(live)
    sent = first_arrivals(config, 100_000)
    feed(sent[:1], 0)
    decide = Hospital.decide

    def infeasible_at_20s(self, solution, effects, now_ms, problem):
        if now_ms == 20_000:
            raise Infeasible("no solution at 20 s")
        return decide(self, solution, effects, now_ms, problem)

    monkeypatch.setattr(Hospital, "decide", infeasible_at_20s)
    together = [
        ev.PatientArrived(f"arrival-x{n}", 20_000, f"patient-x{n}", acuity=3) for n in range(3)
    ]
    feed(together, 20)
    feed(sent[5:6], 25)
    where = applied_at(live.ledger)
    assert set(where) == {sent[0].event_id, sent[5].event_id}
    letters = dead_letters(live.ledger)
    assert sorted(x["message"] for x in letters) == sorted(bus.encode(a).decode() for a in together)
    assert all("Infeasible" in x["reason"] for x in letters)
    assert live.ledger.last_tick() == 25
    monkeypatch.setattr(Hospital, "decide", decide)
    assert same_state(restore(config, live.ledger), live.scheduler)


def test_an_event_stamped_far_ahead_of_the_clock_is_dead_lettered_not_a_tick(live, config):
    feed = Feeder(live)
    arrival = first_arrivals(config, 0)[0]
    future = ev.PatientArrived("arrival-future", 10**12, "patient-future", acuity=3)
    feed([arrival, future], 10)
    assert live.ledger.last_tick() <= 10
    [letter] = dead_letters(live.ledger)
    assert "arrival-future" in letter["message"] and "ahead" in letter["reason"]


# --- which run ---------------------------------------------------------------------------


def commit_some_ticks(ledger: Ledger, config: Config, count: int) -> None:
    scheduler = Scheduler(config)
    for arrival in first_arrivals(config, (count - 1) * 5_000):
        ledger.commit_ticks([(scheduler.tick(arrival.time_ms // 1000, [arrival]), [])], {})


def test_a_new_run_id_keeps_the_run_the_database_held(config, tmp_path):
    ledger = Ledger(f"sqlite:///{tmp_path / 'run.db'}", config, config.scheduler.policy)
    try:
        ledger.start_run("run-a", 100.0, 2.0, {("inbound", 0): 0})
        commit_some_ticks(ledger, config, 7)
        run_id, clock, new, until_ms = resolve_run(ledger, "run-b", 500.0, None, fresh=False)
        assert (run_id, clock.epoch_s, clock.speed, new, until_ms) == (
            "run-b",
            500.0,
            1.0,
            True,
            None,
        )
        ledger.start_run("run-b", clock.epoch_s, clock.speed, {("inbound", 0): 9})
        assert ledger.current_run().run_id == "run-b" and ledger.last_tick() == -1
        kept = kept_runs.find(ledger.engine, "run-a")
        assert kept is not None and kept.status == "replaced" and kept.started_at == 100.0
        assert len(list(kept_runs.history(ledger.engine, "run-a"))) == 7
        # a third run keeps the second beside the first
        ledger.start_run("run-c", 0.0, 1.0, {})
        assert {r.run_id for r in kept_runs.runs(ledger.engine)} == {"run-a", "run-b"}
    finally:
        ledger.close()


def test_a_resumed_run_keeps_its_clock_and_the_run_id_defaults_to_it(config, tmp_path):
    ledger = Ledger(f"sqlite:///{tmp_path / 'run.db'}", config, config.scheduler.policy)
    try:
        with pytest.raises(RunChoiceError, match="no run"):
            resolve_run(ledger, None, None, None, fresh=False)
        ledger.start_run("run-a", 1234.5, 40.0, {})
        for run_id, epoch, speed in (
            (None, None, None),
            ("run-a", None, None),
            ("run-a", 1234.5, 40.0),
        ):
            found, clock, new, _ = resolve_run(ledger, run_id, epoch, speed, fresh=False)
            assert (found, clock.epoch_s, clock.speed, new) == ("run-a", 1234.5, 40.0, False)
        with pytest.raises(RunChoiceError, match="--epoch 1234.5"):
            resolve_run(ledger, "run-a", 999.0, None, fresh=False)
        with pytest.raises(RunChoiceError, match="--speed 40.0"):
            resolve_run(ledger, None, None, 10.0, fresh=False)
    finally:
        ledger.close()


def test_a_resumed_run_ends_when_it_was_to_end_whatever_the_scheduler_is_told(config, tmp_path):
    """The run's end is stored with it: a scheduler that resumes it (a restart, a standby)
    without --until-ms ends it then; one with another --until-ms is refused, naming both; a
    run stored without an end takes the one given, once."""
    ledger = Ledger(f"sqlite:///{tmp_path / 'run.db'}", config, config.scheduler.policy)
    try:
        ledger.start_run("run-a", 1234.5, 40.0, {}, until_ms=30_000)
        for run_id, until_ms in ((None, None), ("run-a", None), ("run-a", 30_000)):
            assert resolve_run(ledger, run_id, None, None, False, until_ms).until_ms == 30_000
        with pytest.raises(RunChoiceError, match="has --until-ms 30000, not 60000"):
            resolve_run(ledger, None, None, None, False, 60_000)
        assert resolve_run(ledger, "run-a", None, None, True, 60_000).until_ms == 60_000  # fresh

        ledger.start_run("run-b", 1234.5, 40.0, {})  # no end
        assert resolve_run(ledger, None, None, None, False, None).until_ms is None
        assert resolve_run(ledger, None, None, None, False, 45_000).until_ms == 45_000
        ledger.end_run_at("run-b", 45_000)
        ledger.end_run_at("run-b", 50_000)  # it has one now: kept
        assert ledger.current_run().until_ms == 45_000
        with pytest.raises(RunChoiceError, match="has --until-ms 45000, not 50000"):
            resolve_run(ledger, None, None, None, False, 50_000)
    finally:
        ledger.close()


def hospital_cli(*args: str, **extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOSPITAL_")}
    env.update(extra)
    env["KAFKA_BOOTSTRAP_SERVERS"] = "127.0.0.1:1"  # nobody: it must not get that far
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def test_the_scheduler_command_refuses_a_clock_other_than_its_runs(config, tmp_path):
    url = f"sqlite:///{tmp_path / 'run.db'}"
    done = hospital_cli("scheduler", "--db", url)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "hospital: error: the database holds no run to resume: give --run-id to start one"
    )
    assert "Traceback" not in done.stderr
    ledger = Ledger(url, config, config.scheduler.policy)
    ledger.start_run("run-a", 1234.5, 40.0, {})
    ledger.close()
    done = hospital_cli("scheduler", "--db", url, "--epoch", "99")
    assert done.returncode == 2, done.stderr
    assert "run run-a in the database has --epoch 1234.5, not 99.0" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("run_id", ["r" * 65, "two\nlines", "a b"])
def test_the_services_refuse_a_run_id_that_cannot_be_kept_in_one_line(config, tmp_path, run_id):
    url = f"sqlite:///{tmp_path / 'run.db'}"
    ledger = Ledger(url, config, config.scheduler.policy)
    ledger.start_run("run-a", 1234.5, 40.0, {})
    commit_some_ticks(ledger, config, 3)
    ledger.close()
    for command in (
        ["scheduler", "--db", url, "--run-id", run_id],
        ["generator", "--run-id", run_id],
        ["worker", "porter", "--run-id", run_id],
    ):
        done = hospital_cli(*command)
        assert done.returncode == 2, done.stderr
        [line] = done.stderr.splitlines()
        assert line.startswith("hospital: error: --run-id ") and "a run id is 1 to 64" in line
    ledger = Ledger(url, config, config.scheduler.policy)
    try:
        assert ledger.current_run().run_id == "run-a" and ledger.last_tick() == 10
        assert kept_runs.runs(ledger.engine) == []
        with Session(ledger.engine) as session:
            assert lease_status(session) is None  # no scheduler took the lease
    finally:
        ledger.close()


def test_the_scheduler_command_refuses_an_end_other_than_its_runs_even_as_a_standby(
    config, tmp_path
):
    url = f"sqlite:///{tmp_path / 'run.db'}"
    ledger = Ledger(url, config, config.scheduler.policy)
    ledger.start_run("run-a", 1234.5, 40.0, {}, until_ms=30_000)
    ledger.close()
    for standby in ([], ["--standby", "--scheduler-id", "stb"]):
        done = hospital_cli("scheduler", "--db", url, "--until-ms", "60000", *standby)
        assert done.returncode == 2, done.stderr
        assert done.stderr.strip().splitlines()[-1] == (
            "hospital: error: run run-a in the database has --until-ms 30000, not 60000: "
            "leave --until-ms out to resume it, or give --fresh to start it anew"
        )


def test_a_misspelt_fault_point_is_one_line(tmp_path):
    done = hospital_cli(
        "scheduler", "--db", f"sqlite:///{tmp_path / 'run.db'}", HOSPITAL_FAULT="after_comit:3"
    )
    assert done.returncode == 2 and "HOSPITAL_FAULT" in done.stderr, done.stderr
