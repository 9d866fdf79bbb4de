"""A region, as a region would run it, on a replicated broker: a three-node KRaft cluster of
the test's own (`scripts/backing-services up --brokers 3`, through `tests/dedicated.py`),
topics with three replicas and `min.insync.replicas = 2`, producers with `acks=all`.

Four small wards over two scheduler processes, a coordinator and its standby, the world.
Mid-run the broker leading the coordinator's topic is SIGKILLed (its partitions' leaders
move) and started again; once every replica is in sync, another broker is SIGKILLed and
started again too. Two of the three brokers run at every moment, so every write still
reaches two replicas.

Then: nothing lost or doubled, each hospital's record replaying to its decisions byte for
byte, and no referral spike: among the patients arriving in the three simulated minutes
after each kill, no more sent away from their own hospital (a transfer requested) or
referred out of the region than in the undisturbed run of the same patients (the embedded
region, on simulated time), give or take `SLACK` for the wall clock's timing. A single
broker's outage shows some three simulated minutes of referrals; here a failover lasts a few
wall seconds, a few more simulated ones at `SPEED`.

Prints its row of the fault table (`FAULT-ROW ...`). One run, heavy (about five minutes):
run once, not per parameter.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from scheduler.config import load
from scheduler.distributed.region import members
from scheduler.distributed.region.launch import Region
from scheduler.region import config as region_config
from tests.dedicated import DedicatedCluster, dedicated_cluster
from tests.e2e.conftest import new_topics
from tests.e2e.region_audit import (
    Outcome,
    assert_each_hospital_replays,
    assert_nothing_lost_or_doubled,
    own_arrivals,
    undisturbed,
)
from tests.kafka_topics import delete_topics

pytestmark = [pytest.mark.services, pytest.mark.slow, pytest.mark.timeout(900)]

REGION = Path(__file__).resolve().parents[1] / "fixtures" / "regions" / "four-small-wards.toml"
SPEED = 4.0
DURATION_MS = 13 * 60_000  # three and a quarter wall minutes
FIRST_KILL_AT_MS = 210_000
SECOND_KILL_AT_MS = 420_000  # or later, once the first broker is back and in sync
DOWN_S = 3  # wall seconds a killed broker stays down before it is started again
WINDOW_MS = 3 * 60_000  # "a spike": the patients arriving this long after a kill
SLACK = 2  # more than the undisturbed run allowed in a window (the wall clock's timing)


# --- the cluster, as an admin client sees it -------------------------------------------


def partitions(bootstrap: str, topics: list[str]) -> dict[tuple[str, int], dict]:
    from kafka import KafkaAdminClient

    client = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), request_timeout_ms=5000)
    try:
        return {
            (t["name"], p["partition_index"]): p
            for t in client.describe_topics(topics)
            for p in t["partitions"]
        }
    finally:
        client.close()


def region_topics(bootstrap: str, namespace: str) -> list[str]:
    from kafka import KafkaAdminClient

    client = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), request_timeout_ms=5000)
    try:
        return sorted(t for t in client.list_topics() if t.startswith(namespace))
    finally:
        client.close()


def leader(bootstrap: str, topic: str) -> int:
    return partitions(bootstrap, [topic])[topic, 0]["leader_id"]


def wait_new_leader(bootstrap: str, topic: str, old: int, timeout_s: float = 60) -> float:
    """Seconds until the cluster reports a leader other than `old` for the partition."""
    started = time.monotonic()
    while True:
        try:
            if leader(bootstrap, topic) not in (old, -1):
                return time.monotonic() - started
        except Exception:  # noqa: BLE001 - the broker asked was the one killed: ask again
            pass
        assert time.monotonic() - started < timeout_s, f"{topic}: no new leader in {timeout_s} s"
        time.sleep(0.1)


def wait_in_sync(bootstrap: str, topics: list[str], timeout_s: float = 90) -> float:
    """Seconds until every partition of `topics` (and the brokers' own offsets and
    transaction state) has all its replicas in sync: only then may another broker go."""
    internal = ["__consumer_offsets", "__transaction_state"]
    started = time.monotonic()
    while True:
        try:
            described = partitions(bootstrap, [*topics, *internal])
            behind = [
                k for k, p in described.items() if set(p["isr_nodes"]) != set(p["replica_nodes"])
            ]
            if described and not behind:
                return time.monotonic() - started
        except Exception:  # noqa: BLE001 - an internal topic not made yet: ask again
            behind = ["(not described)"]
        assert time.monotonic() - started < timeout_s, f"replicas not in sync: {behind[:5]}"
        time.sleep(0.2)


def kill_and_restart(
    cluster: DedicatedCluster, bootstrap: str, topics: list[str], node: int, watched: str
) -> tuple[float, float, float]:
    """SIGKILL `node`, see `watched`'s leader move, start the node again after DOWN_S,
    wait for its replicas to catch up: (failover s, restart s, back in sync s)."""
    cluster.kill(node)
    failover_s = wait_new_leader(bootstrap, watched, node)
    time.sleep(max(0.0, DOWN_S - failover_s))
    starting = time.monotonic()
    cluster.up()
    restart_s = time.monotonic() - starting
    return failover_s, restart_s, wait_in_sync(bootstrap, topics)


# --- the run ------------------------------------------------------------------------------


def in_window(outcome: Outcome, arrivals: dict, at_ms: int) -> tuple[int, int]:
    """(sent away, referred out) among the patients arriving in the window after `at_ms`."""
    window = {p for p, t in arrivals.items() if at_ms <= t < at_ms + WINDOW_MS}
    return len(outcome.requested & window), len(outcome.referred_out & window)


def test_region_survives_two_brokers_killed_in_turn_without_a_referral_spike(
    services_env, database, tmp_path
):
    region = region_config.load(REGION)
    calm = undisturbed(region, "cpsat", DURATION_MS)
    starting = time.monotonic()
    with dedicated_cluster(tmp_path / "kafka", database.url) as cluster:
        cluster_up_s = time.monotonic() - starting
        bootstrap = cluster.settings["KAFKA_BOOTSTRAP_SERVERS"]
        assert len(bootstrap.split(",")) == 3, bootstrap
        env = {**services_env, "KAFKA_BOOTSTRAP_SERVERS": bootstrap}
        with new_topics(env, database) as topics:
            saved = dict(os.environ)
            os.environ.update(topics.env)  # the processes' broker, database and topics
            base = load(None, topics.env)
            run = Region(
                REGION,
                region,
                base,
                duration_ms=DURATION_MS,
                speed=SPEED,
                coordinator="cpsat",
                log_dir=tmp_path / "logs",
                run_id=f"e2e-replicated-{int(time.time())}",
            )
            try:
                run.prepare()
                namespace = base.kafka.inbound_topic.rsplit(".", 1)[0]
                names = region_topics(bootstrap, namespace)
                replicas = {
                    k: len(p["replica_nodes"]) for k, p in partitions(bootstrap, names).items()
                }
                assert set(replicas.values()) == {3}, replicas  # the region's topics too
                run.start(schedulers=2)
                run.wait_ready(schedulers=2)
                clock = run.begin()

                watched = members.coordinator_topic(base)
                clock.sleep_until(FIRST_KILL_AT_MS)
                first = leader(bootstrap, watched)
                first_at_ms = clock.now_ms()
                first_figures = kill_and_restart(cluster, bootstrap, names, first, watched)
                run.watch()

                clock.sleep_until(SECOND_KILL_AT_MS)
                second = next(n for n in (leader(bootstrap, watched), 1, 2, 3) if n != first)
                second_at_ms = clock.now_ms()
                # the window's last patients have their max_wait_s to be referred out
                last_referral_ms = second_at_ms + WINDOW_MS + region.rules.max_wait_ms
                assert last_referral_ms < DURATION_MS, "the first broker took too long to return"
                second_figures = kill_and_restart(cluster, bootstrap, names, second, watched)

                run.wait_end(finish_s=180)
                crashed = [c.name for c in run.children if "Traceback" in c.log_path.read_text()]
                distributed = assert_nothing_lost_or_doubled(run, DURATION_MS)
                assert_each_hospital_replays(run, tmp_path)
            finally:
                run.close()
                delete_topics(base, prefix=members.topic_prefix(base))
                os.environ.clear()
                os.environ.update(saved)

    arrivals = own_arrivals(region, DURATION_MS)
    windows = {
        at: (in_window(distributed, arrivals, at), in_window(calm, arrivals, at))
        for at in (first_at_ms, second_at_ms)
    }
    print(
        f"\nFAULT-ROW replicated broker, a region: two brokers SIGKILLed in turn | cluster of 3 "
        f"up in {cluster_up_s:.1f} s; broker {first} (the coordinator topic's leader) killed "
        f"at {first_at_ms / 1000:.0f} s simulated: new leader in {first_figures[0]:.1f} s, "
        f"restarted in {first_figures[1]:.1f} s, in sync {first_figures[2]:.1f} s later; "
        f"broker {second} killed at {second_at_ms / 1000:.0f} s: new leader in "
        f"{second_figures[0]:.1f} s, restarted in {second_figures[1]:.1f} s, in sync "
        f"{second_figures[2]:.1f} s later | {len(region.ids)} hospitals, "
        f"{len(arrivals)} arrivals | lost 0 | doubled 0 | services that logged a traceback: "
        f"{crashed or 'none'} | sent away {len(distributed.requested)}, referred out of the "
        f"region {len(distributed.referred_out)} (undisturbed {len(calm.requested)}, "
        f"{len(calm.referred_out)}); in the {WINDOW_MS // 60_000} min after each kill "
        f"(sent away, referred out) disturbed vs undisturbed: "
        f"{ {round(at / 1000): w for at, w in windows.items()} }"
    )
    for at, ((sent, out), (calm_sent, calm_out)) in windows.items():
        assert sent <= calm_sent + SLACK, f"a spike of transfers after the kill at {at} ms"
        assert out <= calm_out + SLACK, f"a spike of referrals out after the kill at {at} ms"
    assert len(distributed.referred_out) <= len(calm.referred_out) + SLACK
