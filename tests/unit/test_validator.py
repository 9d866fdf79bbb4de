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
        staff=StaffConfig(porters=porters, nurses=nurses, doctors=doctors, cleaners=cleaners))


# One floor, two rooms; one porter, one nurse, one cleaner.
CONFIG = small_config(rooms=2, porters=1, nurses=1, doctors=0, cleaners=1)


class Tick:
    """Decisions of one tick, with event ids and the tick filled in."""

    def __init__(self, tick: int):
        self.tick, self.items = tick, []

    def _add(self, cls, **fields):
        n = len(self.items) + 1
        self.items.append(cls(event_id=f"decision-{self.tick}-{n}", time_ms=self.tick * 1000,
                              tick=self.tick, **fields))
        return self

    def admit(self, patient, room):
        return self._add(ev.PatientAdmitted, patient_id=patient, room_id=room)

    def refer(self, patient):
        return self._add(ev.PatientReferred, patient_id=patient, reason="no free room")

    def dispatch(self, task_id, kind, staff, patient, room):
        return self._add(ev.TaskDispatched, task_id=task_id, kind=kind, staff_id=staff,
                         patient_id=patient, room_id=room)

    def queue(self, task_id, kind, patient, room):
        return self._add(ev.TaskQueued, task_id=task_id, kind=kind, patient_id=patient,
                         room_id=room)

    def discharge(self, patient, room):
        return self._add(ev.PatientDischarged, patient_id=patient, room_id=room)

    def available(self, room):
        return self._add(ev.RoomAvailable, room_id=room)


def arrived(patient, t=0):
    return ev.PatientArrived(f"arrival-{patient}", t * 1000, patient)


def escorted(task_id, staff, patient, room, direction, t):
    return ev.EscortCompleted(f"done-{task_id}", t * 1000, task_id, staff, patient, room,
                              direction)


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
    auditor.check_tick(0, [arrived(patient)],
                       Tick(0).admit(patient, room).dispatch("task-1", "escort_in", "porter-1",
                                                             patient, room).items)


def full_lifecycle(auditor):
    """patient-1 through every stage; A1 dirty after tick 13, free after tick 23."""
    admitted_and_escorting(auditor)
    auditor.check_tick(2, [escorted("task-1", "porter-1", "patient-1", "A1", "in", 2)],
                       Tick(2).dispatch("task-2", "visit", "nurse-1", "patient-1", "A1").items)
    auditor.check_tick(14, [visited("task-2", "nurse-1", "patient-1", "A1", 14)],
                       Tick(14).dispatch("task-3", "escort_out", "porter-1", "patient-1",
                                         "A1").items)
    auditor.check_tick(15, [escorted("task-3", "porter-1", "patient-1", "A1", "out", 15)],
                       Tick(15).discharge("patient-1", "A1")
                       .dispatch("task-4", "clean", "cleaner-1", "patient-1", "A1").items)
    auditor.check_tick(26, [cleaned("task-4", "cleaner-1", "A1", 26)],
                       Tick(26).available("A1").items)


@pytest.fixture
def auditor():
    return Auditor(CONFIG)


def test_a_valid_lifecycle_passes_and_is_accounted_for(auditor):
    full_lifecycle(auditor)
    assert auditor.rooms == {"A1": "free", "A2": "free"}
    assert all(task is None for task in auditor.busy.values())
    assert auditor.accounted_for() == {"arrived": 1, "referred": 0, "discharged": 1,
                                       "in_building": 0}


def test_valid_referral_when_full_and_waiting_lists(auditor):
    # Two rooms, three arrivals, one porter: two admitted (one escort waits), one referred.
    auditor.check_tick(0, [arrived("p1"), arrived("p2"), arrived("p3")],
                       Tick(0).admit("p1", "A1").admit("p2", "A2").refer("p3")
                       .dispatch("task-1", "escort_in", "porter-1", "p1", "A1")
                       .queue("task-2", "escort_in", "p2", "A2").items)
    # Later the waiting escort is dispatched when the porter is back.
    auditor.check_tick(2, [escorted("task-1", "porter-1", "p1", "A1", "in", 2)],
                       Tick(2).dispatch("task-3", "visit", "nurse-1", "p1", "A1")
                       .dispatch("task-2", "escort_in", "porter-1", "p2", "A2").items)
    assert auditor.accounted_for() == {"arrived": 3, "referred": 1, "discharged": 0,
                                       "in_building": 2}


# --- a room holds at most one patient, and is never booked while dirty ----------------------

