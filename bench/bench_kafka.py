"""Benchmark (not a test): the distributed mode on the real Kafka broker and PostgreSQL.

Prints three figures on the default hospital:
  1. raw kafka-python produce + consume throughput of the N inbound events of a simulated run;
  2. the same N events through a LiveScheduler (one DB transaction per tick, outbox relay),
     and its ratio to 1;
  3. arrival-to-decision latency p50 / p99 (wall ms) with the generator and the workers live.
Topics get unique names and are left behind; the database's run tables are reset.

    python bench/bench_kafka.py [--hours 2] [--fast-speed 10000] [--stop-at-last-event]
                                [--speed 100] [--latency-minutes 60] [--timeout 120]
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import threading
import time
import uuid
from pathlib import Path

from kafka import TopicPartition

from scheduler import config as config_module
from scheduler import events as ev
from scheduler import jsonl
from scheduler.db.ledger import Ledger
from scheduler.runs import simulate_run
from scheduler.services import bus
from scheduler.services.clock import LiveClock
from scheduler.services.generator import run_generator
from scheduler.services.scheduler_service import LiveScheduler
from scheduler.services.worker import run_worker
from scheduler.simulation import arrival_times

DB_URL = "postgresql+psycopg2://hospital@127.0.0.1:5432/hospital_test"
BOOTSTRAP = "127.0.0.1:9092"


def hospital():
    """The default hospital under the layout travel model, where no task takes zero time:
    then a backlog consumed by the events' times forms exactly the ticks of the recorded
    run, and every recorded completion finds its task."""
    return config_module.load(None, {}).replace(travel={"model": "layout"})


def fresh_config():
    """The hospital with topics of its own."""
    name = f"bench-{uuid.uuid4().hex[:10]}"
    config = hospital().replace(kafka={
        "bootstrap_servers": BOOTSTRAP, "inbound_topic": f"{name}.inbound",
        "decisions_topic": f"{name}.decisions", "dispatch_topic_prefix": f"{name}.dispatch.",
        "dead_letter_topic": f"{name}.dead-letter"})
    bus.ensure_topics(config)
    return config


def recorded_events(hours: float) -> list[ev.Event]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.jsonl"
        simulate_run(hospital(), round(hours * 3_600_000), record=path)
        return [r.event for r in jsonl.read(path)]


def produce(config, events, headers=None) -> float:
    """Send every event to the inbound topic and flush; the wall seconds it took."""
    producer = bus.producer(config)
    try:
        started = time.perf_counter()
        for event in events:
            producer.send(config.kafka.inbound_topic, value=bus.encode(event),
                          key=bus.key_of(event), headers=headers or [])
        producer.flush(timeout=60)
        return time.perf_counter() - started
    finally:
        producer.close(timeout=10)


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values) or [float("nan")]
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


# --- 1. raw kafka-python ----------------------------------------------------------------

def raw_baseline(events: list[ev.Event], timeout_s: float) -> dict:
    config = fresh_config()
    produce_s = produce(config, events)
    topic = config.kafka.inbound_topic
    consumer = bus.consumer(config, group_id=None)
    received, started = 0, time.perf_counter()
    try:
        consumer.assign([TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)])
        deadline = started + timeout_s
        while received < len(events) and time.perf_counter() < deadline:
            received += sum(len(r) for r in consumer.poll(timeout_ms=100, max_records=500).values())
        consume_s = time.perf_counter() - started
    finally:
        consumer.close(autocommit=False)
    return {"n": received, "produce_s": produce_s, "consume_s": consume_s,
            "rate": received / (produce_s + consume_s)}


# --- 2. through the scheduler ------------------------------------------------------------

class TimedScheduler(LiveScheduler):
    """Adds up the wall time of its ticks (engine + DB commit) and outbox relays, and stops
    once `expected` events are handled (applied, rejected or duplicate) and relayed."""

    expected = 0
    done_at: float | None = None

    def start(self, fresh: bool) -> None:
        self.spent = {"tick": 0.0, "db": 0.0, "relay": 0.0}
        commit = self.ledger.commit_ticks

        def timed_commit(*args) -> None:
            started = time.perf_counter()
            commit(*args)
            self.spent["db"] += time.perf_counter() - started

        self.ledger.commit_ticks = timed_commit
        super().start(fresh)

    def tick(self, tick, pending):
        started = time.perf_counter()
        result = super().tick(tick, pending)
        self.spent["tick"] += time.perf_counter() - started
        return result

    def relay(self) -> None:
        started = time.perf_counter()
        super().relay()
        self.spent["relay"] += time.perf_counter() - started
        c = self.scheduler.counters if hasattr(self, "scheduler") else None
        if (self.done_at is None and c is not None and self.expected
                and c["events"] + c["rejected"] + c["duplicates"] >= self.expected):
            self.done_at = time.perf_counter()
            self.stop.set()


def through_scheduler(events: list[ev.Event], speed: float, until_last: bool,
                      timeout_s: float) -> dict:
    config = fresh_config()
    run_id = f"bench-{uuid.uuid4().hex[:8]}"
    clock = LiveClock(time.time(), speed)
    # By default the run ends when all N are handled (or at the timeout): with until_ms just
    # past the last event, a fast clock ends the loop before the backlog is drained.
    until_ms = max(e.time_ms for e in events) + 2_000 if until_last else None
    live = TimedScheduler(config, Ledger(DB_URL, config, config.scheduler.policy),
                          run_id=run_id, clock=clock, until_ms=until_ms)
    try:
        started = time.perf_counter()
        live.start(fresh=True)            # records the (empty) topic's end offsets
        start_s = time.perf_counter() - started
        produce_s = produce(config, events, bus.headers(run_id, "bench"))
        live.expected = len(events)
        clock.epoch_s = time.time()       # simulated time 0 is when the loop starts
        timer = threading.Timer(timeout_s, live.stop.set)
        timer.start()
        started = time.perf_counter()
        live.run()
        timer.cancel()
        ended = live.done_at or time.perf_counter()
    finally:
        live.close()
    c = live.scheduler.counters
    handled = c["events"] + c["rejected"] + c["duplicates"]
    return {"n": handled, "applied": c["events"], "rejected": c["rejected"],
            "ticks": live.counters["ticks"], "complete": live.done_at is not None,
            "start_s": start_s, "produce_s": produce_s, "run_s": ended - started,
            "sim_s": clock.now_ms() / 1000, "rate": handled / (ended - started),
            "db_s": live.spent["db"], "engine_s": live.spent["tick"] - live.spent["db"],
            "relay_s": live.spent["relay"]}


# --- 3. arrival-to-decision latency ------------------------------------------------------

def latency(speed: float, minutes: float, timeout_s: float) -> dict:
    config = fresh_config()
    run_id = f"bench-{uuid.uuid4().hex[:8]}"
    duration_ms = round(minutes * 60_000)
    clock = LiveClock(time.time() + 3, speed)  # simulated 0 once every thread is up
    stop = threading.Event()
    live = LiveScheduler(config, Ledger(DB_URL, config, config.scheduler.policy),
                         run_id=run_id, clock=clock, until_ms=duration_ms + 5_000, stop=stop)
    received: dict[str, float] = {}            # patient -> wall time of its first decision
    seed = config.arrivals.seed
    sent_at: dict[str, float] = {}             # patient -> wall time the generator sends it
    for n, at in enumerate(arrival_times(config, seed), start=1):
        if at > duration_ms:
            break
        sent_at[f"patient-{n}"] = clock.epoch_s + at / 1000 / speed

    def decisions() -> None:
        consumer = bus.consumer(config, group_id=None)
        topic = config.kafka.decisions_topic
        try:
            consumer.assign([TopicPartition(topic, p)
                             for p in range(bus.topic_partitions(config)[topic])])
            while not stop.is_set():
                for records in consumer.poll(timeout_ms=50).values():
                    now = time.time()
                    for m in records:
                        d = ev.parse_json(m.value, ev.DECISIONS)
                        if isinstance(d, (ev.PatientAdmitted, ev.PatientReferred)):
                            received.setdefault(d.patient_id, now)
        finally:
            consumer.close(autocommit=False)

    threads = [threading.Thread(target=decisions, daemon=True),
               threading.Thread(target=run_generator, daemon=True, args=(config,), kwargs=dict(
                   run_id=run_id, clock=clock, duration_ms=duration_ms, seed=seed, stop=stop))]
    threads += [threading.Thread(target=run_worker, daemon=True, args=(config, role), kwargs=dict(
        run_id=run_id, clock=clock, worker_id=f"bench-{role}", until_ms=duration_ms, stop=stop,
        group_id=f"{config.kafka.inbound_topic}-{role}")) for role in bus.ROLES]
    timer = threading.Timer(timeout_s, stop.set)
    try:
        live.start(fresh=True)                 # before any event of the run is sent
        for t in threads:
            t.start()
        timer.start()
        live.run()
        time.sleep(0.5)                       # the last decisions reach the consumer
    finally:
        timer.cancel()
        stop.set()
        for t in threads:
            if t.ident is not None:   # started
                t.join(timeout=15)
        live.close()
    wall_ms = [(received[p] - sent_at[p]) * 1000 for p in sent_at if p in received]
    return {"n": len(wall_ms), "arrivals": len(sent_at), "ticks": live.counters["ticks"],
            "rejected": live.scheduler.counters["rejected"], "p50": percentile(wall_ms, 50),
            "p99": percentile(wall_ms, 99), "max": percentile(wall_ms, 100),
            "wall_s": duration_ms / 1000 / speed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=2.0, help="simulated run giving the N events")
    parser.add_argument("--fast-speed", type=float, default=10_000, help="LiveClock speed for 2")
    parser.add_argument("--stop-at-last-event", action="store_true",
                        help="2 ends at until_ms just past the last event, not when all N are in")
    parser.add_argument("--speed", type=float, default=100, help="LiveClock speed for 3")
    parser.add_argument("--latency-minutes", type=float, default=60, help="simulated, for 3")
    parser.add_argument("--timeout", type=float, default=120, help="wall seconds per part")
    args = parser.parse_args()

    events = recorded_events(args.hours)
    n = len(events)
    print(f"{n} inbound events from {args.hours:g} simulated hours; {os.cpu_count()} CPUs; "
          f"Kafka {BOOTSTRAP}, PostgreSQL 127.0.0.1:5432")
    raw = raw_baseline(events, args.timeout)
    print(f"1. raw: produced in {raw['produce_s']:.2f} s, consumed in {raw['consume_s']:.2f} s")
    sched = through_scheduler(events, args.fast_speed, args.stop_at_last_event, args.timeout)
    print(f"2. scheduler: start {sched['start_s']:.2f} s, produce {sched['produce_s']:.2f} s, "
          f"run {sched['run_s']:.2f} s ({sched['ticks']} ticks, {sched['applied']} applied, "
          f"{sched['rejected']} rejected, clock at {sched['sim_s']:.0f} sim s)"
          + ("" if sched["complete"] else "  INCOMPLETE: stopped before all N were handled"))
    if sched["rejected"]:
        print("   (the backlog is read 500 messages a poll, so ticks differ from the recorded ones "
              "and the recorded completions no longer match the tasks: rejected, dead-lettered)")
    print(f"   of the run: engine {sched['engine_s']:.2f} s, DB commits {sched['db_s']:.2f} s, "
          f"outbox relay {sched['relay_s']:.2f} s")
    lat = latency(args.speed, args.latency_minutes, args.timeout)
    print(f"3. latency: {lat['n']}/{lat['arrivals']} arrivals decided, {lat['ticks']} ticks, "
          f"{lat['rejected']} rejected, "
          f"{args.latency_minutes:g} sim min at speed {args.speed:g} ({lat['wall_s']:.0f} s wall)")
    print()
    print(f"{'measure':42} {'messages':>9} {'figure':>14}")
    print(f"{'1. raw produce+consume':42} {raw['n']:9d} {raw['rate']:10.0f} msg/s")
    print(f"{'2. through LiveScheduler (speed %g)' % args.fast_speed:42} {sched['n']:9d} "
          f"{sched['rate']:10.0f} ev/s")
    print(f"{'   ratio scheduler / raw':42} {'':9} {sched['rate'] / raw['rate']:14.3f}")
    print(f"{'3. arrival->decision p50 (speed %g)' % args.speed:42} {lat['n']:9d} "
          f"{lat['p50']:11.1f} ms")
    print(f"{'   arrival->decision p99':42} {'':9} {lat['p99']:11.1f} ms")
    print(f"{'   arrival->decision max':42} {'':9} {lat['max']:11.1f} ms")
    print(f"cpu count: {os.cpu_count()}")


if __name__ == "__main__":
    main()
