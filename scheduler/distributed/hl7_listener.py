"""`hospital hl7 listen`: an MLLP server (python-hl7's asyncio streams, TLS optional) that
takes ADT messages for the live run and answers each with an HL7 ACK once what it makes is
kept for good.

Each connection's messages are answered in order. A worker thread takes the messages of
every connection waiting at the time as one batch (a group commit): it reads and maps them
(`scheduler.hl7.mapping`), judges them against the ledger, keeps them and only then lets
the connections send their ACKs:

- embedded (`EmbeddedIntake`): in the run's database, one transaction a batch, which the
  run takes from at each tick (`scheduler.db.hl7`); the commit waits for the disk;
- distributed (`KafkaIntake`): the events to the inbound topic and the dead letters to the
  dead-letter topic, acknowledged by the broker (acks=all), then the ledger's rows in
  PostgreSQL. Killed between the two, the sender sends again what was not acknowledged: the
  same event id, which the scheduler applies once.

A message the listener cannot keep now (no run takes messages, the broker or the database
failed) gets AR and is not recorded: sent again later, it is taken then.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol

from scheduler.config import Config
from scheduler.hl7.mapping import (
    APPLICATION_ERROR,
    Answer,
    Fields,
    Reading,
    ack,
    judge,
    read,
)

log = logging.getLogger("hospital.hl7")
MAX_BATCH = 500
MAX_MESSAGE = 1 << 20  # bytes: an ADT message is a few hundred


class Intake(Protocol):
    """Keeps a batch of messages for good (or none of it), and answers each."""

    def accept(self, readings: list[Reading]) -> list[Answer]: ...

    def close(self) -> None: ...


def require_tables(engine: Any) -> None:
    """`StoreError` (one line, exit 3) for a database without the listener's tables."""
    from sqlalchemy import inspect

    from scheduler.db.store import StoreError, safe_url

    if not inspect(engine).has_table("hl7_messages"):
        engine.dispose()
        raise StoreError(
            f"no HL7 tables in {safe_url(str(engine.url))}: run hospital db upgrade "
            f"(or start the run first, which migrates the database)"
        )


def try_again(text: str) -> Answer:
    """An answer for a message that could not be kept now: AR, not recorded, so that the
    sender's retry is taken."""
    return Answer("AR", APPLICATION_ERROR, text)


def keeps(answer: Answer) -> bool:
    """Whether an answer is recorded: all but a repeat's (the first is kept)."""
    return not answer.repeat


class EmbeddedIntake:
    """Messages for the embedded run that takes them (`hospital run --arrivals hl7`), kept
    in its database: the ledger is the run's inbox."""

    def __init__(self, url: str):
        from scheduler.db.hl7 import listener_engine

        self.engine = listener_engine(url)
        require_tables(self.engine)

    def accept(self, readings: list[Reading]) -> list[Answer]:
        from sqlalchemy import select
        from sqlalchemy.exc import SQLAlchemyError

        from scheduler.db.hl7 import Hl7Intake, SqlLedger

        try:
            with self.engine.begin() as db:
                run_id = db.execute(
                    select(Hl7Intake.run_id)
                    .where(Hl7Intake.open.is_(True))
                    .order_by(Hl7Intake.opened_at.desc())
                ).scalar()
                if run_id is None:
                    return [
                        try_again("no run takes HL7 messages now (hospital run --arrivals hl7)")
                    ] * len(readings)
                ledger = SqlLedger(db, run_id, embedded=True)
                ledger.load(readings)
                answers = []
                for reading in readings:
                    answer = judge(reading, ledger)
                    if keeps(answer):
                        ledger.record(reading, answer)
                    answers.append(answer)
                ledger.write()
                return answers
        except SQLAlchemyError as exc:
            log.warning("the database failed: %s", str(exc).splitlines()[0])
            return [try_again("the database failed: send it again")] * len(readings)

    def close(self) -> None:
        self.engine.dispose()


