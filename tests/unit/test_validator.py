"""The Auditor against hand-written event sequences: one per invariant, each breaking it, and
one valid sequence (a whole patient lifecycle) that passes."""

from __future__ import annotations

import dataclasses
import re

import pytest

from scheduler import events as ev
from scheduler.config import Config, StaffConfig
from scheduler.validator import Auditor, InvariantViolation


def small_config(rooms=1, porters=1, nurses=1, doctors=0, cleaners=1) -> Config:
    """A one-floor hospital. Built without the config's checks, so that a role may have
    nobody in it (a config file may not): then its tasks can only be queued."""
    return dataclasses.replace(
        Config().replace(hospital={"floors": ["A"], "rooms_per_floor": rooms}),
        staff=StaffConfig(porters=porters, nurses=nurses, doctors=doctors, cleaners=cleaners),
    )


# One floor, two rooms; one porter, one nurse, one cleaner.
CONFIG = small_config(rooms=2, porters=1, nurses=1, doctors=0, cleaners=1)


class Tick:
    """Decisions of one tick, with event ids and the tick filled in."""

    def __init__(self, tick: int):
        self.tick, self.items = tick, []

    def _add(self, cls, **fields):
        n = len(self.items) + 1
        self.items.append(
            cls(
                event_id=f"decision-{self.tick}-{n}",
                time_ms=self.tick * 1000,
                tick=self.tick,
                **fields,
            )
        )
        return self

    def admit(self, patient, room):
        return self._add(ev.PatientAdmitted, patient_id=patient, room_id=room)

    def refer(self, patient):
        return self._add(ev.PatientReferred, patient_id=patient, reason="no free room")

    def dispatch(self, task_id, kind, staff, patient, room, origin="entrance"):
        """`origin`: where the staff member sets off from (the room of their last task, the
        entrance after an escort out or before their first task)."""
        return self._add(
            ev.TaskDispatched,
            task_id=task_id,
            kind=kind,
            staff_id=staff,
            patient_id=patient,
            room_id=room,
            origin=origin,
        )

    def queue(self, task_id, kind, patient, room):
        return self._add(
            ev.TaskQueued, task_id=task_id, kind=kind, patient_id=patient, room_id=room
        )

    def discharge(self, patient, room):
        return self._add(ev.PatientDischarged, patient_id=patient, room_id=room)

    def available(self, room):
        return self._add(ev.RoomAvailable, room_id=room)


def arrived(patient, t=0):
    return ev.PatientArrived(f"arrival-{patient}", t * 1000, patient)


def escorted(task_id, staff, patient, room, direction, t):
    return ev.EscortCompleted(f"done-{task_id}", t * 1000, task_id, staff, patient, room, direction)


def visited(task_id, staff, patient, room, t):
    return ev.VisitCompleted(f"done-{task_id}", t * 1000, task_id, staff, patient, room)


def cleaned(task_id, staff, room, t):
    return ev.CleaningCompleted(f"done-{task_id}", t * 1000, task_id, staff, room)


def violation(auditor, tick, inbound, decisions, *words):
    with pytest.raises(InvariantViolation) as info:
        auditor.check_tick(tick, inbound, decisions.items)
    message = str(info.value)
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    return message


def admitted_and_escorting(auditor, patient="patient-1", room="A1"):
    """Tick 0: patient-1 arrives, is admitted to A1, porter-1 escorts them in (task-1)."""
    auditor.check_tick(
        0,
        [arrived(patient)],
        Tick(0)
        .admit(patient, room)
        .dispatch("task-1", "escort_in", "porter-1", patient, room)
        .items,
    )


