"""The two ways to use the scheduler from the command line, as library functions:
`simulate_run` (the hospital, simulated around the scheduler) and `replay` (a recorded event
log through the scheduler, no simulation, no database)."""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scheduler import config as config_module
from scheduler import events as ev
from scheduler import jsonl
from scheduler.config import Config, staff_roster
from scheduler.engine import Scheduler, TickResult, canonical_order, covering_tick
from scheduler.events import MAX_TIME_S
from scheduler.kpi import KpiCollector
from scheduler.policies import CpSatPolicy
from scheduler.simulation import Clock, Source, StopFlag, simulate, warm_up
from scheduler.store import NullStore, Store


def new_kpi(config: Config, warmup_ms: int = 0) -> KpiCollector:
    """The KPIs of a run of `config`, leaving out its first `warmup_ms`."""
    per_role: dict[str, int] = defaultdict(int)
    for _, role in staff_roster(config):
        per_role[role] += 1
    rooms = len(config.hospital.floors) * config.hospital.rooms_per_floor
    return KpiCollector(
        rooms, {role: per_role[role] for role in ("porter", "medical", "cleaner")}, warmup_ms
    )


def _policy_extra(scheduler: Scheduler) -> dict[str, Any]:
    extra: dict[str, Any] = {"policy": scheduler.policy.name}
    if isinstance(scheduler.policy, CpSatPolicy):  # it counts its ticks
        extra["ticks_with_solver"] = scheduler.policy.solved
        extra["ticks_forced"] = scheduler.policy.forced
    return extra


def simulate_run(
    config: Config,
    duration_ms: int,
    *,
    speed: float | None = None,
    seed: int | None = None,
    store: Store | None = None,
    record: Path | None = None,
    out: Path | None = None,
    on_tick: Callable[[Scheduler, TickResult], None] | None = None,
    stop: StopFlag | None = None,
    kpi: KpiCollector | None = None,
    warmup_ms: int = 0,
    header: dict[str, Any] | None = None,
    source: Source | None = None,
    generate: bool = True,
) -> dict[str, Any]:
    """Simulate the hospital; write the inbound record and the decisions if asked; the KPIs.

    Each tick goes to the record, the decisions and the store together. At a live speed
    (not `speed=None`), whenever the run waits for the wall clock, the files are flushed
    and the store commits every tick so far, so that what reads them meanwhile (`hospital
    status`, the dashboard) follows the run: a tick at a time, or more when the run lags
    behind the clock. As fast as the CPU allows, the store commits in batches. Setting
    `stop` ends the run at the next tick boundary, everything written up to the last tick;
    the report then has `interrupted_at_ms`, that tick's time, and figures up to it. The
    KPIs are collected by `kpi` if given (fresh, from `new_kpi`): what `on_tick` may read,
    each tick's figures counted before it is called; else they leave out the first
    `warmup_ms` of the run. The tick path is warmed up first (`warm_up`), before the run's
    clock starts: the first tick decides as fast as the others. `header` adds fields to the
    record's `run.header` (the run's planned duration, its label). A `source` (the HL7
    listener's inbox) brings patients from outside, beside the generator's or, with
    `generate=False`, instead of them."""
    warm_up(config)
    scheduler = Scheduler(config)
    kpi = new_kpi(config, warmup_ms) if kpi is None else kpi
    store = store or NullStore()
    with contextlib.ExitStack() as files:
        record_file = files.enter_context(open(record, "w")) if record else None
        if record_file:
            jsonl.write_header(
                record_file,
                config_module.shareable(config),
                config.arrivals.seed if seed is None else seed,
                **(header or {}),
            )
        out_file = files.enter_context(open(out, "w")) if out else None

        def each_tick(result: TickResult) -> None:
            # A tick's lines in one write: a killed run's files end with a whole tick.
            if record_file:
                inbound = result.consumed + [e for e, _ in result.rejected] + result.duplicates
                record_file.write(
                    "".join(
                        jsonl.dumps(e, tick=result.tick) + "\n" for e in canonical_order(inbound)
                    )
                )
            if out_file:
                out_file.write("".join(jsonl.dumps(d) + "\n" for d in result.decisions))
            kpi.collect(result)
            store.save_tick(result)
            if on_tick:
                on_tick(scheduler, result)

        def write_out() -> None:
            # The files first: after a kill the database is never ahead of them.
            for file in (record_file, out_file):
                if file:
                    file.flush()
            store.flush()

        try:
            summary = simulate(
                config,
                scheduler,
                duration_ms,
                seed=seed,
                clock=Clock(speed, stop, on_idle=write_out),
                on_tick=each_tick,
                source=source,
                generate=generate,
            )
        finally:
            store.close()
    report = kpi.report(summary.end_ms, _policy_extra(scheduler))
    if summary.stopped:
        report["interrupted_at_ms"] = summary.end_ms
    if scheduler.auditor is not None:
        report["invariants_checked"] = True
        report["accounted_for"] = scheduler.auditor.accounted_for()
    return report


@dataclass
class Replay:
    report: dict[str, Any]
    rejected: list[str] = field(default_factory=list)  # "N: reason", N the line


def replay(
    config: Config,
    events_path: Path,
    out: Path | None = None,
    on_decisions: Callable[[list], None] | None = None,
    warmup_ms: int = 0,
    make: Callable[[Config], Scheduler] = Scheduler,
    parse: Callable[[Any], ev.Event] | None = None,
) -> Replay:
    """Feed a recorded event log to a fresh scheduler, tick by tick as recorded (or by the
    events' times when the log has no ticks); the KPIs leave out its first `warmup_ms`.
    `make` and `parse` make the scheduler and read the events (a hospital of a distributed
    region: its member's). Raises `jsonl.LogError` on a bad line."""
    records = list(jsonl.read(events_path, parse=parse))
    scheduler = make(config)
    if not records:
        raise jsonl.LogError(f"{events_path}: no events to replay")
    by_tick: dict[int, list[jsonl.Recorded]] = defaultdict(list)
    for record in records:
        tick = (
            record.tick
            if record.tick is not None
            else covering_tick(record.event.time_ms, scheduler.tick_ms)
        )
        if tick * scheduler.tick_ms > MAX_TIME_S * 1000:
            raise jsonl.LogError(
                f"{events_path}:{record.line}: tick {tick} is past the "
                f"{MAX_TIME_S} s that a run may last"
            )
        by_tick[tick].append(record)
    kpi = new_kpi(config, warmup_ms)
    rejected: list[str] = []
    with open(out, "w") if out else contextlib.nullcontext() as out_file:
        for tick in sorted(by_tick):
            batch = by_tick[tick]
            result = scheduler.tick(tick, [r.event for r in batch])
            line_of = {id(r.event): r.line for r in batch}
            rejected += [f"{line_of[id(e)]}: {reason}" for e, reason in result.rejected]
            kpi.collect(result)
            if out_file:
                jsonl.write(out_file, result.decisions)
            if on_decisions:
                on_decisions(result.decisions)
    return Replay(kpi.report(None, _policy_extra(scheduler)), rejected)
