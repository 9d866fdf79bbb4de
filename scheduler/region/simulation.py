"""The region simulated around its `Network` (`hospital region run`), and a recorded region
log replayed through it (`hospital region solve`).

Each hospital has its own patients (`Demand` of its seed stream) and its own simulated
staff, as a single hospital's run has; an accepted transfer's patient is driven over and
arrives at the receiving hospital after the travel time. The loop runs a tick when an event
is due, and every tick while transfers are pending. The record holds every hospital's
inbound events (`hospital`, `tick`), the transfers' arrivals among them; the coordinator's
offers are decisions, made again by the replay.
"""

from __future__ import annotations

import contextlib
import dataclasses
import heapq
import itertools
import json
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from scheduler import events as ev
from scheduler import jsonl
from scheduler.demand import Demand
from scheduler.engine import canonical_order, covering_tick
from scheduler.region import coordinator as coordinators
from scheduler.region import events as rev
from scheduler.region.audit import RegionAuditor
from scheduler.region.config import RegionConfig
from scheduler.region.coordinator import Request
from scheduler.region.network import COORDINATOR, Network, RegionTick
from scheduler.runs import new_kpi
from scheduler.simulation import Clock, completion

HEADER = "region.header"
# The decisions about a pending request after it was made: its offers, answers and its end.
_OF_A_REQUEST = (
    rev.TransferOffered,
    rev.TransferDeclined,
    rev.TransferAccepted,
    rev.PatientReferredOut,
)


@dataclass
class _World:
    """The simulated side of one hospital: its patients, its staff's completions."""

    demand: Demand
    patients: Iterator[ev.PatientArrived]


