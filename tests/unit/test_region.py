"""The regional network's embedded core: `region.toml`, the coordinators, a member hospital's
answers to offers and its reserved rooms, the region's tick and its invariants, determinism
and replay; with random small regions (Hypothesis) checked every tick by the auditors."""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scheduler import events as ev
from scheduler.engine import TickResult
from scheduler.region import config as region_config
from scheduler.region import events as rev
from scheduler.region.audit import RegionAuditor, RegionViolation
from scheduler.region.bound import region_bound
from scheduler.region.config import RegionError
from scheduler.region.coordinator import (
    COORDINATORS,
    Capacity,
    CpSatCoordinator,
    EvenSplit,
    Nearest,
    Request,
)
from scheduler.region.member import MemberScheduler
from scheduler.region.network import COORDINATOR, Network, RegionTick
from scheduler.region.simulation import read_record, replay_region, simulate_region
from scheduler.validator import InvariantViolation

FAST = settings(deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


def small_region(
    intervals=(2.0, 8.0, 8.0),
    minutes=None,
    max_wait_s=30.0,
    move_urgent=True,
    extra: dict | None = None,
) -> region_config.RegionConfig:
    """Hospitals of the default scenario (6 rooms) with Poisson arrivals, the first one
    overloaded."""
    n = len(intervals)
    minutes = minutes or [
        [0 if i == j else 0.5 * (1 + abs(i - j)) for j in range(n)] for i in range(n)
    ]
    hospitals = [
        {
            "id": f"h{i + 1}",
            "scenario": "default",
            "set": {
                "arrivals.process": "poisson",
                "arrivals.interval_s": interval,
                **(extra or {}),
            },
        }
        for i, interval in enumerate(intervals)
    ]
    return region_config.from_mapping(
        {
            "region": {"seed": 1},
            "transfers": {"max_wait_s": max_wait_s, "move_urgent": move_urgent},
            "travel": {"minutes": minutes},
            "hospitals": hospitals,
        }
    )


# --- region.toml ---------------------------------------------------------------------------


def test_the_named_regions_load_with_travel_of_5_to_40_minutes():
    for name in ("region-5", "region-20"):
        region = region_config.load(region_config.region_path(name))
        trips = [ms / 60_000 for (a, b), ms in region.travel_ms.items() if a != b]
        assert min(trips) >= 5 and max(trips) <= 40
    assert len(region_config.load(region_config.region_path("region-20")).hospitals) == 20


def test_hospitals_get_streams_of_their_own():
    region = small_region()
    seeds = [m.seed(7) for m in region.hospitals]
    assert seeds == [7001, 7002, 7003]


def test_travel_from_coordinates_and_speed():
    region = region_config.from_mapping(
        {
            "travel": {"speed_kmh": 60.0, "handover_min": 5.0},
            "hospitals": [
                {"id": "a", "scenario": "default", "at_km": [0.0, 0.0]},
                {"id": "b", "scenario": "default", "at_km": [3.0, 4.0]},
            ],
        }
    )
    assert region.travel_ms["a", "b"] == region.travel_ms["b", "a"] == 10 * 60_000
    assert region.travel_ms["a", "a"] == 0


BAD_REGIONS = [
    ({"hospitals": []}, "at least one hospital"),
    ({"nope": {}, "hospitals": []}, "[nope]: unknown section"),
    (
        {"hospitals": [{"id": "a", "scenario": "default"}, {"id": "a", "scenario": "default"}]},
        "given twice",
    ),
    ({"hospitals": [{"id": "a"}]}, "either scenario or config"),
    ({"hospitals": [{"id": "a b", "scenario": "default"}]}, "hospitals[1].id"),
    ({"hospitals": [{"id": "a", "scenario": "no-such"}]}, "unknown scenario"),
    (
        {"hospitals": [{"id": "a", "scenario": "default", "set": {"staff.porters": -1}}]},
        "hospitals.a.set",
    ),
    (
        {"travel": {"minutes": [[0], [0]]}, "hospitals": [{"id": "a", "scenario": "default"}]},
        "rows",
    ),
    (
        {"travel": {"minutes": [[5]]}, "hospitals": [{"id": "a", "scenario": "default"}]},
        "0 from itself",
    ),
    (
        {"travel": {"speed_kmh": 40}, "hospitals": [{"id": "a", "scenario": "default"}]},
        "at_km: needed",
    ),
    (
        {
            "transfers": {"max_wait_s": -1},
            "travel": {"minutes": [[0]]},
            "hospitals": [{"id": "a", "scenario": "default"}],
        },
        "transfers.max_wait_s",
    ),
    (
        {
            "transfers": {"move_urgent": "yes"},
            "travel": {"minutes": [[0]]},
            "hospitals": [{"id": "a", "scenario": "default"}],
        },
        "move_urgent",
    ),
]


@pytest.mark.parametrize(("data", "message"), BAD_REGIONS)
def test_a_bad_region_is_one_clear_line(data, message):
    with pytest.raises(RegionError) as caught:
        region_config.from_mapping(data)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_region_file_that_is_not_toml(tmp_path: Path):
    path = tmp_path / "r.toml"
    path.write_text("[region\n")
    with pytest.raises(RegionError, match="not valid TOML"):
        region_config.load(path)


# --- the coordinators ----------------------------------------------------------------------

TRAVEL = {
    (a, b): 0 if a == b else 60_000 * d
    for (a, b, d) in [
        ("a", "b", 5),
        ("a", "c", 20),
        ("b", "c", 10),
        ("b", "a", 5),
        ("c", "a", 20),
        ("c", "b", 10),
        ("a", "a", 0),
        ("b", "b", 0),
        ("c", "c", 0),
    ]
}


def request(n: int, origin: str = "a", acuity: int = 3, isolation: bool = False) -> Request:
    return Request(f"patient-{n}", origin, acuity, isolation, 1000 * n)


def cap(plain: int, isolation: int = 0, rooms: int = 10, shared: bool = True) -> Capacity:
    return Capacity(rooms, plain, isolation, shared)


def test_nearest_sends_to_the_nearest_with_room_and_no_more_than_its_rooms():
    capacity = {"a": cap(0), "b": cap(1), "c": cap(5)}
    offers = Nearest().offers(0, [request(1), request(2)], capacity, TRAVEL)
    assert [(r.patient_id, to) for r, to in offers] == [("patient-1", "b"), ("patient-2", "c")]


def test_even_takes_the_hospitals_with_room_in_turn():
    capacity = {"a": cap(0), "b": cap(5), "c": cap(5)}
    even = EvenSplit()
    first = even.offers(0, [request(1), request(2), request(3)], capacity, TRAVEL)
    assert [to for _, to in first] == ["b", "c", "b"]
    assert [to for _, to in even.offers(0, [request(4)], capacity, TRAVEL)] == ["c"]


def test_isolation_patients_go_only_where_an_isolation_room_is_free():
    capacity = {"a": cap(0), "b": cap(3, 0), "c": cap(0, 1)}
    for coordinator in (Nearest(), EvenSplit(), CpSatCoordinator()):
        offers = coordinator.offers(0, [request(1, isolation=True)], capacity, TRAVEL)
        assert [to for _, to in offers] == ["c"]


def test_cpsat_places_as_many_as_the_rooms_allow_the_most_urgent_first():
    capacity = {"a": cap(0), "b": cap(1), "c": cap(0)}
    requests = [request(1, acuity=4), request(2, acuity=2)]
    offers = CpSatCoordinator().offers(10_000, requests, capacity, TRAVEL)
    assert [(r.patient_id, to) for r, to in offers] == [("patient-2", "b")]


def test_cpsat_weighs_travel_against_the_receiving_hospitals_load():
    # b is 5 min away and nearly full, c 20 min and nearly empty: c, by its load
    capacity = {"a": cap(0), "b": cap(1, rooms=20), "c": cap(19, rooms=20)}
    offers = CpSatCoordinator().offers(0, [request(1)], capacity, TRAVEL)
    assert [to for _, to in offers] == ["c"]
    # equally loaded: the nearer
    capacity = {"a": cap(0), "b": cap(10, rooms=20), "c": cap(10, rooms=20)}
    offers = CpSatCoordinator().offers(0, [request(1)], capacity, TRAVEL)
    assert [to for _, to in offers] == ["b"]


def test_no_coordinator_offers_to_the_patients_own_hospital():
    capacity = {"a": cap(5), "b": cap(0), "c": cap(0)}
    for name in COORDINATORS:
        from scheduler.region.coordinator import make

        assert make(name).offers(0, [request(1)], capacity, TRAVEL) == []


# --- a member hospital ---------------------------------------------------------------------


def offer(n: int, tick: int, isolation: bool = False) -> rev.TransferOffered:
    return rev.TransferOffered(
        f"region-{tick}-{n}", tick * 1000, tick, f"patient-{n}", "x", "h1", isolation=isolation
    )


def arrival(n: int, time_ms: int) -> ev.PatientArrived:
    return ev.PatientArrived(f"arrival-{n}", time_ms, f"patient-{n}")


def test_an_accepted_transfer_holds_its_room_against_the_hospitals_own_patients():
    member = MemberScheduler(small_region().hospitals[0].config)
    result = member.tick(1, [offer(1, 0)] + [arrival(n, 1000) for n in range(1, 6)])
    accepted = [d for d in result.decisions if isinstance(d, rev.TransferAccepted)]
    assert len(accepted) == 1
    held = accepted[0].room_id
    assert member.hospital.rooms[held].status == "reserved"
    # all six rooms gone: five own patients and one held; the next own patient is referred
    result = member.tick(2, [arrival(6, 2000)])
    assert [d.TYPE for d in result.decisions if d.TYPE.startswith("patient.")] == [
        "patient.referred"
    ]
    # a second offer is declined
    result = member.tick(3, [offer(2, 2)])
    assert [d.TYPE for d in result.decisions] == ["transfer.declined"]
    # the transfer arrives and goes into its room, whatever else is full
    coming = rev.TransferArrived("transfer-x/patient-1", 4000, "x/patient-1", transferred_from="x")
    result = member.tick(4, [coming])
    admitted = [d for d in result.decisions if isinstance(d, ev.PatientAdmitted)]
    assert [(d.patient_id, d.room_id) for d in admitted] == [("x/patient-1", held)]


def test_a_transfer_with_no_room_held_is_rejected():
    member = MemberScheduler(small_region().hospitals[0].config)
    coming = rev.TransferArrived("t", 0, "x/patient-9", transferred_from="x")
    result = member.tick(0, [coming])
    assert result.rejected and "no room was reserved" in result.rejected[0][1]


def test_the_member_auditor_catches_a_room_given_away_while_held():
    member = MemberScheduler(small_region().hospitals[0].config)
    member.tick(1, [offer(1, 0)])
    assert member.auditor is not None
    held = next(r for r in member.hospital.rooms.values() if r.status == "reserved")
    wrong = ev.PatientAdmitted("d", 2000, 2, "patient-7", held.room_id)
    with pytest.raises(InvariantViolation, match="booked room"):
        member.auditor.check_tick(2, [arrival(7, 2000)], [wrong])


def test_the_region_auditor_catches_an_offer_to_a_patient_who_may_not_move():
    region = small_region(move_urgent=False)
    auditor = RegionAuditor(region)
    requested = rev.TransferRequested("d-1", 0, 0, "patient-1", "h1", acuity=1)
    offered = rev.TransferOffered("r-1", 0, 0, "patient-1", "h1", "h2", acuity=1)
    tick = RegionTick(0, 0, {}, [("h1", requested), (COORDINATOR, offered)])
    with pytest.raises(RegionViolation, match="move_urgent"):
        auditor.check(tick)


def test_the_region_auditor_catches_an_arrival_nobody_accepted():
    auditor = RegionAuditor(small_region())
    coming = rev.TransferArrived("t", 0, "h1/patient-1", transferred_from="h1")
    result = TickResult(0, 0, [coming], [])
    with pytest.raises(RegionViolation, match="did not accept"):
        auditor.check(RegionTick(0, 0, {"h2": result}, []))


# --- the region ----------------------------------------------------------------------------


def ends(decisions: list[dict]) -> Counter:
    """Where each of the region's own patients ended, from the decision log."""
    place: dict[str, list[str]] = {}
    for d in decisions:
        kind = d["type"]
        if kind == "patient.admitted":
            patient = d["patient_id"]
            key = patient if "/" in patient else f"{d['hospital']}/{patient}"
            place.setdefault(key, []).append(f"admitted at {d['hospital']}")
        elif kind in ("patient.referred_out", "patient.referred"):
            origin = d.get("from", d.get("hospital"))
            place.setdefault(f"{origin}/{d['patient_id']}", []).append("referred out")
    return Counter(len(where) for where in place.values())


def run_region(region, coordinator, duration_ms, tmp_path: Path, seed=1):
    record, out = tmp_path / f"{coordinator}.rec", tmp_path / f"{coordinator}.out"
    run = simulate_region(region, coordinator, duration_ms, seed=seed, record=record, out=out)
    return run, record, out


@pytest.mark.parametrize("coordinator", COORDINATORS)
def test_a_region_runs_checked_and_replays_byte_for_byte(coordinator, tmp_path: Path):
    region = small_region()
    run, record, out = run_region(region, coordinator, 600_000, tmp_path)
    figures = run.report["region"]
    assert figures["invariants_checked"]
    if coordinator == "none":
        assert figures["transfers"] == 0 and figures["referred_out"] > 0
    else:
        assert figures["transfers"] > 0
    again = tmp_path / "again.out"
    replay_region(region, read_record(record, region), coordinator, again)
    assert again.read_bytes() == out.read_bytes()
    # every patient ends in exactly one place
    decisions = [ev.loads(line) for line in out.read_text().splitlines()]
    assert set(ends(decisions)) == {1}


def test_transfers_cut_the_referrals_of_an_overloaded_hospital(tmp_path: Path):
    # stays of about 2 min, trips of 30-90 s: a room held for a drive costs less than a stay
    region = small_region(
        (20.0, 80.0, 80.0), max_wait_s=120.0, extra={"durations.treatment_s": 120.0}
    )
    none = simulate_region(region, "none", 1_800_000).report["region"]
    cpsat = simulate_region(region, "cpsat", 1_800_000).report["region"]
    assert cpsat["referred_out"] < none["referred_out"] / 2


def test_the_same_region_and_seed_give_the_same_log(tmp_path: Path):
    region = small_region()
    _, _, first = run_region(region, "cpsat", 300_000, tmp_path)
    second = tmp_path / "second.out"
    simulate_region(region, "cpsat", 300_000, out=second)
    assert first.read_bytes() == second.read_bytes()
    other_seed = tmp_path / "other.out"
    simulate_region(region, "cpsat", 300_000, seed=2, out=other_seed)
    assert other_seed.read_bytes() != first.read_bytes()


def test_urgent_patients_stay_when_the_rules_say_so(tmp_path: Path):
    extra = {"arrivals.acuity_mix": [0.3, 0.3, 0.4, 0.0, 0.0]}
    region = small_region(move_urgent=False, extra=extra)
    _, _, out = run_region(region, "nearest", 600_000, tmp_path)
    decisions = [ev.loads(line) for line in out.read_text().splitlines()]
    offered = [d for d in decisions if d["type"] == "transfer.offered"]
    assert offered and all(d["acuity"] >= 3 for d in offered)
    outs = [d for d in decisions if d["type"] == "patient.referred_out"]
    assert any("move_urgent" in d["reason"] for d in outs)


def test_the_fluid_bound_with_transfers_is_below_the_isolated_one():
    bound = region_bound(small_region())
    assert bound.min_referred_out_rate < bound.min_referred_isolated_rate


def test_a_record_of_another_region_is_refused(tmp_path: Path):
    _, record, _ = run_region(small_region(), "none", 60_000, tmp_path)
    from scheduler.jsonl import LogError

    with pytest.raises(LogError, match="recorded for hospitals"):
        read_record(record, small_region(intervals=(2.0, 8.0)))


# --- random small regions ------------------------------------------------------------------


@st.composite
def regions(draw):
    n = draw(st.integers(2, 3))
    intervals = draw(st.lists(st.sampled_from([1.5, 3.0, 6.0, 12.0]), min_size=n, max_size=n))
    minutes = [[0.0] * n for _ in range(n)]
    for i in range(n):
        for j in range(n):
            if i != j:
                minutes[i][j] = draw(st.sampled_from([0.1, 0.5, 1.0, 2.0]))
    extra = {
        "arrivals.acuity_mix": draw(
            st.sampled_from([[0.0, 0.0, 1.0, 0.0, 0.0], [0.2, 0.2, 0.3, 0.3, 0.0]])
        ),
        "hospital.isolation_rooms": draw(st.sampled_from([[], ["A1"], ["A1", "B3"]])),
        "arrivals.isolation_share": draw(st.sampled_from([0.0, 0.3])),
        "hospital.reserve_isolation_rooms": draw(st.booleans()),
        "scheduler.policy": draw(st.sampled_from(["greedy", "cpsat"])),
    }
    if not extra["hospital.isolation_rooms"]:
        extra["arrivals.isolation_share"] = 0.0
        extra["hospital.reserve_isolation_rooms"] = False
    return small_region(
        tuple(intervals),
        minutes,
        max_wait_s=draw(st.sampled_from([0.0, 10.0, 60.0])),
        move_urgent=draw(st.booleans()),
        extra=extra,
    )


@settings(FAST, max_examples=60)
@given(region=regions(), coordinator=st.sampled_from(COORDINATORS), seed=st.integers(1, 50))
def test_random_regions_keep_every_invariant(region, coordinator, seed):
    """The member auditors and the region's check every tick (they raise); and from the
    decisions alone, every own arrival is admitted once at one hospital, referred out once,
    or still pending or on the way at the end."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "out.jsonl"
        run = simulate_region(region, coordinator, 240_000, seed=seed, out=out)
        decisions = [ev.loads(line) for line in out.read_text().splitlines()]
    figures = run.report["region"]
    assert figures["invariants_checked"]
    assert set(ends(decisions)) <= {1}
    admitted_own = sum(
        1 for d in decisions if d["type"] == "patient.admitted" and "/" not in d["patient_id"]
    )
    admitted_by_transfer = sum(
        1 for d in decisions if d["type"] == "patient.admitted" and "/" in d["patient_id"]
    )
    in_flight = figures["in_flight"]
    assert figures["arrivals"] == (
        admitted_own
        + admitted_by_transfer
        + figures["referred_out"]
        + in_flight["requests_pending"]
        + in_flight["on_the_way"]
    )
    received = sum(h["transfers_in"] for h in run.report["hospitals"].values())
    assert received == admitted_by_transfer
    assert figures["transfers"] == received + in_flight["on_the_way"]


def test_a_network_tick_goes_forward_only():
    network = Network(small_region(), CpSatCoordinator())
    network.tick(3, {})
    with pytest.raises(ValueError):
        network.tick(3, {})
