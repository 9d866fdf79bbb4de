"""Where a value is in an HL7 v2 message, as `[hl7]` of the config names it:

- `SEG-N`: field N of the first SEG segment (its first repetition, first component);
- `SEG-N.C`: component C of that field;
- `OBX[CODE]`: the value (OBX-5) of the first OBX segment whose observation code (OBX-3.1)
  is CODE: a triage level sent as an observation, say;
- "" (empty): nowhere; the value is always its default.

Below the config (which checks the specs with it): it imports only `scheduler.events`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from scheduler.events import shown  # a value from the input, cut short and escaped

_FIELD = re.compile(r"([A-Z][A-Z0-9]{2})-([1-9][0-9]{0,2})(?:\.([1-9][0-9]{0,2}))?")
_OBSERVATION = re.compile(r"([A-Z][A-Z0-9]{2})\[([^\[\]|^~\\&]{1,80})\]")


class FieldError(ValueError):
    """A field spec that cannot be read; the message says what is expected."""


@dataclass(frozen=True)
class FieldSpec:
    segment: str
    field: int
    component: int = 1
    code: str | None = None  # OBX[CODE]: the segment whose OBX-3.1 is this code

    def __str__(self) -> str:
        if self.code is not None:
            return f"{self.segment}[{self.code}]"
        return f"{self.segment}-{self.field}" + (f".{self.component}" if self.component > 1 else "")


def parse_spec(text: str) -> FieldSpec | None:
    """The spec's place in a message; None for ""."""
    if text == "":
        return None
    found = _FIELD.fullmatch(text)
    if found:
        return FieldSpec(found[1], int(found[2]), int(found[3] or 1))
    found = _OBSERVATION.fullmatch(text)
    if found:
        if found[1] != "OBX":
            raise FieldError(f"{shown(text)}: a code selects an OBX segment only (OBX[CODE])")
        return FieldSpec("OBX", 5, 1, found[2])
    raise FieldError(
        f"{shown(text)}: expected SEG-N, SEG-N.C or OBX[CODE] (e.g. PID-3, PV1-19, OBX[75636-1])"
    )


def value(message: Any, spec: FieldSpec | None) -> str:
    """The value at `spec` in a parsed message (python-hl7's `Message`), unescaped and
    stripped; "" when the segment or field is absent."""
    if spec is None:
        return ""
    try:
        if spec.code is None:
            return str(
                message.extract_field(spec.segment, 1, spec.field, 1, spec.component)
            ).strip()
        for n in range(1, len(message.segments(spec.segment)) + 1):
            if message.extract_field(spec.segment, n, 3, 1, 1).strip() == spec.code:
                return str(message.extract_field(spec.segment, n, spec.field, 1, 1)).strip()
    except (KeyError, IndexError):  # python-hl7's word for a segment the message lacks
        return ""
    return ""
