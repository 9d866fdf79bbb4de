"""What a long run keeps is bounded (ids folded into bitmaps, waits as histograms), and
nothing is forgotten that a later event can still refer to."""

from __future__ import annotations

import random

from scheduler import events as ev
from scheduler.config import load
from scheduler.engine import Scheduler
from scheduler.kpi import histogram_percentile, percentile
from scheduler.simulation import simulate

CONFIG = load(None, {}).replace(scheduler={"policy": "greedy"})


def test_old_duplicates_and_returning_patients_are_still_caught(monkeypatch):
    monkeypatch.setattr(ev.IdSet, "RECENT", 8)  # fold early and often
    scheduler, first = Scheduler(CONFIG), []
    simulate(
        CONFIG, scheduler, 600 * 1000, on_tick=lambda r: first.append(r) if len(first) < 5 else None
    )
    assert scheduler.seen._bits and scheduler.hospital.finished._bits  # folded
    early = [e for r in first for e in r.consumed]
    arrival = next(e for e in early if isinstance(e, ev.PatientArrived))
    again = ev.PatientArrived("arrival-again", arrival.time_ms, arrival.patient_id)
    result = scheduler.tick(scheduler.last_tick + 1, [*early, again])
    assert result.duplicates == early and not result.consumed
    assert [e for e, _ in result.rejected] == [again]
    assert "already arrived" in result.rejected[0][1]


def test_idset_is_a_set():
    ids, reference = ev.IdSet(), set()
    ev.IdSet.RECENT, saved = 16, ev.IdSet.RECENT
    try:
        rng = random.Random(7)
        for _ in range(5000):
            id_ = rng.choice(["arrival-", "task-", "x", ""]) + rng.choice(
                [str(rng.randrange(2000)), str(rng.randrange(10**12)), "007", "0", ""]
            )
            ids.add(id_)
            reference.add(id_)
        probes = [p + str(n) for p in ("arrival-", "task-", "x", "", "y") for n in range(2100)]
        assert all((p in ids) == (p in reference) for p in probes + ["arrival-007", "x0"])
        assert len(ids) == len(reference) and set(ids) == reference
    finally:
        ev.IdSet.RECENT = saved


def test_percentile_of_a_histogram_is_the_percentile_of_the_values():
    rng = random.Random(3)
    for size in (0, 1, 2, 19, 20, 21, 500):
        values = [rng.choice([0, 1000, 2000, rng.randrange(10**6)]) for _ in range(size)]
        counts: dict[int, int] = {}
        for v in values:
            counts[v] = counts.get(v, 0) + 1
        for q in (50, 95, 99, 100):
            assert histogram_percentile(counts, len(values), q) == percentile(values, q)
