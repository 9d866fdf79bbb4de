"""`hospital dashboard --db` follows a run's database (`dashboard.sources.follow_database`) on
the real PostgreSQL server: a stored decision or event that does not parse is left out, with
one warning naming its table and row, and counted in /metrics; the rows after it still
show, as a projection fed the run's ticks directly shows them."""

from __future__ import annotations

import logging
import threading
import time

import pytest
from sqlalchemy import text

from dashboard.projection import Projection
from dashboard.sources import follow_database
from scheduler.config import load
from scheduler.db.ledger import Ledger
from scheduler.db.store import connect
from scheduler.engine import Scheduler, TickResult
from scheduler.simulation import simulate
from tests.following import dashboard_warnings, skipped_metric, wait_for

pytestmark = pytest.mark.services

DURATION_MS = 20 * 60_000
RUN_ID = "dashboard-follow-1"
# a row of each table that does not parse (of no known type, not JSON), planted at a tick
BAD_ROWS = {
    "decisions": (
        "(event_id, tick, position, type, time, payload) "
        "VALUES ('bad-1', :tick, 999, 'x', 0, :payload)",
        '{"type": "no.such", "time": 1}',
    ),
    "inbound_events": (
        "(event_id, tick, type, time, payload) VALUES ('bad-1', :tick, 'x', 0, :payload)",
        '{"type": "patient.arr',
    ),
}


@pytest.fixture(scope="module")
def run(own_database_url):
    config = load(None, {"DATABASE_URL": own_database_url})
    ticks: list[TickResult] = []
    simulate(config, Scheduler(config), DURATION_MS, on_tick=ticks.append)
    return config, ticks


@pytest.mark.parametrize("table", sorted(BAD_ROWS))
def test_a_row_that_does_not_parse_is_skipped_warned_once_and_counted(
    run, own_database_url, table, caplog
):
    caplog.set_level(logging.WARNING, logger="hospital.dashboard")
    config, ticks = run
    first, rest = ticks[: len(ticks) // 2], ticks[len(ticks) // 2 :]
    bad_tick = first[len(first) // 2].tick  # good ticks before it and after it
    ledger = Ledger(own_database_url, config, config.scheduler.policy)
    ledger.start_run(RUN_ID, time.time() - 3600, 1.0, {}, until_ms=DURATION_MS)
    ledger.commit_ticks([(t, []) for t in first], {})
    columns, payload = BAD_ROWS[table]
    engine = connect(own_database_url)
    with engine.begin() as db:
        db.execute(text(f"INSERT INTO {table} {columns}"), {"tick": bad_tick, "payload": payload})
    engine.dispose()
    projection = Projection.for_config(config)
    stop = threading.Event()
    follower = threading.Thread(
        target=follow_database,
        args=(projection, own_database_url, stop),
        kwargs={"poll_s": 0.05, "batch_ticks": 20},  # several batches, many polls
        daemon=True,
    )
    follower.start()
    try:
        wait_for(lambda: projection.tick == first[-1].tick, "the first half, past the bad row")
        time.sleep(0.5)  # ten polls more: the bad row is not read again
        ledger.commit_ticks([(t, []) for t in rest], {})
        wait_for(lambda: projection.tick == ticks[-1].tick, "the ticks written after it")
    finally:
        stop.set()
        follower.join(10)
        ledger.close()
    assert not follower.is_alive()

    expected = Projection.for_config(config)
    for result in ticks:
        expected.apply_result(result)
    expected.run_id, expected.duration_ms = RUN_ID, DURATION_MS
    assert projection.snapshot() == expected.snapshot()
    assert projection.rows_skipped == 1
    assert skipped_metric(projection) == 1
    warnings = dashboard_warnings(caplog)
    assert len(warnings) == 1, warnings
    assert f"of {table} (tick {bad_tick}, event_id 'bad-1')" in warnings[0]
