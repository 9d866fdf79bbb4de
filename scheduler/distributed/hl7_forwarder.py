"""`hospital hl7 listen --send-to HOST:PORT`: the run's decisions as ADT^A02 and A20
(`scheduler.hl7.outbound`) to a downstream MLLP listener, following the run's ticks in its
database (the embedded run's, or the distributed run's PostgreSQL).

Each message waits for the downstream ACK before the next (in order, as MLLP senders do);
a connection that fails, a timeout or an AR is retried with a growing delay (0.25 s to
4 s), the same message; an AE (the receiver refuses its content) is logged and passed. How
far it has come is kept in the database (`hl7_outbound`) after each ACK: started again, it
goes on from there. A message is sent again only if the process died between the ACK and
that write, under the same control id (MSH-10), which a receiver that keeps its control
ids, as HL7 asks, applies once.
"""

from __future__ import annotations

import logging
import socket
import threading
from typing import Any

from sqlalchemy import insert, select, text, update
from sqlalchemy.exc import SQLAlchemyError

from scheduler import events as ev
from scheduler.config import Config
from scheduler.db.hl7 import Hl7Outbound
from scheduler.hl7.outbound import Outbound
from scheduler.layout import Layout

log = logging.getLogger("hospital.hl7.forward")
POLL_S = 0.25
MAX_TICKS = 2000  # read at a time
TIMEOUT_S = 10


