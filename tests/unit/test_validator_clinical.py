"""The Auditor against hand-written event sequences that break the clinical rules (DESIGN
section 7): each builds the violating sequence and expects `InvariantViolation` with a
message naming what went wrong; where a twin sequence is valid (the rule off, or the data
such that nothing is broken) it passes."""

from __future__ import annotations

import dataclasses

import pytest

from scheduler import events as ev
from scheduler.config import Config
from scheduler.validator import Auditor, InvariantViolation
from tests.unit import test_validator as validator_tests


def config(rooms=2, porters=1, nurses=1, doctors=0, cleaners=1, **sections) -> Config:
    """A one-floor hospital (A1, A2, ...)."""
    base = Config().replace(
        hospital={"floors": ["A"], "rooms_per_floor": rooms},
        staff={"porters": porters, "nurses": nurses, "doctors": doctors, "cleaners": cleaners},
    )
    return base.replace(**sections) if sections else base


class Tick(validator_tests.Tick):
    """A tick's decisions, with the duty changes too."""

    def off_duty(self, staff):
        return self._add(ev.StaffOffDuty, staff_id=staff)

    def on_duty(self, staff):
        return self._add(ev.StaffOnDuty, staff_id=staff)

    def escalate(self, task_id, kind, waited_s, sla_s):
        return self._add(
            ev.TaskEscalated, task_id=task_id, kind=kind, waited_s=waited_s, sla_s=sla_s
        )


def arrived(patient, t=0, acuity=3, isolation=False):
    return ev.PatientArrived(
        f"arrival-{patient}", t * 1000, patient, acuity=acuity, isolation=isolation
    )


escorted, visited, cleaned = (
    validator_tests.escorted,
    validator_tests.visited,
    validator_tests.cleaned,
)


def violation(auditor, tick, inbound, decisions: Tick, *words):
    with pytest.raises(InvariantViolation) as info:
        auditor.check_tick(tick, inbound, decisions.items)
    message = str(info.value)
    assert message.startswith(f"tick {tick}: "), message
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    return message


def valid(auditor, tick, inbound, decisions: Tick) -> None:
    auditor.check_tick(tick, inbound, decisions.items)


def in_room(auditor, patient="p1", room="A1", acuity=3, isolation=False):
    """Tick 0: the patient arrives and is admitted; tick 2: porter-1 has brought them to the
    room (task-1), and the visit (task-2) waits: a valid start for a medical decision."""
    valid(
        auditor,
        0,
        [arrived(patient, 0, acuity, isolation)],
        Tick(0).admit(patient, room).dispatch("task-1", "escort_in", "porter-1", patient, room),
    )
    return escorted("task-1", "porter-1", patient, room, "in", 2)


def until_dirty(auditor, patient, room, isolation):
    """The patient's whole stay (tasks 1-3: escort in, visit by nurse-1, escort out); the
    escort out's completion at tick 15 is returned, for the tick that owes the cleaning."""
    valid(
        auditor,
        0,
        [arrived(patient, 0, isolation=isolation)],
        Tick(0).admit(patient, room).dispatch("task-1", "escort_in", "porter-1", patient, room),
    )
    valid(
        auditor,
        2,
        [escorted("task-1", "porter-1", patient, room, "in", 2)],
        Tick(2).dispatch("task-2", "visit", "nurse-1", patient, room),
    )
    valid(
        auditor,
        14,
        [visited("task-2", "nurse-1", patient, room, 14)],
        Tick(14).dispatch("task-3", "escort_out", "porter-1", patient, room, origin=room),
    )
    return escorted("task-3", "porter-1", patient, room, "out", 15)


# --- skills: a visit to an ESI 1-2 patient needs a doctor --------------------------------------


@pytest.mark.parametrize("acuity", [1, 2])
def test_a_visit_to_an_esi_1_2_patient_dispatched_to_a_nurse(acuity):
    auditor = Auditor(config(nurses=1, doctors=1))
    done = in_room(auditor, acuity=acuity)
    violation(
        auditor,
        2,
        [done],
        Tick(2).dispatch("task-2", "visit", "nurse-1", "p1", "A1"),
        "task-2",
        "p1",
        f"ESI {acuity}",
        "nurse-1",
        "not a doctor",
    )


