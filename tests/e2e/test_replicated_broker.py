"""End to end: `hospital run --kafka` on a replicated broker, a three-node KRaft cluster of
the test's own (`scripts/backing-services up --brokers 3`, through `tests/dedicated.py`),
as a region would run it: topics with three replicas, `min.insync.replicas=2`, producers
with `acks=all`.

Mid-run the leader of the inbound topic's first partition is SIGKILLed; once it is back
and every replica is in sync again, the broker then leading that partition is SIGKILLed
and started again too. Two of the three brokers run at every moment, so every write still
reaches two replicas. Then, as after the faults of test_outages.py: every arrival decided
once, every inbound event applied once, every decision published once, `hospital solve` of
the export identical; and, unlike the single broker's outage (some three simulated minutes
of referrals), no referral spike: in the three simulated minutes after each kill, and over
the whole run, at most SLACK more patients referred than by an undisturbed `hospital run
--kafka` of the same seed on the same cluster (run first, on topics of its own).

Prints its row of the fault table (`FAULT-ROW ...`) with the figures measured: the
cluster's start, each leader's failover (from the kill to a new leader the cluster
reports), how late the scheduler applied the inbound events around each kill, and the
referrals of both runs.

Known to fail today (kafka-python 3.0.12): after a broker is killed the scheduler's
producer may wait out its 30 s flush instead of following the partition's new leader (a
stall of 30 simulated seconds a wall second: a referral spike), and its end-of-run read of
the inbound topic's end offsets may not return, so that `hospital run` gives up on it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from scheduler import events as ev
from scheduler.distributed.clock import LiveClock
from tests.dedicated import DedicatedCluster, dedicated_cluster

from .conftest import Topics, child_env, new_topics, run_kafka
from .test_outages import assert_nothing_lost_or_doubled

pytestmark = [pytest.mark.services, pytest.mark.timeout(420)]

SPEED = 10
RUN_MS = 600_000  # 10 simulated minutes: 60 s of wall time
FIRST_KILL_AT_MS = 60_000
SECOND_KILL_AT_MS = 330_000  # or later, once the first broker is back and in sync
DOWN_S = 3  # wall seconds a killed broker stays down before it is started again
WINDOW_MS = 180_000  # "a spike": referrals among the arrivals this long after a kill
SLACK = 2  # referrals more than the undisturbed run allowed in a window (timing differs)


def admin(bootstrap: str):
    from kafka import KafkaAdminClient

    return KafkaAdminClient(bootstrap_servers=bootstrap.split(","), request_timeout_ms=5000)


def partitions(bootstrap: str, topics: list[str]) -> dict[tuple[str, int], dict]:
    client = admin(bootstrap)
    try:
        return {
            (t["name"], p["partition_index"]): p
            for t in client.describe_topics(topics)
            for p in t["partitions"]
        }
    finally:
        client.close()


def leader(bootstrap: str, topic: str, partition: int = 0) -> int:
    return partitions(bootstrap, [topic])[topic, partition]["leader_id"]


def wait_new_leader(bootstrap: str, topic: str, old: int, timeout_s: float = 60) -> float:
    """Seconds until the cluster reports a leader other than `old` for the partition."""
    started = time.monotonic()
    while True:
        try:
            now = leader(bootstrap, topic)
            if now not in (old, -1):
                return time.monotonic() - started
        except Exception:  # noqa: BLE001 - the broker asked was the one killed: ask again
            pass
        assert time.monotonic() - started < timeout_s, f"{topic}: no new leader in {timeout_s} s"
        time.sleep(0.1)


def wait_in_sync(bootstrap: str, topics: list[str], timeout_s: float = 60) -> float:
    """Seconds until every partition of `topics` (the run's and the brokers' own offsets
    and transaction state) has all its replicas in sync: only then may another broker go."""
    internal = ["__consumer_offsets", "__transaction_state"]
    started = time.monotonic()
    while True:
        try:
            described = partitions(bootstrap, [*topics, *internal])
            behind = [
                key
                for key, p in described.items()
                if set(p["isr_nodes"]) != set(p["replica_nodes"])
            ]
            if described and not behind:
                return time.monotonic() - started
        except Exception:  # noqa: BLE001 - an internal topic not made yet: ask again
            behind = ["(not described)"]
        assert time.monotonic() - started < timeout_s, f"replicas not in sync: {behind[:5]}"
        time.sleep(0.2)


def kill_and_restart(
    cluster: DedicatedCluster, bootstrap: str, topics: list[str], node: int, inbound: str
) -> tuple[float, float, float]:
    """SIGKILL `node`, see its partition's leader move, start it again after DOWN_S, wait
    for its replicas to catch up: (failover s, restart s, back in sync s)."""
    cluster.kill(node)
    failover_s = wait_new_leader(bootstrap, inbound, node)
    time.sleep(max(0.0, DOWN_S - failover_s))
    starting = time.monotonic()
    cluster.up()
    restart_s = time.monotonic() - starting
    return failover_s, restart_s, wait_in_sync(bootstrap, topics)


def lateness_s(db_url: str, from_ms: int, to_ms: int) -> float:
    """The latest, in simulated seconds, any inbound event of [from_ms, to_ms) was applied:
    its tick's time less its own."""
    engine = create_engine(db_url)
    try:
        with engine.connect() as connection:
            return connection.scalar(
                text(
                    "SELECT coalesce(max(t.time - e.time), 0) FROM inbound_events e "
                    "JOIN ticks t ON t.tick = e.tick WHERE e.time >= :a AND e.time < :b"
                ),
                {"a": from_ms / 1000, "b": to_ms / 1000},
            )
    finally:
        engine.dispose()