def full_lifecycle(auditor):
    """patient-1 through every stage; A1 dirty after tick 13, free after tick 23."""
    admitted_and_escorting(auditor)
    auditor.check_tick(
        2,
        [escorted("task-1", "porter-1", "patient-1", "A1", "in", 2)],
        Tick(2).dispatch("task-2", "visit", "nurse-1", "patient-1", "A1").items,
    )
    auditor.check_tick(
        14,
        [visited("task-2", "nurse-1", "patient-1", "A1", 14)],
        Tick(14).dispatch("task-3", "escort_out", "porter-1", "patient-1", "A1", origin="A1").items,
    )
    auditor.check_tick(
        15,
        [escorted("task-3", "porter-1", "patient-1", "A1", "out", 15)],
        Tick(15)
        .discharge("patient-1", "A1")
        .dispatch("task-4", "clean", "cleaner-1", "patient-1", "A1")
        .items,
    )
    auditor.check_tick(
        26, [cleaned("task-4", "cleaner-1", "A1", 26)], Tick(26).available("A1").items
    )


@pytest.fixture
def auditor():
    return Auditor(CONFIG)


def test_a_valid_lifecycle_passes_and_is_accounted_for(auditor):
    full_lifecycle(auditor)
    assert auditor.rooms == {"A1": "free", "A2": "free"}
    assert all(task is None for task in auditor.busy.values())
    assert auditor.accounted_for() == {
        "arrived": 1,
        "referred": 0,
        "discharged": 1,
        "in_building": 0,
    }


def test_valid_referral_when_full_and_waiting_lists(auditor):
    # Two rooms, three arrivals, one porter: two admitted (one escort waits), one referred.
    auditor.check_tick(
        0,
        [arrived("p1"), arrived("p2"), arrived("p3")],
        Tick(0)
        .admit("p1", "A1")
        .admit("p2", "A2")
        .refer("p3")
        .dispatch("task-1", "escort_in", "porter-1", "p1", "A1")
        .queue("task-2", "escort_in", "p2", "A2")
        .items,
    )
    # Later the waiting escort is dispatched when the porter is back.
    auditor.check_tick(
        2,
        [escorted("task-1", "porter-1", "p1", "A1", "in", 2)],
        Tick(2)
        .dispatch("task-3", "visit", "nurse-1", "p1", "A1")
        .dispatch("task-2", "escort_in", "porter-1", "p2", "A2", origin="A1")
        .items,
    )
    assert auditor.accounted_for() == {
        "arrived": 3,
        "referred": 1,
        "discharged": 0,
        "in_building": 2,
    }


# --- a room holds at most one patient, and is never booked while dirty ----------------------


def test_room_booked_twice(auditor):
    violation(
        auditor,
        0,
        [arrived("p1"), arrived("p2")],
        Tick(0).admit("p1", "A1").admit("p2", "A1"),
        "booked room A1",
    )


def test_room_booked_while_occupied_in_a_later_tick(auditor):
    admitted_and_escorting(auditor, "p1", "A1")
    violation(auditor, 1, [arrived("p2", 1)], Tick(1).admit("p2", "A1"), "booked room A1")


def test_room_booked_while_dirty(auditor):
    full_lifecycle_until_dirty = Auditor(CONFIG)
    a = full_lifecycle_until_dirty
    admitted_and_escorting(a)
    a.check_tick(
        2,
        [escorted("task-1", "porter-1", "patient-1", "A1", "in", 2)],
        Tick(2).dispatch("task-2", "visit", "nurse-1", "patient-1", "A1").items,
    )
    a.check_tick(
        14,
        [visited("task-2", "nurse-1", "patient-1", "A1", 14)],
        Tick(14).dispatch("task-3", "escort_out", "porter-1", "patient-1", "A1", origin="A1").items,
    )
    # The escort out ends; in the same tick a new arrival is booked into the dirty A1.
    violation(
        a,
        15,
        [escorted("task-3", "porter-1", "patient-1", "A1", "out", 15), arrived("patient-2", 15)],
        Tick(15).discharge("patient-1", "A1").admit("patient-2", "A1"),
        "booked room A1",
        "dirty",
    )


