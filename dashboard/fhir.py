"""The run as FHIR R4B resources, read-only: a `Location` per room, an `Encounter` per
patient, a `Task` per porter, medical and cleaner task; served on the dashboard's server
under /fhir (searchable by `status` and `_lastUpdated`) and written by `hospital export
--fhir` as a transaction Bundle.

R4B, not R5: R4 is what hospital systems speak today (R4B keeps its Location, Encounter and
Task), and its Task has the `reasonCode` a decision's reason maps to. `FhirView` follows a
run tick by tick from its decisions and the inbound events they consumed, as the
dashboard's projection does, and keeps every patient and task (FHIR serves history too).

Times: simulated time on a calendar, `start_s` (the Unix time of simulated time 0: a
distributed run's epoch, an embedded run's start) plus the simulated seconds.

- Location.operationalStatus, v2 table 0116: U unoccupied (free), O occupied (booked or
  occupied), I isolated (holding a patient who needs isolation), H housekeeping (dirty or
  being cleaned), K contaminated (dirty after an isolation patient: a terminal clean owed).
- Encounter.status: arrived (room booked, on the way), in-progress (in the room),
  finished (discharged), cancelled (referred elsewhere, or the arrival withdrawn); its
  location (the room) planned, then active, then completed.
- Task.status: requested (waiting on its role's list), accepted (dispatched: the staff
  member walks to where it starts), in-progress, completed.
"""

from __future__ import annotations

import datetime
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from dashboard.projection import Projection
from scheduler.layout import ENTRANCE, ROLE_OF_KIND, Layout

V2_0116 = "http://terminology.hl7.org/CodeSystem/v2-0116"
BED_STATUS = {
    "U": "Unoccupied",
    "O": "Occupied",
    "I": "Isolated",
    "H": "Housekeeping",
    "K": "Contaminated",
}
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
TASK_KIND = "urn:hospital-scheduler:task-kind"
PATIENT_ID = "urn:hospital-scheduler:patient-id"
STAFF_ID = "urn:hospital-scheduler:staff-id"
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
RESOURCES = ("Location", "Encounter", "Task")


def fhir_id(text: str) -> str:
    """A FHIR logical id for one of ours: itself if it is one ([A-Za-z0-9-.], 64 at most),
    else its characters outside that as '-' and its hash (patient ids come from PID-3)."""
    if _FHIR_ID.fullmatch(text):
        return text
    import hashlib

    return (
        re.sub(r"[^A-Za-z0-9\-.]", "-", text)[:40]
        + "-"
        + hashlib.sha256(text.encode()).hexdigest()[:16]
    )


@dataclass
class RoomState:
    room_id: str
    state: str = "free"  # free | booked | occupied | dirty | cleaning
    isolated: bool = False  # holds a patient who needs isolation
    terminal: bool = False  # a terminal clean owed
    updated_ms: int = 0


@dataclass
class EncounterState:
    patient_id: str
    arrived_ms: int
    acuity: int = 3
    isolation: bool = False
    status: str = "arrived"
    room_id: str | None = None
    location_status: str | None = None  # planned | active | completed
    reason: str = ""  # why referred or withdrawn
    left_ms: int | None = None
    updated_ms: int = 0


@dataclass
class TaskState:
    task_id: str
    kind: str
    patient_id: str
    room_id: str
    created_ms: int
    staff_id: str | None = None
    origin: str = ENTRANCE
    dispatched_ms: int | None = None
    walk_ms: int = 0  # from the dispatch to where the task starts
    completed_ms: int | None = None
    reason: str = ""
    updated_ms: int = 0


