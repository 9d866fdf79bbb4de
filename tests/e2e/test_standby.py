"""End to end: two schedulers, one active (it holds the lease in PostgreSQL), one standby.
The active one is killed three times during one run (SIGKILL twice, then SIGSTOP, as a
machine that stops answering), each time the standby takes over within 5 s, and the killed
one comes back as the new standby; the frozen one, woken after the takeover, finds itself
fenced off and steps down. At the end no decision was made or published twice or lost.
A standby that takes over a run that has ended finishes it as stored and exits; a second
scheduler under the same id on the same host is refused while the first is alive."""

from __future__ import annotations

import json
import os
import re
import signal
import time
import uuid
from collections import Counter

import pytest

from scheduler import events as ev
from scheduler.distributed.clock import LiveClock

from .conftest import Service, Services, Topics, hospital, jsonl_lines
from .test_distributed import (
    ARRIVALS_10_MIN,
    RUN_MS,
    STARTUP_S,
    Audit,
    assert_applied_everything_sent,
    assert_decisions_published,
    assert_solve_reproduces,
    common_args,
    export,
    run_end_wall,
    wait_logged,
    wait_run_started,
    wait_scheduler_then_stop_rest,
)

pytestmark = [pytest.mark.services, pytest.mark.timeout(300)]

SPEED = 10  # 10 simulated minutes: 60 s of wall time
TAKEOVER_LIMIT_S = 5
KILLS = (signal.SIGKILL, signal.SIGKILL, signal.SIGSTOP)


def scheduler(
    services: Services, name: str, run_id: str, clock: list[str], db_url: str, *, standby: bool
) -> Service:
    return services.start(
        f"scheduler-{name}",
        "scheduler",
        *clock,
        "--until-ms",
        str(RUN_MS),
        "--db",
        db_url,
        "--scheduler-id",
        name,
        *(["--standby"] if standby else ["--fresh"]),
    )


def set_epoch(path, epoch: float) -> None:
    spare = path.with_suffix(".tmp")
    spare.write_text(repr(epoch))
    spare.replace(path)  # whole, at once


def count_logged(service: Service, text: str) -> int:
    return service.log(1 << 22).count(text)


def wait_count(service: Service, text: str, count: int, deadline: float) -> float:
    """The monotonic time at which `service` has logged `text` `count` times."""
    while count_logged(service, text) < count:
        assert time.monotonic() < deadline, f"{service.name} did not log {text!r}:\n{service.log()}"
        assert service.process.poll() is None, f"{service.name} exited:\n{service.log()}"
        time.sleep(0.02)
    return time.monotonic()