def test_valid_twin_the_doctor_sees_the_esi_1_patient():
    auditor = Auditor(config(nurses=1, doctors=1))
    done = in_room(auditor, acuity=1)
    valid(auditor, 2, [done], Tick(2).dispatch("task-2", "visit", "doctor-1", "p1", "A1"))


def test_valid_twin_without_skills_a_nurse_sees_the_esi_1_patient():
    auditor = Auditor(config(nurses=1, doctors=1, rules={"skills": False}))
    done = in_room(auditor, acuity=1)
    valid(auditor, 2, [done], Tick(2).dispatch("task-2", "visit", "nurse-1", "p1", "A1"))


@pytest.mark.parametrize("acuity", [3, 5])
def test_valid_twin_a_nurse_sees_an_esi_3_5_patient(acuity):
    auditor = Auditor(config(nurses=1, doctors=1))
    done = in_room(auditor, acuity=acuity)
    valid(auditor, 2, [done], Tick(2).dispatch("task-2", "visit", "nurse-1", "p1", "A1"))


# --- isolation rooms --------------------------------------------------------------------------


def test_an_isolation_patient_admitted_to_a_room_not_able_to_isolate():
    auditor = Auditor(config(hospital={"isolation_rooms": ["A2"]}))
    violation(
        auditor,
        0,
        [arrived("p1", isolation=True)],
        Tick(0).admit("p1", "A1").dispatch("task-1", "escort_in", "porter-1", "p1", "A1"),
        "admitted p1",
        "needs isolation",
        "A1",
    )


def test_valid_twin_the_isolation_patient_in_the_isolation_room():
    auditor = Auditor(config(hospital={"isolation_rooms": ["A2"]}))
    valid(
        auditor,
        0,
        [arrived("p1", isolation=True)],
        Tick(0).admit("p1", "A2").dispatch("task-1", "escort_in", "porter-1", "p1", "A2"),
    )


def test_reserved_isolation_rooms_a_plain_patient_admitted_to_one():
    auditor = Auditor(config(hospital={"isolation_rooms": ["A2"], "reserve_isolation_rooms": True}))
    violation(
        auditor,
        0,
        [arrived("p1")],
        Tick(0).admit("p1", "A2").dispatch("task-1", "escort_in", "porter-1", "p1", "A2"),
        "admitted p1",
        "does not need isolation",
        "A2",
    )


def test_valid_twin_not_reserved_a_plain_patient_may_take_the_isolation_room():
    auditor = Auditor(config(hospital={"isolation_rooms": ["A2"]}))
    valid(
        auditor,
        0,
        [arrived("p1")],
        Tick(0).admit("p1", "A2").dispatch("task-1", "escort_in", "porter-1", "p1", "A2"),
    )


def test_an_isolation_patient_referred_while_an_isolation_room_is_free():
    auditor = Auditor(config(hospital={"isolation_rooms": ["A2"]}))
    violation(
        auditor,
        0,
        [arrived("p1", isolation=True)],
        Tick(0).refer("p1"),
        "p1 was referred while a room it may use is free",
    )


def test_valid_twin_an_isolation_patient_referred_when_only_plain_rooms_are_free():
    auditor = Auditor(config(hospital={"isolation_rooms": ["A2"]}))
    valid(
        auditor,
        0,
        [arrived("p1")],
        Tick(0).admit("p1", "A2").dispatch("task-1", "escort_in", "porter-1", "p1", "A2"),
    )
    valid(auditor, 1, [arrived("p2", 1, isolation=True)], Tick(1).refer("p2"))  # A1 free


# --- terminal cleans --------------------------------------------------------------------------


def test_a_plain_clean_where_a_terminal_clean_is_owed():
    auditor = Auditor(config(hospital={"isolation_rooms": ["A2"]}))
    done = until_dirty(auditor, "p1", "A2", isolation=True)
    violation(
        auditor,
        15,
        [done],
        Tick(15).discharge("p1", "A2").dispatch("task-4", "clean", "cleaner-1", "p1", "A2"),
        "task-4",
        "a clean of A2",
        "needs a terminal clean",
    )


