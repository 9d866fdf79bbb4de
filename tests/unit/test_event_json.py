"""`Event.to_json` is generated per class for speed; it must stay the canonical encoding:
the same text as `json` with sorted keys and default separators, for any values. Events
pickle (for the store's writer process) by their fields' values: they come back equal."""

from __future__ import annotations

import dataclasses
import json
import pickle

from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler import events as ev

text = st.text(min_size=1)
ms = st.integers(min_value=0, max_value=10**12)


def canonical(event: ev.Event) -> str:
    return json.dumps(event.to_dict(), sort_keys=True)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(sorted({**ev.INBOUND, **ev.DECISIONS}.items())),
    text,
    ms,
    st.integers(min_value=-2, max_value=10**9),
    st.data(),
)
def test_to_json_is_the_canonical_json(item, event_id, time_ms, tick, data):
    _, cls = item
    values = {"event_id": event_id, "time_ms": time_ms}
    for name in (f.name for f in dataclasses.fields(cls)):
        if name == "tick":
            values[name] = tick
        elif name not in values:
            values[name] = data.draw(text)
    event = cls(**values)
    assert event.to_json() == canonical(event)


def test_odd_values_fall_back_to_json():
    for event in (
        ev.PatientArrived(event_id="a", time_ms=float("inf"), patient_id="p"),
        ev.PatientArrived(event_id=3, time_ms=2.5, patient_id=None),
        ev.TaskQueued(
            event_id="x",
            time_ms=7,
            tick=True,
            task_id="t",
            kind="visit",
            patient_id="p",
            room_id="r",
        ),
    ):
        assert event.to_json() == canonical(event)


def test_every_event_pickles_back_to_itself_with_its_optional_fields():
    events = [
        ev.PatientArrived(event_id="a", time_ms=1, patient_id="p", acuity=1, isolation=True),
        ev.PatientArrived(event_id="b", time_ms=2, patient_id="q"),
        ev.TaskDispatched(
            event_id="d",
            time_ms=3,
            tick=3,
            task_id="t",
            kind="visit",
            patient_id="p",
            room_id="A1",
            staff_id="nurse-1",
            origin="A2",
            reason="the nearest free nurse",
        ),
    ]
    for cls in {**ev.INBOUND, **ev.DECISIONS}.values():
        fields = [f for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING]
        events.append(cls(**{f.name: (7 if f.type in ("int", int) else f.name) for f in fields}))
    for event in events:
        back = pickle.loads(pickle.dumps(event, pickle.HIGHEST_PROTOCOL))
        assert type(back) is type(event) and back == event
