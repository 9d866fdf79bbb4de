"""What a distributed region's run must show at its end, from its schemas: nothing lost or
doubled, and each hospital's record replaying to its decisions byte for byte. And the same
region's patients through the embedded simulation, the undisturbed run to compare with."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import bindparam, text

from scheduler.demand import Demand
from scheduler.distributed.region import members
from scheduler.distributed.region.coordinator_service import region_decisions
from scheduler.distributed.region.launch import Region
from scheduler.region import events as rev
from scheduler.region.config import RegionConfig
from scheduler.region.member import MemberScheduler
from scheduler.region.network import COORDINATOR
from scheduler.region.simulation import simulate_region
from scheduler.runs import replay

Patient = tuple[str, str]  # (hospital, patient id)


@dataclass
class Outcome:
    """Who a hospital could not take itself, and who left the region."""

    requested: set[Patient]  # a transfer.requested: no room at home
    referred_out: set[Patient]  # no hospital of the region took them


def own_arrivals(region: RegionConfig, duration_ms: int) -> dict[Patient, int]:
    """Every hospital's own patients of the run (not those transferred in): their arrival
    time, the same in every run of the region's seed."""
    arrivals = {}
    for member in region.hospitals:
        for arrival in Demand(member.config, member.seed(region.seed)).arrivals():
            if arrival.time_ms > duration_ms:
                break
            arrivals[member.hospital_id, arrival.patient_id] = arrival.time_ms
    return arrivals


def undisturbed(region: RegionConfig, coordinator: str, duration_ms: int) -> Outcome:
    """The region's run in one process, on simulated time: nothing can disturb it."""
    outcome = Outcome(set(), set())

    def collect(tick) -> None:
        for hospital_id, decision in tick.decisions:
            if isinstance(decision, rev.TransferRequested):
                outcome.requested.add((hospital_id, decision.patient_id))
            elif isinstance(decision, rev.PatientReferredOut) and hospital_id == COORDINATOR:
                outcome.referred_out.add((decision.origin, decision.patient_id))

    simulate_region(region, coordinator, duration_ms, on_tick=collect)
    return outcome


def assert_nothing_lost_or_doubled(run: Region, duration_ms: int) -> Outcome:
    """Every own arrival applied once, every patient decided once (admitted or transfer
    requested), no transfer accepted twice, none both accepted and referred out, every
    transferred patient arrived once; the outcome."""
    engine = next(iter(run.ledgers.values())).engine
    coordinator = region_decisions(coordinator_engine(run), run.run_id)
    referred_out = Counter(
        (d["from"], d["patient_id"]) for d in coordinator if d["type"] == "patient.referred_out"
    )
    assert max(referred_out.values(), default=1) == 1, "a patient referred out twice"
    expected = own_arrivals(run.region, duration_ms)
    accepted: Counter = Counter()
    arrived_by_transfer: Counter = Counter()
    requested: set[Patient] = set()
    with engine.connect() as connection:
        for h in run.region.ids:
            schema = members.schema_of(h)
            inbound = payloads(connection, f'"{schema}".inbound_events', ("patient.arrived",))
            own = sorted((h, e["patient_id"]) for e in inbound if "transferred_from" not in e)
            assert own == sorted(p for p in expected if p[0] == h), f"{h}: arrivals lost/doubled"
            for e in inbound:
                if "transferred_from" in e:
                    arrived_by_transfer[e["patient_id"]] += 1
            decided = payloads(
                connection,
                f'"{schema}".decisions',
                ("patient.admitted", "transfer.requested", "transfer.accepted"),
            )
            fates = Counter(
                d["patient_id"]
                for d in decided
                if d["type"] in ("patient.admitted", "transfer.requested")
            )
            assert set(fates) == {e["patient_id"] for e in inbound}, f"{h}: a patient not decided"
            assert max(fates.values()) == 1, f"{h}: a patient decided twice"
            for d in decided:
                if d["type"] == "transfer.requested":
                    requested.add((h, d["patient_id"]))
                elif d["type"] == "transfer.accepted":
                    accepted[d["from"], d["patient_id"]] += 1
    assert accepted and max(accepted.values()) == 1, "a transfer accepted twice"
    assert not set(accepted) & set(referred_out), "a patient both transferred and referred out"
    assert set(accepted) | set(referred_out) <= requested
    assert max(arrived_by_transfer.values()) == 1
    assert set(arrived_by_transfer) <= {rev.arriving_id(*k) for k in accepted}
    return Outcome(requested, set(referred_out))


def payloads(connection, table: str, types: tuple[str, ...]) -> list[dict]:
    """The stored payloads of `table`'s rows of these event types."""
    rows = connection.execute(
        text(f"SELECT payload FROM {table} WHERE type IN :types").bindparams(
            bindparam("types", expanding=True)
        ),
        {"types": list(types)},
    )
    return [json.loads(payload) for (payload,) in rows]


def assert_each_hospital_replays(run: Region, into: Path) -> None:
    """Each hospital's export, replayed by its own scheduler: its decisions byte for byte."""
    for h in run.region.ids:
        ledger = run.ledgers[h]
        ledger.parse = rev.parse_member_event
        events, decisions = into / f"{h}.events.jsonl", into / f"{h}.decisions.jsonl"
        ledger.export(events, decisions)
        again = into / f"{h}.again.jsonl"
        replay(
            ledger.store.config,
            events,
            again,
            make=lambda c, h=h: MemberScheduler(c, h, requests_transfers=True),
            parse=rev.parse_member_data,
        )
        assert again.read_bytes() == decisions.read_bytes(), f"{h}: replays otherwise"


def coordinator_engine(run: Region):
    from scheduler.db.store import connect

    return connect(members.schema_url(run.base.database.url, members.COORDINATOR_SCHEMA))
