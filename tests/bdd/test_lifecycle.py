"""Step definitions for tests/features/lifecycle.feature: they drive the real `Scheduler`
tick by tick (`scheduler.tick(n, [events])`) and check the decisions of the last tick. Every
scenario runs under both policies; the Auditor checks every tick as well.
"""

from __future__ import annotations

import pytest
from pytest_bdd import given, parsers, scenarios, then, when

from scheduler import events as ev
from scheduler.config import Config
from scheduler.engine import Scheduler

scenarios("lifecycle.feature")

PATIENT = r"(?P<patient>patient-\d+)"
ROOM = r"(?P<room>[A-Z]\d+)"
PORTER = r"(?P<who>a porter|the porter|porter-\d+)"
MEDIC = r"(?P<who>a nurse|the nurse|nurse-\d+|doctor-\d+)"
CLEANER = r"(?P<who>the cleaner|cleaner-\d+)"


@pytest.fixture(params=["cpsat", "greedy"], autouse=True)
def policy(request):
    return request.param


class World:
    """The hospital under test and what the scheduler has decided so far."""

    def __init__(self, policy: str):
        self.policy = policy
        self.rooms = 1
        self.staff = {"porters": 1, "nurses": 1, "doctors": 0, "cleaners": 1}
        self.scheduler: Scheduler | None = None
        self.tick = -1
        self.result = None
        self.checked: set[str] = set()
        self.tasks: dict[tuple[str, str], ev.Decision] = {}  # (kind, patient or room) -> last
        self.events = 0

    # --- running ticks ---------------------------------------------------------------------

    def run(self, *events_of_tick) -> None:
        if self.scheduler is None:
            config = Config().replace(
                hospital={"floors": ["A"], "rooms_per_floor": self.rooms},
                staff=self.staff,
                scheduler={"policy": self.policy},
            )
            self.scheduler = Scheduler(config)
        self.tick += 1
        now_ms = self.tick * self.scheduler.tick_ms
        inbound = [
            make(f"event-{self.events + n}", now_ms)
            for n, make in enumerate(events_of_tick, start=1)
        ]
        self.events += len(inbound)
        self.result = self.scheduler.tick(self.tick, inbound)
        self.checked = set()
        for decision in self.result.decisions:
            if isinstance(decision, (ev.TaskDispatched, ev.TaskQueued)):
                about = decision.room_id if decision.kind == "clean" else decision.patient_id
                self.tasks[decision.kind, about] = decision

    def task(self, kind: str, about: str, who: str) -> ev.TaskDispatched:
        """The dispatched task of this kind for a patient (or room), done by `who`."""
        task = self.tasks.get((kind, about))
        assert isinstance(task, ev.TaskDispatched), f"no {kind} dispatched for {about}"
        assert matches(who, task.staff_id), f"{kind} for {about} is done by {task.staff_id}"
        return task

    # --- checking the last tick's decisions ------------------------------------------------

    def expect(self, description: str, cls, **fields) -> ev.Decision:
        who = fields.pop("who", None)
        found = [
            d
            for d in self.result.decisions
            if isinstance(d, cls)
            and all(getattr(d, k) == v for k, v in fields.items())
            and (who is None or matches(who, d.staff_id))
        ]
        assert len(found) == 1, (
            f"expected {description} once in tick {self.tick}, got "
            f"{[d.to_json() for d in self.result.decisions]}"
        )
        self.checked.add(found[0].event_id)
        return found[0]


def matches(who: str, staff_id: str) -> bool:
    role_prefixes = {
        "porter": ("porter-",),
        "nurse": ("nurse-", "doctor-"),
        "cleaner": ("cleaner-",),
    }
    if who.startswith(("a ", "the ")):
        return staff_id.startswith(role_prefixes[who.split()[1]])
    return staff_id == who


@pytest.fixture
def world(policy):
    return World(policy)


# --- Given -------------------------------------------------------------------------------------


@given(parsers.re(r"a hospital with (?P<rooms>\d+) rooms?"))
def hospital_with_rooms(world, rooms):
    world.rooms = int(rooms)


@given(
    parsers.re(
        r"(?P<porters>\d+) porters?, (?P<nurses>\d+) nurses? and "
        r"(?P<cleaners>\d+) cleaners? on duty"
    )
)
def staff_on_duty(world, porters, nurses, cleaners):
    world.staff = {
        "porters": int(porters),
        "nurses": int(nurses),
        "doctors": 0,
        "cleaners": int(cleaners),
    }


# --- When --------------------------------------------------------------------------------------


def arrival(patient):
    return lambda event_id, t: ev.PatientArrived(event_id, t, patient)


def cleaning_done(task):
    return lambda event_id, t: ev.CleaningCompleted(
        event_id, t, task.task_id, task.staff_id, task.room_id
    )


@when(parsers.re(PATIENT + r" arrives"))
def arrives(world, patient):
    world.run(arrival(patient))


@when(parsers.re(PATIENT + r" arrives again"))
def arrives_again(world, patient):
    world.run(arrival(patient))


