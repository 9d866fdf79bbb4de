"""Bad input: the engine's handling of impossible, duplicate and early events; the parser's
errors for malformed events; the config loader's errors and overrides."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from scheduler import events as ev
from scheduler.config import Config, ConfigError, load
from scheduler.engine import Scheduler

ROOT = Path(__file__).resolve().parents[2]


def small_config(rooms=1, porters=1, nurses=1, doctors=0, cleaners=1, **sections) -> Config:
    return Config().replace(
        hospital={"floors": ["A"], "rooms_per_floor": rooms},
        staff={"porters": porters, "nurses": nurses, "doctors": doctors, "cleaners": cleaners},
        **sections,
    )


def arrival(n, t_ms=0, event_id=None):
    return ev.PatientArrived(event_id or f"arrival-{n}", t_ms, f"patient-{n}")


def escort(
    task_id="task-1",
    staff="porter-1",
    patient="patient-1",
    room="A1",
    direction="in",
    t_ms=2000,
    event_id=None,
):
    return ev.EscortCompleted(
        event_id or f"done-{task_id}", t_ms, task_id, staff, patient, room, direction
    )


def types(result):
    return [d.TYPE for d in result.decisions]


def snapshot(scheduler):
    h = scheduler.hospital
    return copy.deepcopy(
        (h.rooms, h.staff, h.patients, h.tasks, list(h.waiting), h.finished, h._task_count)
    )


@pytest.fixture
def admitted():
    """A scheduler at tick 0: patient-1 admitted to A1, porter-1 escorting them (task-1)."""
    scheduler = Scheduler(small_config())
    result = scheduler.tick(0, [arrival(1)])
    assert [
        (d.TYPE, getattr(d, "task_id", None), getattr(d, "staff_id", None))
        for d in result.decisions
    ] == [("patient.admitted", None, None), ("task.dispatched", "task-1", "porter-1")]
    return scheduler


# --- the engine -------------------------------------------------------------------------------


def test_completion_of_a_task_that_does_not_exist_is_rejected_and_changes_nothing(admitted):
    before = snapshot(admitted)
    result = admitted.tick(1, [escort(task_id="task-99", t_ms=1000)])
    assert result.decisions == [] and result.consumed == []
    assert len(result.rejected) == 1 and "task-99" in result.rejected[0][1]
    assert admitted.counters["rejected"] == 1 and admitted.counters["events"] == 1
    assert snapshot(admitted) == before


@pytest.mark.parametrize(
    "bad, word",
    [
        (escort(staff="porter-2"), "staff_id"),
        (escort(direction="out"), "kind"),
        (escort(room="A2"), "room_id"),
        (escort(patient="patient-7"), "patient_id"),
        (ev.VisitCompleted("done-task-1", 2000, "task-1", "porter-1", "patient-1", "A1"), "kind"),
        (ev.CleaningCompleted("done-task-1", 2000, "task-1", "porter-1", "A1"), "kind"),
    ],
)
def test_completion_with_wrong_staff_direction_or_ids_is_rejected(admitted, bad, word):
    before = snapshot(admitted)
    result = admitted.tick(2, [bad])
    assert [e for e, _ in result.rejected] == [bad]
    assert word in result.rejected[0][1]
    assert admitted.counters["rejected"] == 1
    assert snapshot(admitted) == before
    # The right completion, with the same event id, is still accepted afterwards.
    result = admitted.tick(3, [escort(t_ms=3000)])
    assert result.rejected == [] and result.duplicates == []
    assert types(result) == ["task.dispatched"]
    assert result.decisions[0].kind == "visit" and result.decisions[0].staff_id == "nurse-1"


def test_completion_of_a_queued_task_is_rejected():
    scheduler = Scheduler(small_config(rooms=2))
    result = scheduler.tick(0, [arrival(1), arrival(2)])
    queued = [d for d in result.decisions if d.TYPE == "task.queued"]
    assert len(queued) == 1
    fake = escort(
        task_id=queued[0].task_id, patient=queued[0].patient_id, room=queued[0].room_id, t_ms=1000
    )
    result = scheduler.tick(1, [fake])
    assert len(result.rejected) == 1 and "never dispatched" in result.rejected[0][1]


def test_duplicate_event_id_in_one_batch_is_applied_once():
    scheduler = Scheduler(small_config(rooms=2, porters=2))
    result = scheduler.tick(0, [arrival(1), arrival(1)])
    assert [d.TYPE for d in result.decisions].count("patient.admitted") == 1
    assert len(result.duplicates) == 1 and len(result.consumed) == 1
    assert scheduler.counters["duplicates"] == 1 and scheduler.counters["events"] == 1


def test_duplicate_event_id_in_a_later_tick_is_applied_once(admitted):
    result = admitted.tick(2, [escort()])
    assert types(result) == ["task.dispatched"]
    before = snapshot(admitted)
    again = admitted.tick(3, [escort(), arrival(1)])
    assert again.decisions == [] and len(again.duplicates) == 2
    assert admitted.counters["duplicates"] == 2
    assert snapshot(admitted) == before


def test_same_patient_under_a_new_event_id_is_rejected(admitted):
    result = admitted.tick(1, [arrival(1, 1000, event_id="arrival-again")])
    assert len(result.rejected) == 1 and "already arrived" in result.rejected[0][1]
    assert result.decisions == []


def test_event_after_the_tick_is_rejected_then_accepted_in_its_own_tick():
    scheduler = Scheduler(small_config())
    early = scheduler.tick(0, [arrival(1, t_ms=1500)])
    assert [e for e, _ in early.rejected] == [arrival(1, t_ms=1500)]
    assert "after the tick" in early.rejected[0][1]
    assert early.decisions == [] and scheduler.counters["rejected"] == 1
    assert scheduler.hospital.patients == {}
    later = scheduler.tick(2, [arrival(1, t_ms=1500)])
    assert later.rejected == [] and types(later) == ["patient.admitted", "task.dispatched"]


def test_ticks_must_increase(admitted):
    with pytest.raises(ValueError):
        admitted.tick(0, [])


def test_rejected_events_are_not_given_to_the_auditor(admitted):
    # The auditor would raise on a completion nobody was doing: it must not see it.
    admitted.tick(1, [escort(task_id="task-99", t_ms=1000)])
    assert admitted.auditor.tasks["task-1"].staff_id == "porter-1"


# --- events.parse ----------------------------------------------------------------------------

GOOD_ESCORT = {
    "type": "escort.completed",
    "event_id": "e1",
    "time": 2.5,
    "task_id": "task-1",
    "staff_id": "porter-1",
    "patient_id": "patient-1",
    "room_id": "A1",
    "direction": "in",
}


def test_parse_round_trips_every_inbound_event():
    for event in (
        arrival(1, 1234),
        escort(),
        ev.VisitCompleted("v", 12000, "task-2", "nurse-1", "patient-1", "A1"),
        ev.CleaningCompleted("c", 9000, "task-4", "cleaner-1", "A1"),
    ):
        assert ev.parse(json.loads(event.to_json())) == event


def test_parse_round_trips_decisions_with_their_vocabulary():
    decision = ev.TaskDispatched(
        event_id="d",
        time_ms=3000,
        tick=3,
        task_id="task-1",
        kind="visit",
        staff_id="nurse-1",
        patient_id="p",
        room_id="A1",
    )
    assert ev.parse(decision.to_dict(), ev.DECISIONS) == decision
    with pytest.raises(ev.BadEvent, match="unknown event type"):
        ev.parse(decision.to_dict())  # not an inbound event


@pytest.mark.parametrize(
    "field", ["event_id", "task_id", "staff_id", "patient_id", "room_id", "direction", "time"]
)
def test_parse_missing_field(field):
    data = {k: v for k, v in GOOD_ESCORT.items() if k != field}
    with pytest.raises(ev.BadEvent, match=f"'{field}'"):
        ev.parse(data)


@pytest.mark.parametrize(
    "field, value",
    [
        ("task_id", ""),
        ("task_id", 7),
        ("staff_id", None),
        ("time", -1),
        ("time", "2.5"),
        ("time", True),
        ("time", float("nan")),
    ],
)
def test_parse_bad_field_value(field, value):
    with pytest.raises(ev.BadEvent, match=f"'{field}'"):
        ev.parse({**GOOD_ESCORT, field: value})


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), 1e400, ev.MAX_TIME_S + 1])
def test_parse_a_time_past_any_run(value):
    """Infinity once escaped as an OverflowError, not a BadEvent."""
    with pytest.raises(ev.BadEvent, match="'time'"):
        ev.parse({**GOOD_ESCORT, "time": value})


def test_parse_acuity_is_a_whole_level():
    arrived = {"type": "patient.arrived", "event_id": "a", "time": 0, "patient_id": "p"}
    assert ev.parse({**arrived, "acuity": 2}).acuity == 2
    with pytest.raises(ev.BadEvent, match="'acuity'"):
        ev.parse({**arrived, "acuity": 2.0})


@pytest.mark.parametrize(
    "text, words",
    [
        ("[" * 100_000, "nested too deeply"),
        ('{"time": 1' + "0" * 5000 + "}", "digits"),
        (b"\x9c", "not UTF-8"),
    ],
)
def test_parse_json_whatever_the_text(text, words):
    with pytest.raises(ev.BadEvent, match=f"not valid JSON.*{words}"):
        ev.parse_json(text)


@pytest.mark.parametrize("tick", [-1, 1.5, "3", True])
def test_a_recorded_tick_that_is_no_tick(tick):
    with pytest.raises(ev.BadEvent, match="'tick'"):
        ev.recorded_tick({**GOOD_ESCORT, "tick": tick})
    decision = ev.RoomAvailable(event_id="d", time_ms=0, tick=0, room_id="A1").to_dict()
    with pytest.raises(ev.BadEvent, match="'tick'"):
        ev.parse({**decision, "tick": tick}, ev.DECISIONS)


@pytest.mark.parametrize("kind", ["patient.arriving", "", None, 3, "task.dispatched"])
def test_parse_unknown_type(kind):
    with pytest.raises(ev.BadEvent, match="unknown event type"):
        ev.parse({**GOOD_ESCORT, "type": kind})


@pytest.mark.parametrize("direction", ["inward", "IN", "both"])
def test_parse_bad_direction(direction):
    with pytest.raises(ev.BadEvent, match="direction"):
        ev.parse({**GOOD_ESCORT, "direction": direction})


@pytest.mark.parametrize("data", [[GOOD_ESCORT], "escort.completed", None, 42])
def test_parse_non_object(data):
    with pytest.raises(ev.BadEvent, match="JSON object"):
        ev.parse(data)


def test_parse_decision_bad_kind_and_tick():
    decision = ev.TaskQueued(
        event_id="d", time_ms=0, tick=0, task_id="t", kind="visit", patient_id="p", room_id="A1"
    ).to_dict()
    with pytest.raises(ev.BadEvent, match="kind"):
        ev.parse({**decision, "kind": "surgery"}, ev.DECISIONS)
    with pytest.raises(ev.BadEvent, match="tick"):
        ev.parse({**decision, "tick": True}, ev.DECISIONS)
    with pytest.raises(ev.BadEvent, match="tick"):
        ev.parse({**decision, "tick": "3"}, ev.DECISIONS)


@pytest.mark.parametrize("text", ["{", "not json", b"\xff\xfe"])
def test_parse_json_invalid(text):
    with pytest.raises(ev.BadEvent, match="not valid JSON"):
        ev.parse_json(text)


# --- config ------------------------------------------------------------------------------------


def write(tmp_path, text):
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_defaults_equal_the_repository_config_toml():
    assert load(ROOT / "config.toml", {}) == Config()
    assert load(None, {}) == Config()


def test_defaults_reproduce_the_design():
    config = Config()
    assert config.hospital.floors == ("A", "B") and config.hospital.rooms_per_floor == 3
    assert (
        config.staff.porters,
        config.staff.nurses,
        config.staff.doctors,
        config.staff.cleaners,
    ) == (2, 2, 1, 2)
    assert (config.arrivals.process, config.arrivals.interval_s) == ("fixed", 5.0)
    assert (config.durations.treatment_s, config.durations.cleaning_s) == (10.0, 9.0)
    assert (config.travel.model, config.scheduler.policy, config.scheduler.tick_s) == (
        "seed",
        "cpsat",
        1.0,
    )


@pytest.mark.parametrize(
    "text, key",
    [
        ("[staff]\ninterns = 2\n", "staff.interns"),
        ("[staff]\nporters = 'two'\n", "staff.porters"),
        ("[staff]\nporters = 2.5\n", "staff.porters"),
        ("[staff]\nporters = true\n", "staff.porters"),
        ("[staff]\nporters = -1\n", "staff.porters"),
        ("[staff]\ncleaners = -3\n", "staff.cleaners"),
        ("[scheduler]\npolicy = 'fifo'\n", "scheduler.policy"),
        ("[scheduler]\nvalidate = 'yes'\n", "scheduler.validate"),
        ("[scheduler]\ntick_s = 0\n", "scheduler.tick_s"),
        ("[arrivals]\nprocess = 'burst'\n", "arrivals.process"),
        ("[arrivals]\ninterval_s = -5\n", "arrivals.interval_s"),
        ("[travel]\nmodel = 'teleport'\n", "travel.model"),
        ("[hospital]\nfloors = 'AB'\n", "hospital.floors"),
        ("[hospital]\nfloors = ['A', 'A']\n", "hospital.floors"),
        ("[hospital]\nrooms_per_floor = 0\n", "hospital.rooms_per_floor"),
        ("[rules]\nminimise_walking = -1\n", "rules.minimise_walking"),
        ("[durations]\ncleaning_s = -1\n", "durations.cleaning_s"),
        ("hospital = 3\n", "hospital"),
    ],
)
def test_bad_values_raise_config_error_naming_the_key(tmp_path, text, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load(write(tmp_path, text), {})


@pytest.mark.parametrize(
    "environ, key",
    [
        ({"HOSPITAL_STAFF_PORTERS": "abc"}, "staff.porters"),
        ({"HOSPITAL_STAFF_NURSES": "-2"}, "staff.nurses"),
        ({"HOSPITAL_ARRIVALS_INTERVAL_S": "often"}, "arrivals.interval_s"),
        ({"HOSPITAL_SCHEDULER_VALIDATE": "maybe"}, "scheduler.validate"),
        ({"HOSPITAL_SCHEDULER_POLICY": "random"}, "scheduler.policy"),
        ({"HOSPITAL_HOSPITAL_FLOORS": "A,1"}, "hospital.floors"),
    ],
)
def test_bad_environment_values_raise_config_error_naming_the_key(environ, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load(None, environ)


def test_missing_or_invalid_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load(tmp_path / "nope.toml", {})
    with pytest.raises(ConfigError, match="TOML"):
        load(write(tmp_path, "[staff\nporters = 1"), {})


def test_environment_overrides_file_and_defaults(tmp_path):
    path = write(tmp_path, "[staff]\nporters = 4\n[travel]\nmodel = 'layout'\n")
    config = load(
        path,
        {
            "HOSPITAL_STAFF_PORTERS": "7",
            "HOSPITAL_HOSPITAL_FLOORS": "A, B ,C",
            "HOSPITAL_SCHEDULER_VALIDATE": "off",
            "HOSPITAL_ARRIVALS_INTERVAL_S": "2.5",
            "HOSPITAL_ARRIVALS_PROCESS": "poisson",
            "HOSPITAL_SCHEDULER_POLICY": "greedy",
        },
    )
    assert config.staff.porters == 7
    assert config.travel.model == "layout"  # from the file
    assert config.staff.nurses == 2  # the default
    assert config.hospital.floors == ("A", "B", "C")
    assert config.scheduler.validate is False
    assert config.arrivals.interval_s == 2.5 and config.arrivals.process == "poisson"
    assert config.scheduler.policy == "greedy"


def test_conventional_environment_variables(tmp_path):
    path = write(tmp_path, "[database]\nurl = 'sqlite:///file.db'\n")
    config = load(
        path,
        {"DATABASE_URL": "postgresql+psycopg2://u@h/db", "KAFKA_BOOTSTRAP_SERVERS": "broker:9093"},
    )
    assert config.database.url == "postgresql+psycopg2://u@h/db"
    assert config.kafka.bootstrap_servers == "broker:9093"
    assert load(path, {}).database.url == "sqlite:///file.db"


def test_replace_checks_values_too():
    assert Config().replace(staff={"porters": 5}).staff.porters == 5
    with pytest.raises(ConfigError, match=r"staff\.porters"):
        Config().replace(staff={"porters": -1})


def test_unknown_section_is_rejected(tmp_path):
    with pytest.raises(ConfigError, match="staf"):
        load(write(tmp_path, "[staf]\nporters = 3\n"), {})


@pytest.mark.parametrize("text", ["[arrivals]\ninterval_s = inf\n", "[scheduler]\ntick_s = inf\n"])
def test_non_finite_numbers_are_rejected(tmp_path, text):
    with pytest.raises(ConfigError):
        load(write(tmp_path, text), {})