def referred(decisions: list[ev.Event], patients: set[str]) -> int:
    return len({d.patient_id for d in decisions if isinstance(d, ev.PatientReferred)} & patients)


def start_run(topics: Topics, db_url: str, tmp_path: Path) -> subprocess.Popen:
    record, out, report = (tmp_path / n for n in ("ev.jsonl", "dec.jsonl", "kpi.json"))
    with open(tmp_path / "run.err", "wb") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "cli", "run", "--kafka", "--speed", str(SPEED),
             "--duration", f"{RUN_MS // 60_000}m", "--db", db_url, "--record", str(record),
             "--out", str(out), "--report", str(report), "-q"],
            env=child_env(topics.env),
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=err,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip


def wait_clock(run: subprocess.Popen, tmp_path: Path) -> LiveClock:
    logs = tmp_path / "hospital-logs"
    deadline = time.monotonic() + 120
    while not (epochs := list(logs.glob("*.epoch"))):
        assert run.poll() is None and time.monotonic() < deadline, (
            tmp_path / "run.err"
        ).read_text()[-3000:]
        time.sleep(0.2)
    return LiveClock(float(epochs[0].read_text()), SPEED)


def undisturbed_run(services_env, database, bootstrap: str, tmp_path: Path):
    """The same hospital, seed and speed through `hospital run --kafka` on the same
    cluster, on topics of its own, with no broker killed: (its decisions, how late at
    most it applied an inbound event, in simulated seconds)."""
    calm = tmp_path / "undisturbed"
    calm.mkdir()
    with new_topics({**services_env, "KAFKA_BOOTSTRAP_SERVERS": bootstrap}, database) as topics:
        done = run_kafka(
            topics.env, database.url, calm, speed=SPEED, duration=f"{RUN_MS // 60_000}m"
        )
    decisions = [
        ev.parse_json(line, ev.DECISIONS) for line in done.out.read_text().splitlines() if line
    ]
    return decisions, lateness_s(database.url, 0, RUN_MS)