def test_room_booked_while_being_cleaned(auditor):
    a = auditor
    admitted_and_escorting(a)
    a.check_tick(
        2,
        [escorted("task-1", "porter-1", "patient-1", "A1", "in", 2)],
        Tick(2).dispatch("task-2", "visit", "nurse-1", "patient-1", "A1").items,
    )
    a.check_tick(
        14,
        [visited("task-2", "nurse-1", "patient-1", "A1", 14)],
        Tick(14).dispatch("task-3", "escort_out", "porter-1", "patient-1", "A1", origin="A1").items,
    )
    a.check_tick(
        15,
        [escorted("task-3", "porter-1", "patient-1", "A1", "out", 15)],
        Tick(15)
        .discharge("patient-1", "A1")
        .dispatch("task-4", "clean", "cleaner-1", "patient-1", "A1")
        .items,
    )
    violation(
        a,
        16,
        [arrived("patient-2", 16)],
        Tick(16).admit("patient-2", "A1"),
        "booked room A1",
        "cleaning",
    )


def test_unknown_room_booked(auditor):
    violation(auditor, 0, [arrived("p1")], Tick(0).admit("p1", "Z9"), "Z9")


# --- a staff member does one task at a time --------------------------------------------------


def test_staff_given_two_tasks_in_one_tick(auditor):
    violation(
        auditor,
        0,
        [arrived("p1"), arrived("p2")],
        Tick(0)
        .admit("p1", "A1")
        .admit("p2", "A2")
        .dispatch("task-1", "escort_in", "porter-1", "p1", "A1")
        .dispatch("task-2", "escort_in", "porter-1", "p2", "A2"),
        "porter-1",
        "task-2",
        "task-1",
    )


def test_staff_given_a_task_while_still_busy_from_an_earlier_tick(auditor):
    admitted_and_escorting(auditor, "p1", "A1")
    violation(
        auditor,
        1,
        [arrived("p2", 1)],
        Tick(1).admit("p2", "A2").dispatch("task-2", "escort_in", "porter-1", "p2", "A2"),
        "porter-1",
        "task-2",
        "while doing task-1",
    )


# --- a task goes to the right role ------------------------------------------------------------


@pytest.mark.parametrize("staff, role", [("nurse-1", "medical"), ("cleaner-1", "cleaner")])
def test_escort_given_to_the_wrong_role(auditor, staff, role):
    violation(
        auditor,
        0,
        [arrived("p1")],
        Tick(0).admit("p1", "A1").dispatch("task-1", "escort_in", staff, "p1", "A1"),
        "escort_in",
        "task-1",
        staff,
        role,
    )


def test_visit_given_to_a_porter(auditor):
    admitted_and_escorting(auditor, "p1", "A1")
    violation(
        auditor,
        2,
        [escorted("task-1", "porter-1", "p1", "A1", "in", 2)],
        Tick(2).dispatch("task-2", "visit", "porter-1", "p1", "A1"),
        "visit",
        "task-2",
        "porter-1",
        "porter",
    )


def test_task_given_to_unknown_staff(auditor):
    violation(
        auditor,
        0,
        [arrived("p1")],
        Tick(0).admit("p1", "A1").dispatch("task-1", "escort_in", "porter-9", "p1", "A1"),
        "porter-9",
    )


# --- nothing is assigned twice ---------------------------------------------------------------


def test_task_dispatched_twice_in_one_tick():
    auditor = Auditor(small_config(rooms=2, porters=2))
    violation(
        auditor,
        0,
        [arrived("p1")],
        Tick(0)
        .admit("p1", "A1")
        .dispatch("task-1", "escort_in", "porter-1", "p1", "A1")
        .dispatch("task-1", "escort_in", "porter-2", "p1", "A1"),
        "task-1",
        "twice",
    )


def test_task_dispatched_again_in_a_later_tick():
    auditor = Auditor(small_config(rooms=2, porters=2))
    auditor.check_tick(
        0,
        [arrived("p1")],
        Tick(0).admit("p1", "A1").dispatch("task-1", "escort_in", "porter-1", "p1", "A1").items,
    )
    violation(
        auditor,
        1,
        [],
        Tick(1).dispatch("task-1", "escort_in", "porter-2", "p1", "A1"),
        "task-1",
        "twice",
    )


