"""The HL7 listener beside a distributed run, end to end on the real broker and PostgreSQL:
`hospital run --kafka --arrivals hl7` (no generator), `hospital hl7 listen --kafka`, and
python-hl7's `mllp_send` sending the first 1,000 recorded ADT messages, then again a part
of them (as a sender does with what it has no ACK for).

Every message is ACKed as its manifest says, after the broker took its event (acks=all);
every accepted arrival is applied once and decided once (or withdrawn); a message sent
again applies nothing more; the bad messages are on the dead-letter topic with their text;
`hospital solve` of the run's record gives its decisions byte for byte."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.e2e.conftest import child_env, jsonl_lines

pytestmark = pytest.mark.services
ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "hl7"
FRAME = re.compile(rb"\x0b(.*?)\x1c\r", re.S)
SENT = 1000


def mllp_send(messages: list[bytes], port: int, cwd: Path) -> list[bytes]:
    batch = cwd / "batch.hl7"
    batch.write_bytes(b"".join(m + b"\x1c\r" for m in messages))
    done = subprocess.run(
        [sys.executable, "-m", "hl7.client", "-p", str(port), "-f", str(batch), "127.0.0.1"],
        capture_output=True,
        timeout=300,
    )
    return FRAME.findall(done.stdout)


def field(ack: bytes, segment: str, number: int) -> str:
    for line in ack.decode().split("\r"):
        parts = line.split("|")
        if parts[0] == segment:
            return parts[number] if number < len(parts) else ""
    return ""


def dead_letters(config) -> list[dict]:
    from scheduler.distributed import bus

    consumer = bus.consumer(config)
    try:
        from kafka import TopicPartition

        part = TopicPartition(config.kafka.dead_letter_topic, 0)
        consumer.assign([part])
        consumer.seek_to_beginning(part)
        end = consumer.end_offsets([part])[part]
        letters: list[dict] = []
        deadline = time.monotonic() + 30
        while consumer.position(part) < end and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                letters += [json.loads(r.value) for r in records]
        return letters
    finally:
        consumer.close()


def test_recorded_adt_messages_to_a_distributed_run(tmp_path, topics, database):
    messages = [m for m in (FIXTURES / "adt_2000.hl7").read_bytes().split(b"\x1c\r") if m][:SENT]
    expected = [json.loads(line) for line in (FIXTURES / "adt_2000.expected.jsonl").open()][:SENT]
    env = child_env(topics.env)
    url = database.url
    run = subprocess.Popen(
        [sys.executable, "-m", "cli", "run", "--kafka", "--arrivals", "hl7", "--speed", "10",
         "--duration", "5m", "--db", url, "--record", "ev.jsonl", "--out", "dec.jsonl", "-q"],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    started = time.monotonic()
    while True:  # the run's clock has started
        assert time.monotonic() - started < 90, "the distributed run did not start"
        try:
            with engine.connect() as db:
                epoch = db.execute(text("SELECT epoch_s FROM runs")).scalar()
            if epoch is not None and epoch < time.time():
                break
        except Exception:  # noqa: BLE001 - the tables are not there yet
            pass
        time.sleep(0.2)
    listener = subprocess.Popen(
        [sys.executable, "-m", "cli", "hl7", "listen", "--kafka", "--db", url, "--port", "0"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert listener.stdout is not None
    port = int(listener.stdout.readline().split()[1])
    acks = mllp_send(messages, port, tmp_path)
    again = mllp_send(messages[600:700], port, tmp_path)  # sent again: applied once
    listener.send_signal(signal.SIGTERM)
    assert listener.wait(timeout=30) == 0
    assert run.wait(timeout=240) == 0, run.stderr.read() if run.stderr else ""
    engine.dispose()

    assert len(acks) == SENT and len(again) == 100
    answered = []
    for ack, want in zip(acks, expected):
        code, error = field(ack, "MSA", 1), field(ack, "ERR", 3).split("^")[0]
        answered.append(code)
        if want["expect"] == "AA|late":
            assert code == "AA" or (error == "207" and b"too late" in ack), (want, ack)
        else:
            assert (code, error or None) == (
                want["expect"],
                str(want["error"]) if want["error"] else None,
            ), (want, ack)
    for first, repeat in zip(acks[600:700], again):
        assert field(repeat, "MSA", 1) == field(first, "MSA", 1)

    record = jsonl_lines(tmp_path / "ev.jsonl")[1:]
    decisions = jsonl_lines(tmp_path / "dec.jsonl")
    accepted = {
        (w["trigger"], w["patient_id"])
        for w, code in zip(expected, answered)
        if code == "AA" and w["repeat_of"] is None
    }
    arrivals = [e["patient_id"] for e in record if e["type"] == "patient.arrived"]
    assert sorted(arrivals) == sorted(p for t, p in accepted if t in ("A01", "A04"))
    assert len({e["event_id"] for e in record}) == len(record)
    letters = dead_letters(topics.config)
    late = {
        json.loads(letter["message"])["patient_id"]
        for letter in letters
        if letter["origin"] == "scheduler" and "too late" in letter["reason"]
    }
    for kind, trigger in (("patient.updated", "A08"), ("patient.withdrawn", "A11")):
        applied = {e["patient_id"] for e in record if e["type"] == kind}
        # accepted by the listener: applied in the arrival's tick, or (a race of a tick)
        # found too late by the scheduler and dead-lettered with the reason
        assert applied | late >= {p for t, p in accepted if t == trigger}
        assert not applied & late
    tick_of = {(e["type"], e["patient_id"]): e["tick"] for e in record if "patient_id" in e}
    for (kind, patient), tick in tick_of.items():
        if kind.startswith("patient."):
            assert tick == tick_of["patient.arrived", patient]
    withdrawn = {e["patient_id"] for e in record if e["type"] == "patient.withdrawn"}
    decided = Counter(
        d["patient_id"] for d in decisions if d["type"] in ("patient.admitted", "patient.referred")
    )
    assert set(decided) == set(arrivals) - withdrawn and set(decided.values()) == {1}
    from_hl7 = [letter for letter in letters if letter["origin"] == "hl7"]
    refused = [
        w for w, code in zip(expected, answered)
        if code != "AA" and not (w["error"] == 205 and w["repeat_of"] is not None)
        and not (w["repeat_of"] is not None and w["control_id"])
    ]  # fmt: skip
    assert len(from_hl7) == len(refused)
    assert all(letter["message"].startswith(("MSH|", "PATIENT")) for letter in from_hl7)

    done = subprocess.run(
        [sys.executable, "-m", "cli", "solve", "ev.jsonl", "--out", "again.jsonl"],
        cwd=tmp_path, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "again.jsonl").read_bytes() == (tmp_path / "dec.jsonl").read_bytes()
