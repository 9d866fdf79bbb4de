"""`patient.updated` and `patient.withdrawn` (HL7 A08 and A11): they change an arrival only
before its decision, in the tick of the arrival; later they are rejected as too late. They go
through the engine's tick like every inbound event: the validator checks them, the KPIs,
the store, the snapshot and the dashboard's projection take them, and a replay of the
recorded log gives the same decisions."""

from __future__ import annotations

import json

import pytest

from dashboard.projection import Projection
from scheduler import events as ev
from scheduler import jsonl, snapshot
from scheduler.config import Config
from scheduler.engine import Scheduler
from scheduler.runs import new_kpi, replay
from scheduler.validator import Auditor, InvariantViolation


def config(rooms=1, isolation_rooms=()) -> Config:
    return Config().replace(
        hospital={"floors": ["A"], "rooms_per_floor": rooms, "isolation_rooms": isolation_rooms},
        staff={"porters": 1, "nurses": 1, "doctors": 1, "cleaners": 1},
    )


def arrived(n, t_ms=0, **fields):
    return ev.PatientArrived(f"arrival-{n}", t_ms, f"patient-{n}", **fields)


def updated(n, t_ms=0, **fields):
    return ev.PatientUpdated(f"update-{n}-{t_ms}", t_ms, f"patient-{n}", **fields)


def withdrawn(n, t_ms=0):
    return ev.PatientWithdrawn(f"withdrawal-{n}", t_ms, f"patient-{n}")


def decided(result):
    return [
        (d.TYPE, getattr(d, "patient_id", None), getattr(d, "room_id", None))
        for d in result.decisions
        if d.TYPE.startswith("patient.")
    ]


class TestInTheTickOfTheArrival:
    def test_an_update_to_urgent_wins_the_only_room(self):
        scheduler = Scheduler(config(rooms=1))
        result = scheduler.tick(0, [arrived(1), arrived(2), updated(2, acuity=1)])
        assert sorted(decided(result)) == [
            ("patient.admitted", "patient-2", "A1"),
            ("patient.referred", "patient-1", None),
        ]

    def test_without_the_update_the_earlier_arrival_wins(self):
        result = Scheduler(config(rooms=1)).tick(0, [arrived(1), arrived(2)])
        assert decided(result)[0] == ("patient.admitted", "patient-1", "A1")

    def test_an_update_to_isolation_takes_the_isolation_room(self):
        scheduler = Scheduler(config(rooms=2, isolation_rooms=["A2"]))
        result = scheduler.tick(0, [arrived(1), updated(1, isolation=True)])
        assert decided(result) == [("patient.admitted", "patient-1", "A2")]

    def test_the_update_applies_after_its_arrival_whatever_the_order_delivered(self):
        scheduler = Scheduler(config(rooms=2, isolation_rooms=["A2"]))
        result = scheduler.tick(0, [updated(1, isolation=True), arrived(1)])
        assert [e.TYPE for e in result.consumed] == ["patient.arrived", "patient.updated"]
        assert decided(result) == [("patient.admitted", "patient-1", "A2")]

    def test_a_withdrawn_arrival_is_neither_admitted_nor_referred(self):
        scheduler = Scheduler(config(rooms=1))
        result = scheduler.tick(0, [arrived(1), arrived(2), withdrawn(1)])
        assert decided(result) == [("patient.admitted", "patient-2", "A1")]
        assert scheduler.auditor is not None
        assert scheduler.auditor.accounted_for() == {
            "arrived": 1,
            "referred": 0,
            "discharged": 0,
            "in_building": 1,
        }

    def test_a_withdrawn_patient_cannot_arrive_again_in_the_run(self):
        scheduler = Scheduler(config())
        scheduler.tick(0, [arrived(1), withdrawn(1)])
        result = scheduler.tick(1, [ev.PatientArrived("again", 1000, "patient-1")])
        assert result.rejected[0][1] == "patient patient-1 has already arrived"


class TestTooLate:
    def test_an_update_after_the_admission_is_rejected_and_changes_nothing(self):
        scheduler = Scheduler(config())
        scheduler.tick(0, [arrived(1)])
        result = scheduler.tick(1, [updated(1, t_ms=1000, acuity=1)])
        assert result.rejected == [
            (
                updated(1, t_ms=1000, acuity=1),
                "patient.updated: too late: patient-1 is already admitted",
            )
        ]
        assert scheduler.hospital.patients["patient-1"].acuity == 3
        assert result.consumed == []

    def test_a_withdrawal_after_a_referral_is_rejected(self):
        scheduler = Scheduler(config(rooms=1))
        scheduler.tick(0, [arrived(1), arrived(2)])
        result = scheduler.tick(1, [withdrawn(2, t_ms=1000)])
        assert "too late: patient-2 was already referred" in result.rejected[0][1]

    def test_an_update_of_nobody_is_rejected(self):
        result = Scheduler(config()).tick(0, [updated(7)])
        assert result.rejected[0][1] == "patient.updated: unknown patient patient-7"