def test_task_queued_twice():
    auditor = Auditor(small_config(rooms=2, porters=0))
    violation(
        auditor,
        0,
        [arrived("p1")],
        Tick(0)
        .admit("p1", "A1")
        .queue("task-1", "escort_in", "p1", "A1")
        .queue("task-1", "escort_in", "p1", "A1"),
        "task-1",
        "twice",
    )


def test_task_queued_again_in_a_later_tick():
    auditor = Auditor(small_config(rooms=2, porters=0))
    auditor.check_tick(
        0, [arrived("p1")], Tick(0).admit("p1", "A1").queue("task-1", "escort_in", "p1", "A1").items
    )
    violation(auditor, 1, [], Tick(1).queue("task-1", "escort_in", "p1", "A1"), "task-1", "twice")


def test_task_announced_that_no_event_created(auditor):
    # A visit for a patient who has not been escorted in yet.
    admitted_and_escorting(auditor, "p1", "A1")
    violation(
        auditor,
        1,
        [],
        Tick(1).queue("task-2", "visit", "p1", "A1"),
        "task-2",
        "not created this tick",
    )


def test_patient_admitted_twice(auditor):
    violation(
        auditor,
        0,
        [arrived("p1")],
        Tick(0).admit("p1", "A1").admit("p1", "A2"),
        "p1",
        "not a new arrival",
    )


def test_patient_arrives_twice(auditor):
    auditor.check_tick(
        0,
        [arrived("p1")],
        Tick(0).admit("p1", "A1").dispatch("task-1", "escort_in", "porter-1", "p1", "A1").items,
    )
    violation(auditor, 1, [ev.PatientArrived("again", 1000, "p1")], Tick(1), "p1", "twice")


# --- referred only when no room is free -------------------------------------------------------


def test_referral_while_a_room_is_free(auditor):
    violation(auditor, 0, [arrived("p1")], Tick(0).refer("p1"), "referred", "free")


def test_referral_while_a_room_is_still_free_after_the_admissions(auditor):
    # Two arrivals, two rooms: one admitted, the other referred although A2 is free.
    violation(
        auditor,
        0,
        [arrived("p1"), arrived("p2")],
        Tick(0)
        .admit("p1", "A1")
        .refer("p2")
        .dispatch("task-1", "escort_in", "porter-1", "p1", "A1"),
        "referred",
        "free",
    )


def test_referral_of_someone_who_did_not_arrive(auditor):
    violation(auditor, 0, [], Tick(0).refer("ghost"), "ghost")


# --- no staff member idle while a task of their role waits -----------------------------------


def test_idle_porter_while_an_escort_waits(auditor):
    violation(
        auditor,
        0,
        [arrived("p1")],
        Tick(0).admit("p1", "A1").queue("task-1", "escort_in", "p1", "A1"),
        "porter-1",
        "idle",
        "porter",
    )


def test_idle_cleaner_while_a_room_waits_for_cleaning(auditor):
    admitted_and_escorting(auditor)
    auditor.check_tick(
        2,
        [escorted("task-1", "porter-1", "patient-1", "A1", "in", 2)],
        Tick(2).dispatch("task-2", "visit", "nurse-1", "patient-1", "A1").items,
    )
    auditor.check_tick(
        14,
        [visited("task-2", "nurse-1", "patient-1", "A1", 14)],
        Tick(14).dispatch("task-3", "escort_out", "porter-1", "patient-1", "A1", origin="A1").items,
    )
    violation(
        auditor,
        15,
        [escorted("task-3", "porter-1", "patient-1", "A1", "out", 15)],
        Tick(15).discharge("patient-1", "A1").queue("task-4", "clean", "patient-1", "A1"),
        "cleaner-1",
        "idle",
    )


# --- every new task is announced; every arrival is decided ----------------------------------


