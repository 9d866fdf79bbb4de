"""Member hospitals that look ahead (`[scheduler] lookahead_s`): the region's protocol and
invariants hold with their holds, and the run replays byte for byte."""

from __future__ import annotations

from pathlib import Path

from scheduler import events as ev
from scheduler.region import events as rev
from scheduler.region.simulation import read_record, replay_region
from tests.unit.test_region import ends, run_region, small_region


def test_a_region_of_hospitals_that_look_ahead_keeps_its_invariants_and_replays(
    tmp_path: Path,
):
    region = small_region(
        intervals=(2.0, 4.0, 4.0),
        extra={
            "scheduler.lookahead_s": 60.0,
            "scheduler.validate": True,
            "arrivals.acuity_mix": [0.1, 0.2, 0.4, 0.2, 0.1],
        },
    )
    assert all(m.config.scheduler.lookahead_s == 60.0 for m in region.hospitals)
    run, record, out = run_region(region, "cpsat", 900_000, tmp_path)
    figures = run.report["region"]
    assert figures["invariants_checked"] and figures["transfers"] > 0
    again = tmp_path / "again.out"
    replay_region(region, read_record(record, region), "cpsat", again)
    assert again.read_bytes() == out.read_bytes()
    decisions = [ev.loads(line) for line in out.read_text().splitlines()]
    assert set(ends(decisions)) == {1}
    kinds = {d["type"] for d in decisions}
    assert rev.TransferAccepted.TYPE in kinds
    assert kinds & {ev.RoomHeld.TYPE, ev.StaffHeld.TYPE}, "looking ahead held nothing"