class FhirView:
    """The run's FHIR resources, followed tick by tick. Thread-safe: one writer (`apply`),
    readers through `resources` and `search`."""

    def __init__(self, config: Any, start_s: float = 0.0):
        self.config, self.layout, self.start_s = config, Layout(config), start_s
        self.lock = threading.Lock()
        self.rooms = {r: RoomState(r) for r in self.layout.rooms}
        self.encounters: dict[str, EncounterState] = {}
        self.tasks: dict[str, TaskState] = {}
        self.time_ms = 0
        self.tick = -1

    # --- the writer --------------------------------------------------------------------

    def on_tick(self, scheduler: Any, result: Any) -> None:
        """`simulate_run`'s `on_tick`."""
        self.apply(result.tick, result.time_ms, result.decisions, result.consumed)

    def apply(
        self, tick: int, time_ms: int, decisions: Iterable[Any], inbound: Iterable[Any] | None
    ) -> None:
        with self.lock:
            self.tick, self.time_ms = tick, max(self.time_ms, time_ms)
            for event in inbound or ():
                self._inbound(event)
            for decision in decisions:
                handler = getattr(self, "_" + decision.TYPE.replace(".", "_"), None)
                if handler is not None:
                    handler(decision)

    def _inbound(self, e: Any) -> None:
        at = e.time_ms
        if e.TYPE == "patient.arrived":
            self.encounters[e.patient_id] = EncounterState(
                e.patient_id, at, e.acuity, e.isolation, updated_ms=at
            )
            return
        if e.TYPE == "patient.updated":
            encounter = self.encounters[e.patient_id]
            encounter.acuity, encounter.isolation, encounter.updated_ms = e.acuity, e.isolation, at
            return
        if e.TYPE == "patient.withdrawn":
            encounter = self.encounters[e.patient_id]
            encounter.status, encounter.reason, encounter.updated_ms = "cancelled", "withdrawn", at
            return
        task = self.tasks.get(e.task_id)
        if task is not None:
            task.completed_ms, task.updated_ms = at, at
        if e.TYPE == "escort.completed":
            escorted = self.encounters.get(e.patient_id)
            if escorted is not None:
                if e.direction == "in":
                    escorted.status, escorted.location_status = "in-progress", "active"
                else:
                    escorted.status, escorted.location_status = "finished", "completed"
                    escorted.left_ms = at
                escorted.updated_ms = at
            room = self.rooms[e.room_id]
            if e.direction == "in":
                room.state, room.updated_ms = "occupied", at

    def _patient_admitted(self, d: Any) -> None:
        encounter = self.encounters.get(d.patient_id) or self._unseen(d.patient_id, d.time_ms)
        encounter.room_id, encounter.location_status, encounter.updated_ms = (
            d.room_id,
            "planned",
            d.time_ms,
        )
        room = self.rooms[d.room_id]
        room.state, room.isolated, room.updated_ms = "booked", encounter.isolation, d.time_ms

    def _patient_referred(self, d: Any) -> None:
        encounter = self.encounters.get(d.patient_id) or self._unseen(d.patient_id, d.time_ms)
        encounter.status, encounter.reason, encounter.updated_ms = "cancelled", d.reason, d.time_ms

    def _unseen(self, patient_id: str, time_ms: int) -> EncounterState:
        """A patient whose arrival was not at hand (a decisions file without its events)."""
        encounter = self.encounters[patient_id] = EncounterState(patient_id, time_ms)
        return encounter

    def _patient_discharged(self, d: Any) -> None:
        room = self.rooms[d.room_id]
        room.state, room.terminal, room.isolated = "dirty", room.isolated, False
        room.updated_ms = d.time_ms
        encounter = self.encounters.get(d.patient_id)
        if encounter is not None and encounter.status != "finished":
            encounter.status, encounter.location_status = "finished", "completed"
            encounter.left_ms = encounter.updated_ms = d.time_ms

    def _room_available(self, d: Any) -> None:
        room = self.rooms[d.room_id]
        room.state, room.terminal, room.updated_ms = "free", False, d.time_ms

    def _task_queued(self, d: Any) -> None:
        self.tasks[d.task_id] = TaskState(
            d.task_id, d.kind, d.patient_id, d.room_id, d.time_ms, updated_ms=d.time_ms
        )

    def _task_dispatched(self, d: Any) -> None:
        task = self.tasks.get(d.task_id)
        if task is None:
            task = self.tasks[d.task_id] = TaskState(
                d.task_id, d.kind, d.patient_id, d.room_id, d.time_ms
            )
        task.staff_id, task.origin, task.dispatched_ms = d.staff_id, d.origin, d.time_ms
        task.reason, task.updated_ms = getattr(d, "reason", ""), d.time_ms
        task.walk_ms = self._walk_to_start(d)
        if ROLE_OF_KIND[d.kind] == "cleaner":
            room = self.rooms[d.room_id]
            room.state, room.updated_ms = "cleaning", d.time_ms

    def _walk_to_start(self, d: Any) -> int:
        """How long the staff member walks before the task starts: to the room for a visit
        or a cleaning (an escort's walk is the escort). The seed model times every task
        from the entrance."""
        if d.kind.startswith("escort"):
            return (
                0
                if self.layout.model == "seed"
                else self.layout.walk(d.origin, ENTRANCE if d.kind == "escort_in" else d.room_id)
            )
        if self.layout.model == "seed":
            return self.layout.from_entrance(d.room_id)
        return self.layout.walk(d.origin, d.room_id)

    # --- the readers -------------------------------------------------------------------

    def instant(self, ms: int) -> str:
        moment = datetime.datetime.fromtimestamp(self.start_s + ms / 1000, datetime.UTC)
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def task_status(self, task: TaskState) -> str:
        if task.completed_ms is not None:
            return "completed"
        if task.dispatched_ms is None:
            return "requested"
        return "accepted" if self.time_ms < task.dispatched_ms + task.walk_ms else "in-progress"

    def location(self, room: RoomState) -> dict[str, Any]:
        code = {
            "free": "U",
            "booked": "I" if room.isolated else "O",
            "occupied": "I" if room.isolated else "O",
            "dirty": "K" if room.terminal else "H",
            "cleaning": "K" if room.terminal else "H",
        }[room.state]
        return {
            "resourceType": "Location",
            "id": fhir_id(room.room_id),
            "meta": {"lastUpdated": self.instant(room.updated_ms)},
            "status": "active",
            "operationalStatus": {"system": V2_0116, "code": code, "display": BED_STATUS[code]},
            "name": room.room_id,
            "mode": "instance",
            "physicalType": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/location-physical-type",
                        "code": "ro",
                        "display": "Room",
                    }
                ]
            },
        }

    def encounter(self, e: EncounterState) -> dict[str, Any]:
        resource: dict[str, Any] = {
            "resourceType": "Encounter",
            "id": fhir_id(e.patient_id),
            "meta": {"lastUpdated": self.instant(e.updated_ms)},
            "identifier": [{"system": PATIENT_ID, "value": e.patient_id}],
            "status": e.status,
            "class": {"system": ACT_CODE, "code": "EMER", "display": "emergency"},
            "priority": {"text": f"ESI {e.acuity}"},
            "subject": {"identifier": {"system": PATIENT_ID, "value": e.patient_id}},
            "period": {"start": self.instant(e.arrived_ms)},
        }
        if e.left_ms is not None:
            resource["period"]["end"] = self.instant(e.left_ms)
        if e.room_id is not None and e.location_status is not None:
            resource["location"] = [
                {
                    "location": {"reference": f"Location/{fhir_id(e.room_id)}"},
                    "status": e.location_status,
                }
            ]
        if e.reason:
            resource["reasonCode"] = [{"text": e.reason}]
        if e.isolation:
            resource["hospitalization"] = {"specialArrangement": [{"text": "isolation"}]}
        return resource

    def task(self, t: TaskState) -> dict[str, Any]:
        resource: dict[str, Any] = {
            "resourceType": "Task",
            "id": fhir_id(t.task_id),
            "meta": {"lastUpdated": self.instant(t.updated_ms)},
            "status": self.task_status(t),
            "intent": "order",
            "code": {"coding": [{"system": TASK_KIND, "code": t.kind}]},
            "focus": {"reference": f"Location/{fhir_id(t.room_id)}"},
            "for": {"identifier": {"system": PATIENT_ID, "value": t.patient_id}},
            "authoredOn": self.instant(t.created_ms),
            "lastModified": self.instant(t.updated_ms),
            "location": {"reference": f"Location/{fhir_id(t.room_id)}"},
        }
        if not t.kind.startswith("clean"):
            resource["encounter"] = {"reference": f"Encounter/{fhir_id(t.patient_id)}"}
        if t.staff_id is not None:
            resource["owner"] = {
                "identifier": {"system": STAFF_ID, "value": t.staff_id},
                "display": t.staff_id,
            }
            period = {"start": self.instant(t.dispatched_ms or t.created_ms)}
            if t.completed_ms is not None:
                period["end"] = self.instant(t.completed_ms)
            resource["executionPeriod"] = period
        if t.reason:
            resource["reasonCode"] = {"text": t.reason}
        return resource

    def resources(self, kind: str) -> list[dict[str, Any]]:
        """Every resource of a kind, in a stable order."""
        with self.lock:
            if kind == "Location":
                return [self.location(r) for r in self.rooms.values()]
            if kind == "Encounter":
                return [self.encounter(e) for e in self.encounters.values()]
            if kind == "Task":
                return [self.task(t) for t in self.tasks.values()]
        raise KeyError(kind)

    def bundle(self) -> dict[str, Any]:
        """Everything as a transaction Bundle: each resource PUT under its id, so that a
        server given it twice keeps one copy."""
        entries = [
            {
                "fullUrl": f"{kind}/{resource['id']}",
                "resource": resource,
                "request": {"method": "PUT", "url": f"{kind}/{resource['id']}"},
            }
            for kind in RESOURCES
            for resource in self.resources(kind)
        ]
        return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


