"""The live scheduler's ledger: ticks, positions, outbox and snapshots in one transaction,
and a restart that rebuilds the exact state from them (SQLite here; the end-to-end tests
run the same code on PostgreSQL)."""

from __future__ import annotations

import json
import pickle

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
