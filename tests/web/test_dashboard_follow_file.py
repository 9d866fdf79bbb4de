"""`hospital dashboard --follow` tails a decisions file a run is writing
(`dashboard.sources.follow_file`): a line that does not parse is left out, with one warning
naming the file and the line, and counted in /metrics; the lines after it still show, as a
projection fed the file's good lines shows them. A line still being written (no newline yet)
is read once it is whole, not taken for a bad one."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from dashboard.projection import Projection
from dashboard.sources import follow_file, group_ticks, parse
from scheduler.config import load
from scheduler.engine import Scheduler, TickResult
from scheduler.simulation import simulate
from tests.following import POLL_S, dashboard_warnings, skipped_metric, wait_for

pytestmark = pytest.mark.timeout(120)

DURATION_MS = 10 * 60_000
# lines that do not parse, by what is wrong with them
BAD_LINES = {
    "not JSON": (b'{"type": "task.disp', "not valid JSON"),
    "of no known type": (b'{"type": "no.such", "time": 1}', "unknown event type 'no.such'"),
    "not UTF-8": (b'{"type": "\xff"}', "not UTF-8"),
    "an inbound event, not a decision": (
        b'{"event_id": "arrival-x", "patient_id": "patient-x", "time": 1.0, '
        b'"type": "patient.arrived"}',
        "unknown event type 'patient.arrived'",
    ),
}


@pytest.fixture(scope="module")
def run() -> tuple[object, list[bytes]]:
    """A run's config and its decisions file's lines, each with its newline."""
    config = load(None, {})
    ticks: list[TickResult] = []
    simulate(config, Scheduler(config), DURATION_MS, on_tick=ticks.append)
    lines = [(d.to_json() + "\n").encode() for t in ticks for d in t.decisions]
    return config, lines


def shown_alone(config, lines: list[bytes]) -> Projection:
    """A projection fed these lines' decisions tick by tick, as the follower feeds its own."""
    projection = Projection.for_config(config)
    for tick, time_ms, batch in group_ticks([parse(line) for line in lines]):
        projection.apply(tick, time_ms, batch)
    return projection


@contextmanager
def following(config, path: Path) -> Iterator[tuple[Projection, threading.Thread]]:
    projection = Projection.for_config(config)
    stop = threading.Event()
    follower = threading.Thread(
        target=follow_file, args=(projection, path, stop), kwargs={"poll_s": POLL_S}, daemon=True
    )
    follower.start()
    try:
        yield projection, follower
    finally:
        stop.set()
        follower.join(10)
    assert not follower.is_alive()


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as stream:
        stream.write(data)


def last_tick(lines: list[bytes]) -> int:
    return parse(lines[-1]).tick


def half_way(lines: list[bytes]) -> int:
    """The first line of the first tick in the file's second half (a writer writes a tick's
    lines at once: the follower applies the tick it holds when the file stays quiet)."""
    middle = len(lines) // 2
    return next(
        i for i in range(middle, len(lines)) if last_tick(lines[: i + 1]) != last_tick(lines[:i])
    )


@pytest.mark.parametrize("bad", sorted(BAD_LINES))
def test_a_line_that_does_not_parse_is_skipped_warned_once_and_counted(run, tmp_path, bad, caplog):
    caplog.set_level(logging.WARNING, logger="hospital.dashboard")
    config, lines = run
    first, rest = lines[: half_way(lines)], lines[half_way(lines) :]
    bad_line, reason = BAD_LINES[bad]
    path = tmp_path / "dec.jsonl"
    path.write_bytes(b"".join(first[:10]) + bad_line + b"\n" + b"".join(first[10:]))
    with following(config, path) as (projection, _):
        wait_for(lambda: projection.tick == last_tick(first), "the first half, past the bad line")
        time.sleep(20 * POLL_S)  # twenty polls more: the bad line is not read again
        append(path, b"".join(rest))
        wait_for(lambda: projection.tick == last_tick(lines), "the lines written after it")

    assert projection.snapshot() == shown_alone(config, lines).snapshot()
    assert projection.rows_skipped == 1
    assert skipped_metric(projection) == 1
    warnings = dashboard_warnings(caplog)
    assert len(warnings) == 1, warnings
    assert f"of {path} (line 11): " in warnings[0]
    assert reason in warnings[0]


def test_a_line_being_written_is_read_once_whole(run, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="hospital.dashboard")
    config, lines = run
    cut = half_way(lines)
    head, tail = lines[cut][:20], lines[cut][20:]
    path = tmp_path / "dec.jsonl"
    path.write_bytes(b"".join(lines[:cut]) + head)
    with following(config, path) as (projection, _):
        # the ticks before the cut line, the last of them once the file is quiet for 1 s
        wait_for(lambda: projection.tick == last_tick(lines[:cut]), "the lines before the cut")
        time.sleep(20 * POLL_S)  # the line's first part, read again and again
        assert projection.rows_skipped == 0
        append(path, tail + b"".join(lines[cut + 1 :]))
        wait_for(lambda: projection.tick == last_tick(lines), "the lines after the cut")

    assert projection.snapshot() == shown_alone(config, lines).snapshot()
    assert projection.rows_skipped == 0
    assert skipped_metric(projection) == 0
    assert dashboard_warnings(caplog) == []
