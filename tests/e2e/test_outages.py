"""End to end: outages of the database (and the network to it) in the middle of a run, made
with the loopback fault proxy of `tests/faultproxy.py` between the services and the real
PostgreSQL server (never by stopping the shared server). After each: every arrival decided
once, every inbound event applied once, every decision published once (decisions topic and
database agree), `hospital solve` of the export gives the same decisions, and the hospital
recovers: ticks again soon after the fault's end, and a referral rate over the rest of the
run close to an undisturbed run's with the same seed.

Each test prints one row of the table the fault report asks for (`FAULT-ROW ...`).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from scheduler import events as ev
from scheduler.distributed.clock import LiveClock
from tests.faultproxy import FaultProxy, KafkaFaultProxy

from .conftest import ROOT, Services, Topics, child_env
from .test_distributed import (
    Audit,
    assert_applied_everything_sent,
    assert_decisions_published,
    assert_solve_reproduces,
    expected_arrivals,
    export,
    start_run,
    wait_scheduler_then_stop_rest,
)

pytestmark = [pytest.mark.services, pytest.mark.timeout(300)]

SPEED = 10
RUN_MS = 420_000  # 7 simulated minutes: 42 s of wall time
FAULT_AT_MS = 120_000  # the fault starts 2 simulated minutes in
RECOVER_S = 30  # wall seconds after the fault's end by which the hospital works again


def through(proxy: FaultProxy, url: str) -> str:
    """The database URL, by way of the proxy."""
    return (
        make_url(url).set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    )


def last_tick(db_url: str) -> int:
    engine = create_engine(db_url)
    try:
        with engine.connect() as connection:
            return connection.scalar(text("SELECT coalesce(max(tick), -1) FROM ticks"))
    finally:
        engine.dispose()


def wait_ticks_past(db_url: str, tick: int, timeout_s: float) -> float:
    """Seconds until the database holds a tick after `tick` (the scheduler commits again)."""
    started = time.monotonic()
    while last_tick(db_url) <= tick:
        assert time.monotonic() - started < timeout_s, (
            f"no tick committed after {tick} within {timeout_s} s"
        )
        time.sleep(0.2)
    return time.monotonic() - started


def referral_rate(decisions: list[ev.Event], patients: set[str]) -> float:
    referred = {d.patient_id for d in decisions if isinstance(d, ev.PatientReferred)}
    return len(referred & patients) / max(1, len(patients))


def assert_nothing_lost_or_doubled(
    topics: Topics, run_id: str, events: Path, decisions: Path, until_ms: int, tmp_path: Path
) -> Audit:
    """The run's export over a fault: every invariant held, every arrival decided once,
    every inbound event sent applied once, every decision published once, and `hospital
    solve` gives the same decisions."""
    audit = Audit(topics.config, events, decisions)  # every invariant, over the fault
    audit.assert_unique_ids()  # nothing doubled
    audit.assert_every_arrival_decided()
    assert_applied_everything_sent(topics.config, audit, run_id, until_ms)  # nor lost
    assert audit.summary["arrived"] == expected_arrivals(until_ms), audit.summary
    assert_decisions_published(topics.config, audit, run_id)
    assert_solve_reproduces(events, decisions, topics.env, tmp_path)
    return audit


def undisturbed_decisions(
    tmp_path: Path, env: dict[str, str], run_ms: int = RUN_MS
) -> list[ev.Event]:
    """The decisions of the same hospital, the same seed, in-process and undisturbed."""
    out = tmp_path / "undisturbed.jsonl"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli",
            "run",
            "--speed",
            "max",
            "--duration",
            f"{run_ms // 60_000}m",
            "--out",
            str(out),
            "-q",
        ],
        env=child_env(env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return [ev.parse_json(line, ev.DECISIONS) for line in out.read_text().splitlines() if line]


def test_database_cut_for_ten_seconds_mid_run(
    services: Services, topics: Topics, database, tmp_path
):
    """Every connection to PostgreSQL cut, and new ones refused, for 10 s of wall time (100
    simulated seconds): the scheduler's commits fail; it waits for the database and resumes
    from what it holds, in the same process (no exit, no restart)."""
    outage_s = 10
    with FaultProxy("127.0.0.1", make_url(database.url).port or 5432) as proxy:
        proxied = through(proxy, database.url)
        run_id = f"e2e-{uuid.uuid4().hex[:8]}"
        started = start_run(services, proxied, run_id, speed=SPEED, until_ms=RUN_MS)
        clock = LiveClock(started.epoch, SPEED)
        clock.sleep_until(FAULT_AT_MS)
        before = last_tick(database.url)
        assert before > 0, started.scheduler.log()
        cut = proxy.outage(outage_s)
        time.sleep(outage_s)
        fault_end_ms = clock.now_ms()
        assert started.scheduler.process.poll() is None, started.scheduler.log()
        assert last_tick(database.url) == before, "ticks committed through a cut network?"
        recovered_s = wait_ticks_past(database.url, before, RECOVER_S)
        wait_scheduler_then_stop_rest(
            services,
            started.scheduler,
            [started.generator, *started.workers],
            started.epoch,
            SPEED,
            RUN_MS,
        )
    log = started.scheduler.log(1 << 20)
    assert "the database failed" in log and "the database is back after" in log, log[-3000:]
    assert cut >= 2, "no connection to cut: the scheduler was not using the proxy"

    events, decisions = export(database.url, topics.env, tmp_path)
    audit = assert_nothing_lost_or_doubled(topics, run_id, events, decisions, RUN_MS, tmp_path)
    assert audit.ticks[-1] >= RUN_MS // 1000, f"the run stopped early, at tick {audit.ticks[-1]}"

    # The rest of the run: patients arriving once the hospital has caught up are referred
    # about as often as in an undisturbed run.
    rest = {a.patient_id for a in audit.arrivals() if a.time_ms > fault_end_ms + 60_000}
    assert len(rest) >= 15, len(rest)
    rate = referral_rate(audit.decisions, rest)
    usual = referral_rate(undisturbed_decisions(tmp_path, topics.env), rest)
    lost = doubled = 0  # asserted above: any other figure fails the test
    print(
        f"FAULT-ROW database cut | proxy: connections cut, new ones refused {outage_s} s | "
        f"1 | arrivals {audit.summary['arrived']} | lost {lost} | doubled {doubled} | "
        f"ticks again {recovered_s:.1f} s after | referral rate after {rate:.2f} "
        f"(undisturbed {usual:.2f})"
    )
    assert rate <= usual + 0.2, (rate, usual)


def open_tasks(db_url: str, role: str) -> set[str]:
    """Tasks of the role dispatched and not completed, as the database has them now."""
    from scheduler.layout import ROLE_OF_KIND

    engine = create_engine(db_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT task_id, kind FROM tasks WHERE dispatched_at IS NOT NULL "
                    "AND completed_at IS NULL"
                )
            ).all()
    finally:
        engine.dispose()
    return {task_id for task_id, kind in rows if ROLE_OF_KIND.get(kind) == role}


def test_worker_killed_mid_task_its_task_is_done_once(
    services: Services, topics: Topics, database, tmp_path
):
    """The medical worker SIGKILLed while visits it was given are under way, and started
    again a second later (the supervisor's first delay): each of those visits is completed,
    and its completion applied, exactly once."""
    import os
    import signal

    from scheduler.distributed import bus

    from .test_distributed import common_args, read_topic, wait_logged

    run_id = f"e2e-{uuid.uuid4().hex[:8]}"
    started = start_run(services, database.url, run_id, speed=SPEED, until_ms=RUN_MS)
    clock = LiveClock(started.epoch, SPEED)
    medical = started.workers[bus.ROLES.index("medical")]
    clock.sleep_until(FAULT_AT_MS)
    deadline = time.time() + 20
    while not (under_way := open_tasks(database.url, "medical")):
        assert time.time() < deadline, "no visit under way to kill the worker in"
        time.sleep(0.1)
    os.kill(medical.pid, signal.SIGKILL)
    medical.process.wait(timeout=10)
    killed = time.monotonic()
    time.sleep(1)
    again = services.start(
        "medical-worker",
        "worker",
        "medical",
        *common_args(run_id, started.epoch, SPEED),
        "--until-ms",
        str(RUN_MS),
        "--worker-id",
        "medical-worker-1",
    )
    wait_logged(again, "dispatch.medical[", time.time() + RECOVER_S)
    recovered_s = time.monotonic() - killed
    others = [s for s in (started.generator, *started.workers) if s is not medical]
    wait_scheduler_then_stop_rest(
        services, started.scheduler, [*others, again], started.epoch, SPEED, RUN_MS
    )

    events, decisions = export(database.url, topics.env, tmp_path)
    audit = Audit(topics.config, events, decisions)
    audit.assert_unique_ids()
    audit.assert_every_arrival_decided()
    assert_applied_everything_sent(topics.config, audit, run_id, RUN_MS)
    assert_decisions_published(topics.config, audit, run_id)
    assert_solve_reproduces(events, decisions, topics.env, tmp_path)
    applied = [e.task_id for e in audit.events if isinstance(e, ev.VisitCompleted)]
    for task_id in under_way:
        assert applied.count(task_id) == 1, f"{task_id}: completed {applied.count(task_id)} times"
    sent = [
        json.loads(m.value)["task_id"]
        for m in read_topic(topics.config, topics.config.kafka.inbound_topic)
        if bus.header(m, "run") == run_id and json.loads(m.value).get("type") == "visit.completed"
    ]
    done_by_restarted = [t for t in under_way if t in again.log(1 << 20)]
    print(
        f"FAULT-ROW worker SIGKILLed mid-task | kill -9 of the medical worker with "
        f"{len(under_way)} visits under way, restarted 1 s later | 1 | "
        f"arrivals {audit.summary['arrived']} | lost 0 | doubled 0 | partitions again "
        f"{recovered_s:.1f} s after the kill | {len(done_by_restarted)} of the visits done "
        f"by the restarted worker; completions sent {len(sent)}, applied {len(applied)}"
    )
    assert recovered_s <= RECOVER_S + 1


BROKER_RUN_MS = 600_000  # 10 simulated minutes: 60 s of wall time at speed 10
BROKER_FAULT_AT_MS = 100_000


def first_done_after(log_path: Path, wall: float) -> float | None:
    """Seconds from `wall` (Unix time) to the first task the worker's log says it did after."""
    from datetime import datetime

    for line in log_path.read_text(errors="replace").splitlines():
        if line.endswith(" done") and ": task-" in line:
            at = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            if at > wall:
                return at - wall
    return None


def test_broker_cut_for_thirty_seconds_mid_run(topics: Topics, database, tmp_path, services_env):
    """`hospital run --kafka` with every connection to the broker cut, and new ones
    refused, for 30 s of wall time (300 simulated seconds), through the Kafka fault proxy:
    the services that fail are restarted; afterwards every service works again."""
    outage_s = 30
    broker = services_env["KAFKA_BOOTSTRAP_SERVERS"].split(",")[0].rsplit(":", 1)
    record, out, report = tmp_path / "ev.jsonl", tmp_path / "dec.jsonl", tmp_path / "kpi.json"
    with KafkaFaultProxy(broker[0], int(broker[1])) as proxy:
        env = {**topics.env, "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{proxy.port}"}
        with open(tmp_path / "run.err", "wb") as err:
            run = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "cli",
                    "run",
                    "--kafka",
                    "--speed",
                    str(SPEED),
                    "--duration",
                    f"{BROKER_RUN_MS // 60_000}m",
                    "--db",
                    database.url,
                    "--record",
                    str(record),
                    "--out",
                    str(out),
                    "--report",
                    str(report),
                    "-q",
                ],
                env=child_env(env),
                cwd=tmp_path,
                stdout=subprocess.DEVNULL,
                stderr=err,
                stdin=subprocess.DEVNULL,
            )
        try:
            logs = tmp_path / "hospital-logs"
            deadline = time.monotonic() + 180
            while not (epochs := list(logs.glob("*.epoch"))):
                assert run.poll() is None and time.monotonic() < deadline, (
                    tmp_path / "run.err"
                ).read_text()[-3000:]
                time.sleep(0.2)
            clock = LiveClock(float(epochs[0].read_text()), SPEED)
            clock.sleep_until(BROKER_FAULT_AT_MS)
            before = last_tick(database.url)
            proxy.outage(outage_s)
            time.sleep(outage_s)
            fault_end, fault_end_ms = time.time(), clock.now_ms()
            scheduler_s = wait_ticks_past(database.url, last_tick(database.url), 60)
            code = run.wait(timeout=BROKER_RUN_MS / 1000 / SPEED + 200)
        finally:
            if run.poll() is None:
                run.kill()
                run.wait()
    stderr = (tmp_path / "run.err").read_text()
    assert code == 0, stderr[-3000:] + "".join(
        f"\n--- {p.name}\n{p.read_text()[-2000:]}" for p in sorted(logs.glob("*.log"))
    )
    assert before > 0
    crashed = [p.name for p in sorted(logs.glob("*.log")) if "Traceback" in p.read_text()]
    assert not crashed, f"services that died of an unhandled error: {crashed}"
    workers_s = {
        role: first_done_after(logs / f"{role}-worker-1.log", fault_end)
        for role in ("porter", "medical", "cleaner")
    }
    print("restarts:", [line for line in stderr.splitlines() if "restarting" in line])

    run_id = json.loads(report.read_text())["run_id"]
    audit = assert_nothing_lost_or_doubled(topics, run_id, record, out, BROKER_RUN_MS, tmp_path)

    rest = {a.patient_id for a in audit.arrivals() if a.time_ms > fault_end_ms + 60_000}
    rate = referral_rate(audit.decisions, rest)
    usual = referral_rate(undisturbed_decisions(tmp_path, topics.env, BROKER_RUN_MS), rest)
    recovered = max([scheduler_s, *[s for s in workers_s.values() if s is not None]])
    print(
        f"FAULT-ROW broker cut | Kafka proxy: connections cut, new ones refused {outage_s} s "
        f"| 1 | arrivals {audit.summary['arrived']} | lost 0 | doubled 0 | scheduler ticks "
        f"again {scheduler_s:.1f} s after, workers' first task done "
        f"{ {r: s and round(s, 1) for r, s in workers_s.items()} } s after | referral rate "
        f"after {rate:.2f} (undisturbed {usual:.2f}) over {len(rest)} patients"
    )
    assert all(s is not None and s <= RECOVER_S for s in workers_s.values()), workers_s
    assert recovered <= RECOVER_S
    assert rate <= usual + 0.2, (rate, usual)


