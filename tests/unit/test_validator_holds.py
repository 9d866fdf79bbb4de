"""The Auditor against hand-written holds (`staff.held`, `room.held`, looking ahead): each
sequence that breaks a rule of holds fails with a message naming it, and its valid twin
passes. A held member is not idle, a room held for another class excuses a referral, a hold
is bounded, ends, and is not renewed before its resource is used."""

from __future__ import annotations

from scheduler import events as ev
from scheduler.validator import Auditor
from tests.unit.test_validator_clinical import Tick as ClinicalTick
from tests.unit.test_validator_clinical import (
    arrived,
    config,
    escorted,
    in_room,
    valid,
    violation,
    visited,
)


class Tick(ClinicalTick):
    def hold_staff(self, staff, until_s, reason="kept free"):
        return self._add(ev.StaffHeld, staff_id=staff, reason=reason, until_s=until_s)

    def hold_room(self, room, reserved_for, until_s, reason="kept"):
        return self._add(
            ev.RoomHeld, room_id=room, reserved_for=reserved_for, reason=reason, until_s=until_s
        )


def looking_ahead(**kwargs):
    """Two rooms (A1, A2), one porter, one nurse, one doctor, one cleaner."""
    base = config(nurses=1, doctors=1, **kwargs)
    return base.replace(scheduler={"lookahead_s": 60.0, "max_hold_s": 10.0})


def visit_waiting(auditor):
    """p1 (ESI 3) in A1 at tick 2, their visit (task-2) waiting for a medical member."""
    return in_room(auditor, "p1", "A1", acuity=3)


# --- staff holds -------------------------------------------------------------------------------


def test_a_staff_hold_without_looking_ahead():
    auditor = Auditor(config(nurses=1, doctors=1))
    done = visit_waiting(auditor)
    violation(
        auditor,
        2,
        [done],
        Tick(2).dispatch("task-2", "visit", "nurse-1", "p1", "A1").hold_staff("doctor-1", 5.0),
        "staff.held",
        "lookahead_s",
    )


def test_valid_twin_a_held_doctor_is_not_idle_while_a_visit_waits():
    auditor = Auditor(looking_ahead(staff={"nurses": 0, "doctors": 1}))
    done = visit_waiting(auditor)
    valid(
        auditor, 2, [done], Tick(2).queue("task-2", "visit", "p1", "A1").hold_staff("doctor-1", 5.0)
    )


def test_an_unheld_doctor_idle_while_a_visit_waits():
    auditor = Auditor(looking_ahead(staff={"nurses": 0, "doctors": 1}))
    done = visit_waiting(auditor)
    violation(auditor, 2, [done], Tick(2).queue("task-2", "visit", "p1", "A1"), "doctor-1 is idle")


def test_a_hold_longer_than_max_hold_s():
    auditor = Auditor(looking_ahead(staff={"nurses": 0, "doctors": 1}))
    done = visit_waiting(auditor)
    violation(
        auditor,
        2,
        [done],
        Tick(2).queue("task-2", "visit", "p1", "A1").hold_staff("doctor-1", 12.5),
        "doctor-1 held until 12.5 s",
        "10 s",
    )


def test_a_hold_ends_at_its_time_and_the_member_is_idle_again():
    auditor = Auditor(looking_ahead(staff={"nurses": 0, "doctors": 1}))
    done = visit_waiting(auditor)
    valid(
        auditor, 2, [done], Tick(2).queue("task-2", "visit", "p1", "A1").hold_staff("doctor-1", 5.0)
    )
    valid(auditor, 4, [], Tick(4))  # still held
    violation(auditor, 5, [], Tick(5), "doctor-1 is idle")


def test_a_hold_renewed_before_the_member_was_given_a_task():
    auditor = Auditor(looking_ahead(staff={"nurses": 0, "doctors": 1}))
    done = visit_waiting(auditor)
    valid(
        auditor, 2, [done], Tick(2).queue("task-2", "visit", "p1", "A1").hold_staff("doctor-1", 5.0)
    )
    violation(auditor, 5, [], Tick(5).hold_staff("doctor-1", 9.0), "held again")