class TestTheValidator:
    def test_it_refuses_an_update_of_an_arrival_decided_before(self):
        auditor = Auditor(config())
        admitted = ev.PatientAdmitted("decision-0-1", 0, 0, "patient-1", "A1")
        escort = ev.TaskDispatched(
            "decision-0-2", 0, 0, "task-1", "escort_in", "porter-1", "patient-1", "A1"
        )
        auditor.check_tick(0, [arrived(1)], [admitted, escort])
        with pytest.raises(InvariantViolation, match="not an arrival of this tick"):
            auditor.check_tick(1, [updated(1, t_ms=1000)], [])

    def test_it_refuses_a_decision_for_a_withdrawn_arrival(self):
        auditor = Auditor(config())
        admitted = ev.PatientAdmitted("decision-0-1", 0, 0, "patient-1", "A1")
        with pytest.raises(InvariantViolation, match="not a new arrival"):
            auditor.check_tick(0, [arrived(1), withdrawn(1)], [admitted])

    def test_it_checks_the_acuity_order_with_the_updated_level(self):
        auditor = Auditor(config(rooms=1))
        wrong = [
            ev.PatientAdmitted("decision-0-1", 0, 0, "patient-1", "A1"),
            ev.TaskQueued("decision-0-2", 0, 0, "task-1", "escort_in", "patient-1", "A1"),
            ev.PatientReferred("decision-0-3", 0, 0, "patient-2", "no free room"),
        ]
        with pytest.raises(InvariantViolation, match=r"patient-2 \(ESI 1\) referred"):
            auditor.check_tick(0, [arrived(1), arrived(2), updated(2, acuity=1)], wrong)


def test_the_events_keep_their_provenance_on_the_wire():
    event = ev.PatientArrived(
        "hl7-1", 0, "MRN1", acuity=2, control_id="MSG1", message_time="20261205101500+0100"
    )
    text = event.to_json()
    assert json.loads(text)["control_id"] == "MSG1"
    assert ev.parse_json(text) == event
    plain = ev.PatientWithdrawn("w", 0, "MRN1")
    assert ev.parse_json(plain.to_json()) == plain
    assert "control_id" not in plain.to_json()  # written only when set
    with pytest.raises(ev.BadEvent, match="'control_id' must be a string"):
        ev.parse(
            {
                "type": "patient.updated",
                "event_id": "u",
                "time": 0,
                "patient_id": "p",
                "control_id": 5,
            }
        )


def test_the_kpis_count_a_withdrawn_arrival_nowhere_and_an_update_at_its_new_level():
    settings = config(rooms=2)
    scheduler, kpi = Scheduler(settings), new_kpi(settings)
    kpi.collect(scheduler.tick(0, [arrived(1), arrived(2), withdrawn(1), updated(2, acuity=2)]))
    report = kpi.report(1000, {})
    assert report["arrivals"] == 1 and report["admitted"] == 1
    assert report["by_acuity"]["2"]["arrivals"] == 1
    assert report["by_hour"][0]["arrivals"] == 1


def test_a_recorded_log_with_them_replays_the_same_decisions(tmp_path):
    settings = config(rooms=1, isolation_rooms=["A1"])
    ticks = [
        (0, [arrived(1), arrived(2), updated(2, isolation=True), withdrawn(1)]),
        (1, [arrived(3, 1000), updated(2, 1000, acuity=1)]),  # the update: too late
    ]
    scheduler, log, decisions = Scheduler(settings), tmp_path / "ev.jsonl", []
    with open(log, "w") as stream:
        for tick, events in ticks:
            result = scheduler.tick(tick, events)
            decisions += [d.to_json() for d in result.decisions]
            inbound = result.consumed + [e for e, _ in result.rejected]
            jsonl.write(stream, inbound, tick=tick)
    again = replay(settings, log, tmp_path / "dec.jsonl")
    assert (tmp_path / "dec.jsonl").read_text().splitlines() == decisions
    assert len(again.rejected) == 1 and "too late" in again.rejected[0]


def test_a_snapshot_after_a_withdrawal_still_refuses_the_id():
    settings = config()
    scheduler = Scheduler(settings)
    scheduler.tick(0, [arrived(1), withdrawn(1)])
    restored = snapshot.load(settings, snapshot.dump(scheduler))
    result = restored.tick(1, [ev.PatientArrived("again", 1000, "patient-1")])
    assert result.rejected and result.consumed == []


def test_the_dashboard_projection_follows_them():
    settings = config(rooms=1)
    scheduler, projection = Scheduler(settings), Projection.for_config(settings)
    projection.apply_result(scheduler.tick(0, [arrived(1), arrived(2), withdrawn(1)]))
    state = projection.snapshot()
    assert state["tiles"]["arrivals"] == 1
    assert state["floors"][0]["rooms"][0]["patient"] == "patient-2"