@when(parsers.re(PATIENT + r" arrives just as " + CLEANER + r" finishes cleaning " + ROOM))
def arrives_as_room_is_cleaned(world, patient, who, room):
    task = world.task("clean", room, who)
    world.run(arrival(patient), cleaning_done(task))  # the arrival delivered first


@when(parsers.re(PORTER + r" brings " + PATIENT + r" to their room"))
def brings_to_room(world, who, patient):
    task = world.task("escort_in", patient, who)
    world.run(
        lambda event_id, t: ev.EscortCompleted(
            event_id, t, task.task_id, task.staff_id, patient, task.room_id, "in"
        )
    )


@when(parsers.re(PORTER + r" brings " + PATIENT + r" to the exit"))
def brings_to_exit(world, who, patient):
    task = world.task("escort_out", patient, who)
    world.run(
        lambda event_id, t: ev.EscortCompleted(
            event_id, t, task.task_id, task.staff_id, patient, task.room_id, "out"
        )
    )


@when(parsers.re(MEDIC + r" finishes seeing " + PATIENT))
def finishes_seeing(world, who, patient):
    task = world.task("visit", patient, who)
    world.run(
        lambda event_id, t: ev.VisitCompleted(
            event_id, t, task.task_id, task.staff_id, patient, task.room_id
        )
    )


@when(parsers.re(CLEANER + r" finishes cleaning " + ROOM))
def finishes_cleaning(world, who, room):
    world.run(cleaning_done(world.task("clean", room, who)))


# --- Then --------------------------------------------------------------------------------------


@then(parsers.re(PATIENT + r" is admitted to " + ROOM))
def admitted(world, patient, room):
    world.expect(
        f"{patient} admitted to {room}", ev.PatientAdmitted, patient_id=patient, room_id=room
    )


@then(parsers.re(PATIENT + r" is referred to another hospital"))
def referred(world, patient):
    world.expect(f"{patient} referred", ev.PatientReferred, patient_id=patient)
    assert not any(
        isinstance(d, ev.PatientAdmitted) and d.patient_id == patient
        for d in world.result.decisions
    )


@then(parsers.re(PORTER + r" escorts " + PATIENT + r" to " + ROOM))
def escorts_in(world, who, patient, room):
    world.expect(
        f"{who} escorting {patient} to {room}",
        ev.TaskDispatched,
        kind="escort_in",
        patient_id=patient,
        room_id=room,
        who=who,
    )


@then(parsers.re(PORTER + r" escorts " + PATIENT + r" to the exit"))
def escorts_out(world, who, patient):
    world.expect(
        f"{who} escorting {patient} out",
        ev.TaskDispatched,
        kind="escort_out",
        patient_id=patient,
        who=who,
    )


@then(parsers.re(PATIENT + r" waits in the waiting room for a porter"))
def waits_for_porter(world, patient):
    world.expect(
        f"{patient} queued for a porter", ev.TaskQueued, kind="escort_in", patient_id=patient
    )
    assert all(
        w.task_id is not None for w in world.scheduler.hospital.staff.values() if w.role == "porter"
    ), "a porter is idle"


@then(parsers.re(MEDIC + r" is sent to see " + PATIENT + r" in " + ROOM))
def sent_to_see(world, who, patient, room):
    world.expect(
        f"{who} seeing {patient}",
        ev.TaskDispatched,
        kind="visit",
        patient_id=patient,
        room_id=room,
        who=who,
    )


@then(parsers.re(PATIENT + r" waits for medical staff"))
def waits_for_medical(world, patient):
    world.expect(
        f"{patient} queued for medical staff", ev.TaskQueued, kind="visit", patient_id=patient
    )


@then(parsers.re(PATIENT + r" waits for a porter to the exit"))
def waits_for_exit(world, patient):
    world.expect(
        f"{patient} queued for the exit", ev.TaskQueued, kind="escort_out", patient_id=patient
    )


@then(parsers.re(PATIENT + r" is discharged from " + ROOM))
def discharged(world, patient, room):
    world.expect(f"{patient} discharged", ev.PatientDischarged, patient_id=patient, room_id=room)


@then(parsers.re(CLEANER + r" is sent to clean " + ROOM))
def sent_to_clean(world, who, room):
    world.expect(f"{who} cleaning {room}", ev.TaskDispatched, kind="clean", room_id=room, who=who)


@then(parsers.re(ROOM + r" waits for a cleaner"))
def room_waits_for_cleaner(world, room):
    world.expect(f"{room} queued for cleaning", ev.TaskQueued, kind="clean", room_id=room)


@then(parsers.re(ROOM + r" is available again"))
def available_again(world, room):
    world.expect(f"{room} available", ev.RoomAvailable, room_id=room)


@then("nothing else is decided")
def nothing_else(world):
    rest = [d.to_json() for d in world.result.decisions if d.event_id not in world.checked]
    assert rest == []


@then("the arrival is rejected")
def arrival_rejected(world):
    assert len(world.result.rejected) == 1
    event, reason = world.result.rejected[0]
    assert isinstance(event, ev.PatientArrived) and "already arrived" in reason
