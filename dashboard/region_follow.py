"""A distributed region's live page: its ticks, rebuilt from the database as the run goes.

`hospital run --kafka --region` keeps each hospital's ticks in a schema of its own and the
coordinator's decisions in another (`scheduler.distributed.region.members`). The follower
polls them for what is new and feeds `RegionView` the `RegionTick`s the embedded region
would have made: the hospitals' ticks merged by number; each coordinator decision in the
tick its time falls in, after that tick's hospital decisions (the embedded coordinator
decides after the hospitals), or, an offer that a hospital answered in that very tick, in
the tick before (its answer must come after it).

The hospitals do not tick in lock step (after a takeover, one catches up a backlog of ticks
whose time is past), so the follower applies the ticks up to the run's clock less `lag_s` of
wall time; a tick committed later still is applied with the next ones, in its own order.
Every poll reads all the schemas in one snapshot (REPEATABLE READ): an answer is never read
without its offer, nor an offer without its request. A row that does not parse is left out,
with a warning, and counted in the view (`SkippedRows`).
"""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from dashboard.region import RegionView
from dashboard.sources import SkippedRows, parsed_rows, row_name
from scheduler import events as ev
from scheduler.distributed.clock import LiveClock
from scheduler.distributed.region import members
from scheduler.engine import TickResult, canonical_order
from scheduler.region import events as rev
from scheduler.region.network import COORDINATOR, RegionTick

DECISIONS: dict[str, type[ev.Decision]] = {**ev.DECISIONS, **rev.DECISIONS}
LAG_S = 2.0  # wall seconds a tick may take to be committed after the clock reaches it
AFTER_END_MS = 60_000  # run time past its end the coordinator still decides and delivers
SKEW_MS = 10_000  # the coordinator's decisions are read again this far back (a standby's clock)


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    clock: LiveClock
    until_ms: int | None


def parse_decision(text: str) -> ev.Decision:
    """A hospital's or the coordinator's decision, as its schema keeps it."""
    return rev.parse_wire(ev.loads(text), DECISIONS)


def region_runs(url: str, region: Any) -> list[RunInfo]:
    """The runs the first hospital's schema holds (the region's current run: one at most);
    none if the schema or its tables are not there yet."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    from scheduler.db.store import connect

    engine = connect(url)
    try:
        with engine.connect() as db:
            rows = db.execute(text(f"SELECT run_id, epoch_s, speed, until_ms FROM {_runs(region)}"))
            return [RunInfo(r[0], LiveClock(r[1], r[2]), r[3]) for r in rows]
    except DBAPIError:
        return []
    finally:
        engine.dispose()


def _runs(region: Any) -> str:
    return f'"{members.schema_of(region.ids[0])}".runs'


@dataclass
class StoredTick:
    """One hospital's tick as its schema keeps it."""

    hospital_id: str
    result: TickResult  # its own decisions: a transfer request as the referral it was
    decisions: list[ev.Decision]  # as decided (a referral as a transfer request)


def stored_tick(
    hospital_id: str,
    tick: int,
    time_ms: int,
    solve_ms: float,
    inbound: list[ev.Event],
    decisions: list[ev.Decision],
) -> StoredTick:
    """A stored tick as the embedded region has it: the hospital's scheduler refers a
    patient it cannot take (its own figures count that), the region makes it a request.
    Its rejected events are not stored with it: the region's figures do not need them."""
    own = [
        ev.PatientReferred(d.event_id, d.time_ms, d.tick, d.patient_id, "transfer requested")
        if isinstance(d, rev.TransferRequested)
        else d
        for d in decisions
    ]
    result = TickResult(
        tick, time_ms, canonical_order(inbound), own, solved=solve_ms > 0, solve_ms=solve_ms
    )
    return StoredTick(hospital_id, result, decisions)


