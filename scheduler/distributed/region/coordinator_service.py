"""The region's coordinator as a service: the transfer protocol between the hospitals'
schedulers, over Kafka, with its state in PostgreSQL and a standby.

It reads every hospital's decisions topic (`transfer.requested`, `.accepted`, `.declined`,
and the admissions of transferred patients), and every step (a quarter of a wall second)
it decides, with the embedded region's coordinator (`scheduler.region.coordinator`): the
requests past `max_wait_s` (or that the rules forbid moving) are referred out of the region,
the others offered to a hospital with room. A hospital's free rooms are read from its schema
(its last committed tick), less the rooms it holds for patients on their way. An accepted
patient's `patient.arrived` (with `transferred_from`) is sent to the receiving hospital when
the run's clock reaches the end of the drive.

A step's state (the requests, the patients on the road, the positions read, the messages
owed) commits in one transaction, fenced by the coordinator's lease, with the step's
decisions (`region_decisions`, keyed by event id: one row each, whoever sends it twice);
only then are its messages sent, and marked sent at the next commit. A standby that takes
over loads the state and sends again what was owed; the schedulers drop an event id they
have applied, so a message sent twice is applied once.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import Double, Engine, Integer, MetaData, String, Text, select, text
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from scheduler import events as ev
from scheduler.config import Config
from scheduler.db.lease import Lease, LeaseBase, LeaseLost
from scheduler.db.models import NAMING_CONVENTION
from scheduler.distributed import bus
from scheduler.distributed.clock import LiveClock
from scheduler.distributed.region import members
from scheduler.hospital import Hospital
from scheduler.region import coordinator as coordinators
from scheduler.region import events as rev
from scheduler.region.config import RegionConfig
from scheduler.region.coordinator import Capacity
from scheduler.region.desk import DeskState, TransferDesk

log = logging.getLogger("hospital.region.coordinator")
STEP_S = 0.25
GRACE_MS = 60_000  # past the run's end: the hospitals' last decisions are still heard
WATCHED = {
    **rev.DECISIONS,
    ev.PatientAdmitted.TYPE: ev.PatientAdmitted,
}


class StateBase(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class StateRow(StateBase):
    """The coordinator's state after its last step, as one JSON document per run."""

    __tablename__ = "coordinator_state"
    run_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    step_at: Mapped[float] = mapped_column(Double)
    state: Mapped[str] = mapped_column(Text)


class RegionDecisionRow(StateBase):
    """Every decision of the coordinator, once."""

    __tablename__ = "region_decisions"
    run_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    time_ms: Mapped[int] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(64))
    payload: Mapped[str] = mapped_column(Text)


def prepare(engine: Engine) -> None:
    """The coordinator's tables in its schema (its own: no hospital's migrations apply)."""
    LeaseBase.metadata.create_all(engine)
    StateBase.metadata.create_all(engine)


