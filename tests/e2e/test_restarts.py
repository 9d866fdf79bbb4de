"""End to end: the broker stopped for 30 s and started again, and PostgreSQL restarted, in the
middle of a run. Real stops of the server processes (`scripts/backing-services down`, then
`up` on the same data and port), each of a dedicated broker or cluster of the test's own
(`tests/dedicated.py`): the shared ones other tests use are never touched.

After each, as after the faults of test_outages.py: every arrival decided once, every inbound
event applied once, every decision published once (decisions topic and database agree),
`hospital solve` of the export identical, and the hospital recovers: every service consuming
again within 30 s (wall) of the fault's end, and a referral rate over the rest of the run
close to an undisturbed run's with the same seed. Each test prints its row of the fault table
(`FAULT-ROW ...`).
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

from scheduler.distributed import bus
from scheduler.distributed.clock import LiveClock
from tests.dedicated import dedicated_broker, dedicated_postgres

from .conftest import Database, Topics, child_env, new_services, new_topics
from .test_distributed import (
    Audit,
    export,
    start_run,
    wait_scheduler_then_stop_rest,
)
from .test_outages import (
    RECOVER_S,
    SPEED,
    assert_nothing_lost_or_doubled,
    first_done_after,
    last_tick,
    referral_rate,
    undisturbed_decisions,
)

pytestmark = [pytest.mark.services, pytest.mark.timeout(360)]


def wait_consumed_past(db_url: str, tick: int, timeout_s: float) -> float:
    """Seconds until the database holds a tick after `tick` that consumed events: the
    scheduler reads the inbound topic and commits again."""
    engine = create_engine(db_url)
    started = time.monotonic()
    try:
        while True:
            try:
                with engine.connect() as connection:
                    if connection.scalar(
                        text("SELECT count(*) FROM ticks WHERE tick > :t AND n_consumed > 0"),
                        {"t": tick},
                    ):
                        return time.monotonic() - started
            except Exception:  # noqa: BLE001 - the database still starting: keep asking
                pass
            assert time.monotonic() - started < timeout_s, (
                f"no tick after {tick} consumed anything within {timeout_s} s"
            )
            time.sleep(0.2)
    finally:
        engine.dispose()


def rounded(seconds: dict[str, float | None]) -> dict[str, float | None]:
    return {name: None if s is None else round(s, 1) for name, s in seconds.items()}


def assert_recovered(workers_s: dict[str, float | None], consumed_s: float) -> None:
    assert consumed_s <= RECOVER_S, f"the scheduler consumed again {consumed_s:.1f} s after"
    late = {role: s for role, s in workers_s.items() if s is None or s > RECOVER_S}
    assert not late, f"workers with no task done within {RECOVER_S} s of the fault's end: {late}"


def audit_run(
    topics: Topics, run_id: str, events: Path, decisions: Path, until_ms: int, tmp_path: Path
) -> Audit:
    """Every check of test_outages.py on the run's export: nothing lost, nothing doubled,
    and the run went on to its end."""
    audit = assert_nothing_lost_or_doubled(topics, run_id, events, decisions, until_ms, tmp_path)
    assert audit.ticks[-1] >= until_ms // 1000, f"the run stopped early, at tick {audit.ticks[-1]}"
    return audit


# --- PostgreSQL restarted ----------------------------------------------------------------

PG_RUN_MS = 420_000  # 7 simulated minutes: 42 s of wall time at speed 10
PG_FAULT_AT_MS = 120_000
PG_DOWN_S = 8  # from the stop to the start command; the start then takes a second or two


def test_postgres_restarted_mid_run(services_env, tmp_path, monkeypatch):
    """The scheduler's PostgreSQL server stopped (`pg_ctlcluster stop -m fast`: every session
    ended) and started again 8 s later: the scheduler's commits fail, it waits for the
    database and resumes from what it holds, in the same process."""
    with dedicated_postgres(tmp_path / "pg", services_env["KAFKA_BOOTSTRAP_SERVERS"]) as pg:
        # libpq reads the role's password from the environment: this cluster's, for the test
        # and every service it starts.
        monkeypatch.setenv("PGPASSWORD", pg.settings["PGPASSWORD"])
        database = Database(pg.settings["DATABASE_URL"], "hospital", False, "dedicated cluster")
        with (
            new_topics(services_env, database) as topics,
            new_services(tmp_path, topics) as services,
        ):
            run_id = f"e2e-{uuid.uuid4().hex[:8]}"
            started = start_run(services, database.url, run_id, speed=SPEED, until_ms=PG_RUN_MS)
            clock = LiveClock(started.epoch, SPEED)
            clock.sleep_until(PG_FAULT_AT_MS)
            before = last_tick(database.url)
            assert before > 0, started.scheduler.log()
            stopping = time.monotonic()
            pg.down()
            stop_s = time.monotonic() - stopping
            time.sleep(max(0.0, PG_DOWN_S - stop_s))
            starting = time.monotonic()
            pg.up()
            start_s, down_s = time.monotonic() - starting, time.monotonic() - stopping
            fault_end, fault_end_ms = time.time(), clock.now_ms()
            assert started.scheduler.process.poll() is None, started.scheduler.log()
            consumed_s = wait_consumed_past(database.url, last_tick(database.url), 60)
            wait_scheduler_then_stop_rest(
                services,
                started.scheduler,
                [started.generator, *started.workers],
                started.epoch,
                SPEED,
                PG_RUN_MS,
            )
            log = started.scheduler.log(1 << 20)
            workers_s = {
                role: first_done_after(worker.log_path, fault_end)
                for role, worker in zip(bus.ROLES, started.workers)
            }
            crashed = [s.name for s in services.started if "Traceback" in s.log(1 << 20)]
            assert "the database failed" in log and "the database is back after" in log, log[-3000:]
            assert not crashed, f"services that died of an unhandled error: {crashed}"

            events, decisions = export(database.url, topics.env, tmp_path)
            audit = audit_run(topics, run_id, events, decisions, PG_RUN_MS, tmp_path)
            rest = {a.patient_id for a in audit.arrivals() if a.time_ms > fault_end_ms + 60_000}
            assert len(rest) >= 15, len(rest)
            rate = referral_rate(audit.decisions, rest)
            usual = referral_rate(undisturbed_decisions(tmp_path, topics.env, PG_RUN_MS), rest)
    print(
        f"FAULT-ROW PostgreSQL restarted | scripts/backing-services down "
        f"(pg_ctlcluster stop -m fast, "
        f"{stop_s:.1f} s), up {PG_DOWN_S} s after the stop ({start_s:.1f} s): {down_s:.1f} s "
        f"from the stop to the server back | 1 | arrivals {audit.summary['arrived']} | lost 0 | "
        f"doubled 0 | scheduler consumes again {consumed_s:.1f} s after, workers' first task "
        f"done {rounded(workers_s)} s after | referral "
        f"rate after {rate:.2f} (undisturbed {usual:.2f}) over {len(rest)} patients"
    )
    assert_recovered(workers_s, consumed_s)
    assert rate <= usual + 0.2, (rate, usual)


# --- the broker stopped for 30 s ---------------------------------------------------------

BROKER_RUN_MS = 780_000  # 13 simulated minutes: 78 s of wall time at speed 10
BROKER_FAULT_AT_MS = 60_000  # the broker is back some 45 s (450 simulated) later
BROKER_DOWN_S = 30  # from the broker's exit to the start command


def test_broker_stopped_for_thirty_seconds_and_started_again(services_env, database, tmp_path):
    """`hospital run --kafka` on a broker of its own, which is stopped (SIGTERM, until the
    process has exited), left down 30 s and started again on the same data and port: the
    services that fail are restarted by the run; afterwards every service works again."""
    with dedicated_broker(tmp_path / "kafka", database.url) as broker:
        bootstrap = broker.settings["KAFKA_BOOTSTRAP_SERVERS"]
        with new_topics({**services_env, "KAFKA_BOOTSTRAP_SERVERS": bootstrap}, database) as topics:
            record, out, report = (tmp_path / n for n in ("ev.jsonl", "dec.jsonl", "kpi.json"))
            with open(tmp_path / "run.err", "wb") as err:
                run = subprocess.Popen(
                    [sys.executable, "-m", "cli", "run", "--kafka", "--speed", str(SPEED),
                     "--duration", f"{BROKER_RUN_MS // 60_000}m", "--db", database.url,
                     "--record", str(record), "--out", str(out), "--report", str(report), "-q"],
                    env=child_env(topics.env),
                    cwd=tmp_path,
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                    stdin=subprocess.DEVNULL,
                )  # fmt: skip
            logs = tmp_path / "hospital-logs"
            try:
                deadline = time.monotonic() + 180
                while not (epochs := list(logs.glob("*.epoch"))):
                    assert run.poll() is None and time.monotonic() < deadline, (
                        tmp_path / "run.err"
                    ).read_text()[-3000:]
                    time.sleep(0.2)
                clock = LiveClock(float(epochs[0].read_text()), SPEED)
                clock.sleep_until(BROKER_FAULT_AT_MS)
                before = last_tick(database.url)
                stopping = time.monotonic()
                broker.down()
                stop_s = time.monotonic() - stopping
                time.sleep(BROKER_DOWN_S)
                starting = time.monotonic()
                broker.up()
                start_s, down_s = time.monotonic() - starting, time.monotonic() - stopping
                fault_end, fault_end_ms = time.time(), clock.now_ms()
                consumed_s = wait_consumed_past(database.url, last_tick(database.url), 60)
                code = run.wait(timeout=BROKER_RUN_MS / 1000 / SPEED + 200)
            finally:
                if run.poll() is None:
                    run.kill()
                    run.wait()
            stderr = (tmp_path / "run.err").read_text()
            service_logs = "".join(
                f"\n--- {p.name}\n{p.read_text()[-2000:]}" for p in sorted(logs.glob("*.log"))
            )
            assert code == 0, stderr[-3000:] + service_logs
            assert before > 0
            crashed = [p.name for p in sorted(logs.glob("*.log")) if "Traceback" in p.read_text()]
            assert not crashed, f"services that died of an unhandled error: {crashed}"
            workers_s = {
                role: first_done_after(logs / f"{role}-worker-1.log", fault_end)
                for role in bus.ROLES
            }
            restarts = [line for line in stderr.splitlines() if "restarting" in line]

            run_id = json.loads(report.read_text())["run_id"]
            audit = audit_run(topics, run_id, record, out, BROKER_RUN_MS, tmp_path)
            rest = {a.patient_id for a in audit.arrivals() if a.time_ms > fault_end_ms + 60_000}
            assert len(rest) >= 15, len(rest)
            rate = referral_rate(audit.decisions, rest)
            usual = referral_rate(undisturbed_decisions(tmp_path, topics.env, BROKER_RUN_MS), rest)
    print("restarts:", restarts)
    print(
        f"FAULT-ROW broker stopped 30 s | scripts/backing-services down (SIGTERM, exited in "
        f"{stop_s:.1f} s), {BROKER_DOWN_S} s later up on the same data and port (ready in "
        f"{start_s:.1f} s): {down_s:.1f} s without a broker | 1 | arrivals "
        f"{audit.summary['arrived']} | lost 0 | doubled 0 | scheduler consumes again "
        f"{consumed_s:.1f} s after, workers' first task done {rounded(workers_s)} s after | "
        f"referral rate after {rate:.2f} (undisturbed {usual:.2f}) over {len(rest)} patients"
    )
    assert_recovered(workers_s, consumed_s)
    assert rate <= usual + 0.2, (rate, usual)
