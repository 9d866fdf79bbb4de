"""A distributed region on the real broker and PostgreSQL: 20 hospitals over 3 scheduler
processes, a coordinator and its standby, the world (patients and staff). Mid-run one scheduler
process is SIGKILLed (its hospitals must be taken over by the others within 15 s), then the
active coordinator (its standby must take over), then a new scheduler process joins (it must
take a share). At the end nothing is lost or doubled, and each hospital's record replays, by
its own scheduler, to its decisions byte for byte.

One run, heavy (about three minutes): run once, not per parameter.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import text

from scheduler.config import load
from scheduler.distributed.region import members
from scheduler.distributed.region.launch import Region
from scheduler.region import config as region_config
from tests.e2e.conftest import new_topics
from tests.e2e.region_audit import assert_each_hospital_replays, assert_nothing_lost_or_doubled
from tests.kafka_topics import delete_topics

pytestmark = [pytest.mark.services, pytest.mark.slow, pytest.mark.timeout(600)]

REGION = Path(__file__).resolve().parents[1] / "fixtures" / "regions" / "twenty-small-wards.toml"
DURATION_MS = 20 * 60_000
SPEED = 10.0
TAKEOVER_S = 15.0


def wait_for(what: str, condition, timeout_s: float, region: Region) -> float:
    """Seconds until `condition()` holds; fails after `timeout_s`."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout_s:
            pytest.fail(f"{what}: not within {timeout_s:g} s; logs in {region.log_dir}")
        time.sleep(0.2)
    return time.monotonic() - started


def child(region: Region, name: str):
    return next(c for c in region.children if c.name == name)


def last_ticks(region: Region, hospital_ids) -> dict[str, int]:
    with next(iter(region.ledgers.values())).engine.connect() as connection:
        return {
            h: connection.execute(
                text(f'SELECT coalesce(max(tick), -1) FROM "{members.schema_of(h)}".ticks')
            ).scalar_one()
            for h in hospital_ids
        }


@pytest.fixture
def region_run(services_env, database, tmp_path):
    with new_topics(services_env, database) as topics:
        saved = dict(os.environ)
        os.environ.update(topics.env)  # the processes' broker, database and topics
        try:
            base = load(None, topics.env)
            region = Region(
                REGION,
                region_config.load(REGION),
                base,
                duration_ms=DURATION_MS,
                speed=SPEED,
                coordinator="cpsat",
                log_dir=tmp_path / "logs",
                run_id=f"e2e-region-{int(time.time())}",
                restart=False,  # the test kills processes: they stay dead
            )
            try:
                yield region
            finally:
                region.close()
                delete_topics(base, prefix=members.topic_prefix(base))
        finally:
            os.environ.clear()
            os.environ.update(saved)


def test_twenty_hospitals_over_three_processes_survive_deaths_and_a_join(region_run, tmp_path):
    run = region_run
    run.prepare()
    run.start(schedulers=3)
    run.wait_ready(schedulers=3)
    clock = run.begin()

    # --- a scheduler process killed: its hospitals move to the others ------------------
    wait_for("a quarter of the run", lambda: clock.now_ms() > DURATION_MS // 4, 120, run)
    holders = run.holders()
    victims = [h for h in run.region.ids if holders[members.schema_of(h)] == "scheduler-1"]
    assert victims, f"scheduler-1 serves no hospital: {holders}"
    before = last_ticks(run, victims)
    os.kill(child(run, "scheduler-1").process.pid, signal.SIGKILL)

    def taken_over() -> bool:
        now = run.holders()
        return all(now[members.schema_of(h)] not in ("", "scheduler-1") for h in victims)

    takeover_s = wait_for("the killed process's hospitals taken over", taken_over, 60, run)
    print(f"\n{len(victims)} hospitals taken over in {takeover_s:.1f} s")
    assert takeover_s <= TAKEOVER_S
    wait_for(
        "the taken-over hospitals ticking again",
        lambda: all(t > before[h] + 5 for h, t in last_ticks(run, victims).items()),
        30,
        run,
    )

    # --- the active coordinator killed: its standby takes over -------------------------
    active = run.holders()[members.COORDINATOR_SCHEMA]
    assert active in ("coordinator-1", "coordinator-2")
    os.kill(child(run, active).process.pid, signal.SIGKILL)
    standby_s = wait_for(
        "the coordinator's standby active",
        lambda: run.holders()[members.COORDINATOR_SCHEMA] not in ("", active),
        30,
        run,
    )
    print(f"coordinator {active} killed: its standby active in {standby_s:.1f} s")
    assert standby_s <= TAKEOVER_S

    # --- a new process joins: it takes a share ------------------------------------------
    run.add_scheduler(4)
    join_s = wait_for(
        "the new process serving hospitals",
        lambda: "scheduler-4" in run.holders().values(),
        60,
        run,
    )
    shares = Counter(run.holders()[members.schema_of(h)] for h in run.region.ids)
    print(f"scheduler-4 joined: serving in {join_s:.1f} s; shares {dict(shares)}")
    assert clock.now_ms() < DURATION_MS, "the run ended before the join was seen: too slow"

    run.wait_end(finish_s=180)

    # --- nothing lost, nothing doubled; each hospital replays -------------------------
    assert_nothing_lost_or_doubled(run, DURATION_MS)
    assert_each_hospital_replays(run, tmp_path)