# --- search ---------------------------------------------------------------------------------

_PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le")


class SearchError(ValueError):
    """A search parameter that cannot be used; FHIR answers it with an OperationOutcome."""


def _instant(text: str) -> datetime.datetime:
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise SearchError(f"_lastUpdated: {text!r} is not a FHIR dateTime") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)


def matches(resource: dict[str, Any], params: list[tuple[str, str]]) -> bool:
    """Whether a resource matches every search parameter: `status` (a token, commas for
    or), `operational-status` (Location), `_lastUpdated` with a prefix (each given is
    and-ed: `ge...&lt...` is a range)."""
    for name, text in params:
        if name == "status":
            if resource.get("status") not in text.split(","):
                return False
        elif name == "operational-status":
            code = resource.get("operationalStatus", {}).get("code")
            if code not in [t.split("|")[-1] for t in text.split(",")]:
                return False
        elif name == "_lastUpdated":
            prefix = text[:2] if text[:2] in _PREFIXES else "eq"
            bound = _instant(text[2:] if text[:2] in _PREFIXES else text)
            updated = _instant(resource["meta"]["lastUpdated"])
            if not {
                "eq": updated == bound,
                "ne": updated != bound,
                "gt": updated > bound,
                "lt": updated < bound,
                "ge": updated >= bound,
                "le": updated <= bound,
            }[prefix]:
                return False
        elif name not in ("_count", "_format"):
            raise SearchError(
                f"unknown search parameter {name!r}: status, _lastUpdated"
                + (", operational-status" if resource["resourceType"] == "Location" else "")
            )
    return True