def test_room_booked_twice(auditor):
    violation(auditor, 0, [arrived("p1"), arrived("p2")],
              Tick(0).admit("p1", "A1").admit("p2", "A1"), "booked room A1")


def test_room_booked_while_occupied_in_a_later_tick(auditor):
    admitted_and_escorting(auditor, "p1", "A1")
    violation(auditor, 1, [arrived("p2", 1)], Tick(1).admit("p2", "A1"), "booked room A1")


def test_room_booked_while_dirty(auditor):
    full_lifecycle_until_dirty = Auditor(CONFIG)
    a = full_lifecycle_until_dirty
    admitted_and_escorting(a)
    a.check_tick(2, [escorted("task-1", "porter-1", "patient-1", "A1", "in", 2)],
                 Tick(2).dispatch("task-2", "visit", "nurse-1", "patient-1", "A1").items)
    a.check_tick(14, [visited("task-2", "nurse-1", "patient-1", "A1", 14)],
                 Tick(14).dispatch("task-3", "escort_out", "porter-1", "patient-1", "A1").items)
    # The escort out ends; in the same tick a new arrival is booked into the dirty A1.
    violation(a, 15, [escorted("task-3", "porter-1", "patient-1", "A1", "out", 15),
                      arrived("patient-2", 15)],
              Tick(15).discharge("patient-1", "A1").admit("patient-2", "A1"),
              "booked room A1", "dirty")


def test_room_booked_while_being_cleaned(auditor):
    a = auditor
    admitted_and_escorting(a)
    a.check_tick(2, [escorted("task-1", "porter-1", "patient-1", "A1", "in", 2)],
                 Tick(2).dispatch("task-2", "visit", "nurse-1", "patient-1", "A1").items)
    a.check_tick(14, [visited("task-2", "nurse-1", "patient-1", "A1", 14)],
                 Tick(14).dispatch("task-3", "escort_out", "porter-1", "patient-1", "A1").items)
    a.check_tick(15, [escorted("task-3", "porter-1", "patient-1", "A1", "out", 15)],
                 Tick(15).discharge("patient-1", "A1")
                 .dispatch("task-4", "clean", "cleaner-1", "patient-1", "A1").items)
    violation(a, 16, [arrived("patient-2", 16)], Tick(16).admit("patient-2", "A1"),
              "booked room A1", "cleaning")


def test_unknown_room_booked(auditor):
    violation(auditor, 0, [arrived("p1")], Tick(0).admit("p1", "Z9"), "Z9")


# --- a staff member does one task at a time --------------------------------------------------

def test_staff_given_two_tasks_in_one_tick(auditor):
    violation(auditor, 0, [arrived("p1"), arrived("p2")],
              Tick(0).admit("p1", "A1").admit("p2", "A2")
              .dispatch("task-1", "escort_in", "porter-1", "p1", "A1")
              .dispatch("task-2", "escort_in", "porter-1", "p2", "A2"),
              "porter-1", "task-2", "task-1")


def test_staff_given_a_task_while_still_busy_from_an_earlier_tick(auditor):
    admitted_and_escorting(auditor, "p1", "A1")
    violation(auditor, 1, [arrived("p2", 1)],
              Tick(1).admit("p2", "A2").dispatch("task-2", "escort_in", "porter-1", "p2", "A2"),
              "porter-1", "task-2", "while doing task-1")


# --- a task goes to the right role ------------------------------------------------------------

@pytest.mark.parametrize("staff, role", [("nurse-1", "medical"), ("cleaner-1", "cleaner")])
def test_escort_given_to_the_wrong_role(auditor, staff, role):
    violation(auditor, 0, [arrived("p1")],
              Tick(0).admit("p1", "A1").dispatch("task-1", "escort_in", staff, "p1", "A1"),
              "escort_in", "task-1", staff, role)


def test_visit_given_to_a_porter(auditor):
    admitted_and_escorting(auditor, "p1", "A1")
    violation(auditor, 2, [escorted("task-1", "porter-1", "p1", "A1", "in", 2)],
              Tick(2).dispatch("task-2", "visit", "porter-1", "p1", "A1"),
              "visit", "task-2", "porter-1", "porter")


def test_task_given_to_unknown_staff(auditor):
    violation(auditor, 0, [arrived("p1")],
              Tick(0).admit("p1", "A1").dispatch("task-1", "escort_in", "porter-9", "p1", "A1"),
              "porter-9")


# --- nothing is assigned twice ---------------------------------------------------------------

def test_task_dispatched_twice_in_one_tick():
    auditor = Auditor(small_config(rooms=2, porters=2))
    violation(auditor, 0, [arrived("p1")],
              Tick(0).admit("p1", "A1")
              .dispatch("task-1", "escort_in", "porter-1", "p1", "A1")
              .dispatch("task-1", "escort_in", "porter-2", "p1", "A1"),
              "task-1", "twice")