def test_run_survives_two_brokers_killed_in_turn_without_a_referral_spike(
    services_env, database, tmp_path
):
    starting = time.monotonic()
    with dedicated_cluster(tmp_path / "kafka", database.url) as cluster:
        cluster_up_s = time.monotonic() - starting
        bootstrap = cluster.settings["KAFKA_BOOTSTRAP_SERVERS"]
        assert len(bootstrap.split(",")) == 3, bootstrap
        undisturbed, usual_late = undisturbed_run(services_env, database, bootstrap, tmp_path)
        with new_topics({**services_env, "KAFKA_BOOTSTRAP_SERVERS": bootstrap}, database) as topics:
            kafka = topics.config.kafka
            names = [kafka.inbound_topic, kafka.decisions_topic, kafka.dead_letter_topic]
            names += [f"{kafka.dispatch_topic_prefix}{r}" for r in ("porter", "medical", "cleaner")]
            replicas = {
                key: len(p["replica_nodes"]) for key, p in partitions(bootstrap, names).items()
            }
            assert set(replicas.values()) == {3}, replicas  # ensure_topics saw three brokers

            run = start_run(topics, database.url, tmp_path)
            try:
                clock = wait_clock(run, tmp_path)
                clock.sleep_until(FIRST_KILL_AT_MS)
                first = leader(bootstrap, kafka.inbound_topic)
                first_at_ms = clock.now_ms()
                first_figures = kill_and_restart(
                    cluster, bootstrap, names, first, kafka.inbound_topic
                )
                clock.sleep_until(SECOND_KILL_AT_MS)
                second = leader(bootstrap, kafka.inbound_topic)
                if second == first:  # another broker than the one just back
                    second = next(n for n in (1, 2, 3) if n != first)
                second_at_ms = clock.now_ms()
                second_figures = kill_and_restart(
                    cluster, bootstrap, names, second, kafka.inbound_topic
                )
                code = run.wait(timeout=RUN_MS / 1000 / SPEED + 120)
            finally:
                if run.poll() is None:
                    run.kill()
                    run.wait()
            logs = sorted((tmp_path / "hospital-logs").glob("*.log"))
            stderr = (tmp_path / "run.err").read_text()
            assert code == 0, stderr[-3000:] + "".join(
                f"\n--- {p.name}\n{p.read_text()[-2000:]}" for p in logs
            )
            crashed = [p.name for p in logs if "Traceback" in p.read_text()]
            assert not crashed, f"services that died of an unhandled error: {crashed}"
            restarts = [line for line in stderr.splitlines() if "restarting" in line]

            run_id = json.loads((tmp_path / "kpi.json").read_text())["run_id"]
            audit = assert_nothing_lost_or_doubled(
                topics, run_id, tmp_path / "ev.jsonl", tmp_path / "dec.jsonl", RUN_MS, tmp_path
            )
            assert audit.ticks[-1] >= RUN_MS // 1000, f"the run stopped at tick {audit.ticks[-1]}"
            late = {
                at: lateness_s(database.url, at, at + WINDOW_MS)
                for at in (first_at_ms, second_at_ms)
            }

    everyone = {a.patient_id for a in audit.arrivals()}
    windows = {
        at: {a.patient_id for a in audit.arrivals() if at <= a.time_ms < at + WINDOW_MS}
        for at in (first_at_ms, second_at_ms)
    }
    counts = {
        at: (referred(audit.decisions, patients), referred(undisturbed, patients))
        for at, patients in windows.items()
    }
    total, usual = referred(audit.decisions, everyone), referred(undisturbed, everyone)
    print("restarts:", restarts)
    print(
        f"FAULT-ROW replicated broker: two brokers SIGKILLed in turn | cluster of 3 up in "
        f"{cluster_up_s:.1f} s; broker {first} (inbound leader) killed at "
        f"{first_at_ms / 1000:.0f} s simulated: new leader in {first_figures[0]:.1f} s, "
        f"restarted in {first_figures[1]:.1f} s, in sync {first_figures[2]:.1f} s later; "
        f"broker {second} killed at {second_at_ms / 1000:.0f} s: new leader in "
        f"{second_figures[0]:.1f} s, restarted in {second_figures[1]:.1f} s, in sync "
        f"{second_figures[2]:.1f} s later | 1 | arrivals {audit.summary['arrived']} | lost 0 | "
        f"doubled 0 | inbound events applied at most "
        f"{ {round(at / 1000): round(s, 1) for at, s in late.items()} } simulated s late after "
        f"the kills (undisturbed run: {usual_late:.1f}) | referrals {total} of {len(everyone)} "
        f"(undisturbed {usual}); in the {WINDOW_MS // 60_000} min after each kill "
        f"{ {round(at / 1000): c for at, c in counts.items()} } (disturbed, undisturbed)"
    )
    for at, (disturbed, calm) in counts.items():
        assert disturbed <= calm + SLACK, f"a referral spike after the kill at {at} ms: {counts}"
    assert total <= usual + SLACK, (total, usual)
