"""ADT messages in, events out, and the HL7 acknowledgement of each: pure functions.

`read` parses a message (python-hl7: its parser is fast, 0.3 ms a message here, where
hl7apy's validating one takes 13 ms) and maps it: ADT^A04 (register) and A01 (admit) to an
arrival, A08 (update) to an update of acuity and isolation, A11 (cancel admit) to a
withdrawal; the patient from `[hl7] patient_id_field` (PID-3), acuity and isolation from their
configured fields (absent: ESI 3, no isolation). `judge` then decides, with what the
listener's ledger knows (`Ledger`), whether the message is applied: a control id (MSH-10)
seen before gets its first answer again; an update or withdrawal needs an arrival of the
patient not yet decided. `ack` writes the answer: AA, AE (the content is wrong: the reason
in MSA-3 and ERR) or AR (the message cannot be taken at all).
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import hl7

from scheduler import events as ev
from scheduler.config import Hl7Config
from scheduler.hl7.fields import FieldSpec, parse_spec, value

# HL7 table 0357, message error condition codes: what ERR-3 says.
SEGMENT_SEQUENCE_ERROR = 100
REQUIRED_FIELD_MISSING = 101
DATA_TYPE_ERROR = 102
TABLE_VALUE_NOT_FOUND = 103
UNSUPPORTED_MESSAGE_TYPE = 200
UNSUPPORTED_EVENT_CODE = 201
UNSUPPORTED_VERSION = 203
UNKNOWN_KEY = 204
DUPLICATE_KEY = 205
APPLICATION_ERROR = 207
ERROR_NAMES = {
    100: "Segment sequence error",
    101: "Required field missing",
    102: "Data type error",
    103: "Table value not found",
    200: "Unsupported message type",
    201: "Unsupported event code",
    203: "Unsupported version id",
    204: "Unknown key identifier",
    205: "Duplicate key identifier",
    207: "Application internal error",
}

Action = Literal["arrive", "update", "withdraw"]
ACTIONS: dict[str, Action] = {"A01": "arrive", "A04": "arrive", "A08": "update", "A11": "withdraw"}
MAX_ID = 64  # a patient id is kept in columns of 64 characters
# An ESI level as triage systems send it: 1-5, "ESI-2", "ESI 2", or LOINC's answer codes
# (answer list LL3056-0 of 75636-1).
_ESI = re.compile(r"(?:ESI[- ]?)?([1-5])")
_ESI_ANSWERS = {
    "LA21567-5": 1,
    "LA21752-3": 2,
    "LA21753-1": 3,
    "LA21754-9": 4,
    "LA21755-6": 5,
}


class Refusal(Exception):
    """A message not applied: AE (its content) or AR (the message itself), with the error
    code of table 0357 and the reason."""

    def __init__(self, code: Literal["AE", "AR"], error: int, text: str):
        super().__init__(text)
        self.code, self.error, self.text = code, error, text


@dataclass(frozen=True)
class Header:
    """What MSH (and EVN) say of a message."""

    sending_application: str
    sending_facility: str
    receiving_application: str
    receiving_facility: str
    control_id: str
    message_type: str
    trigger: str
    version: str
    message_time: str  # EVN-6 (when it happened), else EVN-2, else MSH-7: as sent

    @property
    def sender(self) -> str:
        return f"{self.sending_application}^{self.sending_facility}"


@dataclass(frozen=True)
class Request:
    action: Action
    patient_id: str
    acuity: int = 3
    isolation: bool = False


@dataclass(frozen=True)
class Reading:
    """A message as read: its header if it has one that can be read, and either what it
    asks for or why it cannot be applied."""

    raw: str
    digest: str  # of the raw text: a control id sent again with another message is told apart
    header: Header | None
    request: Request | None = None
    refusal: Refusal | None = None


@dataclass(frozen=True)
class Fields:
    """`[hl7]`'s field specs, parsed once."""

    patient_id: FieldSpec
    acuity: FieldSpec | None
    isolation: FieldSpec | None
    isolation_yes: frozenset[str]
    isolation_no: frozenset[str]

    @classmethod
    def of(cls, config: Hl7Config) -> Fields:
        patient_id = parse_spec(config.patient_id_field)
        assert patient_id is not None  # the config refuses ""
        return cls(
            patient_id,
            parse_spec(config.acuity_field),
            parse_spec(config.isolation_field),
            frozenset(v.upper() for v in config.isolation_yes),
            frozenset(v.upper() for v in config.isolation_no),
        )


