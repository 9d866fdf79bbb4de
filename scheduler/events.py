"""The event vocabulary: what comes into the scheduler and the decisions it makes.

Events are small frozen dataclasses. On the wire (a Kafka message, a JSONL line) each is one
JSON object with `type`, `event_id`, `time` in seconds since the run's start, and the ids it
is about; decisions also carry `tick`. Inside, times are whole milliseconds so that
arithmetic never drifts.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import math
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii as _quote
from operator import attrgetter
from typing import Any, ClassVar, TypeAlias, TypeVar, overload

_ENCODER = json.JSONEncoder(sort_keys=True)  # canonical: sorted keys, default separators


def _value(value: Any) -> str:
    """One JSON value exactly as `_ENCODER` writes it (ASCII strings, repr of numbers)."""
    kind = type(value)
    if kind is str:
        return _quote(value)
    if kind is int:
        return int.__repr__(value)
    if kind is float and math.isfinite(value):
        return float.__repr__(value)
    return _ENCODER.encode(value)


def _compile_to_json(cls: type[Event]) -> Any:
    """`to_json` for one event class, as straight-line code: the keys of `to_dict` sorted,
    each value through `_value`. The same text as `_ENCODER.encode(event.to_dict())`
    (pinned by a test), without building the dict or walking it in the encoder: a 24 h
    simulation encodes a couple of hundred thousand events."""
    keys: dict[str, str | None] = {
        ("time" if f.name == "time_ms" else f.name): f.name
        for f in dataclasses.fields(cls)
        if f.name not in cls.OPTIONAL
    }
    keys["type"] = None
    parts, loads = [], []
    for n, key in enumerate(sorted(keys)):
        attr = keys[key]
        head = repr(_quote(key) + ": ")
        if attr is None:
            parts.append(repr(_quote(key) + ": " + _quote(cls.TYPE)))
            continue
        loads.append(f"    v{n} = self.{attr}" + (" / 1000" if attr == "time_ms" else ""))
        # the common cases inline; anything else through `_value`
        fast = {
            "time_ms": f"_float(v{n}) if v{n} - v{n} == 0 else _value(v{n})",
            "tick": f"_int(v{n}) if v{n}.__class__ is int else _value(v{n})",
        }.get(attr, f"_quote(v{n}) if v{n}.__class__ is str else _value(v{n})")
        parts.append(f"{head} + ({fast})")
    source = (
        "def to_json(self):\n"
        + "\n".join(loads)
        + "\n    return '{' + "
        + " + ', ' + ".join(parts)
        + " + '}'\n"
    )
    namespace: dict[str, Any] = {
        "_value": _value,
        "_quote": _quote,
        "_int": int.__repr__,
        "_float": float.__repr__,
    }
    exec(source, namespace)  # noqa: S102 - our own field names, no outside input
    return namespace["to_json"]


_TO_JSON: dict[type, Any] = {}
_VALUES: dict[type, attrgetter] = {}  # an event's field values, in the order of `__init__`


class BadEvent(ValueError):
    """An event that cannot be parsed; the message says why."""


# No run lasts longer (about 31 years): a time or tick past it is a mistake, and every time
# in milliseconds stays far inside the 64-bit integers of the solver and the database.
MAX_TIME_S = 1_000_000_000


def shown(value: Any, limit: int = 60) -> str:
    """`repr(value)`, cut short: a message about a bad value stays one readable line."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True)
class Event:
    TYPE: ClassVar[str] = ""
    # Fields left out of the JSON while they hold their default: the clinical rules' fields,
    # so that a hospital without them writes exactly what it always wrote.
    OPTIONAL: ClassVar[tuple[str, ...]] = ()
    event_id: str
    time_ms: int

    def to_dict(self) -> dict[str, Any]:
        data = dict(vars(self))
        data["time"] = data.pop("time_ms") / 1000
        data["type"] = self.TYPE
        for name in self.OPTIONAL:
            if data[name] == _DEFAULTS[type(self), name]:
                del data[name]
        return data

    def __reduce__(self) -> tuple[type[Event], tuple[Any, ...]]:
        # Pickled as its class and its fields' values: two thirds of the default's time,
        # for a run's writer process is sent every event of the run.
        cls = type(self)
        values = _VALUES.get(cls)
        if values is None:
            values = _VALUES[cls] = attrgetter(*(f.name for f in dataclasses.fields(cls)))
        return cls, values(self)

    def to_json(self) -> str:
        cls = type(self)
        if cls.OPTIONAL and any(
            getattr(self, name) != _DEFAULTS[cls, name] for name in cls.OPTIONAL
        ):
            return _ENCODER.encode(self.to_dict())
        encode = _TO_JSON.get(cls)
        if encode is None:
            encode = _TO_JSON[cls] = _compile_to_json(cls)
        return encode(self)


