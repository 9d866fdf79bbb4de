"""Step definitions for tests/features/clinical.feature: they drive the real `Scheduler` tick
by tick, one tick a step unless time is said to pass, and check the decisions of the ticks the
last step ran. Every scenario runs under both policies; the Auditor checks every tick.
"""

from __future__ import annotations

import pytest
from pytest_bdd import given, parsers, scenarios, then, when

from scheduler import events as ev
from scheduler.config import Config
from scheduler.engine import Scheduler
from scheduler.explain import timeline

scenarios("clinical.feature")

PATIENT = r"(?P<patient>patient-\d+)"
ROOM = r"(?P<room>[A-Z]\d+)"
PORTER = r"(?P<who>a porter|the porter|porter-\d+)"
MEDIC = r"(?P<who>a nurse|the nurse|nurse-\d+|doctor-\d+)"
CLEANER = r"(?P<who>the cleaner|cleaner-\d+)"
STAFF = r"(?P<who>(?:porter|nurse|doctor|cleaner)-\d+)"
CLOCK = r"(\d\d:\d\d:\d\d)"
BECAUSE = r'(?:, because "(?P<first>[^"]+)"(?: and "(?P<second>[^"]+)")?)?'


@pytest.fixture(params=["cpsat", "greedy"], autouse=True)
def policy(request):
    return request.param


def seconds(clock: str) -> int:
    hours, minutes, secs = (int(part) for part in clock.split(":"))
    return hours * 3600 + minutes * 60 + secs


