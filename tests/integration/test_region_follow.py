"""The distributed region's live page follows the region's schemas (`dashboard.region_follow`)
on the real PostgreSQL server: a small region's run, simulated in this process, is written as
the distributed mode keeps it (each hospital's ticks in its schema, a transfer request as the
hospital's decision; the coordinator's decisions in its own), and the view the follower feeds
shows what a view fed the run's ticks directly shows, at the end and half-way."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time

import pytest
from sqlalchemy import text

from dashboard.region import RegionView
from dashboard.region_follow import RegionFollower, region_runs
from scheduler.config import load
from scheduler.db.ledger import Ledger
from scheduler.db.store import connect
from scheduler.distributed.region import members
from scheduler.distributed.region.coordinator_service import RegionDecisionRow, prepare
from scheduler.engine import TickResult
from scheduler.region import events as rev
from scheduler.region.network import COORDINATOR, RegionTick
from scheduler.region.simulation import simulate_region
from tests.following import dashboard_warnings
from tests.unit.test_region import small_region

pytestmark = pytest.mark.services

DURATION_MS = 20 * 60_000
RUN_ID = "region-follow-1"


@pytest.fixture(scope="module")
def run():
    """Two hospitals, the first overloaded: its patients transferred or referred out."""
    region = small_region(intervals=(2.0, 9.0), max_wait_s=60.0)
    ticks: list[RegionTick] = []
    simulate_region(region, "cpsat", DURATION_MS, on_tick=ticks.append)
    # a tick that decides nothing and applies nothing leaves no row: none to follow
    stored = [t for t in ticks if t.results or t.decisions]
    assert any(d.TYPE == "transfer.accepted" for t in stored for _, d in t.decisions)
    assert any(d.TYPE == "patient.referred_out" for t in stored for _, d in t.decisions)
    return region, stored


class Schemas:
    """The region's schemas in a database, written tick by tick as its processes would."""

    def __init__(self, region, url: str, epoch_s: float, speed: float = 1.0):
        self.region = region
        base = load(None, {"DATABASE_URL": url})
        self.ledgers = {}
        for hospital_id in region.ids:
            members.ensure_schema(url, members.schema_of(hospital_id))
            config = members.member_config(region, hospital_id, base)
            ledger = Ledger(config.database.url, config, config.scheduler.policy)
            ledger.start_run(RUN_ID, epoch_s, speed, {}, until_ms=DURATION_MS)
            self.ledgers[hospital_id] = ledger
        members.ensure_schema(url, members.COORDINATOR_SCHEMA)
        self.coordinator = connect(members.schema_url(url, members.COORDINATOR_SCHEMA))
        prepare(self.coordinator)
        with self.coordinator.begin() as db:
            db.execute(RegionDecisionRow.__table__.delete())

    def write(self, ticks: list[RegionTick]) -> None:
        """Each hospital's ticks (its decisions as the distributed member decides them: a
        request, not a referral), then the coordinator's decisions."""
        from sqlalchemy.orm import Session

        for hospital_id, ledger in self.ledgers.items():
            mine = [
                (
                    TickResult(
                        t.tick,
                        t.time_ms,
                        t.results[hospital_id].consumed,
                        [d for h, d in t.decisions if h == hospital_id],
                        solved=t.results[hospital_id].solved,
                        solve_ms=t.results[hospital_id].solve_ms,
                    ),
                    [],
                )
                for t in ticks
                if hospital_id in t.results
            ]
            if mine:
                ledger.commit_ticks(mine, {})
        with Session(self.coordinator) as session, session.begin():
            session.add_all(
                RegionDecisionRow(
                    run_id=RUN_ID,
                    event_id=d.event_id,
                    time_ms=d.time_ms,
                    type=d.TYPE,
                    payload=d.to_json(),
                )
                for t in ticks
                for h, d in t.decisions
                if h == COORDINATOR
            )

    def close(self) -> None:
        for ledger in self.ledgers.values():
            ledger.close()
        self.coordinator.dispose()