def test_standby_takes_over_three_kills_and_nothing_is_doubled_or_lost(
    services: Services, topics: Topics, database, tmp_path
):
    run_id = f"e2e-{uuid.uuid4().hex[:8]}"
    env = topics.env
    # Every service comes up first, waiting for the run's clock (as under `hospital run
    # --kafka`); A gets it first, so that it begins the run, then B, as its standby.
    files = {name: services.dir / f"{name}.epoch" for name in ("A", "B", "rest")}
    waiting = {
        name: ["--epoch-file", str(path), "--speed", str(SPEED), "--run-id", run_id]
        for name, path in files.items()
    }
    active = scheduler(services, "A", run_id, waiting["A"], database.url, standby=False)
    standby = scheduler(services, "B", run_id, waiting["B"], database.url, standby=True)
    others = [
        services.start("generator", "generator", *waiting["rest"], "--duration-ms", str(RUN_MS))
    ]
    others += [
        services.start(
            f"{role}-worker",
            "worker",
            role,
            *waiting["rest"],
            "--until-ms",
            str(RUN_MS),
            "--worker-id",
            f"{role}-worker-1",
        )
        for role in ("porter", "medical", "cleaner")
    ]
    for service in (active, standby, *others):
        wait_logged(
            service,
            "waiting for the run's clock" if service in (active, standby) else " started: ",
            time.time() + 120,
        )
    epoch = time.time() + 5
    set_epoch(files["A"], epoch)
    wait_run_started(database.url, run_id, services, active)
    wait_logged(active, f"run {run_id}: started", time.time() + 30)
    set_epoch(files["B"], epoch)
    set_epoch(files["rest"], epoch)
    wait_logged(standby, "standby, waiting for the lease", time.time() + 30)
    assert time.time() < epoch, "the services were not up before simulated time 0"
    time.sleep(max(0.0, epoch - time.time()) + 3)  # half a simulated minute of ticks
    clock = common_args(run_id, epoch, SPEED)  # for the schedulers restarted

    takeovers, stopped = [], None
    try:
        for number, kill in enumerate(KILLS, 1):
            assert time.time() < run_end_wall(epoch, SPEED, RUN_MS) - 8, (
                f"kill {number} would come too late in the run: the machine is too slow"
            )
            resumed = count_logged(standby, f"run {run_id}: resumed after tick")
            killed_at = time.monotonic()
            os.kill(active.pid, kill)
            leading = wait_count(standby, "active, lease epoch", 1, killed_at + 30)
            running = wait_count(
                standby, f"run {run_id}: resumed after tick", resumed + 1, killed_at + 30
            )
            takeovers.append(
                (kill.name, round(leading - killed_at, 2), round(running - killed_at, 2))
            )
            if kill == signal.SIGSTOP:
                # Stopped between its lease check and the broker's write of a relay batch,
                # the frozen one would write that batch when woken, after the new one sent
                # it too (seen in 1 of 5 runs before the relay's producer was fenced by a
                # transactional id: `test_a_deposed_schedulers_producer_cannot_write`).
                # Woken up, the frozen one finds the lease taken: it commits and sends nothing
                # more, and waits as the new standby.
                stopped = active
                os.kill(active.pid, signal.SIGCONT)
                stopped = None
                wait_logged(active, "stepping down to standby", time.time() + 30)
                wait_logged(active, "standby, waiting for the lease", time.time() + 30)
                active, standby = standby, active
            else:
                active.process.wait(timeout=10)
                name = active.name.removeprefix("scheduler-")
                active, standby = (
                    standby,
                    scheduler(services, name, run_id, clock, database.url, standby=True),
                )
                wait_logged(standby, "standby, waiting for the lease", time.time() + 60)
            if number == 1:
                shown = hospital(["status", "--db", database.url], env, timeout_s=60)
                assert shown.returncode == 0, shown.stderr
                assert re.search(
                    rf"scheduler: active B \(.*pid {active.pid}\), lease epoch 2", shown.stdout
                ), shown.stdout
                assert re.search(rf"standby: A \(.*pid {standby.pid}\)", shown.stdout), shown.stdout
            time.sleep(2)
    finally:
        if stopped is not None:
            os.kill(stopped.pid, signal.SIGCONT)
    print("takeovers (signal, lease taken s, run resumed s):", takeovers)
    for _, _, resumed_s in takeovers:
        assert resumed_s < TAKEOVER_LIMIT_S, takeovers

    # The active one ends the run and lets go of the lease; the standby takes it, finds the
    # run over, has nothing owed, and stops too.
    timeout = max(0.0, run_end_wall(epoch, SPEED, RUN_MS) - time.time()) + 60
    for last in (active, standby):
        code = services.wait(last, timeout)
        assert code == 0, f"{last.name} exited with {code}:\n{last.log()}"
    for other in others:
        services.stop(other)
    assert LiveClock(epoch, SPEED).now_ms() > RUN_MS

    events, decisions = export(database.url, env, tmp_path)
    audit = Audit(topics.config, events, decisions)  # every invariant, over the kills
    audit.assert_unique_ids()
    audit.assert_every_arrival_decided()
    assert audit.summary["arrived"] == ARRIVALS_10_MIN, audit.summary
    assert_applied_everything_sent(topics.config, audit, run_id, RUN_MS)
    dispatched = Counter(d.task_id for d in audit.decisions if isinstance(d, ev.TaskDispatched))
    assert [t for t, n in dispatched.items() if n > 1] == [], "a task dispatched twice"
    assert audit.ticks[-1] >= RUN_MS // 1000, f"the run stopped early, at tick {audit.ticks[-1]}"
    assert_decisions_published(topics.config, audit, run_id)
    assert_solve_reproduces(events, decisions, env, tmp_path)


SHORT_SPEED = 10
SHORT_MS = 30_000  # 3 s of wall time at speed 10