class RegionKpi:
    """The figures of a region's run, from its ticks alone: per hospital (the single
    hospital's report, where `referred` counts the patients it could not take itself) and
    for the region.

    A warm-up (`warmup_ms`) is left out as the single hospital's KPIs leave it out: each
    hospital's figures are its own report's with that warm-up; the region's counts are of
    the patients who arrived at their own hospital after it (a request, its offers, its
    answers, its transfer or its referral out are counted with the patient), and a
    hospital's `transfers_in` of the transfers that arrived there after it."""

    def __init__(self, region: RegionConfig, coordinator: str, warmup_ms: int = 0):
        self.region = region
        self.coordinator = coordinator
        self.warmup_ms = warmup_ms
        self.counted_after = warmup_ms if warmup_ms else -1  # what happens later counts
        self.hospitals = {m.hospital_id: new_kpi(m.config, warmup_ms) for m in region.hospitals}
        self.counts: dict[str, int] = defaultdict(int)
        self.per_hospital: dict[str, dict[str, int]] = {h: defaultdict(int) for h in region.ids}
        self.travel_s: list[float] = []
        # each pending request: when it was made, and whether its patient counts
        self.requested_ms: dict[tuple[str, str], tuple[int, bool]] = {}
        self.waits_s: list[float] = []
        self.transfers_by_pair: Counter[tuple[str, str]] = Counter()  # (from, to) -> accepted

    def collect(self, out: RegionTick) -> None:
        after = self.counted_after
        arrived_ms: dict[tuple[str, str], int] = {}  # this tick's own arrivals
        for hospital_id, result in out.results.items():
            # the offers are the coordinator's, not the hospital's own inbound events
            own = [e for e in result.consumed if not isinstance(e, rev.TransferOffered)]
            self.hospitals[hospital_id].collect(dataclasses.replace(result, consumed=own))
            for event in own:
                if isinstance(event, rev.TransferArrived):
                    if event.time_ms > after:
                        self.per_hospital[hospital_id]["transfers_in"] += 1
                elif isinstance(event, ev.PatientArrived):
                    arrived_ms[hospital_id, event.patient_id] = event.time_ms
                    if event.time_ms > after:
                        self.counts["arrivals"] += 1
        for hospital_id, decision in out.decisions:
            if isinstance(decision, ev.PatientReferred):  # a patient's own tick decides them
                if arrived_ms.get((hospital_id, decision.patient_id), decision.time_ms) > after:
                    self.counts["referred_out"] += 1
                    self.per_hospital[hospital_id]["referred_out"] += 1
            elif isinstance(decision, rev.TransferRequested):
                key = decision.origin, decision.patient_id
                counted = arrived_ms.get(key, decision.time_ms) > after
                self.requested_ms[key] = (decision.time_ms, counted)
                self.counts["requested"] += counted
            else:
                self._answer(decision)

    def _answer(self, decision: ev.Decision) -> None:
        """A request's offer, answer or end, counted with its patient."""
        if not isinstance(decision, _OF_A_REQUEST):
            return
        key = decision.origin, decision.patient_id
        # a request never seen (its stored row unreadable, skipped by a follower): the
        # answer still counts, by its own time, with no wait to measure
        requested_ms, counted = self.requested_ms.get(
            key, (None, decision.time_ms > self.counted_after)
        )
        if isinstance(decision, (rev.TransferAccepted, rev.PatientReferredOut)):
            self.requested_ms.pop(key, None)  # the request's end
        if not counted:
            return
        if isinstance(decision, rev.TransferOffered):
            self.counts["offers"] += 1
        elif isinstance(decision, rev.TransferDeclined):
            self.counts["declined"] += 1
        elif isinstance(decision, rev.TransferAccepted):
            self.counts["transfers"] += 1
            self.per_hospital[decision.origin]["transfers_out"] += 1
            self.transfers_by_pair[decision.origin, decision.to] += 1
            self.travel_s.append(self.region.travel_ms[decision.origin, decision.to] / 1000)
            if requested_ms is not None:
                self.waits_s.append((decision.time_ms - requested_ms) / 1000)
        else:
            self.counts["referred_out"] += 1
            self.per_hospital[decision.origin]["referred_out"] += 1

    def report(self, end_ms: int | None) -> dict[str, Any]:
        hospitals = {}
        occupancy = []
        for hospital_id, kpi in self.hospitals.items():
            figures = kpi.report(end_ms)
            own = self.per_hospital[hospital_id]
            hospitals[hospital_id] = {
                "arrivals": figures["arrivals"],
                "admitted": figures["admitted"],
                "not_taken": figures["referred"],
                "transfers_in": own["transfers_in"],
                "transfers_out": own["transfers_out"],
                "referred_out": own["referred_out"],
                "room_occupancy": figures["room_occupancy"],
            }
            occupancy.append(figures["room_occupancy"])
        arrivals = self.counts["arrivals"]
        referred_out = self.counts["referred_out"]
        region = {
            "coordinator": self.coordinator,
            "hospitals": len(hospitals),
            "arrivals": arrivals,
            "referred_out": referred_out,
            "referred_out_rate": round(referred_out / arrivals, 6) if arrivals else 0.0,
            "requested": self.counts["requested"],
            "offers": self.counts["offers"],
            "declined": self.counts["declined"],
            "transfers": self.counts["transfers"],
            "mean_transfer_travel_s": _mean(self.travel_s),
            "mean_wait_for_acceptance_s": _mean(self.waits_s),
            "occupancy_mean": round(statistics.fmean(occupancy), 6) if occupancy else 0.0,
            "occupancy_spread": (
                round(statistics.pstdev(occupancy), 6) if len(occupancy) > 1 else 0.0
            ),
            "occupancy_range": round(max(occupancy) - min(occupancy), 6) if occupancy else 0.0,
        }
        if self.warmup_ms:  # a run's own report has none: it stays as it was
            region["warmup_s"] = self.warmup_ms / 1000
        return {"region": region, "hospitals": hospitals}


def _mean(values: list[float]) -> float:
    return round(statistics.fmean(values), 3) if values else 0.0


@dataclass
class RegionRun:
    report: dict[str, Any]
    ticks: int
    rejected: list[str] = dataclasses.field(default_factory=list)  # "hospital tick N: why"


def write_header(stream: IO[str], region: RegionConfig, seed: int, coordinator: str, **more):
    fields = {
        **more,
        "type": HEADER,
        "region": dict(region.data),
        "hospitals": list(region.ids),
        "seed": seed,
        "coordinator": coordinator,
    }
    stream.write(json.dumps(fields, sort_keys=True) + "\n")