def searchset(
    view: FhirView, kind: str, params: list[tuple[str, str]], base: str
) -> dict[str, Any]:
    found = [r for r in view.resources(kind) if matches(r, params)]
    count = next((int(v) for k, v in params if k == "_count" and v.isdigit()), None)
    shown = found if count is None else found[:count]
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(found),
        "entry": [
            {"fullUrl": f"{base}{kind}/{r['id']}", "resource": r, "search": {"mode": "match"}}
            for r in shown
        ],
    }


def outcome(text: str, code: str = "invalid") -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": text}],
    }


def capability_statement(start_s: float) -> dict[str, Any]:
    search = [{"name": "status", "type": "token"}, {"name": "_lastUpdated", "type": "date"}]
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": datetime.datetime.fromtimestamp(start_s, datetime.UTC).date().isoformat(),
        "kind": "instance",
        "fhirVersion": "4.3.0",
        "format": ["json"],
        "rest": [
            {
                "mode": "server",
                "resource": [
                    {
                        "type": kind,
                        "interaction": [{"code": "read"}, {"code": "search-type"}],
                        "searchParam": search
                        + (
                            [{"name": "operational-status", "type": "token"}]
                            if kind == "Location"
                            else []
                        ),
                    }
                    for kind in RESOURCES
                ],
            }
        ],
    }


