"""The writer process's own side (`python -m scheduler.db.writer_process`): it opens the
store, then writes each batch of ticks the run sends (see `scheduler.db.writer`, the run's
side) and answers it. Kept apart from that side, which the store imports, so that the store
and its writer depend on each other one way only."""

from __future__ import annotations

import pickle
import signal
import sys
import traceback
from multiprocessing.connection import Connection

from scheduler.db.basics import StoreError
from scheduler.db.store import SqlStore


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    inbox = Connection(int(argv[0]), writable=False)
    outbox = Connection(int(argv[1]), readable=False)
    try:
        url, config, policy = pickle.loads(inbox.recv_bytes())
    except EOFError:
        return 0
    store, error = None, None
    try:
        store = SqlStore(url, config, policy, fresh=False, write_behind=False, migrate=False)
    except StoreError as exc:
        error = str(exc)
    while True:
        try:
            batch = pickle.loads(inbox.recv_bytes())
        except EOFError:  # the run closed the store, or died
            break
        if error is None and store is not None:
            try:
                for tick in batch:
                    store.add_tick(*tick)
                store.flush()
            except StoreError as exc:
                error = str(exc)
            except Exception as exc:  # a bug: said once, in a line, and on stderr in full
                traceback.print_exc()
                error = f"the database writer failed: {type(exc).__name__}: {exc}"
        outbox.send(error)
    if store is not None:
        store.engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