def simulate_region(
    region: RegionConfig,
    coordinator: str,
    duration_ms: int,
    *,
    seed: int | None = None,
    record: Path | None = None,
    out: Path | None = None,
    on_tick: Callable[[RegionTick], None] | None = None,
    speed: float | None = None,
) -> RegionRun:
    """Simulate the region for `duration_ms` under `coordinator`; write the inbound record
    and the decisions if asked; its KPIs. Every tick is checked by the hospitals' auditors
    (as their configs ask) and by the region's. At a `speed` (a multiple of real time;
    None: as fast as the CPU allows) each tick waits for the wall clock; the decisions are
    the same."""
    seed = region.seed if seed is None else seed
    network = Network(region, coordinators.make(coordinator))
    auditor = RegionAuditor(region, network.transfers)
    kpi = RegionKpi(region, coordinator)
    due: list[tuple[int, int, str, ev.Event]] = []  # (time, order, hospital, event): a heap
    order = itertools.count()
    worlds: dict[str, _World] = {}

    def push(hospital_id: str, event: ev.Event) -> None:
        heapq.heappush(due, (event.time_ms, next(order), hospital_id, event))

    def next_patient(hospital_id: str) -> None:
        patient = next(worlds[hospital_id].patients)
        if patient.time_ms <= duration_ms:
            push(hospital_id, patient)

    for member in region.hospitals:
        demand = Demand(member.config, member.seed(seed))
        worlds[member.hospital_id] = _World(demand, demand.arrivals())
        next_patient(member.hospital_id)
    ticks = 0
    clock = Clock(speed)
    with _Files(record, out) as files:
        if files.record:
            write_header(files.record, region, seed, coordinator, duration_s=duration_ms / 1000)
        while due or network.busy():
            tick = _next_tick(network, due[0][0] if due else None)
            now_ms = tick * network.tick_ms
            if now_ms > duration_ms:
                break
            inbound: dict[str, list[ev.Event]] = defaultdict(list)
            while due and due[0][0] <= now_ms:
                _, _, hospital_id, event = heapq.heappop(due)
                inbound[hospital_id].append(event)
                if type(event) is ev.PatientArrived:
                    next_patient(hospital_id)
            clock.wait_until(now_ms)
            result = network.tick(tick, inbound)
            ticks += 1
            for hospital_id, hospital_result in result.results.items():
                layout = network.members[hospital_id].hospital.layout
                for decision in hospital_result.decisions:
                    if isinstance(decision, ev.TaskDispatched):
                        work = completion(layout, worlds[hospital_id].demand, decision)
                        push(hospital_id, work)
            for accepted, request in result.accepted:
                push(accepted.to, _arrival(region, accepted, request, now_ms))
            auditor.check(result)
            kpi.collect(result)
            files.write(result, inbound)
            if on_tick:
                on_tick(result)
    report = kpi.report(duration_ms)
    report["region"]["in_flight"] = auditor.in_flight()
    report["region"]["invariants_checked"] = True
    return RegionRun(report, ticks)


def _next_tick(network: Network, next_event_ms: int | None) -> int:
    after = network.last_tick + 1
    if network.busy() or next_event_ms is None:
        return after
    return max(covering_tick(next_event_ms, network.tick_ms), after)


def _arrival(
    region: RegionConfig, accepted: rev.TransferAccepted, request: Request, now_ms: int
) -> ev.Event:
    """The accepted patient, at the receiving hospital's door after the drive."""
    patient_id = rev.arriving_id(accepted.origin, accepted.patient_id)
    return rev.TransferArrived(
        f"transfer-{patient_id}",
        now_ms + region.travel_ms[accepted.origin, accepted.to],
        patient_id,
        acuity=request.acuity,
        isolation=request.isolation,
        transferred_from=accepted.origin,
    )


class _Files(contextlib.ExitStack):
    def __init__(self, record: Path | None, out: Path | None):
        super().__init__()
        self._paths = (record, out)
        self.record: IO[str] | None = None
        self.out: IO[str] | None = None

    def __enter__(self) -> _Files:
        super().__enter__()
        record, out = self._paths
        self.record = self.enter_context(open(record, "w")) if record else None
        self.out = self.enter_context(open(out, "w")) if out else None
        return self

    def write(self, result: RegionTick, inbound: dict[str, list[ev.Event]]) -> None:
        if self.record:
            self.record.write(
                "".join(
                    jsonl.dumps(e, tick=result.tick, hospital=h) + "\n"
                    for h, events in inbound.items()
                    for e in canonical_order(events)
                )
            )
        if self.out:
            write_decisions(self.out, result)


def write_decisions(stream: IO[str], result: RegionTick) -> None:
    stream.write(
        "".join(
            (jsonl.dumps(d, hospital=h) if h != COORDINATOR else d.to_json()) + "\n"
            for h, d in result.decisions
        )
    )


# --- replay -------------------------------------------------------------------------------


@dataclass
class Recorded:
    header: dict[str, Any]
    ticks: dict[int, dict[str, list[ev.Event]]]