def test_a_terminal_clean_where_none_is_owed():
    auditor = Auditor(config(hospital={"isolation_rooms": ["A2"]}))
    done = until_dirty(auditor, "p1", "A2", isolation=False)
    violation(
        auditor,
        15,
        [done],
        Tick(15)
        .discharge("p1", "A2")
        .dispatch("task-4", "clean_terminal", "cleaner-1", "p1", "A2"),
        "task-4",
        "a clean_terminal of A2",
        "does not need a terminal clean",
    )


@pytest.mark.parametrize("isolation, kind", [(True, "clean_terminal"), (False, "clean")])
def test_valid_twin_the_clean_owed_then_the_room_is_free(isolation, kind):
    auditor = Auditor(config(hospital={"isolation_rooms": ["A2"]}))
    done = until_dirty(auditor, "p1", "A2", isolation=isolation)
    valid(
        auditor,
        15,
        [done],
        Tick(15).discharge("p1", "A2").dispatch("task-4", kind, "cleaner-1", "p1", "A2"),
    )
    valid(auditor, 30, [cleaned("task-4", "cleaner-1", "A2", 30)], Tick(30).available("A2"))
    assert auditor.terminal == set() and auditor.rooms["A2"] == "free"
    # the next patient of the room owes a plain clean again
    valid(
        auditor,
        31,
        [arrived("p2", 31)],
        Tick(31).admit("p2", "A2").dispatch("task-5", "escort_in", "porter-1", "p2", "A2"),
    )


def test_a_terminal_clean_sent_to_the_free_room_while_the_isolation_room_waits():
    auditor = Auditor(config(hospital={"isolation_rooms": ["A2"]}))
    done = until_dirty(auditor, "p1", "A2", isolation=True)
    violation(
        auditor,
        15,
        [done],
        Tick(15)
        .discharge("p1", "A2")
        .dispatch("task-4", "clean_terminal", "cleaner-1", "p1", "A1"),
        "task-4",
        "a clean_terminal of A1, which is free, not dirty",
    )


def test_a_terminal_clean_owed_is_still_owed_when_the_cleaning_only_waits():
    auditor = Auditor(config(cleaners=1, hospital={"isolation_rooms": ["A2"]}))
    done = until_dirty(auditor, "p1", "A2", isolation=True)
    # queued as it should be (the cleaner is free, though: that is the idle-staff rule's)
    violation(
        auditor,
        15,
        [done],
        Tick(15).discharge("p1", "A2").queue("task-4", "clean", "p1", "A2"),
        "needs a terminal clean",
    )


# --- shifts: no task to staff off duty, duty as the roster says ----------------------------------

ROSTER = {"roster": ["porter-1 00:00:00-00:00:05"], "cycle_s": 60.0}  # works 0-5 s of a minute


def test_a_task_given_to_staff_off_duty():
    auditor = Auditor(config(porters=2, shifts=ROSTER))
    valid(auditor, 5, [], Tick(5).off_duty("porter-1"))
    violation(
        auditor,
        6,
        [arrived("p1", 6)],
        Tick(6).admit("p1", "A1").dispatch("task-1", "escort_in", "porter-1", "p1", "A1"),
        "porter-1 given task-1 while off duty",
    )


def test_valid_twin_the_porter_on_duty_takes_it_and_the_one_off_duty_is_not_idle():
    auditor = Auditor(config(porters=2, shifts=ROSTER))
    valid(auditor, 5, [], Tick(5).off_duty("porter-1"))
    valid(
        auditor,
        6,
        [arrived("p1", 6), arrived("p2", 6)],
        Tick(6)
        .admit("p1", "A1")
        .admit("p2", "A2")
        .dispatch("task-1", "escort_in", "porter-2", "p1", "A1")
        .queue("task-2", "escort_in", "p2", "A2"),
    )  # porter-1 is free but off duty
    # back on duty at 60 s: the waiting escort is theirs at once
    valid(
        auditor,
        60,
        [],
        Tick(60).on_duty("porter-1").dispatch("task-2", "escort_in", "porter-1", "p2", "A2"),
    )