def test_task_dispatched_again_in_a_later_tick():
    auditor = Auditor(small_config(rooms=2, porters=2))
    auditor.check_tick(0, [arrived("p1")],
                       Tick(0).admit("p1", "A1")
                       .dispatch("task-1", "escort_in", "porter-1", "p1", "A1").items)
    violation(auditor, 1, [], Tick(1).dispatch("task-1", "escort_in", "porter-2", "p1", "A1"),
              "task-1", "twice")


def test_task_queued_twice():
    auditor = Auditor(small_config(rooms=2, porters=0))
    violation(auditor, 0, [arrived("p1")],
              Tick(0).admit("p1", "A1").queue("task-1", "escort_in", "p1", "A1")
              .queue("task-1", "escort_in", "p1", "A1"),
              "task-1", "twice")


def test_task_queued_again_in_a_later_tick():
    auditor = Auditor(small_config(rooms=2, porters=0))
    auditor.check_tick(0, [arrived("p1")],
                       Tick(0).admit("p1", "A1").queue("task-1", "escort_in", "p1", "A1").items)
    violation(auditor, 1, [], Tick(1).queue("task-1", "escort_in", "p1", "A1"), "task-1", "twice")


def test_task_announced_that_no_event_created(auditor):
    # A visit for a patient who has not been escorted in yet.
    admitted_and_escorting(auditor, "p1", "A1")
    violation(auditor, 1, [], Tick(1).queue("task-2", "visit", "p1", "A1"),
              "task-2", "not created this tick")


def test_patient_admitted_twice(auditor):
    violation(auditor, 0, [arrived("p1")], Tick(0).admit("p1", "A1").admit("p1", "A2"),
              "p1", "not a new arrival")


def test_patient_arrives_twice(auditor):
    auditor.check_tick(0, [arrived("p1")], Tick(0).admit("p1", "A1")
                       .dispatch("task-1", "escort_in", "porter-1", "p1", "A1").items)
    violation(auditor, 1, [ev.PatientArrived("again", 1000, "p1")], Tick(1), "p1", "twice")


# --- referred only when no room is free -------------------------------------------------------

def test_referral_while_a_room_is_free(auditor):
    violation(auditor, 0, [arrived("p1")], Tick(0).refer("p1"), "referred", "free")


def test_referral_while_a_room_is_still_free_after_the_admissions(auditor):
    # Two arrivals, two rooms: one admitted, the other referred although A2 is free.
    violation(auditor, 0, [arrived("p1"), arrived("p2")],
              Tick(0).admit("p1", "A1").refer("p2")
              .dispatch("task-1", "escort_in", "porter-1", "p1", "A1"),
              "referred", "free")


def test_referral_of_someone_who_did_not_arrive(auditor):
    violation(auditor, 0, [], Tick(0).refer("ghost"), "ghost")


# --- no staff member idle while a task of their role waits -----------------------------------

def test_idle_porter_while_an_escort_waits(auditor):
    violation(auditor, 0, [arrived("p1")],
              Tick(0).admit("p1", "A1").queue("task-1", "escort_in", "p1", "A1"),
              "porter-1", "idle", "porter")


def test_idle_cleaner_while_a_room_waits_for_cleaning(auditor):
    admitted_and_escorting(auditor)
    auditor.check_tick(2, [escorted("task-1", "porter-1", "patient-1", "A1", "in", 2)],
                       Tick(2).dispatch("task-2", "visit", "nurse-1", "patient-1", "A1").items)
    auditor.check_tick(14, [visited("task-2", "nurse-1", "patient-1", "A1", 14)],
                       Tick(14).dispatch("task-3", "escort_out", "porter-1", "patient-1",
                                         "A1").items)
    violation(auditor, 15, [escorted("task-3", "porter-1", "patient-1", "A1", "out", 15)],
              Tick(15).discharge("patient-1", "A1").queue("task-4", "clean", "patient-1", "A1"),
              "cleaner-1", "idle")


# --- every new task is announced; every arrival is decided ----------------------------------

def test_new_escort_not_announced(auditor):
    violation(auditor, 0, [arrived("p1")], Tick(0).admit("p1", "A1"),
              "not dispatched or queued", "escort_in", "p1")


def test_visit_not_announced_after_the_escort_in(auditor):
    admitted_and_escorting(auditor, "p1", "A1")
    violation(auditor, 2, [escorted("task-1", "porter-1", "p1", "A1", "in", 2)], Tick(2),
              "not dispatched or queued", "visit", "p1")