def add_routes(app: Any, view: FhirView) -> None:
    """The read-only FHIR API under /fhir on the dashboard's application."""
    media = "application/fhir+json"

    @app.get("/fhir/metadata")
    def metadata() -> JSONResponse:
        return JSONResponse(capability_statement(view.start_s), media_type=media)

    @app.get("/fhir/{kind}")
    def search(kind: str, request: Request) -> JSONResponse:
        if kind not in RESOURCES:
            return JSONResponse(
                outcome(f"no resource type {kind}", "not-supported"), 404, media_type=media
            )
        try:
            body = searchset(
                view, kind, list(request.query_params.multi_items()), f"{request.base_url}fhir/"
            )
        except SearchError as exc:
            return JSONResponse(outcome(str(exc)), 400, media_type=media)
        return JSONResponse(body, media_type=media)

    @app.get("/fhir/{kind}/{resource_id}")
    def read_one(kind: str, resource_id: str) -> JSONResponse:
        if kind in RESOURCES:
            for resource in view.resources(kind):
                if resource["id"] == resource_id:
                    return JSONResponse(resource, media_type=media)
        return JSONResponse(
            outcome(f"{kind}/{resource_id} not found", "not-found"), 404, media_type=media
        )


class FhirProjection(Projection):
    """The dashboard's projection with a `FhirView` fed the same ticks (a run followed from
    a file or a database), for the /fhir routes."""

    def __init__(self, *args: Any, fhir: FhirView, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.fhir = fhir

    def apply(
        self,
        tick: int,
        time_ms: int,
        decisions: Iterable[Any],
        inbound: Iterable[Any] | None = None,
        **figures: Any,
    ) -> None:
        decisions = list(decisions)
        inbound = None if inbound is None else list(inbound)
        super().apply(tick, time_ms, decisions, inbound, **figures)
        self.fhir.apply(tick, time_ms, decisions, inbound)

    def reset(self) -> None:
        fhir = self.fhir
        super().reset()
        self.fhir = FhirView(fhir.config, fhir.start_s)


def run_start(url: str) -> float:
    """The Unix time of the simulated time 0 of the run in a database: a distributed run's
    epoch, else the start of the latest run kept; now if neither is known."""
    import time

    from sqlalchemy import inspect, text

    from scheduler.db.store import connect

    try:
        engine = connect(url)
    except Exception:  # noqa: BLE001 - the dashboard says what is wrong with the database
        return time.time()
    try:
        tables = set(inspect(engine).get_table_names())
        with engine.connect() as db:
            if "runs" in tables:
                epoch = db.execute(text("SELECT epoch_s FROM runs")).scalar()
                if epoch is not None:
                    return float(epoch)
            if "kept_runs" in tables:
                started = db.execute(text("SELECT max(started_at) FROM kept_runs")).scalar()
                if started is not None:
                    return float(started)
    finally:
        engine.dispose()
    return time.time()
