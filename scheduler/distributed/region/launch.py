"""`hospital run --kafka --region`: a distributed region on one broker and one database.

Before any process starts, every hospital's schema is migrated, its topics made and its run
begun (its start in its inbound topic recorded), all on one clock whose time 0 falls a little
later: the processes read the run from the database, as a restarted one would. Then the
world, the coordinator and its standby, and the scheduler processes start; the launcher
restarts one that fails, and stops them all once the run is over.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scheduler.config import Config
from scheduler.distributed import bus
from scheduler.distributed.clock import LiveClock
from scheduler.distributed.region import members
from scheduler.distributed.supervisor import Child, Supervisor, SupervisorError
from scheduler.region.config import RegionConfig

log = logging.getLogger("hospital.region")
LEAD_S = 15.0  # from the run's preparation to its time 0: the processes start meanwhile
FINISH_S = 120  # past the end: how long the processes may take to finish


def ensure_region_topics(base: Config, region: RegionConfig) -> None:
    """The hospitals topic (a partition per hospital) and the coordinator's topic."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    try:
        admin = KafkaAdminClient(
            **bus.client_options(base), request_timeout_ms=15000, bootstrap_timeout_ms=10000
        )
    except KafkaError as exc:
        raise bus.BusError(f"the broker at {base.kafka.bootstrap_servers}: {exc}") from None
    try:
        wanted = {members.hospitals_topic(region): len(region.hospitals)}
        wanted[members.coordinator_topic()] = 1
        existing = set(admin.list_topics())
        missing = [NewTopic(n, p, 1) for n, p in wanted.items() if n not in existing]
        if missing:
            try:
                admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass
        bus._partition_counts(admin, wanted)
    finally:
        admin.close()


def prepare_run(
    region: RegionConfig, base: Config, run_id: str, speed: float, until_ms: int | None
) -> LiveClock:
    """Every hospital's schema, topics and run, and the coordinator's schema; the clock."""
    from scheduler.db.ledger import Ledger
    from scheduler.distributed.region.coordinator_service import prepare
    from scheduler.distributed.scheduler_service import begin_run

    url = base.database.url
    ensure_region_topics(base, region)
    ledgers = []
    try:
        for hospital_id in region.ids:
            members.ensure_schema(url, members.schema_of(hospital_id))
            config = members.member_config(region, hospital_id, base)
            bus.ensure_topics(config)
            ledgers.append((config, Ledger(config.database.url, config, config.scheduler.policy)))
        members.ensure_schema(url, members.COORDINATOR_SCHEMA)
        from scheduler.db.store import connect

        engine = connect(members.schema_url(url, members.COORDINATOR_SCHEMA))
        prepare(engine)
        engine.dispose()
        clock = LiveClock(time.time() + LEAD_S, speed)
        for config, ledger in ledgers:
            begin_run(config, ledger, run_id, clock, until_ms=until_ms)
        return clock
    finally:
        for _, ledger in ledgers:
            ledger.close()


