"""`hospital run --kafka --region`: a distributed region on one broker and one database.

Before any process starts, every hospital's schema is migrated and its topics made. Then the
world, the coordinator and its standby, and the scheduler processes start; once every
hospital is served (its lease held) and a coordinator is active, every hospital's run is
begun (its start in its inbound topic recorded) on one clock whose time 0 falls a few seconds
later: a loaded machine that takes long to start the processes does not eat into the run.
The processes read the run from the database, as a restarted one would. The launcher
restarts a process that fails, and stops them all once the run is over.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from scheduler.config import Config
from scheduler.distributed import bus
from scheduler.distributed.clock import LiveClock
from scheduler.distributed.region import members
from scheduler.distributed.supervisor import Child, Supervisor, SupervisorError
from scheduler.region.config import RegionConfig

log = logging.getLogger("hospital.region")
FINISH_S = 120  # past the end: how long the processes may take to finish


def ensure_region_topics(base: Config, region: RegionConfig) -> None:
    """The hospitals topic (a partition per hospital) and the coordinator's topic,
    replicated as the hospitals' own topics are."""
    from kafka.admin import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        admin = KafkaAdminClient(
            **bus.client_options(base), request_timeout_ms=15000, bootstrap_timeout_ms=10000
        )
    except KafkaError as exc:
        raise bus.BusError(f"the broker at {base.kafka.bootstrap_servers}: {exc}") from None
    try:
        wanted = {members.hospitals_topic(base, region): len(region.hospitals)}
        wanted[members.coordinator_topic(base)] = 1
        bus.create_missing_topics(admin, wanted)
        bus._partition_counts(admin, wanted)
    finally:
        admin.close()


READY_S = 300  # how long the processes may take to serve every hospital
BEGIN_LEAD_S = 5.0  # from the run's beginning to its time 0: the world and all connect


