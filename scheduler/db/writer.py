"""The store's writer process. A run as fast as the CPU allows hands its ticks, a batch at a
time, to a process of its own, which turns them into rows and writes them on the other core
while the run goes on.

Why not a thread: SQLite and psycopg2 let go of Python's lock for every row they step, and a
busy simulation holds on to it for a whole switch interval each time, so a thread's writes
crawl (a day of the default hospital spent 2.9 s waiting for its writer thread).

The two processes share a pair of pipes, on which `multiprocessing.connection` sends pickles:
the parent sends the database URL, the config and the policy once, then batches of ticks;
the writer answers each batch, once it is committed, with `None` or the one-line error that
stopped it. Ctrl-C and SIGTERM are the run's to handle (it stops at a tick boundary and
closes the store, which drains the writer): the writer has a process group of its own, and
ignores them. It ends when the parent's pipe does, also when the parent was killed.
"""

from __future__ import annotations

import fcntl
import os
import pickle
import subprocess
import sys
from multiprocessing.connection import Connection
from typing import Any

from scheduler.config import Config
from scheduler.db.basics import StoreError
from scheduler.engine import TickResult

# What the writer needs of a tick: (tick, time_ms, solve_ms, consumed, decisions, n_rejected).
TickRecord = tuple[int, int, float, list, list, int]


def record(result: TickResult) -> TickRecord:
    return (
        result.tick,
        result.time_ms,
        result.solve_ms,
        result.consumed,
        result.decisions,
        len(result.rejected),
    )


class WriterProcess:
    """The parent's end. Batches are written in the order sent (rows of later ticks update
    rows of earlier ones), with up to `IN_FLIGHT` of them sent and not yet committed: the
    run does not wait for the writer's start (about half a second, some ten batches of the
    default hospital), nor for a batch slower than the others. A failed batch makes every
    later call raise its `StoreError`."""

    IN_FLIGHT = 16

    def __init__(self, url: str, config: Config, policy: str, shown_url: str):
        self.shown_url = shown_url
        to_child, from_parent = os.pipe()
        to_parent, from_child = os.pipe()
        _widen(from_parent)
        try:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "scheduler.db.writer_process",
                    str(to_child),
                    str(from_child),
                ],
                pass_fds=(to_child, from_child),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,  # the run's output is the run's; errors go to stderr
                process_group=0,  # a Ctrl-C at the terminal is for the run, not for it
            )
        except OSError as exc:
            for end in (from_parent, to_parent):
                os.close(end)
            raise StoreError(f"cannot start the database writer: {exc.strerror}") from None
        finally:
            os.close(to_child)
            os.close(from_child)
        self._send = Connection(from_parent, readable=False)
        self._receive = Connection(to_parent, writable=False)
        self._in_flight = 0
        self.failure: StoreError | None = None
        self._call(self._send.send_bytes, pickle.dumps((url, config, policy)))

    def send(self, records: list[TickRecord]) -> None:
        if self.failure is not None:
            raise self.failure
        while self._in_flight >= self.IN_FLIGHT:
            self._committed()
        # `pickle` itself, not the connection's `send`: multiprocessing's pickler looks every
        # event's class up in a Python mapping of reducers, which doubled the sending's cost.
        self._call(self._send.send_bytes, pickle.dumps(records, pickle.HIGHEST_PROTOCOL))
        self._in_flight += 1

    def wait(self) -> None:
        """Until every batch sent is committed; the `StoreError` that stopped one, if any."""
        if self.failure is not None:
            raise self.failure
        while self._in_flight:
            self._committed()

    def _committed(self) -> None:
        """Until the oldest batch in flight is committed."""
        error = self._call(self._receive.recv)
        self._in_flight -= 1
        if error is not None:
            self.failure = StoreError(error)
            raise self.failure

    def close(self) -> None:
        """Wait for the batches in flight, then end the writer (at once if it failed: that
        was said already)."""
        try:
            if self.failure is None:
                self.wait()
        finally:
            self._send.close()
            self._receive.close()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def _call(self, method: Any, *args: Any) -> Any:
        try:
            return method(*args)
        except (EOFError, OSError):
            code = self.process.poll()
            self.failure = StoreError(
                f"the database writer for {self.shown_url} stopped"
                + ("" if code is None else f" (exit code {code})")
            )
            raise self.failure from None


def _widen(pipe: int) -> None:
    """A pipe that holds a whole batch, where Linux gives 64 KiB: with the default, each
    batch's send waited for the writer to be woken several times (0.8 s of a 24 h run's)."""
    try:
        fcntl.fcntl(pipe, getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
    except OSError:  # not Linux, or over the system's limit: a slower send, nothing worse
        pass