def test_arrival_neither_admitted_nor_referred(auditor):
    message = violation(auditor, 0, [arrived("p1"), arrived("p2")],
                        Tick(0).admit("p1", "A1")
                        .dispatch("task-1", "escort_in", "porter-1", "p1", "A1"),
                        "neither admitted nor referred")
    assert re.search(r"\bp2\b", message) and not re.search(r"\bp1\b", message)


def test_discharge_not_announced(auditor):
    admitted_and_escorting(auditor)
    auditor.check_tick(2, [escorted("task-1", "porter-1", "patient-1", "A1", "in", 2)],
                       Tick(2).dispatch("task-2", "visit", "nurse-1", "patient-1", "A1").items)
    auditor.check_tick(14, [visited("task-2", "nurse-1", "patient-1", "A1", 14)],
                       Tick(14).dispatch("task-3", "escort_out", "porter-1", "patient-1",
                                         "A1").items)
    violation(auditor, 15, [escorted("task-3", "porter-1", "patient-1", "A1", "out", 15)],
              Tick(15).dispatch("task-4", "clean", "cleaner-1", "patient-1", "A1"),
              "patient-1")


# --- the event stream itself -------------------------------------------------------------------

def test_completion_of_a_task_the_staff_member_was_not_doing(auditor):
    admitted_and_escorting(auditor, "p1", "A1")
    violation(auditor, 2, [escorted("task-1", "porter-2", "p1", "A1", "in", 2)], Tick(2),
              "task-1", "porter-2")


@pytest.mark.parametrize("wrong", [
    ev.VisitCompleted("done-task-1", 2000, "task-1", "porter-1", "p1", "A1"),
    ev.EscortCompleted("done-task-1", 2000, "task-1", "porter-1", "p1", "A1", "out"),
    ev.EscortCompleted("done-task-1", 2000, "task-1", "porter-1", "p1", "A2", "in"),
])
def test_completion_that_does_not_fit_the_task(auditor, wrong):
    admitted_and_escorting(auditor, "p1", "A1")
    with pytest.raises(InvariantViolation, match="task-1"):
        auditor.check_tick(2, [wrong], Tick(2).dispatch("task-2", "visit", "nurse-1", "p1",
                                                        "A1").items)


def test_decision_with_the_wrong_tick(auditor):
    wrong = ev.PatientAdmitted(event_id="d", time_ms=0, tick=7, patient_id="p1", room_id="A1")
    with pytest.raises(InvariantViolation, match="tick 7"):
        auditor.check_tick(0, [arrived("p1")], [wrong])


def test_ticks_out_of_order(auditor):
    auditor.check_tick(3, [], [])
    with pytest.raises(InvariantViolation, match="out of order"):
        auditor.check_tick(3, [], [])


def test_the_kept_counts_match_a_full_scan_every_tick():
    """The Auditor keeps free rooms, idle staff and waiting tasks per role as counts, so that
    its per-tick checks scan nothing; after every tick of a busy run they equal a scan of
    its tables, and the patients it forgot are exactly those who left."""
    from scheduler.engine import Scheduler
    from scheduler.simulation import simulate

    config = small_config(rooms=3, porters=1, nurses=1, cleaners=1).replace(
        arrivals={"interval_s": 2.0})
    scheduler = Scheduler(config)
    auditor = scheduler.auditor

    def check(result):
        assert auditor.free_rooms == sum(s == "free" for s in auditor.rooms.values())
        for grade in ("porter", "nurse", "doctor", "cleaner"):
            assert auditor.idle[grade] == sum(
                1 for s, t in auditor.busy.items()
                if t is None and auditor.on_duty[s] and s.startswith(grade + "-"))
        for key in ("porter", "visit", "urgent_visit", "cleaner"):
            assert auditor.waiting[key] == sum(
                1 for t in auditor.tasks.values()
                if t.staff_id is None and auditor._waits_for(t) == key)
        assert len(auditor.left) == auditor.referred + auditor.discharged

    simulate(config, scheduler, 1800 * 1000, on_tick=check)
    summary = auditor.accounted_for()
    assert summary["referred"] > 0 and summary["discharged"] > 0


def test_a_patient_who_left_cannot_arrive_again():
    auditor = Auditor(CONFIG)
    full_lifecycle(auditor)
    assert "patient-1" not in auditor.patients and "patient-1" in auditor.left
    violation(auditor, 30, [arrived("patient-1", 30)], Tick(30).admit("patient-1", "A1"),
              "patient-1", "arrived twice")