@dataclass
class RegionLauncher:
    region_path: Path
    region: RegionConfig
    base: Config
    db_url: str
    duration_ms: int
    speed: float
    schedulers: int
    coordinator: str
    log_dir: Path
    seed: int | None = None
    run_id: str = field(default_factory=lambda: f"region-{int(time.time() * 1000)}")
    children: list[Child] = field(default_factory=list)

    def run(self, on_progress=lambda sim_ms: None) -> LiveClock:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        clock = prepare_run(self.region, self.base, self.run_id, self.speed, self.duration_ms)
        common = ["--config", str(self.region_path), "--run-id", self.run_id]
        env = {"DATABASE_URL": self.db_url}  # never on a command line (`ps` shows those)
        seed = ["--seed", str(self.seed)] if self.seed is not None else []
        self.children = [
            Child(
                "world",
                ["region", "world", *common, *seed],
                log_path=self.log_dir / "world.log",
                env=env,
            )
        ]
        for n in (1, 2):  # the first to start is active, the other its standby
            self.children.append(
                Child(
                    f"coordinator-{n}",
                    [
                        "region",
                        "coordinator",
                        *common,
                        "--coordinator",
                        self.coordinator,
                        "--coordinator-id",
                        f"coordinator-{n}",
                    ],
                    log_path=self.log_dir / f"coordinator-{n}.log",
                    env=env,
                )
            )
        for n in range(1, self.schedulers + 1):
            self.children.append(
                Child(
                    f"scheduler-{n}",
                    ["region", "scheduler", *common, "--scheduler-id", f"scheduler-{n}"],
                    log_path=self.log_dir / f"scheduler-{n}.log",
                    env=env,
                )
            )
        watcher = Supervisor(
            self.base, None, self.db_url, self.duration_ms, self.speed, None, {}, self.log_dir
        )
        watcher.children = self.children
        for child in self.children:
            child.start()
        try:
            while clock.now_ms() <= self.duration_ms:
                watcher.watch()
                on_progress(max(0, clock.now_ms()))
                time.sleep(0.2)
            deadline = time.monotonic() + FINISH_S
            while any(c.process and c.process.poll() is None for c in self.children):
                watcher.watch()
                if time.monotonic() > deadline:
                    raise SupervisorError(
                        f"the region's processes did not finish within {FINISH_S} s of the "
                        f"end: see {self.log_dir}/"
                    )
                time.sleep(0.2)
        finally:
            watcher.stop_all()
        return clock


def region_figures(region: RegionConfig, base: Config, run_id: str) -> dict[str, Any]:
    """What a distributed region's run did, from its schemas: per hospital and in all."""
    from sqlalchemy import text

    from scheduler.db.store import connect
    from scheduler.distributed.region.coordinator_service import region_decisions

    engine = connect(members.schema_url(base.database.url, members.COORDINATOR_SCHEMA))
    try:
        decided = region_decisions(engine, run_id)
        hospitals: dict[str, dict[str, int]] = {}
        travel: list[float] = []
        with engine.connect() as connection:
            for h in region.ids:
                schema = members.schema_of(h)
                counts: dict[str, int] = dict(
                    connection.execute(
                        text(f'SELECT type, count(*) FROM "{schema}".decisions GROUP BY type')
                    ).all()
                )
                arrivals = connection.execute(
                    text(
                        f'SELECT count(*) FROM "{schema}".inbound_events '
                        f"WHERE type = 'patient.arrived' AND payload NOT LIKE '%transferred_from%'"
                    )
                ).scalar_one()
                travel += [
                    region.travel_ms[d["from"], d["to"]] / 60_000
                    for (payload,) in connection.execute(
                        text(
                            f'SELECT payload FROM "{schema}".decisions '
                            f"WHERE type = 'transfer.accepted'"
                        )
                    )
                    for d in [json.loads(payload)]
                ]
                hospitals[h] = {
                    "arrivals": arrivals,
                    "admitted": counts.get("patient.admitted", 0),
                    "requested": counts.get("transfer.requested", 0),
                    "accepted": counts.get("transfer.accepted", 0),
                    "declined": counts.get("transfer.declined", 0),
                    "discharged": counts.get("patient.discharged", 0),
                }
    finally:
        engine.dispose()
    referred_out = sum(d["type"] == "patient.referred_out" for d in decided)
    transfers = sum(h["accepted"] for h in hospitals.values())
    own_arrivals = sum(h["arrivals"] for h in hospitals.values())
    return {
        "run_id": run_id,
        "region": {
            "arrivals": own_arrivals,
            "referred_out": referred_out,
            "referred_out_rate": referred_out / own_arrivals if own_arrivals else 0.0,
            "offers": sum(d["type"] == "transfer.offered" for d in decided),
            "transfers": transfers,
            "mean_travel_min": sum(travel) / len(travel) if travel else None,
        },
        "hospitals": hospitals,
    }