def test_slow_network_to_broker_and_database(topics: Topics, database, tmp_path, services_env):
    """Every chunk between the services and the broker, and the database, 100 ms late for
    20 s of wall time, then a cut of every connection: the run goes on, slower, then as
    before."""
    from .conftest import new_services

    slow_s = 20
    broker = services_env["KAFKA_BOOTSTRAP_SERVERS"].split(",")[0].rsplit(":", 1)
    with (
        KafkaFaultProxy(broker[0], int(broker[1])) as kafka_proxy,
        FaultProxy("127.0.0.1", make_url(database.url).port or 5432) as db_proxy,
    ):
        env = {**topics.env, "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{kafka_proxy.port}"}
        proxied = through(db_proxy, database.url)
        with new_services(tmp_path, Topics(env, topics.config)) as services:
            run_id = f"e2e-{uuid.uuid4().hex[:8]}"
            started = start_run(services, proxied, run_id, speed=SPEED, until_ms=RUN_MS)
            clock = LiveClock(started.epoch, SPEED)
            clock.sleep_until(60_000)
            kafka_proxy.latency = db_proxy.latency = 0.1
            time.sleep(slow_s)
            kafka_proxy.latency = db_proxy.latency = 0.0
            cut = kafka_proxy.cut() + db_proxy.cut()  # connections made slow, made anew
            fault_end_ms = clock.now_ms()
            recovered_s = wait_ticks_past(database.url, last_tick(database.url), RECOVER_S)
            wait_scheduler_then_stop_rest(
                services,
                started.scheduler,
                [started.generator, *started.workers],
                started.epoch,
                SPEED,
                RUN_MS,
            )
            crashed = [s.name for s in services.started if "Traceback" in s.log(1 << 20)]
    assert cut >= 4
    assert not crashed, f"services that died of an unhandled error: {crashed}"

    events, decisions = export(database.url, topics.env, tmp_path)
    audit = assert_nothing_lost_or_doubled(topics, run_id, events, decisions, RUN_MS, tmp_path)
    rest = {a.patient_id for a in audit.arrivals() if a.time_ms > fault_end_ms + 30_000}
    assert len(rest) >= 15, len(rest)
    rate = referral_rate(audit.decisions, rest)
    usual = referral_rate(undisturbed_decisions(tmp_path, topics.env), rest)
    print(
        f"FAULT-ROW slow then cut network | both proxies: 100 ms a chunk for {slow_s} s, "
        f"then every connection cut | 1 | arrivals {audit.summary['arrived']} | lost 0 | "
        f"doubled 0 | ticks again {recovered_s:.1f} s after | referral rate after "
        f"{rate:.2f} (undisturbed {usual:.2f}) over {len(rest)} patients"
    )
    assert rate <= usual + 0.2, (rate, usual)