def fed(region, ticks: list[RegionTick], to_the_end: bool = True) -> RegionView:
    """A view fed the ticks directly; `to_the_end`: and told the run is over."""
    view = RegionView(region, "cpsat", duration_ms=DURATION_MS)
    for tick in ticks:
        view.apply(tick)
    if to_the_end:
        view.finish(DURATION_MS)
    return view


def test_the_follower_shows_what_the_run_showed(run, own_database_url):
    region, ticks = run
    schemas = Schemas(region, own_database_url, epoch_s=time.time() - 3600)  # the run is over
    try:
        schemas.write(ticks)
    finally:
        schemas.close()
    assert [r.run_id for r in region_runs(own_database_url, region)] == [RUN_ID]
    view = RegionView(region, "cpsat")
    follower = RegionFollower(view, own_database_url, RUN_ID, batch_ticks=40)  # several batches
    thread = threading.Thread(target=follower.follow, args=(threading.Event(),), daemon=True)
    thread.start()
    thread.join(60)
    assert not thread.is_alive(), "a run over: the follower feeds it all and ends"
    follower.close()
    expected = fed(region, ticks)
    assert view.finished
    assert view.figures() == expected.figures()
    assert view.snapshot() == expected.snapshot()
    assert view.figures()["region"]["transfers"] > 0


