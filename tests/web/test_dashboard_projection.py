"""The dashboard's projection follows the hospital from its decisions alone, and with the
consumed events its figures are the KPI report's; /metrics, read back by prometheus-client's
own parser, agrees with that report."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from dashboard.metrics import registry_for, render
from dashboard.projection import ROLES, Projection
from scheduler import config as config_module
from scheduler import scenarios
from scheduler.runs import new_kpi, simulate_run


def core_view(scheduler):
    h = scheduler.hospital
    rooms = {r.room_id: (r.status, r.patient_id) for r in h.rooms.values()}
    staff = {
        s.staff_id: (s.task_id, s.location if s.task_id is None else None) for s in h.staff.values()
    }
    queues = {role: [t.task_id for t in tasks] for role, tasks in h.queues().items()}
    return rooms, staff, queues


def projected_view(p: Projection):
    rooms = {r.room_id: (r.state, r.patient_id) for r in p.rooms.values()}
    staff = {
        s.staff_id: (s.task_id, s.place if s.task_id is None else None) for s in p.staff.values()
    }
    queues = {role: list(tasks) for role, tasks in p.waiting.items()}
    return rooms, staff, queues


@pytest.mark.parametrize("travel", ["seed", "layout"])
@pytest.mark.parametrize("with_inbound", [True, False])
def test_projection_follows_the_hospital_tick_by_tick(travel, with_inbound):
    config = config_module.load(None, {}).replace(
        travel={"model": travel}, arrivals={"process": "poisson"}
    )
    p = Projection.for_config(config)
    checked = 0

    def on_tick(scheduler, result):
        nonlocal checked
        if with_inbound:
            p.apply_result(result)
        else:
            p.apply(result.tick, result.time_ms, result.decisions)
        assert projected_view(p) == core_view(scheduler), f"tick {result.tick}"
        checked += 1

    simulate_run(config, 30 * 60_000, on_tick=on_tick)
    assert checked > 500


def test_figures_and_metrics_agree_with_the_kpi_report():
    config = config_module.load(None, {}).replace(arrivals={"interval_s": 3.0})
    duration = 2 * 3600_000
    p = Projection.for_config(config)
    report = simulate_run(config, duration, on_tick=lambda s, r: p.apply_result(r))
    p.finish(duration)
    with p.lock:
        tiles = p.tiles()
    for key in (
        "arrivals",
        "admitted",
        "referred",
        "referral_rate",
        "discharged",
        "in_building",
        "room_occupancy",
        "utilisation",
    ):
        assert tiles[key] == report[key], key
    assert tiles["wait_mean_s"] == {r: w["mean"] for r, w in report["wait_s"].items()}
    # by hour of the day (the run crosses no midnight here; tests/unit/test_by_hour.py does)
    assert p.by_hour() == report["by_hour"] == p.snapshot()["by_hour"]
    assert [h["hour"] for h in report["by_hour"]] == [0, 1]

    text = render(registry_for(p)).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}

    def value(name, suffix="_total", **labels):
        for sample in families[name].samples:
            if sample.name == name + suffix and all(
                sample.labels.get(k) == v for k, v in labels.items()
            ):
                return sample.value
        raise KeyError((name, suffix, labels))

    assert families["hospital_arrivals"].type == "counter"
    assert value("hospital_arrivals") == report["arrivals"]
    assert value("hospital_admissions") == report["admitted"]
    assert value("hospital_referrals") == report["referred"]
    assert value("hospital_discharges") == report["discharged"]
    assert value("hospital_ticks") == report["ticks"]
    assert value("hospital_rejected_events") == report["rejected_events"]
    assert value("hospital_duplicate_events") == report["duplicate_events"]
    assert value("hospital_tick_solve_seconds", "_count") == report["ticks_solved"]
    assert value("hospital_events_applied", type="patient.arrived") == report["arrivals"]
    assert value("hospital_decisions", type="patient.referred") == report["referred"]
    for role, wait in report["wait_s"].items():
        count = value("hospital_task_wait_seconds", "_count", role=role)
        assert count == wait["tasks"]
        mean = value("hospital_task_wait_seconds", "_sum", role=role) / count
        assert round(mean, 3) == wait["mean"]
        assert value("hospital_task_wait_seconds", "_bucket", role=role, le="+Inf") == count
    staff = value("hospital_staff", "", role="porter")
    assert staff == config.staff.porters
    rooms = sum(s.value for s in families["hospital_rooms"].samples)
    assert rooms == len(config.hospital.floors) * config.hospital.rooms_per_floor
    assert value("hospital_simulated_time_seconds", "") == duration / 1000


def test_series_and_hourly_counts():
    config = config_module.load(None, {})
    p = Projection.for_config(config, sample_ms=60_000)
    report = simulate_run(config, 3 * 3600_000, on_tick=lambda s, r: p.apply_result(r))
    snap = p.snapshot()
    assert [pt["t"] for pt in snap["series"][:3]] == [0, 60, 120]
    assert len(snap["series"]) == 3 * 60 + 1
    assert sum(h["arrivals"] for h in snap["hourly"]) == report["arrivals"]
    assert sum(h["referred"] for h in snap["hourly"]) == report["referred"]
    assert {f["floor"] for f in snap["floors"]} == {"A", "B"}
    assert p.snapshot(series_from=100)["series"] == snap["series"][100:]


def test_a_large_hospital_snapshot_is_cheap():
    import time

    config = scenarios.load("hospital")
    p = Projection.for_config(config)
    simulate_run(config, 10 * 60_000, on_tick=lambda s, r: p.apply_result(r))
    started = time.perf_counter()
    snap = p.snapshot()
    assert time.perf_counter() - started < 0.1
    assert sum(len(f["rooms"]) for f in snap["floors"]) >= 150


GOLDEN = Path(__file__).resolve().parents[1] / "golden"


@pytest.mark.parametrize(
    "scenario", ["isolation", "shift_change", "sla_pressure", "acuity_mix", "long_waiting_lists"]
)
def test_projection_follows_the_golden_scenarios(scenario):
    """Terminal cleans, shifts, escalations: the projection keeps up with the core."""
    config = config_module.load(GOLDEN / scenario / "config.toml", {})
    p = Projection.for_config(config)

    def on_tick(scheduler, result):
        p.apply_result(result)
        assert projected_view(p) == core_view(scheduler), f"tick {result.tick}"

    report = simulate_run(config, 30 * 60_000, on_tick=on_tick)
    p.finish(30 * 60_000)
    with p.lock:
        tiles = p.tiles()
    for key in ("arrivals", "referred", "discharged", "room_occupancy", "utilisation"):
        assert tiles[key] == report[key], key
    assert tiles["wait_mean_s"] == {r: w["mean"] for r, w in report["wait_s"].items()}


# --- the projection of a run in this process (dashboard.embedded) ------------------------


@pytest.mark.parametrize("config_name", ["default", "isolation", "shift_change", "sla_pressure"])
def test_the_live_projection_equals_the_decisions_projection(config_name):
    """Counted on the run's thread and viewed from the scheduler, the live projection shows
    the same hospital and the same figures, series and metrics as the one folded from the
    decisions; its view follows the scheduler tick by tick when refreshed each tick."""
    from dashboard.embedded import LiveProjection

    config = (
        config_module.load(None, {}).replace(
            arrivals={"process": "poisson"}, travel={"model": "layout"}
        )
        if config_name == "default"
        else config_module.load(GOLDEN / config_name / "config.toml", {})
    )
    folded = Projection.for_config(config, sample_ms=30_000)
    kpi = new_kpi(config)
    live = LiveProjection.for_config(config, kpi=kpi, sample_ms=30_000, view_s=0)

    def on_tick(scheduler, result):
        folded.apply_result(result)
        live.on_tick(scheduler, result)
        assert projected_view(live) == core_view(scheduler), f"tick {result.tick}"
        assert live.waiting_counts() == folded.waiting_counts()
        assert {r: live.busy[r] for r in ROLES} == {r: folded.busy[r] for r in ROLES}

    duration = 90 * 60_000
    report = simulate_run(config, duration, on_tick=on_tick, kpi=kpi)
    for p in (folded, live):
        p.finish(duration)
    with folded.lock, live.lock:
        assert live.tiles() == folded.tiles()
        assert live.series == folded.series
        assert len(live.series) == duration // 30_000 + 1  # a point at each mark, and at 0
        assert live.hourly == folded.hourly
        assert sorted(live.hourly) == [0, 1]
        assert live.waits_ms == folded.waits_ms
        assert live.by_hour() == folded.by_hour() == report["by_hour"]
    assert live.tiles()["arrivals"] == report["arrivals"] > 0
    assert render(registry_for(live)) == render(registry_for(folded))


def test_the_live_view_is_refreshed_at_most_every_view_s():
    from dashboard.embedded import LiveProjection

    config = config_module.load(None, {})
    kpi = new_kpi(config)
    live = LiveProjection.for_config(config, kpi=kpi, view_s=3600)
    behind = []

    def on_tick(scheduler, result):
        live.on_tick(scheduler, result)
        behind.append(projected_view(live) != core_view(scheduler))

    simulate_run(config, 10 * 60_000, on_tick=on_tick, kpi=kpi)
    assert not behind[0] and any(behind)  # the first tick's view, then no other
    live.finish(10 * 60_000)
    assert live.snapshot()["tiles"]["arrivals"] > 0


def test_the_snapshot_marks_isolation_rooms_and_the_patients_esi_and_counts_rooms_by_state():
    """Issue 22, item 7, what the page draws from: rooms able to isolate, each patient's ESI
    level and isolation need (from the consumed events), the run's name and length; and the
    rooms by state, kept as rooms move on, in each time-series point."""
    from collections import Counter

    config = config_module.load(None, {}).replace(
        hospital={"isolation_rooms": ["A1", "B1"]},
        arrivals={"acuity_mix": [0.1, 0.2, 0.4, 0.2, 0.1], "isolation_share": 0.3},
    )
    p = Projection.for_config(config, label="ward B", duration_ms=20 * 60_000, sample_ms=5_000)
    seen: dict[str, set] = {"esi": set(), "needs": set()}

    def on_tick(scheduler, result):
        p.apply_result(result)
        snap = p.snapshot()
        rooms = [room for floor in snap["floors"] for room in floor["rooms"]]
        assert {r["id"] for r in rooms if r["isolation"]} == {"A1", "B1"}
        for room in rooms:
            patient = scheduler.hospital.patients.get(room["patient"])
            if patient is not None:
                assert (room["esi"], room["isolation_need"]) == (patient.acuity, patient.isolation)
                seen["esi"].add(room["esi"])
                seen["needs"].add(room["isolation_need"])
            else:
                assert "esi" not in room
        for queue in snap["queues"].values():
            for task in queue["tasks"]:  # a cleaning's patient has left: none
                patient = scheduler.hospital.patients.get(task["patient"])
                assert task.get("esi") == (None if patient is None else patient.acuity)
        assert p.room_counts == {
            state: Counter(r.state for r in p.rooms.values())[state]
            for state in ("free", "booked", "occupied", "dirty", "cleaning")
        }

    simulate_run(config, 20 * 60_000, on_tick=on_tick)
    snap = p.snapshot()
    assert (snap["label"], snap["duration_s"]) == ("ward B", 1200.0)
    assert seen == {"esi": {1, 2, 3, 4, 5}, "needs": {True, False}}
    assert all(sum(point["rooms"].values()) == 6 for point in snap["series"])


def test_the_live_pages_tiles_leave_the_runs_warm_up_out_as_its_kpi_report_does():
    from dashboard.embedded import LiveProjection

    config = config_module.load(None, {}).replace(arrivals={"process": "poisson"})
    duration, warmup = 40 * 60_000, 10 * 60_000
    kpi = new_kpi(config, warmup)
    live = LiveProjection.for_config(config, kpi=kpi, view_s=0)
    report = simulate_run(config, duration, on_tick=live.on_tick, kpi=kpi)
    live.finish(duration)
    with live.lock:
        tiles = live.tiles()
    assert report["warmup_s"] == 600.0
    for key in ("arrivals", "referred", "referral_rate", "room_occupancy"):
        assert tiles[key] == report[key], key
    for role in ROLES:
        assert tiles["utilisation"][role] == report["utilisation"][role], role
        assert tiles["wait_mean_s"][role] == report["wait_s"][role]["mean"], role


def test_holds_are_followed_from_the_decisions_and_by_the_live_view():
    """Looking ahead: the projection shows a member held (until when) and a room kept (for
    whom), as the scheduler has them, from the decisions alone and in the live view."""
    from dashboard.embedded import LiveProjection

    config = config_module.load(GOLDEN / "acuity_mix" / "config.toml", {}).replace(
        scheduler={"lookahead_s": 60.0}
    )
    folded = Projection.for_config(config)
    kpi = new_kpi(config)
    live = LiveProjection.for_config(config, kpi=kpi, view_s=0)
    seen = {"staff": 0, "room": 0}

    def holds_of(scheduler, now):
        staff = {
            s.staff_id: s.held_until_ms
            for s in scheduler.hospital.staff.values()
            if s.held_until_ms is not None and s.held_until_ms > now
        }
        rooms = {
            r.room_id: r.reserved_for
            for r in scheduler.hospital.rooms.values()
            if r.held_until_ms is not None and r.held_until_ms > now
        }
        return staff, rooms

    def shown(p):
        snapshot = p.snapshot()
        staff = {
            s["id"]: round(s["held_until_s"] * 1000) for s in snapshot["staff"] if s["held_until_s"]
        }
        rooms = {
            r["id"]: r["held_for"]
            for f in snapshot["floors"]
            for r in f["rooms"]
            if "held_for" in r
        }
        return staff, rooms

    def on_tick(scheduler, result):
        folded.apply_result(result)
        live.on_tick(scheduler, result)
        expected = holds_of(scheduler, result.time_ms)
        assert shown(folded) == expected == shown(live), f"tick {result.tick}"
        seen["staff"] += bool(expected[0])
        seen["room"] += bool(expected[1])

    simulate_run(config, 20 * 60_000, on_tick=on_tick, kpi=kpi)
    assert seen["staff"] and seen["room"]