# --- inbound: facts reported by the patient generator and the workers -------------------


# Where an event from a hospital system came from (`hospital hl7 listen`): the message's
# control id (MSH-10) and its own time as sent (EVN-6, else EVN-2, else MSH-7). Kept with
# the event; the run's clock, not this time, decides its tick.
PROVENANCE = ("control_id", "message_time")


@dataclass(frozen=True)
class PatientArrived(Event):
    TYPE: ClassVar[str] = "patient.arrived"
    OPTIONAL: ClassVar[tuple[str, ...]] = ("acuity", "isolation", *PROVENANCE)
    patient_id: str
    acuity: int = 3  # ESI triage level: 1 the most urgent, 5 the least
    isolation: bool = False  # needs a room able to isolate
    control_id: str = ""
    message_time: str = ""


@dataclass(frozen=True)
class PatientUpdated(Event):
    """The patient's acuity and isolation, as a hospital system now has them (HL7 A08):
    applied only before the patient's admission or referral, that is within the tick of
    their arrival; later it is rejected as too late."""

    TYPE: ClassVar[str] = "patient.updated"
    OPTIONAL: ClassVar[tuple[str, ...]] = ("acuity", "isolation", *PROVENANCE)
    patient_id: str
    acuity: int = 3
    isolation: bool = False
    control_id: str = ""
    message_time: str = ""


@dataclass(frozen=True)
class PatientWithdrawn(Event):
    """An arrival cancelled by a hospital system (HL7 A11), before it is decided: within
    the tick of the arrival; later it is rejected as too late. The patient is then neither
    admitted nor referred."""

    TYPE: ClassVar[str] = "patient.withdrawn"
    OPTIONAL: ClassVar[tuple[str, ...]] = PROVENANCE
    patient_id: str
    control_id: str = ""
    message_time: str = ""


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
    cls.TYPE: cls
    for cls in (
        PatientArrived,
        EscortCompleted,
        VisitCompleted,
        CleaningCompleted,
        PatientUpdated,
        PatientWithdrawn,
    )
}
# The inbound events about an arrival not yet decided (they apply within its tick).
ARRIVAL_CHANGES = (PatientUpdated, PatientWithdrawn)
# The inbound events that close a task: all but `patient.arrived`.
Completion: TypeAlias = EscortCompleted | VisitCompleted | CleaningCompleted
COMPLETIONS = (EscortCompleted, VisitCompleted, CleaningCompleted)


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
    origin: str = "entrance"  # where the staff member sets off from
    reason: str = ""  # why this staff member, in words (`[scheduler] explain`)
    OPTIONAL: ClassVar[tuple[str, ...]] = ("reason",)


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


@dataclass(frozen=True)
class StaffOffDuty(Decision):
    """The staff member's shift or break has begun: no new task (they finish the one they
    have)."""

    TYPE: ClassVar[str] = "staff.off_duty"
    staff_id: str


@dataclass(frozen=True)
class StaffOnDuty(Decision):
    TYPE: ClassVar[str] = "staff.on_duty"
    staff_id: str


@dataclass(frozen=True)
class TaskEscalated(Decision):
    """A task still waiting past its target wait (`[sla]`), announced once."""

    TYPE: ClassVar[str] = "task.escalated"
    task_id: str
    kind: str
    waited_s: float
    sla_s: float


@dataclass(frozen=True)
class StaffHeld(Decision):
    """Looking ahead: a free staff member kept free, for what the forecast expects, until
    `until_s` or until they are given a task; meanwhile they count as busy."""

    TYPE: ClassVar[str] = "staff.held"
    staff_id: str
    reason: str
    until_s: float


@dataclass(frozen=True)
class RoomHeld(Decision):
    """Looking ahead: a free room kept for a class of patients (`reserved_for`: `urgent`,
    ESI 1-2, or `isolation`), until `until_s` or until it is booked; meanwhile it counts as
    taken for the patients of other classes."""

    TYPE: ClassVar[str] = "room.held"
    room_id: str
    reserved_for: str
    reason: str
    until_s: float