class KafkaIntake:
    """Messages for the distributed run the database holds: events to the inbound topic,
    dead letters to theirs, then the ledger in the database."""

    RUN_EVERY_S = 1.0

    def __init__(self, config: Config, url: str):
        from scheduler.db.store import connect
        from scheduler.distributed import bus

        self.config = config
        self.engine = connect(url)
        require_tables(self.engine)
        bus.ensure_topics(config)
        self.producer = _producer(config)
        self._run: tuple[str, Any, int | None] | None = None
        self._run_at = 0.0

    def current_run(self, db: Any) -> tuple[str, Any, int | None] | None:
        """The run the database holds (id, clock, end), looked up at most every second."""
        from sqlalchemy import select

        from scheduler.db.models import Run
        from scheduler.distributed.clock import LiveClock

        if time.monotonic() >= self._run_at:
            row = db.execute(select(Run.run_id, Run.epoch_s, Run.speed, Run.until_ms)).first()
            self._run = (
                None
                if row is None
                else (row.run_id, LiveClock(row.epoch_s, row.speed), row.until_ms)
            )
            self._run_at = time.monotonic() + self.RUN_EVERY_S
        return self._run

    def accept(self, readings: list[Reading]) -> list[Answer]:
        from sqlalchemy.exc import SQLAlchemyError

        from scheduler.db.hl7 import SqlLedger
        from scheduler.distributed import bus

        try:
            with self.engine.begin() as db:
                run = self.current_run(db)
                if run is None:
                    return [try_again("no run in the database: start one first")] * len(readings)
                run_id, clock, until_ms = run
                now_ms = max(0, clock.now_ms())
                if until_ms is not None and now_ms > until_ms:
                    return [try_again(f"run {run_id} is over")] * len(readings)
                ledger = SqlLedger(db, run_id, embedded=False)
                ledger.load(readings)
                outbox = bus.Outbox(self.producer, bus.headers(run_id, "hl7"))
                answers = []
                for reading in readings:
                    answer = judge(reading, ledger, now_ms)
                    if keeps(answer):
                        ledger.record(reading, answer)
                        self._send(outbox, reading, answer)
                    answers.append(answer)
                ledger.write()
                outbox.flush()  # acks=all: on every replica before the commit and the ACKs
                return answers
        except bus.BusError as exc:
            log.warning("the broker did not take a batch: %s", exc)
            return [try_again("the broker did not take it: send it again")] * len(readings)
        except SQLAlchemyError as exc:
            log.warning("the database failed: %s", str(exc).splitlines()[0])
            return [try_again("the database failed: send it again")] * len(readings)

    def _send(self, outbox: Any, reading: Reading, answer: Answer) -> None:
        from scheduler.distributed import bus

        kafka = self.config.kafka
        if answer.event is not None:
            outbox.send_event(kafka.inbound_topic, answer.event)
        else:
            key = reading.header.control_id.encode() if reading.header else None
            letter = bus.dead_letter(reading.raw.encode(), answer.text, "hl7")
            outbox.send(kafka.dead_letter_topic, key, letter)

    def close(self) -> None:
        from scheduler.distributed import bus

        bus.close_producer(self.producer)
        self.engine.dispose()


def _producer(config: Config) -> Any:
    """An idempotent producer acknowledged by all replicas that sends at once (no linger):
    each batch is waited for before its ACKs go out."""
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    from scheduler.distributed import bus

    try:
        return KafkaProducer(
            **bus.client_options(config), acks="all", linger_ms=0, max_block_ms=15000
        )
    except KafkaError as exc:
        raise bus.BusError(
            f"Kafka broker unreachable at {config.kafka.bootstrap_servers}: {exc}"
        ) from None


# --- the batching worker ----------------------------------------------------------------------


@dataclass
class Counts:
    by_code: Counter[str] = field(default_factory=Counter)
    batches: int = 0


class Worker:
    """One thread that reads, judges and keeps the messages waiting, as batches."""

    def __init__(self, intake: Intake, fields: Fields):
        self.intake, self.fields = intake, fields
        self.queue: queue.Queue[tuple[str, Future[str]] | None] = queue.Queue()
        self.counts = Counts()
        self.thread = threading.Thread(target=self._run, name="hl7-intake", daemon=True)
        self.thread.start()

    def submit(self, raw: str) -> Future[str]:
        """The ACK of one message, once its batch is kept."""
        done: Future[str] = Future()
        self.queue.put((raw, done))
        return done

    def stop(self) -> None:
        self.queue.put(None)
        self.thread.join(timeout=30)

    def _run(self) -> None:
        while True:
            first = self.queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < MAX_BATCH:
                try:
                    item = self.queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self.queue.put(None)  # stop after this batch
                    break
                batch.append(item)
            self._answer(batch)

    def _answer(self, batch: list[tuple[str, Future[str]]]) -> None:
        readings = [read(raw, self.fields) for raw, _ in batch]
        try:
            answers = self.intake.accept(readings)
        except Exception as exc:  # noqa: BLE001 - any failure: the senders try again
            log.exception("a batch failed")
            answers = [
                try_again(f"the listener failed ({type(exc).__name__}): send it again")
            ] * len(batch)
        self.counts.batches += 1
        for (_, done), reading, answer in zip(batch, readings, answers):
            self.counts.by_code[answer.code] += 1
            done.set_result(ack(reading, answer))


# --- the MLLP server --------------------------------------------------------------------------


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


class Listener:
    """The MLLP server: each connection's messages in order, each answered with its ACK
    once kept. `serve` runs until `stop` is set."""

    def __init__(
        self,
        worker: Worker,
        host: str,
        port: int,
        tls: ssl.SSLContext | None = None,
        on_ready: Callable[[str, int], None] = lambda host, port: None,
    ):
        self.worker, self.host, self.port, self.tls = worker, host, port, tls
        self.on_ready = on_ready
        self.stop = threading.Event()

    def serve(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        from hl7.mllp import start_hl7_server

        server = await start_hl7_server(
            self._connection, self.host, self.port, limit=MAX_MESSAGE, ssl=self.tls
        )
        async with server:
            bound = server.sockets[0].getsockname()
            self.on_ready(bound[0], bound[1])
            while not self.stop.is_set():
                await asyncio.sleep(0.1)

    async def _connection(self, reader: Any, writer: Any) -> None:
        peer = writer.get_extra_info("peername")
        try:
            while not reader.at_eof():
                try:
                    block = await reader.readblock()
                except asyncio.IncompleteReadError:
                    return  # the sender closed the connection
                except Exception as exc:  # noqa: BLE001 - a frame that is not MLLP: hang up
                    log.warning("%s: not an MLLP frame (%s): closing the connection", peer, exc)
                    return
                raw = block.decode("utf-8", errors="replace")
                answer = await asyncio.wrap_future(self.worker.submit(raw))
                writer.writeblock(answer.encode("utf-8"))
                await writer.drain()
        except (ConnectionError, ssl.SSLError) as exc:
            log.info("%s: connection lost: %s", peer, exc)
        finally:
            writer.close()
