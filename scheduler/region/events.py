"""The transfer protocol's events (DESIGN.md section 12).

A hospital that cannot take a patient decides `transfer.requested` (instead of a plain
`patient.referred`); the coordinator decides `transfer.offered` to one hospital; that
hospital, in its own tick, decides `transfer.accepted` (reserving a room) or
`transfer.declined`; an accepted patient comes in there after the travel time as a
`patient.arrived` with `transferred_from`; a request nobody accepts within `max_wait_s`
ends as `patient.referred_out`. On the wire the origin is `from` (a Python keyword: the
field is `origin`). A transferred patient's id at the destination is `<from>/<patient_id>`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, ClassVar

from scheduler import events as ev

_ENCODER = json.JSONEncoder(sort_keys=True)


def arriving_id(origin: str, patient_id: str) -> str:
    """The patient's id at the hospital they are transferred to: unique in the region."""
    return f"{origin}/{patient_id}"


class _Wire:
    """`origin` as `from` on the wire; every field written (no optional ones)."""

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # type: ignore[arg-type]
        data["time"] = data.pop("time_ms") / 1000
        if "origin" in data:
            data["from"] = data.pop("origin")
        data["type"] = self.TYPE  # type: ignore[attr-defined]
        return data

    def to_json(self) -> str:
        return _ENCODER.encode(self.to_dict())


@dataclass(frozen=True)
class TransferRequested(_Wire, ev.Decision):
    """A patient `origin` cannot take (no room it may use), to be placed elsewhere."""

    TYPE: ClassVar[str] = "transfer.requested"
    patient_id: str
    origin: str
    acuity: int = 3
    isolation: bool = False


@dataclass(frozen=True)
class TransferOffered(_Wire, ev.Decision):
    """The coordinator offers request (`patient_id`, `origin`) to hospital `to`; inbound to
    `to`, whose scheduler answers it in its next tick."""

    TYPE: ClassVar[str] = "transfer.offered"
    patient_id: str
    origin: str
    to: str
    acuity: int = 3
    isolation: bool = False
    travel_s: float = 0.0


@dataclass(frozen=True)
class TransferAccepted(_Wire, ev.Decision):
    """`to` takes the patient: `room_id` is reserved for them alone until they arrive."""

    TYPE: ClassVar[str] = "transfer.accepted"
    patient_id: str
    origin: str
    to: str
    room_id: str
    reason: str = ""


@dataclass(frozen=True)
class TransferDeclined(_Wire, ev.Decision):
    TYPE: ClassVar[str] = "transfer.declined"
    patient_id: str
    origin: str
    to: str
    reason: str = ""


@dataclass(frozen=True)
class PatientReferredOut(_Wire, ev.Decision):
    """Out of the region: no hospital accepted within `max_wait_s` (or the rules forbid a
    move: `reason`)."""

    TYPE: ClassVar[str] = "patient.referred_out"
    patient_id: str
    origin: str
    waited_s: float
    reason: str = ""


@dataclass(frozen=True)
class TransferArrived(_Wire, ev.PatientArrived):
    """`patient.arrived` at the destination, with `transferred_from` (the origin)."""

    OPTIONAL: ClassVar[tuple[str, ...]] = ()
    transferred_from: str = ""

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        for name in ("control_id", "message_time"):  # never from a hospital system here
            data.pop(name)
        return data


DECISIONS: dict[str, type[ev.Decision]] = {
    cls.TYPE: cls
    for cls in (
        TransferRequested,
        TransferOffered,
        TransferAccepted,
        TransferDeclined,
        PatientReferredOut,
    )
}


def parse_inbound(data: dict[str, Any]) -> ev.Event:
    """An inbound event of a region's record (a hospital's): `patient.arrived` with
    `transferred_from` is a transfer's arrival. Raises `ev.BadEvent`."""
    event = ev.parse(data)
    origin = data.get("transferred_from")
    if origin is None:
        return event
    if not isinstance(origin, str) or not origin or not isinstance(event, ev.PatientArrived):
        raise ev.BadEvent("'transferred_from' must be a hospital id, on a patient.arrived")
    return TransferArrived(
        event.event_id,
        event.time_ms,
        event.patient_id,
        acuity=event.acuity,
        isolation=event.isolation,
        transferred_from=origin,
    )


def parse_member_event(text: str | bytes) -> ev.Event:
    """An inbound event of a member hospital as the distributed mode carries it: its own
    events, a transfer's arrival, or the coordinator's `transfer.offered`. Raises
    `ev.BadEvent`."""
    return parse_member_data(ev.loads(text))


def parse_member_data(data: Any) -> ev.Event:
    """`parse_member_event`, of the JSON object."""
    if isinstance(data, dict) and data.get("type") == TransferOffered.TYPE:
        return parse_wire(data, {TransferOffered.TYPE: TransferOffered})
    return parse_inbound(data)


def parse_wire(data: Any, vocabulary: dict[str, type[ev.Decision]]) -> ev.Decision:
    """A decision of `vocabulary` from its JSON object, `from` read as `origin`."""
    if isinstance(data, dict) and "from" in data:
        data = {**data, "origin": data["from"]}
    return ev.parse(data, vocabulary)