def rest_of_the_run(services: Services, common: list[str], until_ms: int) -> list[Service]:
    """The generator and one worker a role, on the run's clock, until `until_ms`."""
    started = [services.start("generator", "generator", *common, "--duration-ms", str(until_ms))]
    for role in ("porter", "medical", "cleaner"):
        started.append(
            services.start(
                f"{role}-worker", "worker", role, *common, "--until-ms", str(until_ms),
                "--worker-id", f"{role}-worker-1",
            )
        )  # fmt: skip
    return started


def test_a_standby_finishes_a_run_that_has_ended_as_stored_and_exits(
    services: Services, topics: Topics, database, tmp_path
):
    """The active scheduler ends the run at its --until-ms and lets go of the lease; the
    standby, started without --until-ms, takes the lease at once, finds the run's end
    stored with it, finishes the run and exits; the run stays kept as finished, with its
    length, and no tick past its end."""
    run_id = f"e2e-{uuid.uuid4().hex[:8]}"
    epoch = time.time() + STARTUP_S + 8  # both schedulers up before time 0
    common = common_args(run_id, epoch, SHORT_SPEED)
    active = services.start(
        "scheduler-act", "scheduler", *common, "--until-ms", str(SHORT_MS),
        "--db", database.url, "--scheduler-id", "act", "--fresh",
    )  # fmt: skip
    wait_run_started(database.url, run_id, services, active)
    standby = services.start(
        "scheduler-stb", "scheduler", "--run-id", run_id, "--db", database.url,
        "--scheduler-id", "stb", "--standby",
    )  # fmt: skip
    others = rest_of_the_run(services, common, SHORT_MS)
    wait_logged(standby, "standby, waiting for the lease", time.time() + 60)
    assert time.time() < run_end_wall(epoch, SHORT_SPEED, SHORT_MS), "the standby came too late"

    wait_scheduler_then_stop_rest(services, active, others, epoch, SHORT_SPEED, SHORT_MS)
    code = services.wait(standby, 60)  # it finished the run, rather than tick on
    assert code == 0, f"the standby exited with {code}:\n{standby.log()}"
    log = standby.log(1 << 20)
    assert "stb: active, lease epoch 2" in log and f"run {run_id}: over at tick 30" in log, log

    listed = hospital(["runs", "--db", database.url, "--json"], topics.env)
    assert listed.returncode == 0, listed.stderr
    [kept] = [r for r in map(json.loads, listed.stdout.splitlines()) if r["run_id"] == run_id]
    assert (kept["status"], kept["duration_s"]) == ("finished", SHORT_MS / 1000), kept
    assert kept["figures"]["duration_s"] == SHORT_MS / 1000 and kept["figures"]["arrivals"] > 0
    events, _ = export(database.url, topics.env, tmp_path)
    assert max(e["tick"] for e in jsonl_lines(events)[1:]) <= SHORT_MS // 1000


def test_a_second_scheduler_under_a_live_ones_id_is_refused_and_a_restart_takes_over(
    services: Services, topics: Topics, database
):
    """Two `hospital scheduler` on one host with the default id (the host name): the
    second says that the first is active and exits with 2, the first goes on holding the
    lease; once the first is killed, the same command starts and takes its lease over."""
    run_id = f"e2e-{uuid.uuid4().hex[:8]}"
    epoch = time.time() + STARTUP_S + 20  # the first alive until the second has been refused
    common = [*common_args(run_id, epoch, SHORT_SPEED), "--db", database.url]
    first = services.start(
        "scheduler-1", "scheduler", *common, "--until-ms", str(SHORT_MS), "--fresh"
    )
    wait_run_started(database.url, run_id, services, first)
    wait_logged(first, f"run {run_id}: started", time.time() + 60)

    second = hospital(["scheduler", "--run-id", run_id, "--db", database.url], topics.env, 60)
    assert second.returncode == 2, second.stderr
    refusal = second.stderr.strip().splitlines()[-1]
    assert refusal.startswith("hospital: error: scheduler ") and f"pid {first.pid})" in refusal
    assert "is active" in refusal and first.process.poll() is None, refusal
    shown = hospital(["status", "--db", database.url], topics.env)
    assert re.search(rf"scheduler: active .*pid {first.pid}\), lease epoch 1", shown.stdout), (
        shown.stdout
    )

    first.process.kill()
    first.process.wait(timeout=10)
    again = services.start("scheduler-2", "scheduler", "--run-id", run_id, "--db", database.url)
    wait_logged(again, "active, lease epoch 2", time.time() + 60)
    code = services.wait(
        again, max(0.0, run_end_wall(epoch, SHORT_SPEED, SHORT_MS) - time.time()) + 60
    )
    assert code == 0, again.log()
    assert f"run {run_id}: over at tick" in again.log(1 << 20)


