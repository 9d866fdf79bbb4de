"""A scheduler process of a distributed region: it serves the hospitals Kafka gives it.

The process joins the run's schedulers group on the region's hospitals topic (a partition per
hospital). Kafka's group protocol spreads the partitions over the live members, and moves
them when one dies (its session times out) or one joins: the process serves, each in a
thread of its own, the hospitals whose partitions it holds. It reads nothing from that topic;
the assignment is the message.

Serving a hospital is the single hospital's `LiveScheduler` on the hospital's topics and
schema (`members`), with the region member's scheduler: its state is rebuilt from the
schema's stored ticks (replayed and checked), and each of its commits is fenced by the
hospital's lease in that schema. So two processes never commit for one hospital, even when
an assignment moves faster than an old owner notices: the new owner waits for the old one's
lease to be released (a clean hand-over) or to expire (a process killed), and an old owner
that wakes up deposed finds its commit refused and lets the hospital go.

Kafka revokes every partition at a rebalance and then assigns them again (sticky: mostly to
the same members); a hospital that stays with this process keeps running through it, and
only one assigned elsewhere is stopped, once the new assignment is known.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field

from scheduler.config import Config
from scheduler.db.lease import LeaseLost
from scheduler.db.store import StoreError
from scheduler.distributed import bus
from scheduler.distributed.bus import BusError
from scheduler.distributed.clock import LiveClock
from scheduler.distributed.region import members
from scheduler.region.config import RegionConfig

log = logging.getLogger("hospital.region.scheduler")

SESSION_TIMEOUT_MS = 6_000  # the broker's floor: a killed process's hospitals move this soon
HEARTBEAT_MS = 1_000
POLL_MS = 200
STOP_WAIT_S = 30  # a hospital given away: how long its thread may take to hand over
RETRY_S = 2.0
AWAIT_RUN_POLL_S = 0.5
IDLE_CHECK_S = 10.0  # how often a process that serves nothing looks at the others
BEGIN_WAIT_S = 600  # how long a process waits for its run to begin


@dataclass
class Served:
    """One hospital this process serves: the thread ticking it and how to stop it."""

    hospital_id: str
    thread: threading.Thread
    stop: threading.Event = field(default_factory=threading.Event)
    finished: bool = False  # its run ended and everything owed was sent
    error: str = ""


def default_host_id() -> str:
    return f"{socket.gethostname()[:40]}-{os.getpid()}"


class RegionHost:
    def __init__(
        self,
        region: RegionConfig,
        base: Config,
        *,
        run_id: str,
        host_id: str | None = None,
        stop: threading.Event | None = None,
    ):
        self.region = region
        self.base = base
        self.run_id = run_id
        self.host_id = host_id or default_host_id()
        self.stop = stop or threading.Event()
        self.topic = members.hospitals_topic(base, region)
        self.served: dict[str, Served] = {}
        self.until_ms: int | None = None
        self.clock: LiveClock | None = None
        self.counters = {"taken": 0, "given_away": 0}

    # --- the group ----------------------------------------------------------------------

    def serve(self) -> None:
        """Serve what Kafka assigns until the run is over (every hospital's run ended and
        none is served) or `stop`."""
        from kafka import ConsumerRebalanceListener
        from kafka.coordinator.assignors.sticky.sticky_assignor import StickyPartitionAssignor

        host = self
        # The group's troubles (a session timed out, a rejoin) are worth an operator's eye.
        logging.getLogger("kafka.coordinator").setLevel(logging.WARNING)

        class Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked):
                pass  # kept running until the new assignment says otherwise

            def on_partitions_assigned(self, assigned):
                host.assign(sorted(tp.partition for tp in assigned))

        def join():
            member = bus.consumer(
                self.base,
                group_id=members.schedulers_group(self.base, self.run_id),
                session_timeout_ms=SESSION_TIMEOUT_MS,
                heartbeat_interval_ms=HEARTBEAT_MS,
                partition_assignment_strategy=[StickyPartitionAssignor],
                client_id=self.host_id,
            )
            member.subscribe([self.topic], listener=Listener())
            return member

        consumer = join()
        look_at = idle_check = time.monotonic() + IDLE_CHECK_S
        try:
            while not self.stop.is_set():
                consumer.poll(timeout_ms=POLL_MS)
                consumer.pause(*consumer.assignment())  # the assignment, not the messages
                now = time.monotonic()
                if self.clock is None and not self.served and now > look_at:
                    # the run is begun once every hospital is served (a hospital's thread
                    # learns its clock otherwise)
                    self.clock, self.until_ms = run_clock(
                        self.region, self.base, self.run_id, self.stop, timeout_s=0
                    )
                    look_at = now + 2
                if self.served or consumer.assignment():
                    idle_check = now + IDLE_CHECK_S
                elif now > idle_check:
                    idle_check = now + IDLE_CHECK_S
                    if self.others_serve_several():
                        # Seen once under load: a member dropped from the group (its session
                        # timed out) that never rejoined. A new member joins afresh.
                        log.warning(
                            "scheduler process %s: idle while others serve several "
                            "hospitals each: joining the group again",
                            self.host_id,
                        )
                        consumer.close()
                        consumer = join()
                if self.over():
                    break
        finally:
            self.let_go(list(self.served))
            consumer.close()
        log.info("scheduler process %s: done (%s)", self.host_id, self.counters)

    def others_serve_several(self) -> bool:
        """Whether a live process holds the leases of two hospitals or more (so that a fair
        share would give this one some)."""
        from scheduler.db.store import connect

        engine = connect(members.schema_url(self.base.database.url, "public"))
        try:
            held = lease_holders(engine, self.region)
        finally:
            engine.dispose()
        counts: dict[str, int] = {}
        for holder in held.values():
            if holder:
                counts[holder] = counts.get(holder, 0) + 1
        return max(counts.values(), default=0) >= 2

    def assign(self, partitions: list[int]) -> None:
        ids = self.region.ids
        mine = {ids[p] for p in partitions if p < len(ids)}
        gone = [h for h in self.served if h not in mine]
        self.let_go(gone)
        for hospital_id in sorted(mine - set(self.served)):
            self.take(hospital_id)
        log.info(
            "scheduler process %s serves %d hospitals: %s",
            self.host_id,
            len(self.served),
            ", ".join(sorted(self.served)),
        )

    def over(self) -> bool:
        """The run has ended for every hospital this process serves, and time is past the
        run's end (a process that serves none waits for the end too)."""
        if self.clock is None or self.until_ms is None:
            return False
        past_end = self.clock.now_ms() > self.until_ms + 4 * self.region.tick_ms
        return past_end and all(not s.thread.is_alive() for s in self.served.values())

    # --- one hospital -------------------------------------------------------------------

    def take(self, hospital_id: str) -> None:
        served = Served(hospital_id, threading.Thread())
        served.thread = threading.Thread(
            target=self._run_hospital, args=(served,), name=f"hospital-{hospital_id}", daemon=True
        )
        self.served[hospital_id] = served
        self.counters["taken"] += 1
        served.thread.start()

    def let_go(self, hospital_ids: list[str]) -> None:
        for hospital_id in hospital_ids:
            self.served[hospital_id].stop.set()
        for hospital_id in hospital_ids:
            served = self.served.pop(hospital_id)
            served.thread.join(STOP_WAIT_S)
            self.counters["given_away"] += 1
            log.info("scheduler process %s: let %s go", self.host_id, hospital_id)

    def _run_hospital(self, served: Served) -> None:
        """Serve the hospital until its run ends or it is given away; after a failure (the
        database gone longer than a scheduler waits for it, the lease lost to another
        process), try again while it is this process's."""
        hospital_id = served.hospital_id
        while not served.stop.is_set():
            try:
                self._serve_hospital(hospital_id, served.stop)
                served.finished = not served.stop.is_set()
                return
            except Exception as exc:  # noqa: BLE001 - one hospital's failure is not the process's
                served.error = f"{type(exc).__name__}: {exc}"
                log.error(
                    "hospital %s failed here (%s): again in %g s",
                    hospital_id,
                    served.error,
                    RETRY_S,
                    exc_info=not isinstance(exc, StoreError | BusError | LeaseLost),
                )
                served.stop.wait(RETRY_S)

    def _await_run(self, ledger, lease, stop: threading.Event):
        """The hospital's run, once the launcher has begun it (it waits for every hospital
        to be served first), the lease kept meanwhile; None if stopped first."""
        while not stop.is_set():
            run = ledger.run(self.run_id)
            if run is not None:
                return run
            lease.renew_if_due()
            if lease.lost():
                raise LeaseLost(f"hospital lease lost while waiting for run {self.run_id}")
            stop.wait(AWAIT_RUN_POLL_S)
        return None

    def _serve_hospital(self, hospital_id: str, stop: threading.Event) -> None:
        from scheduler.db.lease import Lease
        from scheduler.db.ledger import Ledger
        from scheduler.distributed.scheduler_service import LiveScheduler
        from scheduler.region import events as rev
        from scheduler.region.member import MemberScheduler

        config = members.member_config(self.region, hospital_id, self.base)
        # One engine a hospital, for its ticks and its lease: a region of many hospitals
        # must not run its database out of connections.
        ledger = Ledger(config.database.url, config, config.scheduler.policy)
        lease = Lease(ledger.engine, self.host_id)
        try:
            waited = time.monotonic()
            if not lease.wait(standby=True, stop=stop):
                return
            log.info(
                "hospital %s: taken by %s after %.1f s (lease epoch %d)",
                hospital_id,
                self.host_id,
                time.monotonic() - waited,
                lease.epoch,
            )
            ledger.reload()  # another process may have written since it was opened
            ledger.lease = lease
            ledger.parse = rev.parse_member_event
            run = self._await_run(ledger, lease, stop)
            if run is None:
                return
            clock = LiveClock(run.epoch_s, run.speed)
            if self.clock is None:
                self.clock, self.until_ms = clock, run.until_ms
            live = LiveScheduler(
                config,
                ledger,
                run_id=self.run_id,
                clock=clock,
                until_ms=run.until_ms,
                stop=stop,
                make=lambda c: MemberScheduler(c, hospital_id, requests_transfers=True),
                snapshot_every=None,
                transactional_id=f"region-scheduler-{self.run_id}-{hospital_id}",
            )
            try:
                live.start(fresh=False)
                live.serve()
            finally:
                live.close()
        finally:
            lease.release()
            ledger.close()