def read_record(path: Path, region: RegionConfig) -> Recorded:
    """A region's record, by tick and hospital. Raises `jsonl.LogError` at a bad line."""
    try:
        stream = open(path, "rb")  # noqa: SIM115
    except OSError as exc:
        raise jsonl.LogError(f"{path}: cannot read: {exc.strerror}") from None
    header: dict[str, Any] = {}
    ticks: dict[int, dict[str, list[ev.Event]]] = defaultdict(lambda: defaultdict(list))
    last_tick = -1
    with stream:
        for number, raw in enumerate(stream, start=1):
            where = f"{path}:{number}"
            try:
                data = ev.loads(raw)
                if not isinstance(data, dict):
                    raise ev.BadEvent("an event must be a JSON object")
                if data.get("type") == jsonl.HEADER:
                    raise ev.BadEvent("a hospital's record (hospital run --record), not a region's")
                if data.get("type") == HEADER:
                    if number != 1:
                        raise ev.BadEvent(f"a {HEADER} belongs on the first line")
                    header = data
                    if header.get("hospitals") != list(region.ids):
                        raise ev.BadEvent(
                            f"recorded for hospitals {ev.shown(header.get('hospitals'))}, "
                            f"not {list(region.ids)}"
                        )
                    continue
                hospital_id = data.get("hospital")
                if hospital_id not in region.ids:
                    raise ev.BadEvent(f"hospital {ev.shown(hospital_id)} is not in the region")
                tick = ev.recorded_tick(data)
                if tick is None:
                    raise ev.BadEvent("no tick: a region's record says which tick took it")
                event = rev.parse_inbound(data)
            except ev.BadEvent as exc:
                raise jsonl.LogError(f"{where}: {exc}") from None
            if tick < last_tick:
                raise jsonl.LogError(f"{where}: tick {tick} comes after tick {last_tick}")
            last_tick = tick
            ticks[tick][hospital_id].append(event)
    if not header:
        raise jsonl.LogError(f"{path}: no {HEADER} on its first line: not a region's record")
    return Recorded(header, ticks)


def replay_region(
    region: RegionConfig,
    recorded: Recorded,
    coordinator: str,
    out: Path | None = None,
    *,
    on_tick: Callable[[RegionTick], None] | None = None,
    warmup_ms: int = 0,
) -> RegionRun:
    """The recorded inbound events through a fresh region, tick by tick: the same decisions
    as the run that recorded them, with the same coordinator; each tick handed to
    `on_tick` too; the KPIs leaving out the first `warmup_ms`."""
    network = Network(region, coordinators.make(coordinator))
    auditor = RegionAuditor(region, network.transfers)
    kpi = RegionKpi(region, coordinator, warmup_ms)
    recorded_ticks = sorted(recorded.ticks)
    duration_ms = recorded_duration_ms(recorded)
    ticks, index = 0, 0
    rejected: list[str] = []
    with open(out, "w") if out else contextlib.nullcontext() as stream:
        while index < len(recorded_ticks) or network.busy():
            next_ms = (
                recorded_ticks[index] * network.tick_ms if index < len(recorded_ticks) else None
            )
            tick = _next_tick(network, next_ms)
            if tick * network.tick_ms > duration_ms:
                break
            inbound: dict[str, list[ev.Event]] = {}
            if index < len(recorded_ticks) and tick == recorded_ticks[index]:
                inbound = recorded.ticks[tick]
                index += 1
            elif index < len(recorded_ticks) and tick > recorded_ticks[index]:
                raise jsonl.LogError(f"recorded tick {recorded_ticks[index]} cannot be run")
            result = network.tick(tick, inbound)
            ticks += 1
            rejected += [
                f"{hospital_id} tick {tick}: {event.TYPE} {event.event_id}: {why}"
                for hospital_id, hospital_result in result.results.items()
                for event, why in hospital_result.rejected
            ]
            auditor.check(result)
            kpi.collect(result)
            if stream:
                write_decisions(stream, result)
            if on_tick:
                on_tick(result)
    report = kpi.report(duration_ms)
    report["region"]["in_flight"] = auditor.in_flight()
    return RegionRun(report, ticks, rejected)


def recorded_duration_ms(recorded: Recorded) -> int:
    """The recorded run's length (its header's `duration_s`). Raises `jsonl.LogError`."""
    duration = recorded.header.get("duration_s")
    if isinstance(duration, bool) or not isinstance(duration, (int, float)) or duration < 0:
        raise jsonl.LogError(f"{HEADER}: no duration_s: not a region's record")
    return round(duration * 1000)