class Forwarder:
    def __init__(self, config: Config, url: str, destination: str, stop: threading.Event):
        from scheduler.db.store import connect

        self.config, self.destination, self.stop = config, destination, stop
        host, _, port = destination.rpartition(":")
        self.address = (host, int(port))
        self.engine = connect(url)
        self.rooms = list(Layout(config).rooms)
        self.tick_ms = round(config.scheduler.tick_s * 1000)
        self.run_id: str | None = None
        self.outbound: Outbound | None = None
        self.cursor = (-1, 0)  # (tick, messages of it sent)
        self.fed = -1
        self.connection: socket.socket | None = None
        self.delivered = 0
        self.thread = threading.Thread(target=self._serve, name="hl7-forward", daemon=True)

    def start(self) -> Forwarder:
        self.thread.start()
        return self

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                self.follow()
            except SQLAlchemyError as exc:
                log.warning("the database failed: %s", str(exc).splitlines()[0])
            self.stop.wait(POLL_S)
        if self.connection is not None:
            self.connection.close()

    # --- the run and its ticks --------------------------------------------------------

    def current_run(self) -> tuple[str, float] | None:
        """The run the working tables hold, and the Unix time of its simulated 0: a
        distributed run's epoch, else the latest embedded run kept (its start)."""
        with self.engine.connect() as db:
            row = db.execute(text("SELECT run_id, epoch_s FROM runs")).first()
            if row is not None:
                return row.run_id, row.epoch_s
            row = db.execute(
                text(
                    "SELECT run_id, started_at FROM kept_runs WHERE mode = 'embedded' "
                    "ORDER BY started_at DESC LIMIT 1"
                )
            ).first()
        return None if row is None else (row.run_id, row.started_at)

    def follow(self) -> None:
        run = self.current_run()
        if run is None:
            return
        if run[0] != self.run_id:
            self._begin(*run)
        assert self.outbound is not None
        for tick, inbound, decisions in self._ticks(self.fed):
            messages = self.outbound.tick(tick, tick * self.tick_ms, inbound, decisions)
            self.fed = tick
            skip = self.cursor[1] if tick == self.cursor[0] else 0
            for n, (control_id, message) in enumerate(messages[skip:], start=skip + 1):
                if not self._deliver(control_id, message):
                    return  # stopped
                self._save(tick, n)
            if tick > self.cursor[0] or skip < len(messages):
                self._save(tick, len(messages))

    def _begin(self, run_id: str, start_s: float) -> None:
        """A run to follow: its state up to where it was left (the ticks sent, replayed
        without sending)."""
        self.run_id, self.outbound = run_id, Outbound(run_id, self.rooms, start_s)
        with self.engine.connect() as db:
            row = db.execute(
                select(Hl7Outbound.tick, Hl7Outbound.sent).where(
                    Hl7Outbound.run_id == run_id, Hl7Outbound.destination == self.destination
                )
            ).first()
        self.cursor = (-1, 0) if row is None else (row.tick, row.sent)
        self.fed = -1  # the last tick the outbound state has had
        while self.fed < self.cursor[0] - 1:
            replayed = list(self._ticks(self.fed, until=self.cursor[0] - 1))
            if not replayed:
                break
            for tick, inbound, decisions in replayed:
                self.outbound.tick(tick, tick * self.tick_ms, inbound, decisions)
                self.fed = tick
        log.info("forwarding run %s to %s from tick %d", run_id, self.destination, self.cursor[0])

    def _ticks(self, after: int, until: int | None = None):
        """The stored ticks after `after` (to `until`): their inbound events and decisions."""
        bound = "" if until is None else " AND tick <= :until"
        params: dict[str, Any] = {"after": after, "until": until, "limit": MAX_TICKS}
        with self.engine.connect() as db:
            ticks = [
                t
                for (t,) in db.execute(
                    text(
                        f"SELECT tick FROM ticks WHERE tick > :after{bound} "
                        "ORDER BY tick LIMIT :limit"
                    ),
                    params,
                )
            ]
            if not ticks:
                return
            span = {"first": ticks[0], "last": ticks[-1]}
            inbound: dict[int, list] = {}
            for tick, payload in db.execute(
                text(
                    "SELECT tick, payload FROM inbound_events WHERE tick BETWEEN :first AND :last"
                ),
                span,
            ):
                inbound.setdefault(tick, []).append(ev.parse_json(payload))
            decided: dict[int, list] = {}
            for tick, payload in db.execute(
                text(
                    "SELECT tick, payload FROM decisions WHERE tick BETWEEN :first AND :last "
                    "ORDER BY tick, position"
                ),
                span,
            ):
                decided.setdefault(tick, []).append(ev.parse_json(payload, ev.DECISIONS))
        from scheduler.engine import canonical_order

        for tick in ticks:
            yield tick, canonical_order(inbound.get(tick, [])), decided.get(tick, [])

    def _save(self, tick: int, sent: int) -> None:
        self.cursor = (tick, sent)
        values = {
            "run_id": self.run_id,
            "destination": self.destination,
            "tick": tick,
            "sent": sent,
        }
        with self.engine.begin() as db:
            changed = db.execute(
                update(Hl7Outbound)
                .where(
                    Hl7Outbound.run_id == self.run_id,
                    Hl7Outbound.destination == self.destination,
                )
                .values(tick=tick, sent=sent)
            )
            if not changed.rowcount:
                db.execute(insert(Hl7Outbound).values(**values))

    # --- the downstream listener ------------------------------------------------------

    def _deliver(self, control_id: str, message: str) -> bool:
        """Send until the receiver acknowledges it (AA, or AE: it will never take it);
        False if stopped first."""
        delay = 0.25
        while not self.stop.is_set():
            try:
                code = self._send(message)
            except OSError as exc:
                log.warning("%s: %s: retrying in %.2f s", self.destination, exc, delay)
                self._hang_up()
                code = None
            if code in ("AA", "CA"):
                self.delivered += 1
                return True
            if code in ("AE", "CE"):
                log.warning(
                    "%s refused %s (%s): not sent again", self.destination, control_id, code
                )
                return True
            if code is not None:
                log.warning(
                    "%s answered %s to %s: retrying in %.2f s",
                    self.destination,
                    code,
                    control_id,
                    delay,
                )
            self.stop.wait(delay)
            delay = min(2 * delay, 4.0)
        return False

    def _send(self, message: str) -> str:
        if self.connection is None:
            self.connection = socket.create_connection(self.address, timeout=TIMEOUT_S)
        self.connection.sendall(b"\x0b" + message.encode() + b"\x1c\r")
        reply = b""
        while not reply.endswith(b"\x1c\r"):
            chunk = self.connection.recv(4096)
            if not chunk:
                raise ConnectionError("the receiver closed the connection")
            reply += chunk
        for segment in reply.strip(b"\x0b\x1c\r").split(b"\r"):
            if segment.startswith(b"MSA|"):
                return segment.split(b"|")[1].decode(errors="replace")
        return "AR"  # no MSA: not an acknowledgement

    def _hang_up(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None
