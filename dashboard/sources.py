"""Where a dashboard outside the run gets the run from: a decisions file being written
(`hospital run --out`), or the database of a run (`hospital run --kafka`, whose scheduler
keeps every tick, its decisions and the events it applied). Each follower feeds the
projection tick by tick until told to stop."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from dashboard.projection import Projection
from scheduler import events as ev

VOCABULARY = {**ev.DECISIONS, **ev.INBOUND}
T = TypeVar("T")
P = TypeVar("P", str, bytes)  # a payload: a stored row's text, a file's line
log = logging.getLogger("hospital.dashboard")


def parse(text: str | bytes) -> Any:
    """A decision or an inbound event from its JSON line; `ev.BadEvent` says what is wrong."""
    return ev.parse(ev.loads(text), VOCABULARY)


def parse_decision(line: bytes) -> ev.Decision:
    """A decision from a decisions file's line: an inbound event there (a `--record` log's
    line) is of no type the file holds, and has no tick to show it at."""
    return ev.parse(ev.loads(line), ev.DECISIONS)


class SkippedRows:
    """The stored rows (or a file's lines) a follower could not parse (a payload written by
    hand, or by another version): each is left out, logged once as a warning that names its
    table (or file), the row (or line) and why, and counted; the rows after it are followed
    as before."""

    def __init__(self) -> None:
        self.rows: set[tuple[str, str]] = set()  # (table, row)

    @property
    def count(self) -> int:
        return len(self.rows)

    def parse(self, parser: Callable[[P], T], payload: P, table: str, row: str) -> T | None:
        """`parser(payload)`, or None for a payload it rejects."""
        try:
            return parser(payload)
        except ev.BadEvent as exc:
            self.skip(table, row, str(exc))
            return None

    def skip(self, table: str, row: str, reason: str) -> None:
        if (table, row) in self.rows:  # read again (a poll the database failed half-way)
            return
        self.rows.add((table, row))
        log.warning("dashboard: skipped a row of %s (%s): %s", table, row, reason)


def row_name(**key: Any) -> str:
    """A stored row, as a warning names it: `tick 12, event_id 'arrival-3'`."""
    return ", ".join(f"{column} {ev.shown(value)}" for column, value in key.items())


def group_ticks(decisions: list[Any]) -> list[tuple[int, int, list[Any]]]:
    """(tick, time_ms, decisions) in order, from decisions in file order."""
    ticks: list[tuple[int, int, list[Any]]] = []
    for d in decisions:
        if not ticks or ticks[-1][0] != d.tick:
            ticks.append((d.tick, d.time_ms, []))
        ticks[-1][2].append(d)
    return ticks


def follow_file(
    projection: Projection, path: Path, stop: threading.Event, poll_s: float = 0.2
) -> None:
    """Tail a decisions file: a tick is applied once a later tick's line shows (or the file
    has been quiet for a second: the run wrote its last tick). A line without its newline is
    still being written: it is read once it has one. A line that does not parse is left out
    (`SkippedRows`, naming the file and the line's number), and counted in the projection."""
    while not path.exists():
        if stop.wait(poll_s):
            return
    skipped = SkippedRows()
    pending: list[Any] = []
    partial = b""
    lines_read = 0
    quiet = 0.0
    # Bytes, split at b"\n" (never part of a longer UTF-8 character): a line that is not
    # UTF-8 is one more line that does not parse (ev.loads), not a decoding error.
    with open(path, "rb") as stream:
        while not stop.is_set():
            chunk = stream.read()
            if not chunk:
                quiet += poll_s
                if pending and quiet >= 1.0:
                    for tick, time_ms, batch in group_ticks(pending):
                        projection.apply(tick, time_ms, batch)
                    pending = []
                stop.wait(poll_s)
                continue
            quiet = 0.0
            lines = (partial + chunk).split(b"\n")
            partial = lines.pop()
            pending += parsed_lines(lines, lines_read + 1, str(path), skipped)
            lines_read += len(lines)
            projection.rows_skipped = skipped.count
            if pending:
                last = pending[-1].tick
                ready = [d for d in pending if d.tick != last]
                pending = [d for d in pending if d.tick == last]
                for tick, time_ms, batch in group_ticks(ready):
                    projection.apply(tick, time_ms, batch)


def parsed_lines(
    lines: list[bytes], first: int, file: str, skipped: SkippedRows
) -> list[ev.Decision]:
    """The decisions of whole lines of a file, numbered from `first`; a line that does not
    parse, skipped; a blank line, passed over."""
    parsed = (
        skipped.parse(parse_decision, line, file, f"line {number}")
        for number, line in enumerate(lines, start=first)
        if line.strip()
    )
    return [decision for decision in parsed if decision is not None]


def current_run(url: str) -> str | None:
    """The id of the run a database holds now (None: no run, or no tables yet)."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    from scheduler.db.store import connect

    engine = connect(url)
    try:
        with engine.connect() as db:
            row = db.execute(text("SELECT run_id FROM runs")).first()
            return row[0] if row else None
    except DBAPIError:
        return None
    finally:
        engine.dispose()


class KafkaLag:
    """The scheduler's consumer lag per topic: the broker's end offsets less the positions
    the scheduler committed with its last tick (the `consumer_offsets` table)."""

    def __init__(self, config: Any, every_s: float = 2.0):
        from scheduler.distributed import bus

        self.consumer = bus.consumer(config)
        self.every_s = every_s
        self.last = 0.0
        self.lag: dict[str, int] = {}

    def __call__(self, positions: dict[tuple[str, int], int]) -> dict[str, int]:
        from kafka import TopicPartition

        now = time.monotonic()
        if positions and now - self.last >= self.every_s:
            self.last = now
            ends = self.consumer.end_offsets([TopicPartition(t, p) for t, p in positions])
            lag: dict[str, int] = {}
            for tp, end in ends.items():
                lag[tp.topic] = lag.get(tp.topic, 0) + max(
                    0, end - positions[tp.topic, tp.partition]
                )
            self.lag = lag
        return self.lag

    def close(self) -> None:
        self.consumer.close()


def follow_database(
    projection: Projection,
    url: str,
    stop: threading.Event,
    poll_s: float = 0.5,
    batch_ticks: int = 2000,
    skip_run: str | None = None,
    lag: KafkaLag | None = None,
) -> None:
    """Poll a run's database for the ticks after the last one applied: each tick's decisions
    in their order, and the events it applied (so the waits are exact), and the dead
    letters. Tables not there yet, or a run with the id `skip_run` (the previous run, still
    in the database when a new one is starting), are waited out; a new run starts afresh.
    A row that does not parse is left out (`SkippedRows`), and counted in the projection."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    from scheduler.db.store import connect

    engine = connect(url)
    last = -1
    skipped = SkippedRows()
    unset = object()
    following: Any = unset
    try:
        while not stop.is_set():
            try:
                with engine.connect() as db:
                    row = db.execute(text("SELECT run_id, until_ms FROM runs")).first()
                    run_id = row[0] if row else None
                    if skip_run is not None and run_id == skip_run:
                        stop.wait(poll_s)
                        continue
                    if following is not unset and run_id != following:
                        projection.reset()
                        last = -1
                        skipped = SkippedRows()
                    if run_id != following:
                        projection.label = run_label(db, run_id)
                    following = run_id
                    projection.run_id = run_id or projection.run_id
                    if row is not None and row[1] is not None:  # the run's end, when it has one
                        projection.duration_ms = row[1]
                    ticks = db.execute(
                        text(
                            "SELECT tick, time, solve_ms, n_rejected FROM ticks WHERE tick > :last "
                            "ORDER BY tick LIMIT :n"
                        ),
                        {"last": last, "n": batch_ticks},
                    ).all()
                    decisions, inbound = read_span(db, ticks, skipped)
                    dead = (
                        db.execute(text("SELECT count(*) FROM outbox WHERE dead_letter")).scalar()
                        or 0
                    )
                    positions = (
                        {}
                        if lag is None
                        else {
                            (t, p): o
                            for t, p, o in db.execute(
                                text('SELECT topic, "partition", "offset" FROM consumer_offsets')
                            )
                        }
                    )
            except DBAPIError:  # the run's tables are being created or reset
                stop.wait(poll_s)
                continue
            for tick, time_s, solve_ms, rejected in ticks:
                projection.apply(
                    tick,
                    round(time_s * 1000),
                    decisions.get(tick, []),
                    inbound.get(tick, []),
                    solve_ms=solve_ms or None,
                    rejected=rejected,
                )
                last = tick
            projection.dead_letters = dead
            projection.rows_skipped = skipped.count
            if lag is not None:
                try:
                    projection.lag = lag(positions)
                except Exception:  # noqa: BLE001 - a broker that does not answer: no figure
                    projection.lag = {}
            if len(ticks) < batch_ticks:
                stop.wait(poll_s)
    finally:
        engine.dispose()


def read_span(
    db: Any, ticks: Sequence[Any], skipped: SkippedRows
) -> tuple[dict[int, list[Any]], dict[int, list[Any]]]:
    """The decisions and the inbound events of the ticks read (rows of `ticks`), by tick."""
    decisions: dict[int, list[Any]] = {}
    inbound: dict[int, list[Any]] = {}
    if ticks:
        span = (ticks[0][0], ticks[-1][0])
        for tick, item in parsed_rows(db, "decisions", span, parse, skipped, "tick, position"):
            decisions.setdefault(tick, []).append(item)
        order = "tick, time, event_id"
        for tick, item in parsed_rows(db, "inbound_events", span, parse, skipped, order):
            inbound.setdefault(tick, []).append(item)
    return decisions, inbound


def parsed_rows(
    db: Any,
    table: str,
    span: tuple[int, int],
    parser: Callable[[str], T],
    skipped: SkippedRows,
    order: str = "tick",
) -> Iterator[tuple[int, T]]:
    """(tick, parsed payload) of each row of `table` (decisions or inbound events) whose tick
    is in `span`, in `order`; a row that does not parse, skipped."""
    from sqlalchemy import text

    rows = db.execute(
        text(
            f"SELECT tick, event_id, payload FROM {table} WHERE tick BETWEEN :a AND :b "
            f"ORDER BY {order}"
        ),
        {"a": span[0], "b": span[1]},
    )
    for tick, event_id, payload in rows:
        item = skipped.parse(parser, payload, table, row_name(tick=tick, event_id=event_id))
        if item is not None:
            yield tick, item


def run_label(db: Any, run_id: str | None) -> str | None:
    """The label the run is kept with (`hospital run --label`), if any (none in a database
    whose kept runs have no labels yet)."""
    from sqlalchemy import inspect, text

    if run_id is None or not inspect(db).has_table("kept_runs"):
        return None
    if "label" not in {column["name"] for column in inspect(db).get_columns("kept_runs")}:
        return None
    return db.execute(
        text("SELECT label FROM kept_runs WHERE run_id = :run"), {"run": run_id}
    ).scalar()


def follower(target: Any, *args: Any, **kwargs: Any) -> tuple[threading.Thread, threading.Event]:
    """Start a follower on a thread; set the event to stop it."""
    stop = threading.Event()
    thread = threading.Thread(
        target=target, args=(*args, stop), kwargs=kwargs, name="dashboard-source", daemon=True
    )
    thread.start()
    return thread, stop