@pytest.mark.parametrize("duty_first", [True, False], ids=["duty-listed-first", "duty-listed-last"])
def test_a_dispatch_to_staff_going_off_duty_in_the_same_tick_whatever_the_order(duty_first):
    """porter-1 goes off duty at 5 s; a dispatch to them in that tick is caught, whether the
    decisions list the duty change before or after it (issue 17, item 5)."""
    auditor = Auditor(config(porters=2, shifts=ROSTER))
    dispatch = Tick(5).admit("p1", "A1").dispatch("task-1", "escort_in", "porter-1", "p1", "A1")
    duty = Tick(5).off_duty("porter-1")
    tick = duty_first_or_last(dispatch, duty, duty_first)
    violation(auditor, 5, [arrived("p1", 5)], tick, "porter-1 given task-1 while off duty")


@pytest.mark.parametrize("duty_first", [True, False], ids=["duty-listed-first", "duty-listed-last"])
def test_valid_twin_a_dispatch_to_staff_coming_on_duty_in_the_same_tick_whatever_the_order(
    duty_first,
):
    auditor = Auditor(config(porters=1, shifts=ROSTER))
    valid(auditor, 5, [], Tick(5).off_duty("porter-1"))
    valid(
        auditor,
        6,
        [arrived("p1", 6)],
        Tick(6).admit("p1", "A1").queue("task-1", "escort_in", "p1", "A1"),
    )
    dispatch = Tick(60).dispatch("task-1", "escort_in", "porter-1", "p1", "A1")
    valid(auditor, 60, [], duty_first_or_last(dispatch, Tick(60).on_duty("porter-1"), duty_first))


def duty_first_or_last(others: Tick, duty: Tick, duty_first: bool) -> Tick:
    """One tick of both lists' decisions, the duty changes first or last."""
    return in_one_tick(duty, others) if duty_first else in_one_tick(others, duty)


def in_one_tick(*parts: Tick) -> Tick:
    """The decisions of the parts, in that order, as one tick's list."""
    both = Tick(parts[0].tick)
    both.items = [
        dataclasses.replace(item, event_id=f"decision-{both.tick}-{n}")
        for n, item in enumerate((item for part in parts for item in part.items), start=1)
    ]
    return both


def test_a_staff_off_duty_against_the_roster():
    auditor = Auditor(config(shifts=ROSTER))
    violation(
        auditor,
        3,
        [],
        Tick(3).off_duty("porter-1"),
        "staff.off_duty for porter-1 against the roster",
    )


def test_a_staff_off_duty_for_someone_without_a_shift():
    auditor = Auditor(config(porters=2, shifts=ROSTER))
    violation(
        auditor,
        5,
        [],
        Tick(5).off_duty("porter-1").off_duty("porter-2"),
        "staff.off_duty for porter-2 against the roster",
    )


def test_a_staff_on_duty_for_someone_already_on_duty():
    auditor = Auditor(config(shifts=ROSTER))
    violation(
        auditor,
        3,
        [],
        Tick(3).on_duty("porter-1"),
        "staff.on_duty for porter-1, who is not off duty",
    )


def test_a_shift_change_not_announced():
    auditor = Auditor(config(porters=2, shifts=ROSTER))
    # tick 6 decides something, but porter-1 went off duty at 5 s without a word
    violation(
        auditor,
        6,
        [arrived("p1", 6)],
        Tick(6).admit("p1", "A1").dispatch("task-1", "escort_in", "porter-2", "p1", "A1"),
        "porter-1 is on duty against the roster",
    )


def test_a_staff_on_duty_before_the_break_ends():
    auditor = Auditor(
        config(
            nurses=1,
            shifts={
                "roster": ["nurse-1 00:00:00-00:01:00 break 00:00:10-00:00:20"],
                "cycle_s": 60.0,
            },
        )
    )
    valid(auditor, 10, [], Tick(10).off_duty("nurse-1"))
    violation(
        auditor, 15, [], Tick(15).on_duty("nurse-1"), "staff.on_duty for nurse-1 against the roster"
    )


# --- acuity order of admissions -------------------------------------------------------------------