def test_valid_twin_held_again_after_a_task():
    auditor = Auditor(looking_ahead(staff={"nurses": 0, "doctors": 1}))
    done = visit_waiting(auditor)
    valid(
        auditor, 2, [done], Tick(2).queue("task-2", "visit", "p1", "A1").hold_staff("doctor-1", 5.0)
    )
    valid(auditor, 5, [], Tick(5).dispatch("task-2", "visit", "doctor-1", "p1", "A1"))
    # The visit ends; the escort out waits for the porter (busy with nobody: given it). The
    # doctor, free again, may be held again: no task for them waits, so it is allowed too.
    valid(
        auditor,
        17,
        [visited("task-2", "doctor-1", "p1", "A1", 17)],
        Tick(17)
        .dispatch("task-3", "escort_out", "porter-1", "p1", "A1", origin="A1")
        .hold_staff("doctor-1", 20.0),
    )


def test_a_busy_member_held():
    auditor = Auditor(looking_ahead())
    done = visit_waiting(auditor)
    violation(
        auditor,
        2,
        [done],
        Tick(2).dispatch("task-2", "visit", "nurse-1", "p1", "A1").hold_staff("nurse-1", 5.0),
        "nurse-1 held while doing task-2",
    )


def test_a_member_held_and_given_a_task_in_one_tick():
    auditor = Auditor(looking_ahead())
    done = visit_waiting(auditor)
    violation(
        auditor,
        2,
        [done],
        Tick(2).hold_staff("nurse-1", 5.0).dispatch("task-2", "visit", "nurse-1", "p1", "A1"),
        "nurse-1 held and given a task in one tick",
    )


# --- room holds --------------------------------------------------------------------------------


def one_room_kept(auditor, reserved_for="urgent", acuity=3, isolation=False):
    """Tick 0: p1 takes A1; p2 is referred while A2 is kept for `reserved_for`."""
    return Tick(0).admit("p1", "A1").dispatch(
        "task-1", "escort_in", "porter-1", "p1", "A1"
    ).hold_room("A2", reserved_for, 8.0).refer("p2"), [
        arrived("p1", 0),
        arrived("p2", 0, acuity=acuity, isolation=isolation),
    ]


def test_valid_a_patient_of_another_class_referred_beside_a_room_kept():
    auditor = Auditor(looking_ahead())
    decisions, inbound = one_room_kept(auditor, "urgent", acuity=3)
    valid(auditor, 0, inbound, decisions)


def test_a_patient_of_the_class_referred_beside_the_room_kept_for_it():
    auditor = Auditor(looking_ahead())
    decisions, inbound = one_room_kept(auditor, "urgent", acuity=2)
    violation(auditor, 0, inbound, decisions, "p2 was referred while a room it may use is free")


def test_a_referral_beside_a_room_whose_hold_has_ended():
    auditor = Auditor(looking_ahead())
    decisions, inbound = one_room_kept(auditor, "urgent", acuity=3)
    valid(auditor, 0, inbound, decisions)
    valid(
        auditor,
        2,
        [escorted("task-1", "porter-1", "p1", "A1", "in", 2)],
        Tick(2).dispatch("task-2", "visit", "nurse-1", "p1", "A1"),
    )
    violation(auditor, 8, [arrived("p3", 8)], Tick(8).refer("p3"), "p3 was referred while a room")


def test_a_room_held_for_isolation_that_cannot_isolate():
    auditor = Auditor(looking_ahead())
    decisions, inbound = one_room_kept(auditor, "isolation")
    violation(auditor, 0, inbound, decisions, "A2 held for isolation")


def test_a_room_held_and_booked_in_one_tick():
    auditor = Auditor(looking_ahead())
    violation(
        auditor,
        0,
        [arrived("p1", 0)],
        Tick(0)
        .hold_room("A1", "urgent", 5.0)
        .admit("p1", "A1")
        .dispatch("task-1", "escort_in", "porter-1", "p1", "A1"),
        "room A1 held and booked in one tick",
    )


def test_valid_a_kept_room_booked_by_its_class_later():
    auditor = Auditor(looking_ahead())
    decisions, inbound = one_room_kept(auditor, "urgent", acuity=3)
    valid(auditor, 0, inbound, decisions)
    valid(
        auditor,
        2,
        [escorted("task-1", "porter-1", "p1", "A1", "in", 2), arrived("p3", 2, acuity=1)],
        Tick(2)
        .dispatch("task-2", "visit", "doctor-1", "p1", "A1")
        .admit("p3", "A2")
        .dispatch("task-3", "escort_in", "porter-1", "p3", "A2", origin="A1"),
    )
