"""The event vocabulary: what comes into the scheduler and the decisions it makes.

Events are small frozen dataclasses. On the wire (a Kafka message, a JSONL line) each is one
JSON object with `type`, `event_id`, `time` in seconds since the run's start, and the ids it
is about; decisions also carry `tick`. Inside, times are whole milliseconds so that
arithmetic never drifts.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, ClassVar


_ENCODER = json.JSONEncoder(sort_keys=True)  # canonical: sorted keys, default separators


class BadEvent(ValueError):
    """An event that cannot be parsed; the message says why."""


@dataclass(frozen=True)
class Event:
    TYPE: ClassVar[str] = ""
    event_id: str
    time_ms: int

    def to_dict(self) -> dict[str, Any]:
        data = dict(vars(self))
        data["time"] = data.pop("time_ms") / 1000
        data["type"] = self.TYPE
        return data

    def to_json(self) -> str:
        return _ENCODER.encode(self.to_dict())


# --- inbound: facts reported by the patient generator and the workers -------------------

@dataclass(frozen=True)
class PatientArrived(Event):
    TYPE: ClassVar[str] = "patient.arrived"
    patient_id: str


@dataclass(frozen=True)
class EscortCompleted(Event):
    TYPE: ClassVar[str] = "escort.completed"
    task_id: str
    staff_id: str
    patient_id: str
    room_id: str
    direction: str  # "in" | "out"

    @property
    def task_kind(self) -> str:
        """The kind of task this completion closes."""
        return "escort_in" if self.direction == "in" else "escort_out"


@dataclass(frozen=True)
class VisitCompleted(Event):
    TYPE: ClassVar[str] = "visit.completed"
    task_kind: ClassVar[str] = "visit"
    task_id: str
    staff_id: str
    patient_id: str
    room_id: str


@dataclass(frozen=True)
class CleaningCompleted(Event):
    TYPE: ClassVar[str] = "cleaning.completed"
    task_kind: ClassVar[str] = "clean"
    task_id: str
    staff_id: str
    room_id: str


INBOUND: dict[str, type[Event]] = {
    cls.TYPE: cls for cls in (PatientArrived, EscortCompleted, VisitCompleted, CleaningCompleted)
}


# --- decisions: what the scheduler decided in one tick ----------------------------------

@dataclass(frozen=True)
class Decision(Event):
    tick: int


@dataclass(frozen=True)
class PatientAdmitted(Decision):
    TYPE: ClassVar[str] = "patient.admitted"
    patient_id: str
    room_id: str


@dataclass(frozen=True)
class PatientReferred(Decision):
    TYPE: ClassVar[str] = "patient.referred"
    patient_id: str
    reason: str


@dataclass(frozen=True)
class TaskDispatched(Decision):
    TYPE: ClassVar[str] = "task.dispatched"
    task_id: str
    kind: str
    staff_id: str
    patient_id: str
    room_id: str
    origin: str = "entrance"   # where the staff member sets off from


@dataclass(frozen=True)
class TaskQueued(Decision):
    TYPE: ClassVar[str] = "task.queued"
    task_id: str
    kind: str
    patient_id: str
    room_id: str


@dataclass(frozen=True)
class PatientDischarged(Decision):
    TYPE: ClassVar[str] = "patient.discharged"
    patient_id: str
    room_id: str


@dataclass(frozen=True)
class RoomAvailable(Decision):
    TYPE: ClassVar[str] = "room.available"
    room_id: str


DECISIONS: dict[str, type[Event]] = {
    cls.TYPE: cls for cls in (PatientAdmitted, PatientReferred, TaskDispatched, TaskQueued,
                              PatientDischarged, RoomAvailable)
}
TASK_KINDS = ("escort_in", "visit", "escort_out", "clean")


def parse(data: Any, vocabulary: dict[str, type[Event]] | None = None) -> Event:
    """An event from its JSON object; `BadEvent` says what is wrong with it."""
    vocabulary = INBOUND if vocabulary is None else vocabulary
    if not isinstance(data, dict):
        raise BadEvent("an event must be a JSON object")
    kind = data.get("type")
    cls = vocabulary.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise BadEvent(f"unknown event type {kind!r}")
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name == "time_ms":
            time = data.get("time")
            if isinstance(time, bool) or not isinstance(time, (int, float)) or not time >= 0:
                raise BadEvent(f"{kind}: 'time' must be a number of seconds >= 0")
            values["time_ms"] = round(time * 1000)
        elif f.name == "tick":
            tick = data.get("tick")
            if isinstance(tick, bool) or not isinstance(tick, int):
                raise BadEvent(f"{kind}: 'tick' must be an integer")
            values["tick"] = tick
        else:
            value = data.get(f.name, f.default)
            if not isinstance(value, str) or not value:
                raise BadEvent(f"{kind}: '{f.name}' must be a non-empty string")
            values[f.name] = value
    if cls is EscortCompleted and values["direction"] not in ("in", "out"):
        raise BadEvent("escort.completed: 'direction' must be 'in' or 'out'")
    if cls in (TaskDispatched, TaskQueued) and values["kind"] not in TASK_KINDS:
        raise BadEvent(f"{kind}: 'kind' must be one of {', '.join(TASK_KINDS)}")
    return cls(**values)


def parse_json(text: str | bytes, vocabulary: dict[str, type[Event]] | None = None) -> Event:
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadEvent(f"not valid JSON: {exc.msg if hasattr(exc, 'msg') else exc}") from None
    return parse(data, vocabulary)


def recorded_tick(data: dict[str, Any]) -> int | None:
    """The tick that consumed a recorded inbound event, if the record says."""
    tick = data.get("tick")
    return tick if isinstance(tick, int) and not isinstance(tick, bool) else None