def test_a_standby_reading_while_ticks_commit_sees_each_tick_whole(database):
    """A standby follows the stored ticks while the active scheduler commits more: a tick
    committed in the middle of its read is either left for the next read or read with all
    its events (PostgreSQL's statements each see the commits made before them)."""
    from sqlalchemy import event

    from scheduler.config import load
    from scheduler.db.ledger import Ledger
    from scheduler.engine import Scheduler

    config = load(None, {})
    reader = Ledger(database.url, config, "greedy")
    writer = Ledger(database.url, config, "greedy")
    writer.start_run("run-1", 0.0, 1.0, {})
    scheduler = Scheduler(config)
    arrival = [ev.PatientArrived(f"arrival-{n}", n * 1000, f"patient-{n}") for n in (1, 2)]
    writer.commit_ticks([(scheduler.tick(1, [arrival[0]]), [])], {})
    second = scheduler.tick(2, [arrival[1]])
    statements = []

    def commit_in_between(*_) -> None:
        statements.append(1)
        if len(statements) == 1:
            writer.commit_ticks([(second, [])], {})

    event.listen(reader.engine, "after_cursor_execute", commit_in_between)
    try:
        read = {tick: [e.event_id for e in inbound] for tick, inbound, _ in reader.history()}
    finally:
        event.remove(reader.engine, "after_cursor_execute", commit_in_between)
        reader.close()
        writer.close()
    assert read.get(1) == ["arrival-1"]
    assert read.get(2, ["arrival-2"]) == ["arrival-2"], read


def test_a_standby_restoring_while_ticks_commit_skips_no_tick(database):
    """A tick committed while a standby replays the stored ticks is left to its next
    read: the state it restored does not claim to be past it."""
    from sqlalchemy import event

    from scheduler.config import load
    from scheduler.db.ledger import Ledger
    from scheduler.distributed.scheduler_service import replay
    from scheduler.engine import Scheduler

    config = load(None, {})
    reader = Ledger(database.url, config, "greedy")
    writer = Ledger(database.url, config, "greedy")
    writer.start_run("run-1", 0.0, 1.0, {})
    scheduler = Scheduler(config)
    arrival = [ev.PatientArrived(f"arrival-{n}", n * 1000, f"patient-{n}") for n in (1, 2)]
    writer.commit_ticks([(scheduler.tick(1, [arrival[0]]), [])], {})
    second = scheduler.tick(2, [arrival[1]])
    statements = []

    def commit_in_between(*_) -> None:
        statements.append(1)
        if len(statements) == 3:
            writer.commit_ticks([(second, [])], {})

    event.listen(reader.engine, "after_cursor_execute", commit_in_between)
    try:
        restored = replay(Scheduler(config), reader, -1)
    finally:
        event.remove(reader.engine, "after_cursor_execute", commit_in_between)
        reader.close()
        writer.close()
    assert len(statements) >= 4
    assert restored.last_tick == 1 and "arrival-2" not in restored.seen


def test_a_deposed_schedulers_producer_cannot_write(topics: Topics):
    """The relay's producer of the scheduler that takes over is started (same
    transactional id, the run's) before it reads what the broker has: what the frozen one
    still had in hand is refused by the broker when it wakes, not written after."""
    from kafka.errors import KafkaError

    from scheduler.distributed import bus

    from .test_distributed import read_topic

    topic = topics.config.kafka.decisions_topic
    frozen = bus.producer(topics.config, "hospital-scheduler-e2e-fence")
    frozen.init_transactions()
    frozen.begin_transaction()
    taking_over = bus.producer(topics.config, "hospital-scheduler-e2e-fence")
    taking_over.init_transactions()
    try:
        with pytest.raises(KafkaError):
            frozen.send(topic, b"from the deposed one").get(timeout=20)
            frozen.commit_transaction()
        taking_over.begin_transaction()
        taking_over.send(topic, b"from the new one").get(timeout=20)
        taking_over.commit_transaction()
    finally:
        frozen.close(timeout=5)
        taking_over.close(timeout=5)
    assert [m.value for m in read_topic(topics.config, topic)] == [b"from the new one"]
