"""The clinical rules in the distributed mode: the services over the real Kafka broker and
PostgreSQL with acuity, isolation, a roster, target waits and reasons switched on. Every
decision carries the new fields, the live run's decisions are what `hospital solve` makes of
its events, and an arrival with an impossible acuity is dead-lettered."""

from __future__ import annotations

import json

from scheduler import events as ev
from scheduler.config import Config
from scheduler.distributed import bus

from .conftest import Topics, jsonl_lines, run_kafka
from .test_distributed import SPEED, Audit, assert_solve_reproduces, read_topic

CLINICAL = """
[hospital]
floors = ["A", "B"]
rooms_per_floor = 3
isolation_rooms = ["A1", "B1"]

[arrivals]
interval_s = 4.0
acuity_mix = [0.1, 0.2, 0.4, 0.2, 0.1]
isolation_share = 0.5

[shifts]
roster = ["porter-2 00:00-00:02:30 break 00:01:00-00:01:20", "cleaner-2 00:01-00:04"]
cycle_s = 300.0

[sla]
escort_in_s = 3.0
visit_s = 6.0
visit_urgent_s = 2.0
clean_s = 6.0

[scheduler]
explain = true
"""


def test_clinical_rules_over_kafka_carry_their_fields_and_replay_exactly(
    topics: Topics, database, tmp_path
):
    config_path = tmp_path / "clinical.toml"
    config_path.write_text(CLINICAL)
    run = run_kafka(
        topics.env,
        database.url,
        tmp_path,
        "--config",
        str(config_path),
        speed=SPEED,
        duration="10m",
    )
    record, out, report = run.record, run.out, run.report

    events, decisions = jsonl_lines(record), jsonl_lines(out)
    arrivals = [e for e in events if e["type"] == "patient.arrived"]
    assert {e.get("acuity", 3) for e in arrivals} > {3}, "no acuity on the wire"
    assert any(e.get("isolation") for e in arrivals), "no isolation on the wire"
    kinds = {d["type"] for d in decisions}
    assert {"staff.off_duty", "staff.on_duty", "task.escalated"} <= kinds, kinds
    dispatched = [d for d in decisions if d["type"] == "task.dispatched"]
    assert dispatched and all(d.get("reason") for d in dispatched)
    assert all(d.get("reason") for d in decisions if d["type"] == "patient.referred")
    assert any(d["kind"] == "clean_terminal" for d in dispatched)
    figures = json.loads(report.read_text())
    assert set(figures["by_acuity"]) > {"3"} and figures["sla_breaches"]
    # The record opens with the run's header: solve needs no --config to reproduce it.
    assert json.loads(record.read_text().splitlines()[0])["type"] == "run.header"
    assert_solve_reproduces(record, out, topics.env, tmp_path)

    # The decisions topic carries the same fields as the --out file.
    published = [
        ev.parse_json(m.value, ev.DECISIONS)
        for m in read_topic(topics.config, topics.config.kafka.decisions_topic)
        if bus.header(m, "run") == figures["run_id"]
    ]
    assert any(isinstance(d, ev.TaskDispatched) and d.reason for d in published)
    assert any(isinstance(d, ev.StaffOffDuty) for d in published)


LOOKAHEAD = """
[arrivals]
interval_s = 4.0
acuity_mix = [0.1, 0.2, 0.4, 0.2, 0.1]

[scheduler]
explain = true
lookahead_s = 60.0
"""


def test_holds_over_kafka_survive_a_scheduler_crash_and_replay_exactly(
    topics: Topics, database, tmp_path
):
    """Looking ahead over Kafka and PostgreSQL: the holds are decisions on the topic like
    the others; the scheduler dies right after the commit of tick 230 (past its snapshot of
    tick 200, with the holds then live and spent in it), is restarted, restores the
    snapshot and replays the ticks after it, and the run's decisions are still those
    `hospital solve` makes of its events (tests/unit/test_snapshot.py restarts at every
    tick where a hold is live)."""
    config_path = tmp_path / "lookahead.toml"
    config_path.write_text(LOOKAHEAD)
    run = run_kafka(
        {**topics.env, "HOSPITAL_FAULT": "after_commit:230"},
        database.url,
        tmp_path,
        "--config",
        str(config_path),
        speed=SPEED,
        duration="7m",
    )
    record, out, report = run.record, run.out, run.report
    log = (tmp_path / "hospital-logs" / "scheduler.log").read_text()
    assert "fault point after_commit: dying at tick" in log, log[-3000:]
    assert "restoring from the snapshot after tick" in log, log[-3000:]
    decisions = jsonl_lines(out)
    held = [d for d in decisions if d["type"] in ("staff.held", "room.held")]
    assert {d["type"] for d in held} == {"staff.held", "room.held"}
    assert all(d["reason"] for d in held)
    figures = json.loads(report.read_text())
    Audit(Config().replace(**shareable_of(record)), record, out)  # every invariant, holds too
    assert_solve_reproduces(record, out, topics.env, tmp_path)
    published = [
        ev.parse_json(m.value, ev.DECISIONS)
        for m in read_topic(topics.config, topics.config.kafka.decisions_topic)
        if bus.header(m, "run") == figures["run_id"]
    ]
    assert sum(isinstance(d, (ev.StaffHeld, ev.RoomHeld)) for d in published) == len(held)


def shareable_of(record) -> dict:
    """The config sections a record's header carries."""
    return json.loads(record.read_text().splitlines()[0])["config"]