@dataclass
class State:
    """What a standby takes over: the desk's books, where the hospitals' topics were read
    up to, and the messages committed but not known to be sent."""

    desk: dict[str, Any] = field(default_factory=dict)
    positions: dict[str, int] = field(default_factory=dict)  # "topic:partition" -> offset
    owed: list[list[str]] = field(default_factory=list)  # [topic, key, value]

    def dump(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def load(cls, text_: str) -> State:
        return cls(**json.loads(text_))


class CoordinatorService:
    def __init__(
        self,
        region: RegionConfig,
        base: Config,
        *,
        run_id: str,
        coordinator: str,
        coordinator_id: str,
        stop: threading.Event | None = None,
    ):
        from scheduler.db.store import connect

        self.region, self.base, self.run_id = region, base, run_id
        self.clock: LiveClock | None = None  # the run's, once begun
        self.until_ms: int | None = None
        self.desk = TransferDesk(region, coordinators.make(coordinator))
        self.stop = stop or threading.Event()
        self.engine = connect(members.schema_url(base.database.url, members.COORDINATOR_SCHEMA))
        prepare(self.engine)
        self.lease = Lease(self.engine, coordinator_id)
        self.configs = {h: members.member_config(region, h, base) for h in region.ids}
        self.rooms = {h: _Rooms(c) for h, c in self.configs.items()}
        self.by_topic = {c.kafka.decisions_topic: h for h, c in self.configs.items()}
        self.state = State()
        self.counters = {"steps": 0, "offers": 0, "referred_out": 0, "arrivals_sent": 0}

    # --- active or standby --------------------------------------------------------------

    def serve(self) -> None:
        """Coordinate until the run is over: at once if no other coordinator is active, else
        as its standby, once it is gone (its lease released or expired)."""
        while not self.stop.is_set():
            log.info("coordinator %s: waiting for the lease", self.lease.holder)
            if not self.lease.wait(True, self.stop):
                return
            log.info("coordinator %s: active, lease epoch %d", self.lease.holder, self.lease.epoch)
            try:
                self.lead()
                return
            except LeaseLost as exc:
                log.warning("%s: stepping down to standby", exc)
            finally:
                self.lease.release()

    def await_run(self) -> LiveClock | None:
        """The run's clock, once the launcher has begun it (it waits for a coordinator to be
        active first), the lease kept meanwhile; None if stopped first."""
        from scheduler.distributed.region.host import run_clock

        while self.clock is None and not self.stop.is_set():
            self.clock, self.until_ms = run_clock(
                self.region, self.base, self.run_id, self.stop, timeout_s=0
            )
            self.lease.renew_if_due()
            if self.lease.lost():
                raise LeaseLost(f"coordinator {self.lease.holder}: lease lost before the run")
            self.stop.wait(0.5)
        return self.clock

    def lead(self) -> None:
        clock = self.await_run()
        if clock is None:
            return
        self.state = self.load()
        self.desk.state = DeskState.load(self.state.desk) if self.state.desk else DeskState()
        consumer = bus.consumer(self.base)
        producer = bus.producer(self.base)
        outbox = bus.Outbox(producer, bus.headers(self.run_id, "coordinator"))
        try:
            for tp in members.assign_all(consumer, self.by_topic):
                at = self.state.positions.get(f"{tp.topic}:{tp.partition}")
                if at is None:
                    consumer.seek_to_beginning(tp)
                else:
                    consumer.seek(tp, at)
            self.send(outbox)  # what the last holder committed and may not have sent
            while not self.stop.is_set():
                started = time.monotonic()
                self.read(consumer)
                # Nothing decided past the run's end, when the hospitals no longer tick: a
                # request still open then stays open, as in the embedded region.
                now_ms = clock.now_ms()
                decide_at = now_ms if self.until_ms is None else min(now_ms, self.until_ms)
                decisions = self.step(decide_at)
                self.commit(decisions)
                self.send(outbox)
                self.counters["steps"] += 1
                if self.until_ms is not None and now_ms > self.until_ms + GRACE_MS:
                    break
                self.stop.wait(max(0.0, STEP_S - (time.monotonic() - started)))
        finally:
            consumer.close()
            bus.close_producer(producer)
        log.info("coordinator %s: done (%s)", self.lease.holder, self.counters)

    # --- the state ----------------------------------------------------------------------

    def load(self) -> State:
        with Session(self.engine) as session:
            row = session.get(StateRow, self.run_id)
            return State.load(row.state) if row is not None else State()

    def commit(self, decisions: list[ev.Decision]) -> None:
        with Session(self.engine) as session, session.begin():
            self.lease.fence(session)
            self.state.desk = self.desk.state.dump()
            session.merge(
                StateRow(run_id=self.run_id, step_at=time.time(), state=self.state.dump())
            )
            for d in decisions:
                session.merge(
                    RegionDecisionRow(
                        run_id=self.run_id,
                        event_id=d.event_id,
                        time_ms=d.time_ms,
                        type=d.TYPE,
                        payload=d.to_json(),
                    )
                )

    def send(self, outbox: bus.Outbox) -> None:
        """Send what is owed; forgotten once the broker has it (the next commit says so)."""
        if not self.state.owed:
            return
        for topic, key, value in self.state.owed:
            outbox.send(topic, key.encode(), value.encode())
        outbox.flush()
        self.state.owed = []

    # --- reading the hospitals ------------------------------------------------------------

    def read(self, consumer) -> None:
        for tp, messages in consumer.poll(timeout_ms=0, max_records=5000).items():
            for message in messages:
                self.state.positions[f"{tp.topic}:{tp.partition}"] = message.offset + 1
                if bus.header(message, "run") != self.run_id:
                    continue
                value = message.value or b""
                if b'"transfer.' not in value and b'"patient.admitted"' not in value:
                    continue  # most decisions are no business of the region's
                try:
                    data = ev.loads(value)
                    decision = rev.parse_wire(data, WATCHED)
                except ev.BadEvent:
                    continue
                self.desk.heard(decision)

    # --- one step -----------------------------------------------------------------------

    def step(self, now_ms: int) -> list[ev.Decision]:
        """The desk's step: its decisions, owed to Kafka with the arrivals due (an offer
        also to its hospital)."""
        step = self.desk.step(now_ms, self.capacity)
        for decision in step.decisions:
            if isinstance(decision, rev.TransferOffered):
                self.owe(self.configs[decision.to].kafka.inbound_topic, decision)
                self.counters["offers"] += 1
            else:
                self.counters["referred_out"] += 1
            self.owe(members.coordinator_topic(self.base), decision)
        for to, arrival in step.arrivals:
            self.owe(self.configs[to].kafka.inbound_topic, arrival)
            self.counters["arrivals_sent"] += 1
        return step.decisions

    def owe(self, topic: str, event: ev.Event) -> None:
        self.state.owed.append([topic, bus.key_of(event).decode(), event.to_json()])

    def capacity(self, held: set[tuple[str, str]]) -> dict[str, Capacity]:
        """Every hospital's free rooms as its schema has them, less the `held` rooms of
        patients on the road (a held room is `free` in the schema: only its scheduler
        knows it is held)."""
        union = " UNION ALL ".join(
            f"SELECT '{h}' AS hospital, room_id, status FROM \"{members.schema_of(h)}\".rooms "
            f"WHERE status IN ('free', 'dirty', 'cleaning')"
            for h in self.region.ids
        )
        free: dict[str, list[str]] = {h: [] for h in self.region.ids}
        freeing = dict.fromkeys(self.region.ids, 0)
        with self.engine.connect() as connection:
            for hospital, room_id, status in connection.execute(text(union)):
                if status == "free" and (hospital, room_id) not in held:
                    free[hospital].append(room_id)
                elif status != "free":
                    freeing[hospital] += 1
        return {h: self.rooms[h].capacity(free[h], freeing[h]) for h in self.region.ids}


class _Rooms:
    """A hospital's rooms as the coordinator needs them: which isolate."""

    def __init__(self, config: Config):
        hospital = Hospital(config)
        self.count = len(hospital.rooms)
        self.isolating = set(hospital.isolation_rooms)
        self.shared = not hospital.reserve_isolation_rooms

    def capacity(self, free: list[str], freeing: int) -> Capacity:
        isolation = sum(1 for r in free if r in self.isolating)
        plain = len(free) - isolation
        return Capacity(self.count, plain, isolation, self.shared, freeing)


def region_decisions(engine: Engine, run_id: str) -> list[dict[str, Any]]:
    """The coordinator's decisions of a run, in time order."""
    with Session(engine) as session:
        rows = session.scalars(
            select(RegionDecisionRow)
            .where(RegionDecisionRow.run_id == run_id)
            .order_by(RegionDecisionRow.time_ms, RegionDecisionRow.event_id)
        )
        return [json.loads(r.payload) for r in rows]
