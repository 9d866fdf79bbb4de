"""The pieces of the distributed region that need no broker or database: a member hospital
that asks for transfers itself, its events on the wire, the coordinator's desk (the protocol's
books a standby takes over), the names of a hospital's topics and schema, and `hospital solve`
of one hospital's record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from scheduler import config as config_module
from scheduler import events as ev
from scheduler import jsonl
from scheduler.distributed.region import members
from scheduler.region import coordinator as coordinators
from scheduler.region import events as rev
from scheduler.region.coordinator import Capacity
from scheduler.region.desk import DeskState, TransferDesk
from scheduler.region.member import MemberScheduler
from tests.unit.test_region import small_region

runner = CliRunner()


def one_room_config():
    return config_module.from_mapping(
        {"hospital": {"floors": ["A"], "rooms_per_floor": 1, "isolation_rooms": []}}
    )


def arrival(n: int, time_ms: int, acuity: int = 3, isolation: bool = False):
    return ev.PatientArrived(f"arrival-{n}", time_ms, f"patient-{n}", acuity, isolation)


@pytest.mark.parametrize("requests", [True, False])
def test_a_member_asks_for_a_transfer_instead_of_referring(requests: bool):
    scheduler = MemberScheduler(one_room_config(), "north", requests_transfers=requests)
    result = scheduler.tick(1, [arrival(1, 500), arrival(2, 600, acuity=2, isolation=False)])
    admitted = [d for d in result.decisions if isinstance(d, ev.PatientAdmitted)]
    assert len(admitted) == 1
    other = next(d for d in result.decisions if d.patient_id != admitted[0].patient_id)
    if not requests:
        assert isinstance(other, ev.PatientReferred)
        return
    assert isinstance(other, rev.TransferRequested)
    assert other.origin == "north"
    sent = arrival(1, 500) if other.patient_id == "patient-1" else arrival(2, 600, acuity=2)
    assert (other.acuity, other.isolation) == (sent.acuity, sent.isolation)


def test_a_members_events_cross_the_wire_unchanged():
    offer = rev.TransferOffered("offer-1-a/p1", 5000, 5, "p1", "a", "b", 2, True, 840.0)
    arrived = rev.TransferArrived("transfer-a/p1", 9000, "a/p1", 2, False, transferred_from="a")
    own = arrival(7, 1000)
    for event in (offer, arrived, own):
        assert rev.parse_member_event(event.to_json()) == event
    with pytest.raises(ev.BadEvent):
        rev.parse_member_event(json.dumps({**offer.to_dict(), "from": 3}))


def free(rooms: int) -> Capacity:
    return Capacity(10, rooms, 0, True)


def test_the_desk_offers_answers_and_drives_as_the_protocol_says():
    region = small_region(intervals=(2.0, 8.0, 8.0), max_wait_s=30.0)
    desk = TransferDesk(region, coordinators.make("nearest"))
    request = rev.TransferRequested("d1", 1000, 1, "p1", "h1", acuity=3)
    desk.heard(request)
    desk.heard(request)  # read twice: one request
    assert len(desk.state.pending) == 1

    nobody = desk.step(2000, lambda held: {"h1": free(0), "h2": free(0), "h3": free(0)})
    assert nobody.decisions == [] and nobody.arrivals == []

    rooms = {"h1": free(0), "h2": free(1), "h3": free(1)}
    step = desk.step(3000, lambda held: rooms)
    (offer,) = step.decisions
    assert isinstance(offer, rev.TransferOffered) and offer.to == "h2"  # the nearer one
    assert desk.step(4000, lambda held: rooms).decisions == []  # awaiting h2's answer

    desk.heard(rev.TransferDeclined("d2", 5000, 5, "p1", "h1", "h2", "no room left"))
    (again,) = desk.step(6000, lambda held: rooms).decisions
    assert again.to == "h2" and again.event_id != offer.event_id

    desk.heard(rev.TransferAccepted("d3", 7000, 7, "p1", "h1", "h2", "A1"))
    assert desk.held_rooms() == {("h2", "A1")}
    travel_ms = region.travel_ms["h1", "h2"]
    assert desk.step(7000 + travel_ms - 1, lambda held: rooms).arrivals == []
    ((to, arrived),) = desk.step(7000 + travel_ms, lambda held: rooms).arrivals
    assert to == "h2" and arrived.patient_id == "h1/p1" and arrived.transferred_from == "h1"
    assert arrived.time_ms == 7000 + travel_ms
    desk.heard(ev.PatientAdmitted("d4", arrived.time_ms, 99, "h1/p1", "A1"))
    assert desk.held_rooms() == set()


def test_the_desk_refers_out_once_after_max_wait_and_its_books_survive_a_takeover():
    region = small_region(max_wait_s=30.0)
    desk = TransferDesk(region, coordinators.make("cpsat"))
    desk.heard(rev.TransferRequested("d1", 0, 0, "p1", "h1"))
    full = {h: free(0) for h in region.ids}
    assert desk.step(29_000, lambda held: full).decisions == []

    standby = TransferDesk(region, coordinators.make("cpsat"))
    standby.state = DeskState.load(json.loads(json.dumps(desk.state.dump())))
    (out,) = standby.step(30_000, lambda held: full).decisions
    assert isinstance(out, rev.PatientReferredOut) and out.waited_s == 30.0
    assert standby.step(31_000, lambda held: full).decisions == []


def test_a_hospital_of_a_region_has_topics_and_a_schema_of_its_own():
    region = small_region()
    base = config_module.from_mapping(
        {"database": {"url": "postgresql+psycopg2://u:secret@127.0.0.1:5432/db"}}
    )
    config = members.member_config(region, "h2", base)
    assert config.kafka.inbound_topic == "hospital.region.h2.inbound"
    assert config.kafka.dispatch_topic_prefix == "hospital.region.h2.dispatch."
    assert config.database.url.endswith("options=-csearch_path%3Dregion_h2")
    assert ":secret@" in config.database.url  # the processes need the password
    assert config.hospital == region.member("h2").config.hospital
    with pytest.raises(ValueError, match="PostgreSQL"):
        members.schema_url("sqlite:///x.db", "region_h2")


def test_solve_replays_one_hospital_of_a_distributed_region(tmp_path: Path):
    config = one_room_config()
    scheduler = MemberScheduler(config, "h2", requests_transfers=True)
    ticks = {
        1: [arrival(1, 500)],
        3: [rev.TransferOffered("offer-1-h1/p9", 2500, 2, "p9", "h1", "h2", travel_s=60.0)],
        5: [arrival(2, 4500)],
    }
    events, decided = tmp_path / "events.jsonl", []
    with open(events, "w") as stream:
        jsonl.write_header(stream, config_module.shareable(config), 1, region_member="h2")
        for tick, inbound in ticks.items():
            jsonl.write(stream, inbound, tick=tick)
            decided += scheduler.tick(tick, inbound).decisions
    assert any(isinstance(d, rev.TransferDeclined) for d in decided)  # the one room is taken
    assert any(isinstance(d, rev.TransferRequested) for d in decided)
    out = tmp_path / "again.jsonl"
    result = runner.invoke(app, ["solve", str(events), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text() == "".join(d.to_json() + "\n" for d in decided)

    plain = tmp_path / "plain.jsonl"  # without the header's region_member: refused, not guessed
    lines = events.read_text().splitlines()
    header = json.loads(lines[0])
    del header["region_member"]
    plain.write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n")
    refused = runner.invoke(app, ["solve", str(plain), "--out", str(tmp_path / "x.jsonl")])
    assert refused.exit_code == 2 and "transfer.offered" in refused.output


def test_region_run_over_kafka_needs_kafka_and_a_speed():
    result = runner.invoke(app, ["run", "--region", "region-5", "--duration", "1m"])
    assert result.exit_code == 2
    assert "--kafka" in result.output
