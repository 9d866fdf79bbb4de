"""The HL7 listener beside a live embedded run, end to end with real processes: `hospital run
--arrivals hl7` at speed 100 (48 s), `hospital hl7 listen` on its SQLite file, and python-hl7's
`mllp_send` (a client the project did not write) sending the 2,000 recorded ADT messages
(tests/fixtures/hl7, made with hl7apy). The listener is killed (SIGKILL) mid-stream and
started again; the client sends again what was not acknowledged.

Then: every message has one ACK with the code its manifest says (an update or withdrawal
right after its arrival: applied in the arrival's tick, or too late; long after it: too late,
for nine in ten at least, the others applied in the arrival's tick); a message sent again
is answered as the first time and applied once; every well-formed arrival is decided once
(or withdrawn); the bad messages are dead-lettered with their text; `hospital solve` of the
record and of the run's export gives the run's decisions byte for byte.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from scheduler.hl7.mapping import APPLICATION_ERROR

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "hl7"
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
FRAME = re.compile(rb"\x0b(.*?)\x1c\r", re.S)


def hospital(*args: str, cwd: Path, **options) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "cli", *args], cwd=cwd, env=ENV, text=True, **options
    )


def start_listener(cwd: Path, url: str, port: int = 0) -> tuple[subprocess.Popen, int]:
    listener = hospital(
        "hl7",
        "listen",
        "--db",
        url,
        "--port",
        str(port),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=open(cwd / "listener.err", "a"),  # noqa: SIM115 - closed with the process
    )
    assert listener.stdout is not None
    line = listener.stdout.readline()  # "port N" once it listens
    assert line.startswith("port "), line
    return listener, int(line.split()[1])


def mllp_send(messages: list[bytes], port: int, cwd: Path) -> list[bytes]:
    """python-hl7's own client: the ACKs it read back, each whole."""
    batch = cwd / "batch.hl7"
    batch.write_bytes(b"".join(m + b"\x1c\r" for m in messages))
    sent = subprocess.run(
        [sys.executable, "-m", "hl7.client", "-p", str(port), "-f", str(batch), "127.0.0.1"],
        capture_output=True,
        timeout=300,
    )
    return FRAME.findall(sent.stdout)


def field(ack: bytes, segment: str, number: int) -> str:
    for line in ack.decode().split("\r"):
        parts = line.split("|")
        if parts[0] == segment:
            return parts[number] if number < len(parts) else ""
    return ""