def test_new_escort_not_announced(auditor):
    violation(
        auditor,
        0,
        [arrived("p1")],
        Tick(0).admit("p1", "A1"),
        "not dispatched or queued",
        "escort_in",
        "p1",
    )


def test_visit_not_announced_after_the_escort_in(auditor):
    admitted_and_escorting(auditor, "p1", "A1")
    violation(
        auditor,
        2,
        [escorted("task-1", "porter-1", "p1", "A1", "in", 2)],
        Tick(2),
        "not dispatched or queued",
        "visit",
        "p1",
    )


def test_arrival_neither_admitted_nor_referred(auditor):
    message = violation(
        auditor,
        0,
        [arrived("p1"), arrived("p2")],
        Tick(0).admit("p1", "A1").dispatch("task-1", "escort_in", "porter-1", "p1", "A1"),
        "neither admitted nor referred",
    )
    assert re.search(r"\bp2\b", message) and not re.search(r"\bp1\b", message)


def test_discharge_not_announced(auditor):
    admitted_and_escorting(auditor)
    auditor.check_tick(
        2,
        [escorted("task-1", "porter-1", "patient-1", "A1", "in", 2)],
        Tick(2).dispatch("task-2", "visit", "nurse-1", "patient-1", "A1").items,
    )
    auditor.check_tick(
        14,
        [visited("task-2", "nurse-1", "patient-1", "A1", 14)],
        Tick(14).dispatch("task-3", "escort_out", "porter-1", "patient-1", "A1", origin="A1").items,
    )
    violation(
        auditor,
        15,
        [escorted("task-3", "porter-1", "patient-1", "A1", "out", 15)],
        Tick(15).dispatch("task-4", "clean", "cleaner-1", "patient-1", "A1"),
        "patient-1",
    )


# --- the event stream itself -------------------------------------------------------------------


def test_completion_of_a_task_the_staff_member_was_not_doing(auditor):
    admitted_and_escorting(auditor, "p1", "A1")
    violation(
        auditor,
        2,
        [escorted("task-1", "porter-2", "p1", "A1", "in", 2)],
        Tick(2),
        "task-1",
        "porter-2",
    )


@pytest.mark.parametrize(
    "wrong",
    [
        ev.VisitCompleted("done-task-1", 2000, "task-1", "porter-1", "p1", "A1"),
        ev.EscortCompleted("done-task-1", 2000, "task-1", "porter-1", "p1", "A1", "out"),
        ev.EscortCompleted("done-task-1", 2000, "task-1", "porter-1", "p1", "A2", "in"),
        ev.EscortCompleted("done-task-1", 2000, "task-1", "porter-1", "p2", "A1", "in"),
    ],
)
def test_completion_that_does_not_fit_the_task(auditor, wrong):
    admitted_and_escorting(auditor, "p1", "A1")
    with pytest.raises(InvariantViolation, match="task-1"):
        auditor.check_tick(
            2, [wrong], Tick(2).dispatch("task-2", "visit", "nurse-1", "p1", "A1").items
        )


def test_decision_with_the_wrong_tick(auditor):
    wrong = ev.PatientAdmitted(event_id="d", time_ms=0, tick=7, patient_id="p1", room_id="A1")
    with pytest.raises(InvariantViolation, match="tick 7"):
        auditor.check_tick(0, [arrived("p1")], [wrong])


@pytest.mark.parametrize("again", [3, 2])
def test_ticks_out_of_order(auditor, again):
    auditor.check_tick(3, [], [])
    with pytest.raises(InvariantViolation, match="out of order"):
        auditor.check_tick(again, [], [])


# --- decisions in time order: at their tick's time, on events no later than it ----------------


def test_a_decision_dated_other_than_its_tick(auditor):
    tick = Tick(5).admit("p1", "A1").dispatch("task-1", "escort_in", "porter-1", "p1", "A1")
    tick.items[1] = dataclasses.replace(tick.items[1], time_ms=4000)
    violation(auditor, 5, [arrived("p1", 5)], tick, "decision-5-2", "dated 4.0 s", "tick's 5.0 s")


