"""The ADT mapping, the judging against the ledger and the ACKs, without a network or a
database; the ACKs are read back with python-hl7's parser."""

from __future__ import annotations

import hl7
import pytest

from scheduler import events as ev
from scheduler.config import Config, ConfigError
from scheduler.hl7.fields import FieldError, parse_spec
from scheduler.hl7.mapping import Fields, KnownArrival, Prior, ack, judge, read

FIELDS = Fields.of(Config().hl7)


def adt(trigger="A04", control="C1", pid="MRN1^^^HOSP^MR", obx=(), version="2.5", kind="ADT"):
    segments = [
        f"MSH|^~\\&|REG|HOSP|HOSPITAL|SCHED|20261205080000||{kind}^{trigger}|{control}|P|{version}",
        f"EVN|{trigger}|20261205080000||||20261205075900",
        f"PID|||{pid}",
        "PV1||E",
    ]
    segments += [f"OBX|{n}|ST|{code}||{value}" for n, (code, value) in enumerate(obx, 1)]
    return "\r".join(segments)


class FakeLedger:
    def __init__(self, priors=None, arrivals=None):
        self.priors, self.arrivals = priors or {}, arrivals or {}

    def prior(self, sender, control_id):
        return self.priors.get((sender, control_id))

    def arrival(self, patient_id):
        return self.arrivals.get(patient_id)


@pytest.mark.parametrize(
    "value, acuity",
    [("2", 2), ("ESI-1", 1), ("esi 4", 4), ("LA21755-6", 5), ("", 3)],
)
def test_the_esi_level_in_its_spellings(value, acuity):
    reading = read(adt(obx=[("75636-1^ESI^LN", value)] if value else []), FIELDS)
    assert reading.request is not None and reading.request.acuity == acuity


@pytest.mark.parametrize("value, isolation", [("Y", True), ("contact", True), ("N", False)])
def test_isolation(value, isolation):
    reading = read(adt(obx=[("ISOLATION", value)]), FIELDS)
    assert reading.request is not None and reading.request.isolation is isolation


@pytest.mark.parametrize(
    "message, code, error",
    [
        (adt(obx=[("75636-1", "ESI-9")]), "AE", 103),
        (adt(obx=[("ISOLATION", "MAYBE")]), "AE", 103),
        (adt(pid=""), "AE", 101),
        (adt(pid="X" * 65), "AE", 102),
        (adt(trigger="A03"), "AR", 201),
        (adt(kind="ORU"), "AR", 200),
        (adt(control=""), "AR", 101),
        (adt(version="3.0"), "AR", 203),
        ("PID|||MRN1", "AR", 100),
        ("", "AR", 100),
    ],
)
def test_what_cannot_be_applied_and_why(message, code, error):
    reading = read(message, FIELDS)
    answer = judge(reading, FakeLedger())
    assert (answer.code, answer.error, answer.event) == (code, error, None)
    parsed = hl7.parse(ack(reading, answer))
    assert str(parsed.segment("MSA")(1)) == code
    assert str(parsed.segment("ERR")(3)).split("^")[0] == str(error)
    assert str(parsed.segment("MSA")(3)) == answer.text.replace("|", "\\F\\")


def test_an_arrival_keeps_its_control_id_and_its_own_time():
    answer = judge(read(adt(obx=[("75636-1", "1")]), FIELDS), FakeLedger(), time_ms=5000)
    event = answer.event
    assert isinstance(event, ev.PatientArrived) and answer.code == "AA"
    assert (event.patient_id, event.acuity, event.time_ms) == ("MRN1", 1, 5000)
    assert (event.control_id, event.message_time) == ("C1", "20261205075900")  # EVN-6
    again = judge(read(adt(obx=[("75636-1", "1")]), FIELDS), FakeLedger(), time_ms=9000)
    assert again.event is not None and again.event.event_id == event.event_id  # applied once


def test_an_update_or_withdrawal_takes_its_arrivals_time_until_it_is_decided():
    waiting = KnownArrival("hl7-a", 7000, decided=False, withdrawn=False)
    update = judge(read(adt("A08", "C2"), FIELDS), FakeLedger(arrivals={"MRN1": waiting}), 9000)
    assert isinstance(update.event, ev.PatientUpdated) and update.event.time_ms == 7000
    cancel = judge(read(adt("A11", "C3"), FIELDS), FakeLedger(arrivals={"MRN1": waiting}))
    assert isinstance(cancel.event, ev.PatientWithdrawn)
    decided = KnownArrival("hl7-a", 7000, decided=True, withdrawn=False)
    late = judge(read(adt("A08", "C4"), FIELDS), FakeLedger(arrivals={"MRN1": decided}))
    assert (late.code, late.error) == ("AE", 207) and "too late" in late.text
    unknown = judge(read(adt("A11", "C5"), FIELDS), FakeLedger())
    assert (unknown.code, unknown.error) == ("AE", 204)
    twice = judge(read(adt("A01", "C6"), FIELDS), FakeLedger(arrivals={"MRN1": waiting}))
    assert (twice.code, twice.error) == ("AE", 205)


def test_a_control_id_seen_before_is_answered_as_then_and_applies_nothing():
    reading = read(adt(), FIELDS)
    prior = Prior("AA", None, "", reading.digest)
    same = judge(reading, FakeLedger(priors={("REG^HOSP", "C1"): prior}))
    assert (same.code, same.repeat, same.event) == ("AA", True, None)
    other = Prior("AA", None, "", "another digest")
    reused = judge(reading, FakeLedger(priors={("REG^HOSP", "C1"): other}))
    assert (reused.code, reused.error, reused.repeat) == ("AE", 205, True)


def test_the_patient_id_field_is_configurable():
    fields = Fields.of(Config().replace(hl7={"patient_id_field": "PV1-19"}).hl7)
    reading = read(adt().replace("PV1||E", "PV1||E" + "|" * 17 + "VISIT42"), fields)
    assert reading.request is not None and reading.request.patient_id == "VISIT42"


def test_field_specs_and_the_config_check_them():
    assert str(parse_spec("OBX[75636-1]")) == "OBX[75636-1]" and parse_spec("") is None
    assert str(parse_spec("PV1-19.2")) == "PV1-19.2"
    for bad in ("PID3", "PV2[X]", "pid-3"):
        with pytest.raises(FieldError):
            parse_spec(bad)
    with pytest.raises(ConfigError, match="hl7.acuity_field"):
        Config().replace(hl7={"acuity_field": "ESI"})
    with pytest.raises(ConfigError, match="hl7.patient_id_field"):
        Config().replace(hl7={"patient_id_field": ""})
    with pytest.raises(ConfigError, match="hl7.tls_cert"):
        Config().replace(hl7={"tls_cert": "cert.pem"})
    with pytest.raises(ConfigError, match="isolation_yes too"):
        Config().replace(hl7={"isolation_no": ["Y"]})