def test_the_follower_feeds_a_run_as_it_goes(run, own_database_url):
    """Half the run in the schemas: the view has the first half's ticks (no further than
    the run's clock less the lag), then the rest, once written."""
    region, ticks = run
    half = [t for t in ticks if t.tick * region.tick_ms <= DURATION_MS // 2]
    # the run's clock 1 s of wall time (the lag) past the half-way mark
    schemas = Schemas(region, own_database_url, epoch_s=time.time() - DURATION_MS / 2000 - 1.0)
    view = RegionView(region, "cpsat")
    follower = RegionFollower(view, own_database_url, RUN_ID, lag_s=1.0)
    try:
        assert not follower.poll(), "nothing written yet"
        schemas.write(half)
        assert follower.poll()
        applied = follower.apply(follower.due())
        assert applied == len({t.tick for t in half})
        assert view.snapshot() == fed(region, half, to_the_end=False).snapshot()
        schemas.write(ticks[len(half) :])
        follower.drain()
    finally:
        schemas.close()
        follower.close()
    expected = fed(region, ticks)
    assert view.snapshot() == expected.snapshot()


def test_an_offer_answered_in_the_tick_its_time_falls_in_comes_before_its_answer(
    run, own_database_url
):
    """Over Kafka the coordinator decides between two ticks, and a hospital may answer an
    offer in the tick its time falls in (the embedded one answers in the next tick): the
    offer is applied in the tick before, as the embedded coordinator would have made it."""
    region, ticks = run

    def later(decision):  # the offer made just before the tick that answers it
        if isinstance(decision, rev.TransferOffered):
            return dataclasses.replace(decision, time_ms=decision.time_ms + region.tick_ms)
        return decision

    offered_late = [
        dataclasses.replace(t, decisions=[(h, later(d)) for h, d in t.decisions]) for t in ticks
    ]
    schemas = Schemas(region, own_database_url, epoch_s=time.time() - 3600)
    try:
        schemas.write(offered_late)
    finally:
        schemas.close()
    view = RegionView(region, "cpsat")
    follower = RegionFollower(view, own_database_url, RUN_ID)
    try:
        follower.drain()
    finally:
        follower.close()
    expected = fed(region, offered_late)
    assert view.snapshot() == expected.snapshot()


# a row of each table that does not parse (not JSON, of no known type, an offer without its
# ids), planted in the first hospital's schema at a tick, or in the coordinator's at a time
BAD_ROWS = {
    "inbound_events": (
        "(event_id, tick, type, time, payload) VALUES ('bad-1', :tick, 'x', 0, :payload)",
        "not JSON",
    ),
    "decisions": (
        "(event_id, tick, position, type, time, payload) "
        "VALUES ('bad-1', :tick, 999, 'x', 0, :payload)",
        '{"type": "no.such", "time": 1}',
    ),
    "region_decisions": (
        "(run_id, event_id, time_ms, type, payload) "
        "VALUES (:run, 'bad-1', :time_ms, 'x', :payload)",
        '{"type": "transfer.offered", "time": 1, "from": "h1", "to": "h2"}',
    ),
}


@pytest.mark.parametrize("table", list(BAD_ROWS))
def test_a_row_that_does_not_parse_is_skipped_warned_once_and_counted(
    run, own_database_url, table, caplog
):
    """The follower leaves the row out, says so once, counts it in the view's state, and
    goes on: the rows around it, and those written after it was read, show as the run's."""
    caplog.set_level(logging.WARNING, logger="hospital.dashboard")
    region, ticks = run
    half = [t for t in ticks if t.tick * region.tick_ms <= DURATION_MS // 2]
    first = region.ids[0]
    bad = next(t for t in half[len(half) // 2 :] if first in t.results)
    # the coordinator's last decision of the half: the polls after it read its time again
    decided_ms = max(d.time_ms for t in half for h, d in t.decisions if h == COORDINATOR)
    schema = members.COORDINATOR_SCHEMA if table == "region_decisions" else members.schema_of(first)
    columns, payload = BAD_ROWS[table]
    schemas = Schemas(region, own_database_url, epoch_s=time.time() - 3600)  # the run is over
    view = RegionView(region, "cpsat")
    follower = RegionFollower(view, own_database_url, RUN_ID)
    try:
        schemas.write(half)
        engine = connect(own_database_url)
        with engine.begin() as db:
            db.execute(
                text(f'INSERT INTO "{schema}".{table} {columns}'),
                {"tick": bad.tick, "time_ms": decided_ms, "run": RUN_ID, "payload": payload},
            )
        engine.dispose()
        for _ in range(3):  # the bad row read, then polled past (and read again, if by time)
            follower.poll()
        schemas.write(ticks[len(half) :])
        follower.drain()
    finally:
        schemas.close()
        follower.close()
    expected = fed(region, ticks)
    shown, want = view.snapshot(), expected.snapshot()
    assert (shown.pop("rows_skipped"), want.pop("rows_skipped")) == (1, 0)
    del shown["version"], want["version"]  # the count's change is one more version
    assert shown == want
    warnings = dashboard_warnings(caplog)
    assert len(warnings) == 1, warnings
    row = (
        "event_id 'bad-1'" if table == "region_decisions" else f"tick {bad.tick}, event_id 'bad-1'"
    )
    assert f'"{schema}".{table} ({row})' in warnings[0]


def test_the_dashboard_of_a_region_with_no_such_run_is_one_line(run, own_database_url, tmp_path):
    from typer.testing import CliRunner

    from cli.main import app
    from tests.cli.test_bad_input import one_line

    region, ticks = run
    schemas = Schemas(region, own_database_url, epoch_s=time.time() - 3600)
    schemas.close()
    path = tmp_path / "region.toml"
    path.write_text(REGION_TOML)
    runner = CliRunner()

    def dashboard(*args: str):
        return runner.invoke(app, ["dashboard", "--db", own_database_url, *args])

    line = one_line(dashboard("--region", str(path), "--run-id", "another"), 2)
    assert "'another'" in line and RUN_ID in line
    path.write_text(REGION_TOML.replace('"h1"', '"elsewhere"'))
    assert "no run" in one_line(dashboard("--region", str(path)), 2)


# a region.toml of the same hospitals (the command reads one; their ids name the schemas)
REGION_TOML = """
[region]
seed = 1
[travel]
minutes = [[0, 1], [1, 0]]
[[hospitals]]
id = "h1"
scenario = "default"
[[hospitals]]
id = "h2"
scenario = "default"
"""