DECISIONS: dict[str, type[Decision]] = {
    cls.TYPE: cls
    for cls in (
        PatientAdmitted,
        PatientReferred,
        TaskDispatched,
        TaskQueued,
        PatientDischarged,
        RoomAvailable,
        StaffOffDuty,
        StaffOnDuty,
        TaskEscalated,
        StaffHeld,
        RoomHeld,
    )
}
TASK_KINDS = ("escort_in", "visit", "escort_out", "clean", "clean_terminal")
RESERVED_FOR = ("urgent", "isolation")  # a room held for ESI 1-2 patients, or for isolation
_DEFAULTS = {
    (cls, f.name): f.default
    for cls in (*INBOUND.values(), *DECISIONS.values())
    for f in dataclasses.fields(cls)
}


E = TypeVar("E", bound=Event)


# Parsed with a vocabulary, an event is of its kind: `parse(d, DECISIONS)` is a Decision.
@overload
def parse(data: Any, vocabulary: None = None) -> Event: ...
@overload
def parse(data: Any, vocabulary: Mapping[str, type[E]]) -> E: ...
def parse(data: Any, vocabulary: Mapping[str, type[Event]] | None = None) -> Event:
    """An event from its JSON object; `BadEvent` says what is wrong with it."""
    vocabulary = INBOUND if vocabulary is None else vocabulary
    if not isinstance(data, dict):
        raise BadEvent("an event must be a JSON object")
    kind = data.get("type")
    cls = vocabulary.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise BadEvent(f"unknown event type {shown(kind)}")
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name == "time_ms":
            time = data.get("time")
            if (
                isinstance(time, bool)
                or not isinstance(time, (int, float))
                or not 0 <= time <= MAX_TIME_S
            ):
                raise BadEvent(f"{kind}: 'time' must be a number of seconds from 0 to {MAX_TIME_S}")
            values["time_ms"] = round(time * 1000)
        elif f.name == "tick":
            tick = data.get("tick")
            if not is_tick(tick):
                raise BadEvent(f"{kind}: 'tick' must be an integer >= 0")
            values["tick"] = tick
        elif f.name == "acuity":
            acuity = data.get("acuity", f.default)
            if type(acuity) is not int or acuity not in (1, 2, 3, 4, 5):
                raise BadEvent(f"{kind}: 'acuity' must be an ESI level from 1 to 5")
            values["acuity"] = acuity
        elif f.name == "isolation":
            isolation = data.get("isolation", f.default)
            if not isinstance(isolation, bool):
                raise BadEvent(f"{kind}: 'isolation' must be true or false")
            values["isolation"] = isolation
        elif f.name in ("waited_s", "sla_s", "until_s", "travel_s"):
            number = data.get(f.name)
            if (
                isinstance(number, bool)
                or not isinstance(number, (int, float))
                or not 0 <= number <= MAX_TIME_S
            ):
                raise BadEvent(f"{kind}: '{f.name}' must be a number of seconds >= 0")
            values[f.name] = number
        elif f.name == "reason" or f.name in PROVENANCE:
            text = data.get(f.name, f.default)
            if not isinstance(text, str):
                raise BadEvent(f"{kind}: '{f.name}' must be a string")
            values[f.name] = text
        else:
            value = data.get(f.name, f.default)
            if not isinstance(value, str) or not value:
                raise BadEvent(f"{kind}: '{f.name}' must be a non-empty string")
            values[f.name] = value
    if cls is EscortCompleted and values["direction"] not in ("in", "out"):
        raise BadEvent("escort.completed: 'direction' must be 'in' or 'out'")
    if cls in (TaskDispatched, TaskQueued, TaskEscalated) and values["kind"] not in TASK_KINDS:
        raise BadEvent(f"{kind}: 'kind' must be one of {', '.join(TASK_KINDS)}")
    if cls is RoomHeld and values["reserved_for"] not in RESERVED_FOR:
        raise BadEvent(f"{kind}: 'reserved_for' must be one of {', '.join(RESERVED_FOR)}")
    return cls(**values)