def test_an_event_consumed_before_its_time(auditor):
    """A tick decides on events up to its own time: one from the future is out of order."""
    admitted_and_escorting(auditor, "p1", "A1")
    violation(
        auditor,
        2,
        [escorted("task-1", "porter-1", "p1", "A1", "in", 3)],
        Tick(2).dispatch("task-2", "visit", "nurse-1", "p1", "A1"),
        "escort.completed done-task-1 of 3.0 s",
        "tick of 2.0 s",
    )


def test_a_tick_of_half_a_second_dates_its_decisions_by_its_own_length():
    auditor = Auditor(
        dataclasses.replace(CONFIG, scheduler=dataclasses.replace(CONFIG.scheduler, tick_s=0.5))
    )
    half = Tick(4)  # 2.0 s
    half.items = [
        dataclasses.replace(d, time_ms=2000)
        for d in half.admit("p1", "A1")
        .dispatch("task-1", "escort_in", "porter-1", "p1", "A1")
        .items
    ]
    auditor.check_tick(4, [arrived("p1", 2)], half.items)
    whole = Tick(6).admit("p2", "A2").queue("task-2", "escort_in", "p2", "A2")  # dated 6.0 s
    violation(auditor, 6, [arrived("p2", 3)], whole, "dated 6.0 s", "tick's 3.0 s")


# --- a dispatch is the task as queued, or the one the lifecycle creates ----------------------


@pytest.mark.parametrize(
    "kind, patient, room",
    [
        ("escort_out", "p1", "A1"),  # the example: p2's escort in sent as p1's escort out
        ("escort_out", "p2", "A2"),
        ("escort_in", "p1", "A2"),
        ("escort_in", "p2", "A1"),
    ],
)
def test_a_queued_task_dispatched_as_another(auditor, kind, patient, room):
    auditor.check_tick(
        0,
        [arrived("p1"), arrived("p2")],
        Tick(0)
        .admit("p1", "A1")
        .admit("p2", "A2")
        .dispatch("task-1", "escort_in", "porter-1", "p1", "A1")
        .queue("task-2", "escort_in", "p2", "A2")
        .items,
    )
    violation(
        auditor,
        2,
        [escorted("task-1", "porter-1", "p1", "A1", "in", 2)],
        Tick(2)
        .dispatch("task-3", "visit", "nurse-1", "p1", "A1")
        .dispatch("task-2", kind, "porter-1", patient, room, origin="A1"),
        f"task-2 dispatched as {kind} for {patient} in {room}",
        "queued as escort_in for p2 in A2",
    )


def test_a_new_task_for_another_room_than_its_patients(auditor):
    auditor.check_tick(
        0,
        [arrived("p1")],
        Tick(0).admit("p1", "A1").dispatch("task-1", "escort_in", "porter-1", "p1", "A1").items,
    )
    violation(
        auditor,
        2,
        [escorted("task-1", "porter-1", "p1", "A1", "in", 2)],
        Tick(2).dispatch("task-2", "visit", "nurse-1", "p1", "A2"),
        "task-2 (visit for p1 in A2) was not created this tick",
    )


def until_escort_out(auditor):
    """patient-1 admitted to A1, escorted in by porter-1, seen by nurse-1, and at tick 14
    escorted out by porter-1 (task-3); the escort's end at 15 s is returned."""
    admitted_and_escorting(auditor)
    auditor.check_tick(
        2,
        [escorted("task-1", "porter-1", "patient-1", "A1", "in", 2)],
        Tick(2).dispatch("task-2", "visit", "nurse-1", "patient-1", "A1").items,
    )
    auditor.check_tick(
        14,
        [visited("task-2", "nurse-1", "patient-1", "A1", 14)],
        Tick(14).dispatch("task-3", "escort_out", "porter-1", "patient-1", "A1", origin="A1").items,
    )
    return escorted("task-3", "porter-1", "patient-1", "A1", "out", 15)


# --- a cleaning goes to the room that was left dirty -------------------------------------------