def test_an_esi_1_arrival_referred_while_an_esi_3_of_the_tick_took_a_room_it_could_use():
    auditor = Auditor(config(rooms=1))
    violation(
        auditor,
        0,
        [arrived("p-urgent", 0, acuity=1), arrived("p-calm", 0, acuity=3)],
        Tick(0)
        .admit("p-calm", "A1")
        .refer("p-urgent")
        .dispatch("task-1", "escort_in", "porter-1", "p-calm", "A1"),
        "p-urgent (ESI 1) referred while p-calm (ESI 3, after it) took A1",
    )


def test_equally_urgent_the_later_may_not_take_the_room_of_the_earlier():
    auditor = Auditor(config(rooms=1))
    violation(
        auditor,
        1,
        [arrived("p-first", 0, acuity=2), arrived("p-late", 1, acuity=2)],
        Tick(1)
        .admit("p-late", "A1")
        .refer("p-first")
        .dispatch("task-1", "escort_in", "porter-1", "p-late", "A1"),
        "p-first (ESI 2) referred while p-late (ESI 2, after it) took A1",
    )


def test_valid_twin_the_esi_1_admitted_the_esi_3_referred():
    auditor = Auditor(config(rooms=1))
    valid(
        auditor,
        0,
        [arrived("p-urgent", 0, acuity=1), arrived("p-calm", 0, acuity=3)],
        Tick(0)
        .admit("p-urgent", "A1")
        .refer("p-calm")
        .dispatch("task-1", "escort_in", "porter-1", "p-urgent", "A1"),
    )


def test_valid_twin_the_esi_1_needs_isolation_and_the_room_cannot_isolate():
    auditor = Auditor(config(rooms=2, hospital={"isolation_rooms": ["A2"]}))
    valid(
        auditor,
        0,
        [arrived("p0", 0)],
        Tick(0).admit("p0", "A2").dispatch("task-1", "escort_in", "porter-1", "p0", "A2"),
    )
    valid(
        auditor,
        1,
        [arrived("p-urgent", 1, acuity=1, isolation=True), arrived("p-calm", 1, acuity=3)],
        Tick(1)
        .admit("p-calm", "A1")
        .refer("p-urgent")
        .queue("task-2", "escort_in", "p-calm", "A1"),
    )


# --- no idle staff while a task they may do waits -------------------------------------------------


def test_an_idle_doctor_while_an_urgent_visit_waits():
    auditor = Auditor(config(nurses=1, doctors=1))
    done = in_room(auditor, acuity=1)
    violation(
        auditor,
        2,
        [done],
        Tick(2).queue("task-2", "visit", "p1", "A1"),
        "doctor-1 is idle while a task they may do waits",
    )


def two_in_rooms(auditor, first_acuity, second_acuity):
    """p1 and p2 arrive at 0 and are escorted by porter-1 and porter-2; p1 is in A1 at 2 s
    and the doctor sees them (the nurse stays idle: nothing else waits)."""
    valid(
        auditor,
        0,
        [arrived("p1", 0, first_acuity), arrived("p2", 0, second_acuity)],
        Tick(0)
        .admit("p1", "A1")
        .admit("p2", "A2")
        .dispatch("task-1", "escort_in", "porter-1", "p1", "A1")
        .dispatch("task-2", "escort_in", "porter-2", "p2", "A2"),
    )
    valid(
        auditor,
        2,
        [escorted("task-1", "porter-1", "p1", "A1", "in", 2)],
        Tick(2).dispatch("task-3", "visit", "doctor-1", "p1", "A1"),
    )
    return escorted("task-2", "porter-2", "p2", "A2", "in", 3)


def test_valid_twin_an_idle_nurse_while_only_an_urgent_visit_waits():
    auditor = Auditor(config(porters=2, nurses=1, doctors=1))
    done = two_in_rooms(auditor, 3, 1)
    valid(auditor, 3, [done], Tick(3).queue("task-4", "visit", "p2", "A2"))
    assert auditor.idle["nurse"] == 1 and auditor.waiting["urgent_visit"] == 1