class RegionFollower:
    """Feeds `view` the region's run `run_id` from the database at `url` (the one every
    hospital's schema is in): `poll` reads what is new, `apply` feeds what is due; `follow`
    does both until the run is over or `stop`; `drain` feeds the rest and ends the view."""

    def __init__(
        self,
        view: RegionView,
        url: str,
        run_id: str,
        *,
        lag_s: float = LAG_S,
        batch_ticks: int = 500,
    ):
        from scheduler.db.store import connect

        self.view, self.region, self.run_id = view, view.region, run_id
        self.ids = list(self.region.ids)
        self.tick_ms = self.region.tick_ms
        self.lag_s, self.batch_ticks = lag_s, batch_ticks
        self.engine = connect(url).execution_options(isolation_level="REPEATABLE READ")
        self.run: RunInfo | None = None
        self.last = dict.fromkeys(self.ids, -1)  # each hospital's last tick read
        self.behind: set[str] = set()  # hospitals with more ticks than the last batch read
        self.ticks: dict[int, list[StoredTick]] = defaultdict(list)  # read, not yet applied
        self.coordinator: list[ev.Decision] = []  # read, not yet applied
        self.heard: set[str] = set()  # the coordinator's decisions read, by event id
        self.heard_ms = 0
        self.answered_at: dict[str, int] = {}  # an offer's event id: the tick that answered it
        self.applied = -1  # the last tick applied
        self.skipped = SkippedRows()

    # --- reading --------------------------------------------------------------------------

    def poll(self) -> bool:
        """Read what the schemas hold since the last poll; whether there was anything (False
        also while the run is not begun, or the database does not answer)."""
        from sqlalchemy.exc import DBAPIError

        try:
            with self.engine.begin() as db:
                if self.run is None:
                    self.run = self._begun(db)
                    if self.run is None:
                        return False
                    self.view.duration_ms = self.run.until_ms
                new = [self._read_hospital(db, h) for h in self.ids]
                return self._read_coordinator(db) or any(new)
        except DBAPIError:  # tables being created, or the database gone for a while
            return False
        finally:
            self.view.set_rows_skipped(self.skipped.count)

    def _begun(self, db: Any) -> RunInfo | None:
        from sqlalchemy import text

        row = db.execute(
            text(f"SELECT epoch_s, speed, until_ms FROM {_runs(self.region)} WHERE run_id = :r"),
            {"r": self.run_id},
        ).first()
        return None if row is None else RunInfo(self.run_id, LiveClock(row[0], row[1]), row[2])

    def _read_hospital(self, db: Any, hospital_id: str) -> bool:
        from sqlalchemy import text

        schema = f'"{members.schema_of(hospital_id)}"'
        ticks = db.execute(
            text(
                f"SELECT tick, time, solve_ms FROM {schema}.ticks WHERE tick > :last "
                "ORDER BY tick LIMIT :n"
            ),
            {"last": self.last[hospital_id], "n": self.batch_ticks},
        ).all()
        if not ticks:
            self.behind.discard(hospital_id)
            return False
        span = (ticks[0][0], ticks[-1][0])
        inbound: dict[int, list[ev.Event]] = defaultdict(list)
        table = f"{schema}.inbound_events"
        for tick, event in parsed_rows(db, table, span, rev.parse_member_event, self.skipped):
            inbound[tick].append(event)
            if isinstance(event, rev.TransferOffered):
                self.answered_at[event.event_id] = tick
        decisions: dict[int, list[ev.Decision]] = defaultdict(list)
        table, order = f"{schema}.decisions", "tick, position"
        for tick, decision in parsed_rows(db, table, span, parse_decision, self.skipped, order):
            decisions[tick].append(decision)
        for tick, time_s, solve_ms in ticks:
            self.ticks[tick].append(
                stored_tick(
                    hospital_id,
                    tick,
                    round(time_s * 1000),
                    solve_ms or 0.0,
                    inbound[tick],
                    decisions[tick],
                )
            )
        self.last[hospital_id] = ticks[-1][0]
        if len(ticks) < self.batch_ticks:
            self.behind.discard(hospital_id)
        else:
            self.behind.add(hospital_id)
        return True

    def _read_coordinator(self, db: Any) -> bool:
        from sqlalchemy import text

        rows = db.execute(
            text(
                f'SELECT event_id, payload FROM "{members.COORDINATOR_SCHEMA}".region_decisions '
                "WHERE run_id = :r AND time_ms >= :since ORDER BY time_ms, event_id"
            ),
            {"r": self.run_id, "since": self.heard_ms - SKEW_MS},
        ).all()
        new = [(i, p) for i, p in rows if i not in self.heard]
        table = f'"{members.COORDINATOR_SCHEMA}".region_decisions'
        for event_id, payload in new:
            self.heard.add(event_id)  # a row that does not parse too: read once
            decision = self.skipped.parse(
                parse_decision, payload, table, row_name(event_id=event_id)
            )
            if decision is None:
                continue
            self.heard_ms = max(self.heard_ms, decision.time_ms)
            self.coordinator.append(decision)
        return bool(new)

    # --- feeding the view -----------------------------------------------------------------

    def due(self) -> int:
        """The last tick to apply now: the clock's, less the lag, and no further than a
        hospital whose ticks are not all read yet."""
        assert self.run is not None
        lag_ms = self.lag_s * 1000 * self.run.clock.speed
        due = int((self.run.clock.now_ms() - lag_ms) // self.tick_ms)
        return min([due, *(self.last[h] for h in self.behind)])

    def tick_of(self, decision: ev.Decision) -> int:
        """The tick a coordinator's decision is applied with: the one its time falls in, or
        the one before the tick that answered it (an offer answered at once)."""
        tick = -(-decision.time_ms // self.tick_ms)
        answered = self.answered_at.get(decision.event_id)
        return tick if answered is None else min(tick, answered - 1)

    def apply(self, up_to: int) -> int:
        """Feed the view what was read up to tick `up_to`, tick by tick; how many ticks."""
        decided: dict[int, list[ev.Decision]] = defaultdict(list)
        waiting = []
        for decision in self.coordinator:
            tick = self.tick_of(decision)
            if tick <= up_to:
                decided[tick].append(decision)
            else:
                waiting.append(decision)
        self.coordinator = waiting
        due = sorted({t for t in self.ticks if t <= up_to} | set(decided))
        for tick in due:
            self.view.apply(self._region_tick(tick, self.ticks.pop(tick, []), decided[tick]))
        return len(due)

    def _region_tick(
        self, tick: int, stored: list[StoredTick], decided: list[ev.Decision]
    ) -> RegionTick:
        """One tick of the region; a tick read after later ones were applied is applied as
        the last one (the view goes forward only)."""
        number = max(tick, self.applied)
        self.applied = number
        order = {h: n for n, h in enumerate(self.ids)}
        stored = sorted(stored, key=lambda s: order[s.hospital_id])
        out = RegionTick(
            number, number * self.tick_ms, {s.hospital_id: s.result for s in stored}, []
        )
        for s in stored:
            out.decisions += [(s.hospital_id, d) for d in s.decisions]
        # in the order read (by time; a step's decisions in the order of their ids)
        out.decisions += [(COORDINATOR, d) for d in sorted(decided, key=lambda d: d.time_ms)]
        return out

    # --- the run --------------------------------------------------------------------------

    def over(self) -> bool:
        """Whether the run's end (and what the coordinator does past it) is behind the clock
        by more than the lag."""
        if self.run is None or self.run.until_ms is None:
            return False
        lag_ms = self.lag_s * 1000 * self.run.clock.speed
        return self.run.clock.now_ms() > self.run.until_ms + AFTER_END_MS + lag_ms

    def follow(self, stop: threading.Event, poll_s: float = 0.5) -> None:
        """Poll and feed until `stop`, or the run is over (then the rest, and the view's
        end)."""
        while not stop.is_set():
            self.poll()
            if self.run is not None:
                if self.over():
                    self.drain()
                    return
                self.apply(self.due())
            if not self.behind:
                stop.wait(poll_s)

    def drain(self) -> None:
        """Everything the schemas hold, fed; then the view's end (at the run's, if later)."""
        while self.poll() and self.behind:
            pass
        if self.run is not None:
            self.apply(max([*self.ticks, *(self.tick_of(d) for d in self.coordinator), -1]))
        self.view.finish(None if self.run is None else self.run.until_ms)

    def close(self) -> None:
        self.engine.dispose()
