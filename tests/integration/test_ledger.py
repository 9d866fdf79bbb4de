"""The live scheduler's ledger: ticks, positions, outbox and snapshots in one transaction,
and a restart that rebuilds the exact state from them (SQLite here; the end-to-end tests
run the same code on PostgreSQL). The start of a new run on both."""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Iterator

import pytest

from scheduler.config import Config
from scheduler.db.ledger import Ledger, OutboxMessage
from scheduler.distributed.scheduler_service import restore
from scheduler.engine import Scheduler
from scheduler.simulation import simulate
from scheduler.snapshot import FORMAT, dump


def state(scheduler: Scheduler):
    hospital = scheduler.hospital
    return (
        scheduler.last_tick,
        sorted(scheduler.seen),
        hospital.rooms,
        hospital.staff,
        hospital.tasks,
        list(hospital.waiting),
        hospital.patients,
        hospital.finished,
    )


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A 10-minute run committed tick by tick, with a snapshot after the 150th tick."""
    config = Config()
    ledger = Ledger(f"sqlite:///{tmp_path_factory.mktemp('ledger') / 'run.db'}", config, "cpsat")
    ledger.start_run("run-1", 0.0, 1.0, {("inbound", 0): 0})
    live = Scheduler(config)
    count = 0

    def commit(result):
        nonlocal count
        count += 1
        snapshot = dump(live) if count == 150 else None
        outbox = [
            OutboxMessage("decisions", b"k", None, d.to_json().encode()) for d in result.decisions
        ]
        ledger.commit_ticks([(result, outbox)], {("inbound", 0): count}, snapshot)

    simulate(config, live, 10 * 60_000, on_tick=commit)
    yield config, ledger, live, count
    ledger.close()


def test_restore_from_the_snapshot_gives_the_live_state(recorded, monkeypatch):
    config, ledger, live, ticks = recorded
    snapshot_tick, _ = ledger.latest_snapshot()
    replayed_after = []
    history = ledger.history
    monkeypatch.setattr(
        ledger, "history", lambda after=-1: replayed_after.append(after) or history(after)
    )
    restored = restore(config, ledger)
    assert replayed_after == [snapshot_tick]  # only the ticks after the snapshot
    assert state(restored) == state(live)
    assert ledger.offsets() == {("inbound", 0): ticks}


def test_restore_without_a_usable_snapshot_replays_every_tick(recorded, monkeypatch):
    config, ledger, live, _ = recorded
    other = config.replace(arrivals={"seed": 7})  # another config, the same decisions
    replayed_after = []
    history = ledger.history
    monkeypatch.setattr(
        ledger, "history", lambda after=-1: replayed_after.append(after) or history(after)
    )
    restored = restore(other, ledger)
    assert replayed_after == [-1]
    assert state(restored) == state(live)


def test_a_snapshot_of_another_database_or_broker_is_still_used(recorded, monkeypatch):
    config, ledger, live, _ = recorded
    moved = config.replace(
        database={"url": "postgresql://u:pw@elsewhere/db"}, kafka={"inbound_topic": "elsewhere"}
    )  # nothing that decides
    replayed_after = []
    history = ledger.history
    monkeypatch.setattr(
        ledger, "history", lambda after=-1: replayed_after.append(after) or history(after)
    )
    assert state(restore(moved, ledger)) == state(live)
    assert replayed_after == [ledger.latest_snapshot()[0]]


def moved_porter(data: bytes) -> bytes:
    """The snapshot with an idle porter somewhere else: well formed, but not the state."""
    saved = json.loads(data)
    idle = next(
        s
        for s, v in saved["hospital"]["staff"].items()
        if v["task"] is None and s.startswith("porter")
    )
    saved["hospital"]["staff"][idle]["location"] = "B3"
    return json.dumps(saved).encode()


@pytest.mark.parametrize(
    "spoil",
    [
        lambda data: b"garbage",
        lambda data: pickle.dumps(data),
        lambda data: json.dumps({**json.loads(data), "format": FORMAT + 1}).encode(),
        moved_porter,
    ],
    ids=["not JSON", "a pickle", "another format", "another state"],
)
def test_an_unusable_snapshot_is_skipped_and_every_tick_replayed(
    recorded, monkeypatch, caplog, spoil
):
    config, ledger, live, _ = recorded
    tick, data = ledger.latest_snapshot()
    monkeypatch.setattr(ledger, "latest_snapshot", lambda: (tick, spoil(data)))
    replayed_after = []
    history = ledger.history
    monkeypatch.setattr(
        ledger, "history", lambda after=-1: replayed_after.append(after) or history(after)
    )
    restored = restore(config, ledger)
    assert replayed_after[-1] == -1
    assert state(restored) == state(live)
    assert f"the snapshot after tick {tick} is not usable" in caplog.text


def test_outbox_is_sent_once(recorded):
    _, ledger, live, _ = recorded
    owed = ledger.unpublished(limit=10_000)
    assert owed and len({m.outbox_id for m in owed}) == len(owed)
    ledger.mark_published(owed[len(owed) // 2].outbox_id)
    rest = ledger.unpublished(limit=10_000)
    assert [m.outbox_id for m in rest] == [m.outbox_id for m in owed[len(owed) // 2 + 1 :]]
    ledger.mark_published(rest[-1].outbox_id)
    assert ledger.unpublished() == []


def test_a_relayed_batch_is_marked_by_one_number_and_a_hole_by_its_flags(tmp_path):
    """Marking a batch moves the run's `outbox_sent_up_to` over the prefix the broker took,
    leaving its rows as they were (rewriting thousands of rows took a quarter of a
    backlog's relay); what was sent after a failed send is flagged row by row; the failed
    one stays owed, and so does the next batch."""
    from sqlalchemy import select

    from scheduler.db.models import OutboxRow, Run

    config = Config()
    ledger = Ledger(f"sqlite:///{tmp_path / 'run.db'}", config, "greedy")
    try:
        ledger.start_run("run-1", 0.0, 1.0, {("inbound", 0): 0})
        simulate(
            config,
            Scheduler(config),
            5 * 60_000,
            on_tick=lambda result: ledger.commit_ticks(
                [
                    (
                        result,
                        [
                            OutboxMessage("decisions", b"k", None, d.to_json().encode())
                            for d in result.decisions
                        ],
                    )
                ],
                {("inbound", 0): result.tick},
            ),
        )
        owed = [m.outbox_id for m in ledger.unpublished(limit=10)]
        assert len(owed) == 10
        # The broker took all but the 5th.
        ledger.mark_published_ids(owed[:4] + owed[5:], owed=owed)
        with ledger.engine.connect() as db:
            assert db.scalar(select(Run.outbox_sent_up_to)) == owed[3]
            flagged = set(db.scalars(select(OutboxRow.outbox_id).where(OutboxRow.published)))
        assert flagged == set(owed[5:]), "the prefix was rewritten row by row"
        rest = [m.outbox_id for m in ledger.unpublished(limit=10_000)]
        assert rest[0] == owed[4] and not set(rest) & set(owed[:4] + owed[5:])
        assert ledger.count_unpublished() == len(rest)
    finally:
        ledger.close()


def test_export_round_trips_through_solve(recorded, tmp_path):
    from scheduler.runs import replay

    config, ledger, _, _ = recorded
    ledger.export(tmp_path / "ev.jsonl", tmp_path / "dec.jsonl")
    replay(config, tmp_path / "ev.jsonl", tmp_path / "dec2.jsonl")
    assert (tmp_path / "dec.jsonl").read_bytes() == (tmp_path / "dec2.jsonl").read_bytes()


# --- the start of a new run, on SQLite and PostgreSQL -------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def database_url(request, tmp_path) -> Iterator[str]:
    """A SQLite file, or a PostgreSQL database of its own on the server of DATABASE_URL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'run.db'}"
        return
    from tests.e2e.conftest import new_database

    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgresql"):
        pytest.fail("DATABASE_URL does not name a PostgreSQL server (scripts/backing-services env)")
    with new_database({"DATABASE_URL": url}) as database:
        yield database.url