class Region:
    """A distributed region's run, step by step: `prepare` (every hospital's schema and
    topics, the coordinator's schema), `start` the processes, `wait_ready` (every hospital
    served, the coordinator active), `begin` the run on one clock, `wait_end`. A test may
    stop or add processes in between."""

    def __init__(
        self,
        region_path: Path,
        region: RegionConfig,
        base: Config,
        *,
        duration_ms: int,
        speed: float,
        coordinator: str,
        log_dir: Path,
        seed: int | None = None,
        run_id: str | None = None,
        restart: bool = True,
    ):
        self.region_path, self.region, self.base = region_path, region, base
        self.duration_ms, self.speed, self.coordinator = duration_ms, speed, coordinator
        self.log_dir, self.seed, self.restart = log_dir, seed, restart
        self.run_id = run_id or f"region-{int(time.time() * 1000)}"
        self.children: list[Child] = []
        self.watcher = Supervisor(
            base, None, base.database.url, duration_ms, speed, None, {}, log_dir
        )
        self.watcher.children = self.children
        self.ledgers: dict[str, Any] = {}
        self.clock: LiveClock | None = None

    # --- before the run -----------------------------------------------------------------

    def prepare(self) -> None:
        from scheduler.db.ledger import Ledger
        from scheduler.db.store import connect
        from scheduler.distributed.region.coordinator_service import prepare

        url = self.base.database.url
        ensure_region_topics(self.base, self.region)
        for hospital_id in self.region.ids:
            members.ensure_schema(url, members.schema_of(hospital_id))
            config = members.member_config(self.region, hospital_id, self.base)
            bus.ensure_topics(config)
            self.ledgers[hospital_id] = Ledger(config.database.url, config, config.scheduler.policy)
        members.ensure_schema(url, members.COORDINATOR_SCHEMA)
        engine = connect(members.schema_url(url, members.COORDINATOR_SCHEMA))
        prepare(engine)
        engine.dispose()

    def start(self, schedulers: int) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        seed = ["--seed", str(self.seed)] if self.seed is not None else []
        self.add("world", ["world", *seed])
        for n in (1, 2):  # the first to start is active, the other its standby
            self.add(
                f"coordinator-{n}",
                [
                    "coordinator",
                    "--coordinator",
                    self.coordinator,
                    "--coordinator-id",
                    f"coordinator-{n}",
                ],
            )
        for n in range(1, schedulers + 1):
            self.add_scheduler(n)

    def add_scheduler(self, n: int) -> Child:
        return self.add(f"scheduler-{n}", ["scheduler", "--scheduler-id", f"scheduler-{n}"])

    def add(self, name: str, args: list[str]) -> Child:
        child = Child(
            name,
            ["region", *args, "--config", str(self.region_path), "--run-id", self.run_id],
            log_path=self.log_dir / f"{name}.log",
            # never on a command line, which any local user can read (`ps`)
            env={"DATABASE_URL": self.base.database.url},
        )
        self.children.append(child)
        child.start()
        return child

    def wait_ready(self, schedulers: int, timeout_s: float = READY_S) -> None:
        """Until every hospital's lease is held, by as many scheduler processes as can share
        them, and a coordinator's is, the same for two seconds in a row."""
        deadline = time.monotonic() + timeout_s
        wanted = min(schedulers, len(self.region.ids))
        last, steady_since = None, time.monotonic()
        while True:
            self.watch()
            holders = self.holders()
            served = {h: who for h, who in holders.items() if who}
            now = time.monotonic()
            if holders != last:
                last, steady_since = holders, now
            ready = (
                len(served) == len(holders)
                and len({who for h, who in served.items() if h != members.COORDINATOR_SCHEMA})
                >= wanted
            )
            if ready and now - steady_since >= 2.0:
                return
            if now > deadline:
                raise SupervisorError(
                    f"the region's processes did not serve every hospital within "
                    f"{timeout_s:g} s: see {self.log_dir}/"
                )
            time.sleep(0.5)

    def holders(self) -> dict[str, str]:
        """Who holds each hospital's lease (and the coordinator's, under its schema's name)
        now; "" for a lease free or expired."""
        from scheduler.distributed.region.host import lease_holders

        return lease_holders(next(iter(self.ledgers.values())).engine, self.region)

    def begin(self) -> LiveClock:
        """Every hospital's run, on one clock whose time 0 is `BEGIN_LEAD_S` away; the first
        hospital's last (the processes that serve none read the clock from it)."""
        from scheduler.distributed.scheduler_service import begin_run

        clock = LiveClock(time.time() + BEGIN_LEAD_S, self.speed)
        consumer = bus.consumer(self.base)
        try:
            for hospital_id in reversed(self.region.ids):
                config = self.ledgers[hospital_id].store.config
                begin_run(
                    config,
                    self.ledgers[hospital_id],
                    self.run_id,
                    clock,
                    consumer,
                    until_ms=self.duration_ms,
                )
        finally:
            consumer.close()
        self.clock = clock
        return clock

    # --- during and after ---------------------------------------------------------------

    def watch(self) -> None:
        """Restart a process that failed (unless told not to: a test kills its own)."""
        if self.restart:
            self.watcher.watch()

    def wait_end(self, on_progress=lambda sim_ms: None, finish_s: float = FINISH_S) -> None:
        assert self.clock is not None
        while self.clock.now_ms() <= self.duration_ms:
            self.watch()
            on_progress(max(0, self.clock.now_ms()))
            time.sleep(0.2)
        deadline = time.monotonic() + finish_s
        while any(c.process and c.process.poll() is None for c in self.children):
            self.watch()
            if time.monotonic() > deadline:
                raise SupervisorError(
                    f"the region's processes did not finish within {finish_s} s of the "
                    f"end: see {self.log_dir}/"
                )
            time.sleep(0.2)

    def close(self) -> None:
        self.watcher.stop_all()
        for ledger in self.ledgers.values():
            ledger.close()
        self.ledgers = {}

    def run(self, schedulers: int, on_progress=lambda sim_ms: None) -> None:
        """The whole run: prepared, started, begun, waited for, stopped."""
        try:
            self.prepare()
            self.start(schedulers)
            self.wait_ready(schedulers)
            self.begin()
            self.wait_end(on_progress)
        finally:
            self.close()


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
