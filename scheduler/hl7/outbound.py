"""The run's decisions as HL7 v2 ADT messages for a downstream system (a bed board, a
transport board): ADT^A02 when a patient reaches their room (the porter's escort in is
done), ADT^A20 when a room's bed status (v2 table 0116) changes: U unoccupied, O occupied
(booked or occupied), I isolated (holding a patient who needs isolation), H housekeeping
(to be cleaned), K contaminated (a terminal clean owed).

Pure: `Outbound.tick` turns one tick (its inbound events and decisions) into messages, in
order, each with a control id made from the run and its place (so the same run gives the
same ids, and a message sent again after a restart is known by a receiver for the one it
already has). Times are simulated: `start_s` (the Unix time of simulated time 0) plus the
simulated seconds.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from scheduler.hl7.mapping import escape


@dataclass
class _Room:
    state: str = "U"  # the table 0116 code last announced
    terminal: bool = False


class Outbound:
    def __init__(self, run_id: str, rooms: Iterable[str], start_s: float):
        self.prefix = hashlib.sha256(run_id.encode()).hexdigest()[:6].upper()
        self.rooms = {room_id: _Room() for room_id in rooms}
        self.start_s = start_s
        self.isolation: dict[str, bool] = {}  # patients in the building who need isolation

    def tick(
        self, tick: int, time_ms: int, inbound: Iterable[Any], decisions: Iterable[Any]
    ) -> list[tuple[str, str]]:
        """(control id, message) of each message the tick makes, in order."""
        made: list[tuple[str, tuple[str, ...]]] = []  # (trigger, its fields)
        for event in inbound:
            kind = event.TYPE
            if kind in ("patient.arrived", "patient.updated"):
                self.isolation[event.patient_id] = event.isolation
            elif kind == "patient.withdrawn":
                self.isolation.pop(event.patient_id, None)
            elif kind == "escort.completed" and event.direction == "in":
                made.append(("A02", (event.patient_id, event.room_id)))
        for decision in decisions:
            kind = decision.TYPE
            if kind == "patient.admitted":
                isolated = self.isolation.get(decision.patient_id, False)
                self._status(made, decision.room_id, "I" if isolated else "O")
                self.rooms[decision.room_id].terminal = isolated
            elif kind == "patient.referred":
                self.isolation.pop(decision.patient_id, None)
            elif kind == "patient.discharged":
                self.isolation.pop(decision.patient_id, None)
                room = self.rooms[decision.room_id]
                self._status(made, decision.room_id, "K" if room.terminal else "H")
            elif kind == "room.available":
                self.rooms[decision.room_id].terminal = False
                self._status(made, decision.room_id, "U")
        when = time.strftime("%Y%m%d%H%M%S", time.gmtime(self.start_s + time_ms / 1000)) + "+0000"
        out = []
        for n, (trigger, fields) in enumerate(made, start=1):
            control_id = f"{self.prefix}{tick:x}.{n}"  # within MSH-10's 20 characters (v2.5)
            out.append((control_id, message(trigger, control_id, when, *fields)))
        return out

    def _status(self, made: list, room_id: str, code: str) -> None:
        room = self.rooms[room_id]
        if room.state != code:
            room.state = code
            made.append(("A20", (room_id, code)))


def location(room_id: str) -> str:
    """PV1-3 / NPU-1: the floor as the point of care, the room, its one bed."""
    floor = room_id.rstrip("0123456789") or room_id
    return f"{escape(floor)}^{escape(room_id)}^1"


def message(trigger: str, control_id: str, when: str, *fields: str) -> str:
    structure = {"A02": "ADT_A02", "A20": "ADT_A20"}[trigger]
    segments = [
        f"MSH|^~\\&|HOSPITAL|SCHEDULER|||{when}||ADT^{trigger}^{structure}|{control_id}|P|2.5",
        f"EVN|{trigger}|{when}",
    ]
    if trigger == "A02":
        patient_id, room_id = fields
        segments += [f"PID|||{escape(patient_id)}", f"PV1||I|{location(room_id)}"]
    else:
        room_id, code = fields
        segments.append(f"NPU|{location(room_id)}|{code}")
    return "\r".join(segments) + "\r"