def read(raw: str, fields: Fields) -> Reading:
    """Parse and map one message (the text between MLLP's frame bytes)."""
    digest = hashlib.sha256(raw.encode("utf-8", "surrogateescape")).hexdigest()
    text = raw.replace("\r\n", "\r").replace("\n", "\r").strip("\r")
    try:
        message = hl7.parse(text)
    except Exception:  # noqa: BLE001 - python-hl7 raises several kinds on bad input
        return Reading(
            raw, digest, None, refusal=Refusal("AR", SEGMENT_SEQUENCE_ERROR, _no_msh(text))
        )
    if not isinstance(message, hl7.Message):  # a batch (FHS, BHS): one message at a time
        return Reading(
            raw, digest, None, refusal=Refusal("AR", SEGMENT_SEQUENCE_ERROR, _no_msh(text))
        )
    header = _header(message)
    try:
        _check_header(header)
        request = _request(message, header, fields)
    except Refusal as refusal:
        return Reading(raw, digest, header, refusal=refusal)
    return Reading(raw, digest, header, request)


def _no_msh(text: str) -> str:
    start = text[:3] or "nothing"
    return f"not an HL7 v2 message: it starts with {start!r}, not an MSH segment"


def _header(message: Any) -> Header:
    def msh(field: int, component: int = 1) -> str:
        return _field(message, "MSH", field, component)

    when = _field(message, "EVN", 6) or _field(message, "EVN", 2) or msh(7)
    trigger = msh(9, 2) or _field(message, "EVN", 1)
    return Header(msh(3), msh(4), msh(5), msh(6), msh(10), msh(9), trigger, msh(12), when)


def _field(message: Any, segment: str, field: int, component: int = 1) -> str:
    return value(message, FieldSpec(segment, field, component))


def _check_header(header: Header) -> None:
    if not header.control_id:
        raise Refusal("AR", REQUIRED_FIELD_MISSING, "MSH-10: no message control id")
    if len(header.control_id) > 199:
        raise Refusal("AR", DATA_TYPE_ERROR, "MSH-10: a control id of more than 199 characters")
    if header.message_type != "ADT":
        raise Refusal(
            "AR",
            UNSUPPORTED_MESSAGE_TYPE,
            f"MSH-9: message type {header.message_type or 'none'}: only ADT is taken",
        )
    if header.trigger not in ACTIONS:
        raise Refusal(
            "AR",
            UNSUPPORTED_EVENT_CODE,
            f"MSH-9: event {header.trigger or 'none'}: only A01, A04, A08 and A11 are taken",
        )
    if not re.fullmatch(r"2\.[1-8](\.[0-9])?", header.version):
        raise Refusal(
            "AR", UNSUPPORTED_VERSION, f"MSH-12: version {header.version or 'none'}: 2.1 to 2.8"
        )


def _request(message: Any, header: Header, fields: Fields) -> Request:
    action = ACTIONS[header.trigger]
    patient_id = value(message, fields.patient_id)
    if not patient_id:
        raise Refusal("AE", REQUIRED_FIELD_MISSING, f"{fields.patient_id}: no patient id")
    if len(patient_id) > MAX_ID or not patient_id.isprintable():
        raise Refusal(
            "AE",
            DATA_TYPE_ERROR,
            f"{fields.patient_id}: a patient id is 1 to {MAX_ID} printable characters",
        )
    if action == "withdraw":
        return Request(action, patient_id)
    return Request(action, patient_id, _acuity(message, fields), _isolation(message, fields))


def _acuity(message: Any, fields: Fields) -> int:
    text = value(message, fields.acuity).upper()
    if not text:
        return 3
    if text in _ESI_ANSWERS:
        return _ESI_ANSWERS[text]
    found = _ESI.fullmatch(text)
    if found is None:
        raise Refusal(
            "AE",
            TABLE_VALUE_NOT_FOUND,
            f"{fields.acuity}: acuity {ev.shown(text, 30)} is not an ESI level (1-5, ESI-1..ESI-5)",
        )
    return int(found[1])


def _isolation(message: Any, fields: Fields) -> bool:
    text = value(message, fields.isolation).upper()
    if not text or text in fields.isolation_no:
        return False
    if text in fields.isolation_yes:
        return True
    raise Refusal(
        "AE",
        TABLE_VALUE_NOT_FOUND,
        f"{fields.isolation}: isolation {ev.shown(text, 30)} is neither a yes "
        f"({', '.join(sorted(fields.isolation_yes))}) nor a no "
        f"({', '.join(sorted(fields.isolation_no))})",
    )


# --- what the ledger knows, and the answer ------------------------------------------------


@dataclass(frozen=True)
class Prior:
    """The answer a message of the same sender and control id was given."""

    code: str
    error: int | None
    text: str
    digest: str


@dataclass(frozen=True)
class KnownArrival:
    """A patient whose arrival the listener has accepted in this run."""

    event_id: str
    time_ms: int
    decided: bool  # admitted or referred already (or being decided): too late to change
    withdrawn: bool


class Ledger(Protocol):
    """What the listener has accepted in the current run (`scheduler.db.hl7`)."""

    def prior(self, sender: str, control_id: str) -> Prior | None: ...

    def arrival(self, patient_id: str) -> KnownArrival | None: ...