def loads(text: str | bytes) -> Any:
    """`json.loads`, with every way it can fail as `BadEvent`: not JSON, not UTF-8, a number
    of more digits than Python converts, nesting deeper than the recursion limit."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadEvent(f"not valid JSON ({exc.msg})") from None
    except UnicodeDecodeError:
        raise BadEvent("not valid JSON (not UTF-8 text)") from None
    except RecursionError:
        raise BadEvent("not valid JSON (nested too deeply)") from None
    except ValueError as exc:  # "Exceeds the limit (4300 digits) for integer string ..."
        raise BadEvent(f"not valid JSON ({exc})") from None


@overload
def parse_json(text: str | bytes, vocabulary: None = None) -> Event: ...
@overload
def parse_json(text: str | bytes, vocabulary: Mapping[str, type[E]]) -> E: ...
def parse_json(text: str | bytes, vocabulary: Mapping[str, type[Event]] | None = None) -> Event:
    return parse(loads(text), vocabulary)


def is_tick(value: Any) -> bool:
    return type(value) is int and value >= 0


def recorded_tick(data: dict[str, Any]) -> int | None:
    """The tick that consumed a recorded inbound event, if the record says; `BadEvent` for a
    `tick` that is not one."""
    tick = data.get("tick")
    if tick is not None and not is_tick(tick):
        raise BadEvent(f"'tick' must be an integer >= 0, got {shown(tick)}")
    return tick


_DIGITS = "0123456789"


def _numeric_order(id_: str) -> tuple[int, str]:
    """Ids of one prefix in the order of their numbers (none has a leading zero)."""
    return len(id_), id_


class IdSet:
    """A set of ids that stays small over a long run: an id that ends in a number (without a
    leading zero) is one bit in a bitmap per prefix (`arrival-` 17, `task-` 4), any other is
    kept as it is. Exact, no false positives: what `seen` event ids, finished patients and
    decided tasks need, since a duplicate must still be recognised after days. A bitmap
    grows only while it stays denser than a byte per id, so a far-off number cannot make it
    allocate much; such ids go to the plain set."""

    __slots__ = ("_recent", "_bits", "_counts", "_other")

    RECENT = 1 << 16  # ids kept in a plain set (fast) before they are folded into bitmaps

    def __init__(self, ids: Iterable[str] = ()):
        self._recent: set[str] = set()
        self._bits: dict[str, bytearray] = {}
        self._counts: dict[str, int] = {}
        self._other: set[str] = set()
        for id_ in ids:
            self.add(id_)

    def add(self, id_: str) -> None:
        recent = self._recent
        if id_ in recent or ((self._counts or self._other) and self._has_folded(id_)):
            return
        recent.add(id_)
        if len(recent) >= self.RECENT:
            self._fold_recent()

    def __contains__(self, id_: object) -> bool:
        return id_ in self._recent or (bool(self._counts or self._other) and self._has_folded(id_))

    def __len__(self) -> int:
        return len(self._recent) + sum(self._counts.values()) + len(self._other)

    def _fold_recent(self) -> None:
        for id_ in sorted(self._recent, key=_numeric_order):  # a bitmap grows from its start
            self._fold(id_)
        self._recent.clear()

    def _fold(self, id_: str) -> None:
        try:
            prefix = id_.rstrip(_DIGITS)
        except AttributeError:  # not a string
            prefix = id_
        digits = id_[len(prefix) :] if prefix is not id_ else ""
        if not digits or len(digits) > 18 or (digits[0] == "0" and len(digits) > 1):
            self._other.add(id_)
            return
        n = int(digits)
        byte = n >> 3
        bits = self._bits.get(prefix)
        if bits is None or byte >= len(bits):
            if byte >= 1024 + self._counts.get(prefix, 0):  # too sparse for a bitmap
                self._other.add(id_)
                return
            if bits is None:
                bits = self._bits[prefix] = bytearray()
            bits.extend(bytes(max(byte + 1, 2 * len(bits)) - len(bits)))
        mask = 1 << (n & 7)
        if not bits[byte] & mask:
            bits[byte] |= mask
            self._counts[prefix] = self._counts.get(prefix, 0) + 1

    def _has_folded(self, id_: object) -> bool:
        if id_ in self._other:
            return True
        try:
            prefix = id_.rstrip(_DIGITS)  # type: ignore[attr-defined]
        except AttributeError:
            return False
        bits = self._bits.get(prefix)
        if bits is None:
            return False
        digits = id_[len(prefix) :]  # type: ignore[index]
        if not digits or len(digits) > 18 or (digits[0] == "0" and len(digits) > 1):
            return False
        n = int(digits)
        return (n >> 3) < len(bits) and bool(bits[n >> 3] >> (n & 7) & 1)

    def __iter__(self) -> Iterator[str]:
        for prefix, bits in self._bits.items():
            for byte, value in enumerate(bits):
                if value:
                    for bit in range(8):
                        if value & (1 << bit):
                            yield f"{prefix}{byte * 8 + bit}"
        yield from self._other
        yield from self._recent

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (IdSet, set, frozenset)):
            return set(self) == set(other)
        return NotImplemented

    def __repr__(self) -> str:
        return f"IdSet({sorted(self)!r})"

    # --- as JSON (scheduler snapshots) ---------------------------------------------------

    MAX_BITMAP_BYTES = 8 << 20  # all of one set's bitmaps, decompressed: 64 million ids
    MAX_PREFIXES = 64
    MAX_ID_CHARS = 256

    def to_json(self) -> dict[str, Any]:
        """The set as a JSON object, `from_json`'s input: each prefix's bitmap compressed
        (a long run's ids are nearly all present, so it compresses to little) and base64'd,
        and the other ids as a sorted list. The recent ids are folded into the bitmaps
        first, for good: the set stays the same, and the next call has only the ids added
        since to fold."""
        self._fold_recent()
        # without the room a bitmap keeps to grow into: the same ids, the same text
        return {
            "bits": {
                prefix: base64.b64encode(zlib.compress(bytes(b).rstrip(b"\0"), 9)).decode("ascii")
                for prefix, b in sorted(self._bits.items())
            },
            "other": sorted(self._other),
        }

    @classmethod
    def from_json(cls, data: Any) -> IdSet:
        """The set `to_json` wrote; `ValueError` saying what is wrong with anything else.
        Nothing is inflated past `MAX_BITMAP_BYTES` in all, and no bitmap may be sparser
        than the set itself would have let it grow."""
        if not isinstance(data, dict) or set(data) != {"bits", "other"}:
            raise ValueError("an id set must be an object with 'bits' and 'other'")
        bits, other = data["bits"], data["other"]
        if not isinstance(bits, dict) or len(bits) > cls.MAX_PREFIXES:
            raise ValueError(f"'bits' must be an object of at most {cls.MAX_PREFIXES} prefixes")
        if not isinstance(other, list) or not all(
            isinstance(i, str) and 0 < len(i) <= cls.MAX_ID_CHARS for i in other
        ):
            raise ValueError(f"'other' must be a list of ids of 1 to {cls.MAX_ID_CHARS} chars")
        result = cls()
        budget = cls.MAX_BITMAP_BYTES
        for prefix, text in bits.items():
            if (
                not isinstance(prefix, str)
                or len(prefix) > cls.MAX_ID_CHARS
                or prefix != prefix.rstrip(_DIGITS)
                or not isinstance(text, str)
            ):
                raise ValueError(f"bitmap {prefix!r}: not a prefix and a base64 string")
            try:
                packed = base64.b64decode(text.encode("ascii"), validate=True)
                inflate = zlib.decompressobj()
                bitmap = inflate.decompress(packed, budget + 1)
            except (UnicodeEncodeError, binascii.Error, zlib.error):
                raise ValueError(f"bitmap {prefix!r}: not base64 of zlib data") from None
            if len(bitmap) > budget or inflate.unconsumed_tail or not inflate.eof:
                raise ValueError(
                    f"bitmap {prefix!r}: larger than {cls.MAX_BITMAP_BYTES} "
                    f"bytes in all, or truncated"
                )
            budget -= len(bitmap)
            count = int.from_bytes(bitmap, "little").bit_count()
            if len(bitmap) > 2 * (1024 + count):  # `_fold` never lets one grow so sparse
                raise ValueError(f"bitmap {prefix!r}: {len(bitmap)} bytes for {count} ids")
            if count:
                result._bits[prefix] = bytearray(bitmap)
                result._counts[prefix] = count
        for id_ in other:  # `result._other` is still empty: only the bitmaps are asked
            if id_ in result:
                raise ValueError(f"{id_[:40]!r} is both in a bitmap and in 'other'")
        result._other = set(other)
        if len(result._other) != len(other):
            raise ValueError("'other' gives an id twice")
        return result

    def __getstate__(self) -> tuple:
        return self._recent, self._bits, self._counts, self._other

    def __setstate__(self, state: tuple) -> None:
        self._recent, self._bits, self._counts, self._other = state