@pytest.mark.slow  # a minute of a live run: the full suite's, not the quick loop's
def test_2000_recorded_adt_messages_to_a_live_run_with_the_listener_killed_midway(tmp_path):
    messages = [m for m in (FIXTURES / "adt_2000.hl7").read_bytes().split(b"\x1c\r") if m]
    expected = [json.loads(line) for line in (FIXTURES / "adt_2000.expected.jsonl").open()]
    assert len(messages) == len(expected) == 2000
    url = f"sqlite:///{tmp_path / 'run.db'}"
    subprocess.run(
        [sys.executable, "-m", "cli", "db", "upgrade", "--db", url],
        env=ENV,
        check=True,
        capture_output=True,
    )
    run = hospital(
        "run",
        "--arrivals",
        "hl7",
        "--speed",
        "100",
        "--duration",
        "80m",
        "--db",
        url,
        "--quiet",
        "--record",
        "ev.jsonl",
        "--out",
        "dec.jsonl",
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    database = sqlite3.connect(tmp_path / "run.db")
    started = time.monotonic()
    while not database.execute("SELECT count(*) FROM hl7_intake WHERE open").fetchone()[0]:
        assert time.monotonic() - started < 60, "the run did not open its intake"
        time.sleep(0.05)  # before: AR, no run takes messages
    listener, port = start_listener(tmp_path, url)
    # The first part, the listener killed once 700 messages are kept.
    first = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hl7.client",
            "-p",
            str(port),
            "-f",
            str(FIXTURES / "adt_2000.hl7"),
            "127.0.0.1",
        ],
        stdout=open(tmp_path / "acks.out", "wb"),  # noqa: SIM115 - closed with the process
        stderr=subprocess.DEVNULL,
    )
    while database.execute("SELECT count(*) FROM hl7_messages").fetchone()[0] < 700:
        assert time.monotonic() - started < 120, "the listener kept too few messages"
        time.sleep(0.02)
    listener.send_signal(signal.SIGKILL)
    listener.wait()
    first.wait(timeout=60)
    acks = FRAME.findall((tmp_path / "acks.out").read_bytes())
    assert 700 <= len(acks) < 2000
    # Started again on the same port; the client sends again from the first not ACKed.
    listener, _ = start_listener(tmp_path, url, port)
    acks += mllp_send(messages[len(acks) :], port, tmp_path)
    listener.send_signal(signal.SIGTERM)
    assert listener.wait(timeout=30) == 0
    assert run.wait(timeout=120) == 0, run.stderr.read() if run.stderr else ""

    # One ACK each, as the manifest says.
    assert len(acks) == 2000
    answered, long_after = [], []
    for ack, want in zip(acks, expected):
        code, error = field(ack, "MSA", 1), field(ack, "ERR", 3).split("^")[0]
        assert field(ack, "MSA", 2) == want["control_id"], (want, ack)
        answered.append(code)
        # Long after its arrival, a change is too late unless the run, held up (its ticks
        # wait for SQLite's write lock under the stream), had not yet taken the arrival:
        # then it is applied in the arrival's tick, as checked below.
        if want["expect"] == "AA|late" or want["error"] == APPLICATION_ERROR:
            assert code == "AA" or (error == "207" and b"too late" in ack), (want, ack)
            if want["expect"] != "AA|late":
                long_after.append(code)
        else:
            assert code == want["expect"], (want, ack)
            assert (error or None) == (str(want["error"]) if want["error"] else None), (want, ack)
    assert long_after.count("AE") >= 0.9 * len(long_after) > 0, Counter(long_after)
    for want, code in zip(expected, answered):  # again: as the first time
        if want["repeat_of"] is not None and want["error"] != 205:
            assert code == answered[want["repeat_of"]], want

    # What the run applied: every accepted arrival once, each decided once or withdrawn.
    record = [json.loads(line) for line in (tmp_path / "ev.jsonl").open()][1:]
    decisions = [json.loads(line) for line in (tmp_path / "dec.jsonl").open()]
    accepted = {
        (w["trigger"], w["patient_id"]): n
        for n, (w, code) in enumerate(zip(expected, answered))
        if code == "AA" and w["repeat_of"] is None
    }
    arrivals = [e["patient_id"] for e in record if e["type"] == "patient.arrived"]
    assert sorted(arrivals) == sorted(p for (t, p) in accepted if t in ("A01", "A04"))
    assert len(set(e["event_id"] for e in record)) == len(record)  # nothing applied twice
    withdrawn = {e["patient_id"] for e in record if e["type"] == "patient.withdrawn"}
    assert withdrawn == {p for (t, p) in accepted if t == "A11"}
    assert {e["patient_id"] for e in record if e["type"] == "patient.updated"} == {
        p for (t, p) in accepted if t == "A08"
    }
    tick_of = {
        (e["type"], e["patient_id"]): e["tick"] for e in record if e["type"].startswith("patient.")
    }
    for (kind, patient), tick in tick_of.items():  # in the tick of the arrival, before it
        assert tick == tick_of["patient.arrived", patient], (kind, patient)
    decided = Counter(
        d["patient_id"] for d in decisions if d["type"] in ("patient.admitted", "patient.referred")
    )
    assert set(decided) == set(arrivals) - withdrawn and set(decided.values()) == {1}

    # The bad messages are dead letters: kept with their text and the reason.
    dead = set(
        database.execute(
            "SELECT control_id, code FROM hl7_messages WHERE code != 'AA' AND message IS NOT NULL"
        ).fetchall()
    )
    for want, code in zip(expected, answered):
        reused = want["error"] == 205 and want["repeat_of"] is not None  # not kept: a repeat
        if code != "AA" and not reused:
            assert (want["control_id"] or None, code) in dead, want
    database.close()

    # Replays: the record, and the run's export, give its decisions byte for byte.
    subprocess.run(
        [sys.executable, "-m", "cli", "solve", "ev.jsonl", "--out", "again.jsonl"],
        cwd=tmp_path,
        env=ENV,
        check=True,
    )
    assert (tmp_path / "again.jsonl").read_bytes() == (tmp_path / "dec.jsonl").read_bytes()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "cli",
            "export",
            "--db",
            url,
            "--events",
            "x.jsonl",
            "--out",
            "xdec.jsonl",
        ],
        cwd=tmp_path,
        env=ENV,
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [sys.executable, "-m", "cli", "solve", "x.jsonl", "--out", "xagain.jsonl"],
        cwd=tmp_path,
        env=ENV,
        check=True,
    )
    assert (tmp_path / "xagain.jsonl").read_bytes() == (tmp_path / "dec.jsonl").read_bytes()