@pytest.mark.parametrize("queue", [False, True])
def test_a_cleaning_sent_to_a_free_room_while_the_dirty_one_waits(auditor, queue):
    """The issue's example: A1 is left dirty, the cleaning goes to the free A2; A1 would
    stay dirty for ever."""
    done = until_escort_out(auditor)
    tick = Tick(15).discharge("patient-1", "A1")
    tick = (
        tick.queue("task-4", "clean", "patient-1", "A2")
        if queue
        else tick.dispatch("task-4", "clean", "cleaner-1", "patient-1", "A2")
    )
    violation(auditor, 15, [done], tick, "task-4", "clean of A2, which is free, not dirty")


def test_a_cleaning_sent_to_another_dirty_room():
    """A2 is dirty and waits for its own cleaning (task-4); when A1 is left too, its cleaning
    may not go to A2."""
    auditor = Auditor(small_config(rooms=2, porters=2, cleaners=0))
    auditor.check_tick(
        0,
        [arrived("p1"), arrived("p2")],
        Tick(0)
        .admit("p1", "A1")
        .admit("p2", "A2")
        .dispatch("task-1", "escort_in", "porter-1", "p1", "A1")
        .dispatch("task-2", "escort_in", "porter-2", "p2", "A2")
        .items,
    )
    auditor.check_tick(
        3,
        [
            escorted("task-1", "porter-1", "p1", "A1", "in", 2),
            escorted("task-2", "porter-2", "p2", "A2", "in", 3),
        ],
        Tick(3)
        .dispatch("task-3", "visit", "nurse-1", "p2", "A2")
        .queue("task-4", "visit", "p1", "A1")
        .items,
    )
    auditor.check_tick(
        15,
        [visited("task-3", "nurse-1", "p2", "A2", 15)],
        Tick(15)
        .dispatch("task-5", "escort_out", "porter-2", "p2", "A2", origin="A2")
        .dispatch("task-4", "visit", "nurse-1", "p1", "A1", origin="A2")
        .items,
    )
    auditor.check_tick(
        16,
        [escorted("task-5", "porter-2", "p2", "A2", "out", 16)],
        Tick(16).discharge("p2", "A2").queue("task-6", "clean", "p2", "A2").items,
    )
    auditor.check_tick(
        28,
        [visited("task-4", "nurse-1", "p1", "A1", 28)],
        Tick(28).dispatch("task-7", "escort_out", "porter-1", "p1", "A1", origin="A1").items,
    )
    violation(
        auditor,
        29,
        [escorted("task-7", "porter-1", "p1", "A1", "out", 29)],
        Tick(29).discharge("p1", "A1").queue("task-8", "clean", "p1", "A2"),
        "task-8 (clean for p1 in A2) was not created this tick",
    )


def test_a_room_left_dirty_with_no_cleaning_to_come_is_reported_at_the_end(auditor):
    done = until_escort_out(auditor)
    auditor.check_tick(
        15,
        [done],
        Tick(15)
        .discharge("patient-1", "A1")
        .dispatch("task-4", "clean", "cleaner-1", "patient-1", "A1")
        .items,
    )
    assert auditor.accounted_for()["discharged"] == 1  # A1 is being cleaned: fine
    del auditor.tasks["task-4"]  # as if the cleaning had been lost on the way
    with pytest.raises(InvariantViolation, match=r"room A1 \(cleaning\) has no cleaning open"):
        auditor.accounted_for()


# --- a dispatch sets off from where its staff member is ----------------------------------------


def test_a_first_task_that_sets_off_from_a_room(auditor):
    violation(
        auditor,
        0,
        [arrived("p1")],
        Tick(0)
        .admit("p1", "A1")
        .dispatch("task-1", "escort_in", "porter-1", "p1", "A1", origin="A2"),
        "porter-1 sets off for task-1 from A2, but is at entrance",
    )