def run_clock(
    region: RegionConfig,
    base: Config,
    run_id: str,
    stop: threading.Event,
    timeout_s: float = BEGIN_WAIT_S,
) -> tuple[LiveClock | None, int | None]:
    """The run's clock and end, as begun in the first hospital's schema (the launcher begins
    every hospital's run, on one clock, once the processes are up); (None, None) if it is
    not begun within `timeout_s` (0: looked at once) or `stop` is set first."""
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from scheduler.db.models import Run
    from scheduler.db.store import connect

    schema = members.schema_of(region.ids[0])
    engine = connect(members.schema_url(base.database.url, schema))
    try:
        deadline = time.monotonic() + timeout_s
        while not stop.is_set():
            with Session(engine) as session:
                run = session.scalars(select(Run).where(Run.run_id == run_id)).first()
                if run is not None:
                    return LiveClock(run.epoch_s, run.speed), run.until_ms
            if time.monotonic() >= deadline:
                break
            stop.wait(0.5)
        return None, None
    finally:
        engine.dispose()


def lease_holders(engine, region: RegionConfig) -> dict[str, str]:
    """Who holds each hospital's lease now, by schema, and the coordinator's (under its
    schema's name); "" for a lease free or expired."""
    from sqlalchemy import text

    schemas = [members.schema_of(h) for h in region.ids] + [members.COORDINATOR_SCHEMA]
    union = " UNION ALL ".join(
        f"SELECT '{schema}', holder, expires_at FROM \"{schema}\".scheduler_lease"
        for schema in schemas
    )
    held = dict.fromkeys(schemas, "")
    with engine.connect() as connection:
        now = connection.execute(text("SELECT extract(epoch from now())")).scalar_one()
        for schema, holder, expires_at in connection.execute(text(union)):
            if expires_at > now:
                held[schema] = holder
    return held
