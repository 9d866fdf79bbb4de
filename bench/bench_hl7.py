"""ADT messages per second through `hospital hl7 listen` into a live run, and the ACK latency.

    python bench/bench_hl7.py [--mode embedded|kafka|both] [--rate 200] [--seconds 30]
                              [--connections 4]

For each mode, real processes: a run fed only by HL7 (`hospital run --arrivals hl7`, the
embedded one at speed 100 on a fresh SQLite file; `--kafka` at speed 10 on the broker and
the PostgreSQL of KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL, with topics of its own: give it
a database of its own, its tables are reset), the listener on it, and `--connections`
senders (python-hl7's asyncio client, as several registration systems each waiting for its
ACK before the next message) paced to `--rate` messages a second in all. Each message is an
A04 of a new patient, one in ten followed by an A08. Prints what was sent and answered, the
rate sustained, and the ACK latency (from the send to the ACK read, on the sender's side)
p50 / p90 / p99 / max. No target is checked here: it prints figures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from hl7.mllp import open_hl7_connection

ROOT = Path(__file__).resolve().parents[1]


def hospital(*args: str, env: dict, **options) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "cli", *args], cwd=options.pop("cwd"), env=env, **options
    )


def message(n: int, tag: str, trigger: str = "A04", patient: str | None = None) -> bytes:
    patient = patient or f"B{tag}{n:06d}"
    return (
        f"MSH|^~\\&|REG|HOSP|HOSPITAL|SCHEDULER|20261205080000||ADT^{trigger}^ADT_A01|"
        f"{tag}-{trigger}-{n}|P|2.5\rEVN|{trigger}|20261205080000\rPID|||{patient}^^^HOSP^MR\r"
        f"PV1||E\rOBX|1|NM|75636-1^ESI^LN||{1 + n % 5}\r"
    ).encode()


async def sender(
    port: int,
    start: float,
    interval: float,
    offset: int,
    stride: int,
    until: float,
    tag: str,
    latencies: list[float],
    codes: dict[str, int],
) -> None:
    reader, writer = await open_hl7_connection("127.0.0.1", port, limit=1 << 20)
    n = offset
    try:
        while True:
            due = start + n * interval
            now = time.monotonic()
            if due > until:
                return
            if due > now:
                await asyncio.sleep(due - now)
            batch = [message(n, tag)]
            if n % 10 == 0:
                batch.append(message(n, tag, "A08", f"B{tag}{n:06d}"))
            for text in batch:
                sent = time.perf_counter()
                writer.writeblock(text)
                await writer.drain()
                ack = await reader.readblock()
                latencies.append((time.perf_counter() - sent) * 1000)
                code = ack.split(b"MSA|", 1)[1][:2].decode()
                codes[code] = codes.get(code, 0) + 1
            n += stride
    finally:
        writer.close()


async def load(port: int, rate: float, seconds: float, connections: int, tag: str):
    latencies: list[float] = []
    codes: dict[str, int] = {}
    arrivals_rate = rate / 1.1  # one in ten is followed by an A08
    start = time.monotonic() + 0.5
    until = start + seconds
    await asyncio.gather(
        *(
            sender(port, start, 1 / arrivals_rate, k, connections, until, tag, latencies, codes)
            for k in range(connections)
        )
    )
    return latencies, codes, time.monotonic() - start


def wait_for(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench_hl7: {what} not ready in {timeout:.0f} s")
        time.sleep(0.1)


def embedded_ready(path: Path):
    def check() -> bool:
        try:
            with sqlite3.connect(path) as db:
                return bool(db.execute("SELECT count(*) FROM hl7_intake WHERE open").fetchone()[0])
        except sqlite3.Error:
            return False

    return check


def kafka_ready(url: str):
    from sqlalchemy import create_engine, text

    engine = create_engine(url)

    def check() -> bool:
        try:
            with engine.connect() as db:
                epoch = db.execute(text("SELECT epoch_s FROM runs")).scalar()
            return epoch is not None and epoch < time.time()
        except Exception:  # noqa: BLE001 - not there yet
            return False

    return check


def measure(mode: str, args: argparse.Namespace) -> None:
    tag = uuid.uuid4().hex[:6]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        duration = args.seconds + 60
        if mode == "embedded":
            url = f"sqlite:///{work / 'run.db'}"
            speed, extra, ready = "100", [], embedded_ready(work / "run.db")
        else:
            url = os.environ.get("DATABASE_URL", "")
            if not url or not os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
                raise SystemExit(
                    "bench_hl7 --mode kafka: set KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL"
                )
            for topic in ("INBOUND", "DECISIONS", "DEAD_LETTER"):
                env[f"HOSPITAL_KAFKA_{topic}_TOPIC"] = f"bench-hl7-{tag}.{topic.lower()}"
            env["HOSPITAL_KAFKA_DISPATCH_TOPIC_PREFIX"] = f"bench-hl7-{tag}.dispatch."
            speed, extra, ready = (
                "10",
                ["--kafka", "--workers", "porter=1,medical=1,cleaner=1"],
                kafka_ready(url),
            )
        subprocess.run(
            [sys.executable, "-m", "cli", "db", "upgrade", "--db", url],
            env=env,
            check=True,
            capture_output=True,
        )
        seconds = int(duration * float(speed))
        run = hospital(
            "run",
            *extra,
            "--arrivals",
            "hl7",
            "--speed",
            speed,
            "--duration",
            f"{seconds}s",
            "--db",
            url,
            "--quiet",
            cwd=work,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(work / "run.err", "w"),  # noqa: SIM115 - closed with the process
        )
        listener = None
        try:
            wait_for(ready, 120, "the run")
            listen = ["hl7", "listen", "--db", url, "--port", "0"] + (
                ["--kafka"] if mode == "kafka" else []
            )
            listener = hospital(
                *listen,
                cwd=work,
                env=env,
                stdout=subprocess.PIPE,
                stderr=open(work / "listener.err", "w"),  # noqa: SIM115
                text=True,
            )
            port = int(listener.stdout.readline().split()[1])
            latencies, codes, wall = asyncio.run(
                load(port, args.rate, args.seconds, args.connections, tag)
            )
        finally:
            if listener is not None:
                listener.terminate()
                listener.wait(timeout=30)
            run.terminate()
            run.wait(timeout=120)
    latencies.sort()
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    print(
        f"{mode}: {len(latencies)} messages in {wall:.1f} s over {args.connections} connections "
        f"= {len(latencies) / wall:.0f} a second (asked {args.rate:g}); "
        f"{', '.join(f'{c} {n}' for c, n in sorted(codes.items()))}; "
        f"ACK latency ms p50 {q[49]:.1f}, p90 {q[89]:.1f}, p99 {q[98]:.1f}, max {latencies[-1]:.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("embedded", "kafka", "both"), default="both")
    parser.add_argument("--rate", type=float, default=200.0, help="messages a second in all")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--connections", type=int, default=4)
    args = parser.parse_args()
    for mode in ("embedded", "kafka") if args.mode == "both" else (args.mode,):
        measure(mode, args)


if __name__ == "__main__":
    main()