def test_an_escort_out_that_sets_off_from_the_entrance_though_the_porter_is_in_the_room(auditor):
    admitted_and_escorting(auditor)
    auditor.check_tick(
        2,
        [escorted("task-1", "porter-1", "patient-1", "A1", "in", 2)],
        Tick(2).dispatch("task-2", "visit", "nurse-1", "patient-1", "A1").items,
    )
    violation(
        auditor,
        14,
        [visited("task-2", "nurse-1", "patient-1", "A1", 14)],
        Tick(14).dispatch("task-3", "escort_out", "porter-1", "patient-1", "A1"),
        "porter-1 sets off for task-3 from entrance, but is at A1",
    )


def test_after_an_escort_out_the_porter_sets_off_from_the_exit(auditor):
    full_lifecycle(auditor)  # porter-1 took patient-1 out at 15 s; the cleaner is in A1
    violation(
        auditor,
        30,
        [arrived("p2", 30)],
        Tick(30)
        .admit("p2", "A2")
        .dispatch("task-5", "escort_in", "porter-1", "p2", "A2", origin="A1"),
        "porter-1 sets off for task-5 from A1, but is at entrance",
    )
    assert Auditor(CONFIG).place["cleaner-1"] == "entrance" and auditor.place["cleaner-1"] == "A1"


def test_the_kept_counts_match_a_full_scan_every_tick():
    """The Auditor keeps free rooms, idle staff and waiting tasks per role as counts, so that
    its per-tick checks scan nothing; after every tick of a busy run they equal a scan of
    its tables, and the patients it forgot are exactly those who left."""
    from scheduler.engine import Scheduler
    from scheduler.simulation import simulate

    config = small_config(rooms=3, porters=1, nurses=1, cleaners=1).replace(
        arrivals={"interval_s": 2.0}
    )
    scheduler = Scheduler(config)
    auditor = scheduler.auditor

    def check(result):
        assert auditor.free_rooms == sum(s == "free" for s in auditor.rooms.values())
        for grade in ("porter", "nurse", "doctor", "cleaner"):
            assert auditor.idle[grade] == sum(
                1
                for s, t in auditor.busy.items()
                if t is None and auditor.on_duty[s] and s.startswith(grade + "-")
            )
        for key in ("porter", "visit", "urgent_visit", "cleaner"):
            assert auditor.waiting[key] == sum(
                1
                for t in auditor.tasks.values()
                if t.staff_id is None and auditor._waits_for(t) == key
            )
        assert len(auditor.left) == auditor.referred + auditor.discharged

    simulate(config, scheduler, 1800 * 1000, on_tick=check)
    summary = auditor.accounted_for()
    assert summary["referred"] > 0 and summary["discharged"] > 0


def test_a_patient_who_left_cannot_arrive_again():
    auditor = Auditor(CONFIG)
    full_lifecycle(auditor)
    assert "patient-1" not in auditor.patients and "patient-1" in auditor.left
    violation(
        auditor,
        30,
        [arrived("patient-1", 30)],
        Tick(30).admit("patient-1", "A1"),
        "patient-1",
        "arrived twice",
    )


def test_the_auditor_restates_the_contract_rather_than_import_the_schedulers_tables():
    """A wrong entry in the scheduler's tables (which role does which kind, what comes next)
    must not be copied into the check of it: no table or function of `scheduler.hospital`
    or `scheduler.layout` is used by the Auditor."""
    import scheduler.hospital
    import scheduler.layout
    import scheduler.validator as validator

    def own(value, module) -> bool:
        return (
            isinstance(value, (dict, set, frozenset, list, tuple)) and len(value) > 0
        ) or getattr(value, "__module__", None) == module.__name__

    theirs = [
        value
        for module in (scheduler.hospital, scheduler.layout)
        for name, value in vars(module).items()
        if not name.startswith("__") and own(value, module)
    ]
    borrowed = [
        name for name, value in vars(validator).items() if any(value is their for their in theirs)
    ]
    assert borrowed == []
    assert validator.DONE_BY["visit"] == "medical"
    assert validator.COMES_NEXT["visit"] == "escort_out"