@dataclass(frozen=True)
class Answer:
    code: str  # AA, AE, AR
    error: int | None = None
    text: str = ""
    event: ev.Event | None = None  # AA: the event to apply
    repeat: bool = False  # the control id was seen before: answered as then, nothing applied
    arrival: KnownArrival | None = None  # an update's or withdrawal's arrival


def event_id(header: Header) -> str:
    """The event of a message: the same id however often the message is sent, so that the
    scheduler applies it once."""
    key = f"{header.sender}|{header.control_id}".encode("utf-8", "surrogateescape")
    return "hl7-" + hashlib.sha256(key).hexdigest()[:24]


def judge(reading: Reading, ledger: Ledger, time_ms: int = 0) -> Answer:
    """Whether a message is applied, and the event it makes (dated `time_ms`; an update or
    withdrawal takes its arrival's time, so that it falls in the arrival's tick)."""
    header = reading.header
    if header is not None and header.control_id:
        prior = ledger.prior(header.sender, header.control_id)
        if prior is not None:
            if prior.digest != reading.digest:
                return Answer(
                    "AE",
                    DUPLICATE_KEY,
                    f"MSH-10: control id {header.control_id} was used by another message",
                    repeat=True,
                )
            return Answer(prior.code, prior.error, prior.text, repeat=True)
    if reading.refusal is not None:
        refusal = reading.refusal
        return Answer(refusal.code, refusal.error, refusal.text)
    assert header is not None and reading.request is not None
    request = reading.request
    known = ledger.arrival(request.patient_id)
    provenance = {"control_id": header.control_id, "message_time": header.message_time}
    if request.action == "arrive":
        if known is not None:
            return Answer(
                "AE", DUPLICATE_KEY, f"patient {request.patient_id} has already arrived in this run"
            )
        event: ev.Event = ev.PatientArrived(
            event_id(header),
            time_ms,
            request.patient_id,
            acuity=request.acuity,
            isolation=request.isolation,
            **provenance,
        )
        return Answer("AA", event=event)
    if known is None:
        return Answer(
            "AE", UNKNOWN_KEY, f"unknown patient {request.patient_id}: no arrival of theirs"
        )
    if known.withdrawn or known.decided:
        what = "withdrawn" if known.withdrawn else "admitted or referred"
        return Answer(
            "AE", APPLICATION_ERROR, f"too late: patient {request.patient_id} is already {what}"
        )
    if request.action == "update":
        event = ev.PatientUpdated(
            event_id(header),
            known.time_ms,
            request.patient_id,
            acuity=request.acuity,
            isolation=request.isolation,
            **provenance,
        )
    else:
        event = ev.PatientWithdrawn(
            event_id(header), known.time_ms, request.patient_id, **provenance
        )
    return Answer("AA", event=event, arrival=known)


# --- acknowledgements -----------------------------------------------------------------------

_ESCAPES = {"\\": "\\E\\", "|": "\\F\\", "^": "\\S\\", "~": "\\R\\", "&": "\\T\\"}


def escape(text: str) -> str:
    """Text made safe for a field (HL7's escape sequences for the delimiters)."""
    return "".join(_ESCAPES.get(c, c) for c in text.replace("\r", " ").replace("\n", " "))


def timestamp(seconds: float | None = None) -> str:
    """An HL7 TS in local time with its offset: 20261205101500+0100."""
    return time.strftime(
        "%Y%m%d%H%M%S%z", time.localtime(time.time() if seconds is None else seconds)
    )


def ack(
    reading: Reading, answer: Answer, application: str = "HOSPITAL", facility: str = "SCHEDULER"
) -> str:
    """The ACK of a message, its segments separated by CR: MSH, MSA (the code, the message's
    control id, the reason) and, when not AA, ERR (the error of table 0357, and the reason)."""
    header = reading.header
    control_id = header.control_id if header else ""
    trigger = header.trigger if header and header.trigger else ""
    version = header.version if header and header.version else "2.5"
    msh = [
        "MSH",
        "^~\\&",
        escape(
            header.receiving_application if header and header.receiving_application else application
        ),
        escape(header.receiving_facility if header and header.receiving_facility else facility),
        escape(header.sending_application) if header else "",
        escape(header.sending_facility) if header else "",
        timestamp(),
        "",
        f"ACK^{escape(trigger)}^ACK" if trigger else "ACK",
        escape(("ACK" + control_id)[:199]),
        "P",
        escape(version),
    ]
    segments = [
        "|".join(msh),
        "|".join(["MSA", answer.code, escape(control_id), escape(answer.text)]),
    ]
    if answer.code != "AA":
        error = answer.error or APPLICATION_ERROR
        segments.append(
            "|".join(
                [
                    "ERR",
                    "",
                    "",
                    f"{error}^{ERROR_NAMES.get(error, '')}^HL70357",
                    "E",
                    "",
                    "",
                    "",
                    escape(answer.text),
                ]
            )
        )
    return "\r".join(segments) + "\r"