def run_with_ticks(url: str, config: Config) -> Ledger:
    """A ledger whose current run, `run-1`, has committed a minute of ticks."""
    ledger = Ledger(url, config, "greedy")
    ledger.start_run("run-1", 0.0, 1.0, {("inbound", 0): 0})
    simulate(
        config,
        Scheduler(config),
        60_000,
        on_tick=lambda result: ledger.commit_ticks([(result, [])], {("inbound", 0): result.tick}),
    )
    return ledger


@pytest.mark.parametrize(
    "run_id",
    ["r" * 65, "", "two\nlines", "a b", "-leading-dash", "caf\u00e9", "run/1"],
    ids=[
        "65 characters",
        "empty",
        "a newline",
        "a space",
        "a leading dash",
        "not ASCII",
        "a slash",
    ],
)
def test_a_run_id_that_cannot_be_kept_is_refused_and_changes_nothing(database_url, run_id):
    config = Config()
    ledger = run_with_ticks(database_url, config)
    try:
        ticks, offsets = ledger.last_tick(), ledger.offsets()
        assert ticks > 50
        with pytest.raises(ValueError, match="a run id is 1 to 64"):
            ledger.start_run(run_id, 0.0, 1.0, {("inbound", 0): 0})
        assert ledger.current_run().run_id == "run-1"
        assert (ledger.last_tick(), ledger.offsets()) == (ticks, offsets)
        assert restore(config, ledger).last_tick == ticks  # still resumable
    finally:
        ledger.close()


def test_the_longest_run_id_is_kept_and_set_aside_when_started_again(database_url):
    from cli.keeping import keeping_service
    from scheduler.db import kept_runs

    config = Config()
    ledger = run_with_ticks(database_url, config)
    longest = "r" * 64
    try:
        for _ in range(2):  # the second start sets the first run of that id aside
            ledger.start_run(longest, 0.0, 1.0, {})
            clock = type("Clock", (), {"now_ms": staticmethod(lambda: 1000)})
            with keeping_service(ledger, config, longest, new_run=True, until_ms=500, clock=clock):
                pass
        kept = {r.run_id: r.status for r in kept_runs.runs(ledger.engine)}
        assert kept.pop("run-1") == "replaced" and kept.pop(longest) == "finished"
        [(aside, status)] = kept.items()
        assert status == "finished" and len(aside) <= 64 and aside.startswith("r")
    finally:
        ledger.close()


def test_a_failure_while_a_new_run_starts_leaves_the_current_run_whole(database_url):
    """The working tables are emptied and the new run written in one transaction: a
    failure (or a crash) between the two leaves the run they held, still resumable."""
    from sqlalchemy import event

    config = Config()
    ledger = run_with_ticks(database_url, config)
    ticks = ledger.last_tick()

    def fail_on_the_new_run(_conn, _cursor, statement, *_) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO RUNS"):
            raise RuntimeError("the process dies here")

    event.listen(ledger.engine, "before_cursor_execute", fail_on_the_new_run)
    try:
        with pytest.raises(RuntimeError, match="dies here"):
            ledger.start_run("run-2", 0.0, 1.0, {})
        event.remove(ledger.engine, "before_cursor_execute", fail_on_the_new_run)
        assert ledger.current_run().run_id == "run-1" and ledger.last_tick() == ticks
        assert restore(config, ledger).last_tick == ticks
    finally:
        ledger.close()