def test_an_idle_nurse_while_a_routine_visit_waits():
    auditor = Auditor(config(porters=2, nurses=1, doctors=1))
    done = two_in_rooms(auditor, 3, 3)
    violation(
        auditor,
        3,
        [done],
        Tick(3).queue("task-4", "visit", "p2", "A2"),
        "nurse-1 is idle while a task they may do waits",
    )


def test_an_idle_nurse_while_an_urgent_visit_waits_without_skills():
    auditor = Auditor(config(porters=2, nurses=1, doctors=1, rules={"skills": False}))
    done = two_in_rooms(auditor, 3, 1)
    violation(
        auditor,
        3,
        [done],
        Tick(3).queue("task-4", "visit", "p2", "A2"),
        "nurse-1 is idle while a task they may do waits",
    )


def test_an_idle_porter_off_duty_is_not_idle():
    auditor = Auditor(config(porters=1, shifts=ROSTER))
    valid(auditor, 5, [], Tick(5).off_duty("porter-1"))
    valid(
        auditor,
        6,
        [arrived("p1", 6)],
        Tick(6).admit("p1", "A1").queue("task-1", "escort_in", "p1", "A1"),
    )
    # on duty again but left idle beside the waiting escort: a violation
    violation(
        auditor,
        60,
        [],
        Tick(60).on_duty("porter-1"),
        "porter-1 is idle while a task they may do waits",
    )


# --- service levels: a waiting task past its target is announced once -----------------------------


def visit_waiting_without_medical_staff() -> Auditor:
    """p1 is in A1 at 2 s; with no medical staff the visit (task-2) waits, target 5 s."""
    base = validator_tests.small_config(rooms=1, nurses=0)
    auditor = Auditor(dataclasses.replace(base, sla=dataclasses.replace(base.sla, visit_s=5.0)))
    valid(auditor, 2, [in_room(auditor)], Tick(2).queue("task-2", "visit", "p1", "A1"))
    return auditor


def test_valid_a_waiting_visit_escalated_past_its_target():
    auditor = visit_waiting_without_medical_staff()
    valid(auditor, 8, [], Tick(8).escalate("task-2", "visit", 6.0, 5.0))


def test_a_task_escalated_twice():
    auditor = visit_waiting_without_medical_staff()
    valid(auditor, 8, [], Tick(8).escalate("task-2", "visit", 6.0, 5.0))
    violation(
        auditor, 9, [], Tick(9).escalate("task-2", "visit", 7.0, 5.0), "task-2 escalated twice"
    )


@pytest.mark.parametrize("task_id, kind", [("task-1", "escort_in"), ("task-2", "clean")])
def test_an_escalation_of_a_task_that_is_not_waiting_or_of_another_kind(task_id, kind):
    auditor = visit_waiting_without_medical_staff()
    violation(
        auditor,
        8,
        [],
        Tick(8).escalate(task_id, kind, 6.0, 5.0),
        f"task {task_id} escalated as a waiting {kind}, which it is not",
    )


def test_an_escalation_within_the_target():
    auditor = visit_waiting_without_medical_staff()
    violation(
        auditor, 6, [], Tick(6).escalate("task-2", "visit", 4.0, 5.0), "within its 5.0 s target"
    )


@pytest.mark.parametrize(
    "waited_s, sla_s", [(7.0, 5.0), (6.0, 4.0), (6.0, 5.5)], ids=["wait", "target", "both"]
)
def test_an_escalation_that_misstates_the_wait_or_the_target(waited_s, sla_s):
    """The visit began to wait at 2 s, its target is 5 s: at 8 s it has waited 6 s."""
    auditor = visit_waiting_without_medical_staff()
    violation(
        auditor,
        8,
        [],
        Tick(8).escalate("task-2", "visit", waited_s, sla_s),
        "it has waited 6.0 s, and its target is 5.0",
    )


def test_a_task_past_its_target_that_is_not_escalated():
    auditor = visit_waiting_without_medical_staff()
    valid(auditor, 7, [], Tick(7))  # 5 s of waiting: at its target, not past it
    violation(auditor, 8, [], Tick(8), "task-2 waited past its target with no escalation")