class World:
    """The hospital under test and what the scheduler has decided so far."""

    def __init__(self, policy: str):
        self.policy = policy
        self.rooms = 1
        self.staff = {"porters": 1, "nurses": 1, "doctors": 0, "cleaners": 1}
        self.sections: dict[str, dict] = {
            "hospital": {},
            "shifts": {"roster": []},
            "sla": {},
            "scheduler": {},
        }
        self.scheduler: Scheduler | None = None
        self.tick = -1
        self.latest: list[ev.Decision] = []  # the decisions of the last step's ticks
        self.history: list[ev.Decision] = []
        self.checked: set[str] = set()
        self.tasks: dict[tuple[str, str], ev.Decision] = {}  # (kind, patient or room) -> last
        self.events = 0

    # --- running ticks ---------------------------------------------------------------------

    def start(self) -> Scheduler:
        if self.scheduler is None:
            config = Config().replace(
                hospital={
                    "floors": ["A"],
                    "rooms_per_floor": self.rooms,
                    **self.sections["hospital"],
                },
                staff=self.staff,
                scheduler={"policy": self.policy, **self.sections["scheduler"]},
                shifts=self.sections["shifts"],
                sla=self.sections["sla"],
            )
            self.scheduler = Scheduler(config)
        return self.scheduler

    def step(self) -> None:
        """A new step: its decisions start empty."""
        self.latest, self.checked = [], set()

    def run(self, *events_of_tick) -> None:
        """One tick, the next, with these events at its time."""
        scheduler = self.start()
        self.tick += 1
        now_ms = self.tick * scheduler.tick_ms
        inbound = [
            make(f"event-{self.events + n}", now_ms)
            for n, make in enumerate(events_of_tick, start=1)
        ]
        self.events += len(inbound)
        result = scheduler.tick(self.tick, inbound)
        assert not result.rejected, result.rejected
        self.latest += result.decisions
        self.history += result.decisions
        for decision in result.decisions:
            if isinstance(decision, (ev.TaskDispatched, ev.TaskQueued)):
                about = decision.room_id if "clean" in decision.kind else decision.patient_id
                self.tasks[decision.kind, about] = decision

    def task(self, kind: str, about: str, who: str) -> ev.TaskDispatched:
        """The dispatched task of this kind (any cleaning for `clean`) for a patient or room,
        done by `who`."""
        kinds = ("clean", "clean_terminal") if kind == "clean" else (kind,)
        task = next((self.tasks[k, about] for k in kinds if (k, about) in self.tasks), None)
        assert isinstance(task, ev.TaskDispatched), f"no {kind} dispatched for {about}"
        assert matches(who, task.staff_id), f"{kind} for {about} is done by {task.staff_id}"
        return task

    # --- checking the last step's decisions --------------------------------------------------

    def expect(self, description: str, cls, **fields) -> ev.Decision:
        who = fields.pop("who", None)
        found = [
            d
            for d in self.latest
            if isinstance(d, cls)
            and all(getattr(d, k) == v for k, v in fields.items())
            and (who is None or matches(who, d.staff_id))
        ]
        assert len(found) == 1, (
            f"expected {description} once by tick {self.tick}, got "
            f"{[d.to_json() for d in self.latest]}"
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


def says(decision: ev.Decision, first: str | None, second: str | None) -> None:
    for words in filter(None, (first, second)):
        assert words in decision.reason, f"{words!r} not in the reason {decision.reason!r}"


@pytest.fixture
def world(policy):
    return World(policy)


# --- Given -------------------------------------------------------------------------------------


@given(parsers.re(r"a hospital with (?P<rooms>\d+) rooms?"))
def hospital_with_rooms(world, rooms):
    world.rooms = int(rooms)


@given(
    parsers.re(
        r"(?P<porters>\d+) porters?, (?P<nurses>\d+) nurses?, (?P<doctors>\d+) "
        r"doctors? and (?P<cleaners>\d+) cleaners? on duty"
    )
)
def staff_on_duty(world, porters, nurses, doctors, cleaners):
    world.staff = {
        "porters": int(porters),
        "nurses": int(nurses),
        "doctors": int(doctors),
        "cleaners": int(cleaners),
    }


@given(parsers.re(r"room " + ROOM + r" can isolate patients"))
def isolation_room(world, room):
    world.sections["hospital"].setdefault("isolation_rooms", []).append(room)


@given("isolation rooms are kept for patients who need isolation")
def reserve_isolation_rooms(world):
    world.sections["hospital"]["reserve_isolation_rooms"] = True


@given(
    parsers.re(
        STAFF
        + r" works from "
        + CLOCK.replace("(", "(?P<start>")
        + r" to "
        + CLOCK.replace("(", "(?P<end>")
        + r" of every minute"
        + r"(?:, with a break from "
        + CLOCK.replace("(", "(?P<break_start>")
        + r" to "
        + CLOCK.replace("(", "(?P<break_end>")
        + r")?"
    )
)
def works(world, who, start, end, break_start=None, break_end=None):
    entry = f"{who} {start}-{end}"
    if break_start:
        entry += f" break {break_start}-{break_end}"
    world.sections["shifts"]["roster"].append(entry)
    world.sections["shifts"]["cycle_s"] = 60.0


@given(
    parsers.re(
        r"a (?P<kind>visit|escort_in|escort_out|clean) should start within "
        r"(?P<target>\d+) seconds?"
    )
)
def target_wait(world, kind, target):
    world.sections["sla"][f"{kind}_s"] = float(target)


@given("the scheduler explains its decisions")
def explains(world):
    world.sections["scheduler"]["explain"] = True


# --- When --------------------------------------------------------------------------------------


def arrival(patient, acuity=3, isolation=False):
    return lambda event_id, t: ev.PatientArrived(
        event_id, t, patient, acuity=acuity, isolation=isolation
    )


@when(parsers.re(PATIENT + r"(?: \(ESI (?P<acuity>\d)\))? arrives"))
def arrives(world, patient, acuity):
    world.step()
    world.run(arrival(patient, int(acuity or 3)))


@when(parsers.re(PATIENT + r", who needs isolation, arrives"))
def arrives_isolated(world, patient):
    world.step()
    world.run(arrival(patient, isolation=True))


@when(
    parsers.re(
        r"(?P<first>patient-\d+) \(ESI (?P<a>\d)\) and (?P<second>patient-\d+) "
        r"\(ESI (?P<b>\d)\) arrive together"
    )
)
def arrive_together(world, first, a, second, b):
    world.step()
    world.run(arrival(first, int(a)), arrival(second, int(b)))


@when(parsers.re(PORTER + r" brings " + PATIENT + r" to their room"))
def brings_to_room(world, who, patient):
    task = world.task("escort_in", patient, who)
    world.step()
    world.run(
        lambda event_id, t: ev.EscortCompleted(
            event_id, t, task.task_id, task.staff_id, patient, task.room_id, "in"
        )
    )


@when(parsers.re(PORTER + r" brings " + PATIENT + r" to the exit"))
def brings_to_exit(world, who, patient):
    task = world.task("escort_out", patient, who)
    world.step()
    world.run(
        lambda event_id, t: ev.EscortCompleted(
            event_id, t, task.task_id, task.staff_id, patient, task.room_id, "out"
        )
    )


@when(parsers.re(MEDIC + r" finishes seeing " + PATIENT))
def finishes_seeing(world, who, patient):
    task = world.task("visit", patient, who)
    world.step()
    world.run(
        lambda event_id, t: ev.VisitCompleted(
            event_id, t, task.task_id, task.staff_id, patient, task.room_id
        )
    )


@when(parsers.re(CLEANER + r" finishes cleaning " + ROOM))
def finishes_cleaning(world, who, room):
    task = world.task("clean", room, who)
    world.step()
    world.run(
        lambda event_id, t: ev.CleaningCompleted(
            event_id, t, task.task_id, task.staff_id, task.room_id
        )
    )


@when(parsers.re(r"(?P<count>\d+) seconds? pass(?:es)?"))
def time_passes(world, count):
    world.step()
    for _ in range(int(count)):
        world.run()


@when(parsers.re(r"the clock reaches " + CLOCK.replace("(", "(?P<clock>")))
def clock_reaches(world, clock):
    world.step()
    target = seconds(clock)
    assert target > world.tick, f"the clock is already at {world.tick} s"
    while world.tick < target:
        world.run()


# --- Then --------------------------------------------------------------------------------------


@then(parsers.re(PATIENT + r" is admitted to " + ROOM))
def admitted(world, patient, room):
    world.expect(
        f"{patient} admitted to {room}", ev.PatientAdmitted, patient_id=patient, room_id=room
    )


@then(parsers.re(PATIENT + r" is referred to another hospital" + BECAUSE))
def referred(world, patient, first, second):
    decision = world.expect(f"{patient} referred", ev.PatientReferred, patient_id=patient)
    assert not any(
        isinstance(d, ev.PatientAdmitted) and d.patient_id == patient for d in world.latest
    )
    says(decision, first, second)


@then(parsers.re(PORTER + r" escorts " + PATIENT + r" to " + ROOM + BECAUSE))
def escorts_in(world, who, patient, room, first, second):
    decision = world.expect(
        f"{who} escorting {patient} to {room}",
        ev.TaskDispatched,
        kind="escort_in",
        patient_id=patient,
        room_id=room,
        who=who,
    )
    says(decision, first, second)


@then(parsers.re(PATIENT + r" waits in the waiting room for a porter"))
def waits_for_porter(world, patient):
    world.expect(
        f"{patient} queued for a porter", ev.TaskQueued, kind="escort_in", patient_id=patient
    )


@then(parsers.re(PATIENT + r" is still waiting for a porter"))
def still_waits_for_porter(world, patient):
    hospital = world.scheduler.hospital
    assert any(
        t.kind == "escort_in" and t.patient_id == patient for t in hospital.waiting.values()
    ), f"{patient} is not waiting for a porter"


@then(parsers.re(MEDIC + r" is sent to see " + PATIENT + r" in " + ROOM + BECAUSE))
def sent_to_see(world, who, patient, room, first, second):
    decision = world.expect(
        f"{who} seeing {patient}",
        ev.TaskDispatched,
        kind="visit",
        patient_id=patient,
        room_id=room,
        who=who,
    )
    says(decision, first, second)


@then(parsers.re(PATIENT + r" waits for (?:medical staff|a doctor)"))
def waits_for_medical(world, patient):
    world.expect(
        f"{patient} queued for medical staff", ev.TaskQueued, kind="visit", patient_id=patient
    )


@then(parsers.re(STAFF + r" stays free"))
def stays_free(world, who):
    member = world.scheduler.hospital.staff[who]
    assert member.on_duty and member.task_id is None, f"{who} is busy or off duty"
    assert not any(isinstance(d, ev.TaskDispatched) and d.staff_id == who for d in world.latest)


@then(parsers.re(PATIENT + r" is discharged from " + ROOM))
def discharged(world, patient, room):
    world.expect(f"{patient} discharged", ev.PatientDischarged, patient_id=patient, room_id=room)


@then(parsers.re(CLEANER + r" is sent to clean " + ROOM))
def sent_to_clean(world, who, room):
    world.expect(f"{who} cleaning {room}", ev.TaskDispatched, kind="clean", room_id=room, who=who)


@then(parsers.re(CLEANER + r" is sent for a terminal clean of " + ROOM))
def sent_for_terminal_clean(world, who, room):
    world.expect(
        f"{who} terminal-cleaning {room}",
        ev.TaskDispatched,
        kind="clean_terminal",
        room_id=room,
        who=who,
    )
    assert not any(
        isinstance(d, (ev.TaskDispatched, ev.TaskQueued)) and d.kind == "clean"
        for d in world.latest
    )


@then(parsers.re(ROOM + r" is available again"))
def available_again(world, room):
    world.expect(f"{room} available", ev.RoomAvailable, room_id=room)


@then(parsers.re(STAFF + r" goes off duty"))
def goes_off_duty(world, who):
    decision = world.expect(f"{who} off duty", ev.StaffOffDuty, staff_id=who)
    assert not world.scheduler.hospital.staff[who].on_duty
    assert [d for d in world.history if isinstance(d, ev.StaffOffDuty) and d.staff_id == who][
        -1
    ] is decision


@then(parsers.re(STAFF + r" comes back on duty"))
def comes_back_on_duty(world, who):
    decision = world.expect(f"{who} on duty", ev.StaffOnDuty, staff_id=who)
    assert decision.time_ms == world.tick * world.scheduler.tick_ms  # at the change's tick
    assert world.latest.index(decision) == 0 or all(
        isinstance(d, (ev.StaffOffDuty, ev.StaffOnDuty))
        for d in world.latest[: world.latest.index(decision)]
    ), "announced after a dispatch"


@then("nothing is escalated")
def nothing_escalated(world):
    assert not [d.to_json() for d in world.latest if isinstance(d, ev.TaskEscalated)]


@then(
    parsers.re(
        r"the (?P<kind>visit|escort_in|escort_out) for " + PATIENT + r" is "
        r"escalated, after (?P<waited>\d+) s against a (?P<target>\d+) s target"
    )
)
def escalated(world, kind, patient, waited, target):
    task = world.tasks[kind, patient]
    decision = world.expect(
        f"{kind} for {patient} escalated", ev.TaskEscalated, task_id=task.task_id, kind=kind
    )
    assert (decision.waited_s, decision.sla_s) == (float(waited), float(target))
    assert [d for d in world.history if isinstance(d, ev.TaskEscalated)] == [decision]


@then(parsers.re(r"the timeline of " + PATIENT + r" reads"))
def timeline_reads(world, patient, datatable):
    lines = timeline((d.to_dict() for d in world.history), patient=patient)
    texts = [line.split("tick ", 1)[1].split(None, 1)[1] for line in lines]
    expected = [row[0] for row in datatable[1:]]
    assert len(texts) == len(expected), texts
    for text, start in zip(texts, expected):
        assert text.startswith(start), f"{text!r} does not start with {start!r}"


@then("nothing else is decided")
def nothing_else(world):
    rest = [d.to_json() for d in world.latest if d.event_id not in world.checked]
    assert rest == []
