"""Decisions out as HL7: `hospital hl7 listen --send-to` sends a run's decisions as ADT^A02
and A20 to a downstream MLLP listener (python-hl7's asyncio server here, answering AA),
in order, waiting for each ACK; killed (SIGKILL) midway and started again, it goes on where
it was: every message arrives, in order, and at most the one in flight arrives twice,
under its own control id."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import hl7
from hl7.mllp import start_hl7_server

from scheduler import events as ev
from scheduler.hl7.outbound import Outbound

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


class Receiver:
    """A downstream MLLP listener on a thread: keeps each message, answers AA."""

    def __init__(self):
        self.messages: list[str] = []
        self.port = 0
        self.ready, self.stop = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)
        self.thread.start()
        self.ready.wait(10)

    async def _serve(self):
        async def connection(reader, writer):
            try:
                while not reader.at_eof():
                    message = await reader.readmessage()
                    self.messages.append(str(message))
                    writer.writemessage(message.create_ack("AA"))
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                pass

        server = await start_hl7_server(connection, "127.0.0.1", 0)
        async with server:
            self.port = server.sockets[0].getsockname()[1]
            self.ready.set()
            while not self.stop.is_set():
                await asyncio.sleep(0.05)


def ticks_of(record: Path, decisions: Path) -> tuple[list[int], dict, dict]:
    """The run's ticks, their inbound events and their decisions (--record and --out)."""
    inbound: dict[int, list] = {}
    for line in list(record.open())[1:]:
        data = json.loads(line)
        inbound.setdefault(data["tick"], []).append(ev.parse(data))
    decided: dict[int, list] = {}
    for line in decisions.open():
        decision = ev.parse_json(line, ev.DECISIONS)
        decided.setdefault(decision.tick, []).append(decision)
    return sorted(set(inbound) | set(decided)), inbound, decided


def test_a02_and_a20_reach_the_downstream_listener_once_across_a_kill(tmp_path):
    url = f"sqlite:///{tmp_path / 'h.db'}"
    subprocess.run(
        [sys.executable, "-m", "cli", "run", "--speed", "max", "--duration", "4m", "--db", url,
         "--quiet", "--record", "ev.jsonl", "--out", "dec.jsonl"],
        cwd=tmp_path, env=ENV, check=True, capture_output=True,
    )  # fmt: skip
    ticks, inbound, decided = ticks_of(tmp_path / "ev.jsonl", tmp_path / "dec.jsonl")
    outbound = Outbound("unused", [f"{f}{n}" for f in "AB" for n in (1, 2, 3)], 0)
    want = [
        m[0].split(outbound.prefix, 1)[1]  # the control id less the run's prefix
        for t in ticks
        for m in outbound.tick(t, t * 1000, inbound.get(t, []), decided.get(t, []))
    ]
    receiver = Receiver()

    def listen() -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "cli", "hl7", "listen", "--db", url, "--port", "0",
             "--send-to", f"127.0.0.1:{receiver.port}"],
            cwd=tmp_path, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    listener = listen()
    started = time.monotonic()
    while len(receiver.messages) < len(want) // 2:
        assert time.monotonic() - started < 120, len(receiver.messages)
        time.sleep(0.01)
    listener.send_signal(signal.SIGKILL)
    listener.wait()
    listener = listen()
    while len({m for m in receiver.messages}) < len(want) and time.monotonic() - started < 180:
        time.sleep(0.05)
    time.sleep(0.5)  # nothing more comes
    listener.send_signal(signal.SIGTERM)
    listener.wait(timeout=30)
    receiver.stop.set()

    parsed = [hl7.parse(m) for m in receiver.messages]
    ids = [str(p.segment("MSH")(10)) for p in parsed]
    prefix = ids[0][:6]
    unique = list(dict.fromkeys(ids))
    assert [i[len(prefix) :] for i in unique] == want  # every one, in order
    assert len(ids) - len(unique) <= 1  # the one in flight at the kill, if any
    triggers = {str(p.segment("MSH")(9)(1)(2)) for p in parsed}
    assert triggers == {"A02", "A20"}
    codes = {str(p.segment("NPU")(2)) for p in parsed if str(p.segment("MSH")(9)(1)(2)) == "A20"}
    assert codes == {"U", "O", "H"}  # no isolation in this hospital