def test_an_urgent_patients_task_is_held_to_the_urgent_target():
    base = validator_tests.small_config(rooms=1, nurses=0)
    sla = dataclasses.replace(base.sla, visit_s=5.0, visit_urgent_s=3.0)
    for told_target, ok in ((3.0, True), (5.0, False)):
        auditor = Auditor(dataclasses.replace(base, sla=sla))
        valid(
            auditor, 2, [in_room(auditor, acuity=1)], Tick(2).queue("task-2", "visit", "p1", "A1")
        )
        decisions = Tick(8).escalate("task-2", "visit", 6.0, told_target)
        if ok:
            valid(auditor, 8, [], decisions)
        else:
            violation(auditor, 8, [], decisions, "its target is 3.0")


# An escalation is judged against the tick's decisions as a whole, wherever the list puts it:
# of a task still waiting once they are all made.

ESCALATION_ORDER = pytest.mark.parametrize(
    "escalation_first", [True, False], ids=["escalation-listed-first", "escalation-listed-last"]
)


@ESCALATION_ORDER
def test_valid_an_escalation_of_a_task_queued_in_the_same_tick_whatever_the_order(
    escalation_first,
):
    """A target shorter than a tick: p1 arrives at 0.5 s, and with no porter its escort
    (task-1) is queued at the tick of 1 s, 0.5 s past its arrival: past its 0.2 s target
    already, so escalated in the tick that queues it, before or after the queue."""
    base = validator_tests.small_config(rooms=1, porters=0)
    auditor = Auditor(dataclasses.replace(base, sla=dataclasses.replace(base.sla, escort_in_s=0.2)))
    queue = Tick(1).admit("p1", "A1").queue("task-1", "escort_in", "p1", "A1")
    escalation = Tick(1).escalate("task-1", "escort_in", 0.5, 0.2)
    parts = (escalation, queue) if escalation_first else (queue, escalation)
    arrival = ev.PatientArrived("arrival-p1", 500, "p1")
    valid(auditor, 1, [arrival], in_one_tick(*parts))


def escort_waiting_for_the_one_porter() -> Auditor:
    """p2's escort (task-2) queued at 0 s, target 4 s, while the one porter takes p1's."""
    base = validator_tests.small_config(rooms=2, porters=1, nurses=1)
    auditor = Auditor(dataclasses.replace(base, sla=dataclasses.replace(base.sla, escort_in_s=4.0)))
    valid(
        auditor,
        0,
        [arrived("p1", 0), arrived("p2", 0)],
        Tick(0)
        .admit("p1", "A1")
        .dispatch("task-1", "escort_in", "porter-1", "p1", "A1")
        .admit("p2", "A2")
        .queue("task-2", "escort_in", "p2", "A2"),
    )
    return auditor


@ESCALATION_ORDER
def test_an_escalation_of_a_task_dispatched_in_the_same_tick_whatever_the_order(
    escalation_first,
):
    """p2's escort (task-2) waits from 0 s for the one porter, target 4 s; the porter is
    back at 5 s and takes it: the task no longer waits once the tick's decisions are made,
    so an escalation of it in that tick is wrong, before the dispatch as after it."""
    auditor = escort_waiting_for_the_one_porter()
    dispatches = (
        Tick(5)
        .dispatch("task-3", "visit", "nurse-1", "p1", "A1")
        .dispatch("task-2", "escort_in", "porter-1", "p2", "A2", origin="A1")
    )
    escalation = Tick(5).escalate("task-2", "escort_in", 5.0, 4.0)
    parts = (escalation, dispatches) if escalation_first else (dispatches, escalation)
    violation(
        auditor,
        5,
        [escorted("task-1", "porter-1", "p1", "A1", "in", 5)],
        in_one_tick(*parts),
        "task task-2 escalated as a waiting escort_in, which it is not",
    )


def test_valid_twin_the_task_dispatched_in_the_tick_it_passes_its_target_needs_no_escalation():
    auditor = escort_waiting_for_the_one_porter()
    valid(
        auditor,
        5,
        [escorted("task-1", "porter-1", "p1", "A1", "in", 5)],
        Tick(5)
        .dispatch("task-3", "visit", "nurse-1", "p1", "A1")
        .dispatch("task-2", "escort_in", "porter-1", "p2", "A2", origin="A1"),
    )
