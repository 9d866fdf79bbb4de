"""Benchmark (not a test): the distributed mode on the real Kafka broker and PostgreSQL.

Prints four figures on the default hospital:
  1. raw kafka-python produce + consume throughput of the N inbound events of a simulated run;
  2. the same N events through a LiveScheduler, read as a backlog (as after a restart) and
     put in the ticks of their times, until every decision is relayed from the outbox to
     Kafka; and its ratio to 1. Each inbound event makes about 2.3 outbound messages. The
     scheduler holds the lease, as `hospital scheduler` does: every commit is fenced by its
     epoch and every relay is a Kafka transaction (here and in 3 and 4);
  3. arrival-to-decision latency p50 / p99 (wall ms) with the generator and the workers live;
  4. ten hospitals (run ids with topics and databases of their own) on the one broker at once,
     each a process reading its N events as a backlog: the aggregate rate, and whether each is
     correct (every event applied, every arrival decided, its ticks replayed give its
     decisions, each stored decision on the decisions topic once, and nothing else).
Parts 1 and 2 run `--repeat` times, alternately, on topics of their own each time: the ratio
printed is the median of the pairs' ratios (the same run's figures vary by ±20 % on a shared
machine). Topics get unique names and are deleted after their part (a broker left holding
hundreds of a bench's partitions relays at half the speed); each part has a database of its
own, dropped.

    python bench/bench_kafka.py [--hours 2] [--repeat 3] [--fast-speed 10000]
                                [--stop-at-last-event] [--speed 100] [--latency-minutes 60]
                                [--timeout 120] [--hospitals 10]
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from statistics import median

from kafka import TopicPartition

from scheduler import config as config_module
from scheduler import events as ev
from scheduler import jsonl
from scheduler.db.ledger import Ledger
from scheduler.distributed import bus
from scheduler.distributed.clock import LiveClock
from scheduler.distributed.generator import run_generator
from scheduler.distributed.scheduler_service import LiveScheduler
from scheduler.distributed.worker import run_worker
from scheduler.runs import simulate_run
from scheduler.simulation import arrival_times
from tests.e2e.conftest import new_database
from tests.kafka_topics import delete_topics

DB_URL = os.environ.get(
    "DATABASE_URL", "postgresql+psycopg2://hospital@127.0.0.1:5432/hospital_test"
)
BOOTSTRAP = "127.0.0.1:9092"


def hospital():
    """The default hospital under the layout travel model, where no task takes zero time:
    then a backlog consumed by the events' times forms exactly the ticks of the recorded
    run, and every recorded completion finds its task."""
    return config_module.load(None, {}).replace(travel={"model": "layout"})


_MADE: list = []  # the configs whose topics this process made, for `delete_own_topics`


def fresh_config():
    """The hospital with topics of its own (deleted by `delete_own_topics`)."""
    name = f"bench-{uuid.uuid4().hex[:10]}"
    config = hospital().replace(
        kafka={
            "bootstrap_servers": BOOTSTRAP,
            "inbound_topic": f"{name}.inbound",
            "decisions_topic": f"{name}.decisions",
            "dispatch_topic_prefix": f"{name}.dispatch.",
            "dead_letter_topic": f"{name}.dead-letter",
        }
    )
    _MADE.append(config)
    bus.ensure_topics(config)
    return config


def delete_own_topics() -> None:
    while _MADE:
        delete_topics(_MADE.pop())


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
            producer.send(
                config.kafka.inbound_topic,
                value=bus.encode(event),
                key=bus.key_of(event),
                headers=headers or [],
            )
        producer.flush(timeout=60)
        return time.perf_counter() - started
    finally:
        producer.close(timeout=10)


def leased_ledger(url: str, config, holder: str = "bench") -> Ledger:
    """A ledger whose scheduler holds the lease, as `hospital scheduler` runs it: every
    tick's commit fenced by the lease's epoch, every relay in a Kafka transaction.
    `let_go` ends the lease once the scheduler is closed."""
    from scheduler.db.lease import Lease
    from scheduler.db.store import connect

    ledger = Ledger(url, config, config.scheduler.policy)
    lease = Lease(connect(url), holder)
    lease.wait(False, threading.Event())
    ledger.lease = lease
    return ledger


def let_go(ledger: Ledger) -> None:
    if ledger.lease is not None:
        ledger.lease.release()
        ledger.lease.close()


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
    return {
        "n": received,
        "produce_s": produce_s,
        "consume_s": consume_s,
        "rate": received / (produce_s + consume_s),
    }


# --- 2. through the scheduler ------------------------------------------------------------


class TimedScheduler(LiveScheduler):
    """Adds up the wall time of its ticks (the engine), of its database commits and of its
    outbox relays, and stops once `expected` events are handled (applied, rejected or
    duplicate) and the outbox has sent every decision they made."""

    expected = 0
    done_at: float | None = None

    def start(self, fresh: bool) -> None:
        self.spent = {"engine": 0.0, "db": 0.0, "relay": 0.0}
        commit = self.ledger.commit_ticks

        def timed_commit(*args, **kwargs) -> None:
            started = time.perf_counter()
            commit(*args, **kwargs)
            self.spent["db"] += time.perf_counter() - started

        self.ledger.commit_ticks = timed_commit
        super().start(fresh)

    def run_ticks(self, groups):
        started = time.perf_counter()
        result = super().run_ticks(groups)
        self.spent["engine"] += time.perf_counter() - started
        return result

    def relay(self) -> bool:
        started = time.perf_counter()
        ok = super().relay()
        self.spent["relay"] += time.perf_counter() - started
        c = self.scheduler.counters if hasattr(self, "scheduler") else None
        if (
            self.done_at is None
            and c is not None
            and self.expected
            and not self.owed
            and c["events"] + c["rejected"] + c["duplicates"] >= self.expected
        ):
            self.done_at = time.perf_counter()
            self.stop.set()
        return ok  # False makes the loop back off: the bench must not say so when all went


def through_scheduler(
    events: list[ev.Event], speed: float, until_last: bool, timeout_s: float, db_url: str
) -> dict:
    config = fresh_config()
    run_id = f"bench-{uuid.uuid4().hex[:8]}"
    clock = LiveClock(time.time(), speed)
    # By default the run ends when all N are handled (or at the timeout): with until_ms just
    # past the last event, a fast clock ends the loop before the backlog is drained.
    last_ms = max(e.time_ms for e in events)
    until_ms = last_ms + 2_000 if until_last else None
    live = TimedScheduler(
        config,
        leased_ledger(db_url, config),
        run_id=run_id,
        clock=clock,
        until_ms=until_ms,
    )
    try:
        started = time.perf_counter()
        live.start(fresh=True)  # records the (empty) topic's end offsets
        start_s = time.perf_counter() - started
        produce_s = produce(config, events, bus.headers(run_id, "bench"))
        live.expected = len(events)
        # The loop starts with the clock just past the last event: the N events are a backlog
        # (as after a restart), put in ticks by their times, none of them ahead of the clock.
        clock.epoch_s = time.time() - (last_ms + live.tick_ms) / 1000 / speed
        timer = threading.Timer(timeout_s, live.stop.set)
        timer.start()
        gc.freeze()  # as `hospital scheduler` does once started
        started = time.perf_counter()
        live.run()
        timer.cancel()
        ended = live.done_at or time.perf_counter()
    finally:
        gc.unfreeze()  # also after a failed run: the bench goes on to its next part
        live.close()
        let_go(live.ledger)
    c = live.scheduler.counters
    handled = c["events"] + c["rejected"] + c["duplicates"]
    return {
        "n": handled,
        "applied": c["events"],
        "rejected": c["rejected"],
        "ticks": live.counters["ticks"],
        "complete": live.done_at is not None,
        "start_s": start_s,
        "produce_s": produce_s,
        "run_s": ended - started,
        "sim_s": clock.now_ms() / 1000,
        "rate": handled / (ended - started),
        "db_s": live.spent["db"],
        "engine_s": live.spent["engine"],
        "relay_s": live.spent["relay"],
    }


# --- 3. arrival-to-decision latency ------------------------------------------------------


def latency(speed: float, minutes: float, timeout_s: float, db_url: str) -> dict:
    config = fresh_config()
    run_id = f"bench-{uuid.uuid4().hex[:8]}"
    duration_ms = round(minutes * 60_000)
    clock = LiveClock(time.time() + 3, speed)  # simulated 0 once every thread is up
    stop = threading.Event()
    live = LiveScheduler(
        config,
        leased_ledger(db_url, config),
        run_id=run_id,
        clock=clock,
        until_ms=duration_ms + 5_000,
        stop=stop,
    )
    received: dict[str, float] = {}  # patient -> wall time of its first decision
    seed = config.arrivals.seed
    sent_at: dict[str, float] = {}  # patient -> wall time the generator sends it
    for n, at in enumerate(arrival_times(config, seed), start=1):
        if at > duration_ms:
            break
        sent_at[f"patient-{n}"] = clock.epoch_s + at / 1000 / speed

    def decisions() -> None:
        consumer = bus.consumer(config, group_id=None)
        topic = config.kafka.decisions_topic
        try:
            consumer.assign(
                [TopicPartition(topic, p) for p in range(bus.topic_partitions(config)[topic])]
            )
            while not stop.is_set():
                for records in consumer.poll(timeout_ms=50).values():
                    now = time.time()
                    for m in records:
                        d = ev.parse_json(m.value, ev.DECISIONS)
                        if isinstance(d, (ev.PatientAdmitted, ev.PatientReferred)):
                            received.setdefault(d.patient_id, now)
        finally:
            consumer.close(autocommit=False)

    threads = [
        threading.Thread(target=decisions, daemon=True),
        threading.Thread(
            target=run_generator,
            daemon=True,
            args=(config,),
            kwargs=dict(run_id=run_id, clock=clock, duration_ms=duration_ms, seed=seed, stop=stop),
        ),
    ]
    threads += [
        threading.Thread(
            target=run_worker,
            daemon=True,
            args=(config, role),
            kwargs=dict(
                run_id=run_id,
                clock=clock,
                worker_id=f"bench-{role}",
                until_ms=duration_ms,
                stop=stop,
                group_id=f"{config.kafka.inbound_topic}-{role}",
            ),
        )
        for role in bus.ROLES
    ]
    timer = threading.Timer(timeout_s, stop.set)
    try:
        live.start(fresh=True)  # before any event of the run is sent
        for t in threads:
            t.start()
        timer.start()
        live.run()
        time.sleep(0.5)  # the last decisions reach the consumer
    finally:
        timer.cancel()
        stop.set()
        for t in threads:
            if t.ident is not None:  # started
                t.join(timeout=15)
        live.close()
        let_go(live.ledger)
    wall_ms = [(received[p] - sent_at[p]) * 1000 for p in sent_at if p in received]
    return {
        "n": len(wall_ms),
        "arrivals": len(sent_at),
        "ticks": live.counters["ticks"],
        "rejected": live.scheduler.counters["rejected"],
        "p50": percentile(wall_ms, 50),
        "p99": percentile(wall_ms, 99),
        "max": percentile(wall_ms, 100),
        "wall_s": duration_ms / 1000 / speed,
    }


# --- 4. ten hospitals on one broker --------------------------------------------------------


def one_hospital(events: list[ev.Event], speed: float, timeout_s: float, barrier) -> dict:
    """One hospital of several on the broker: its own topics, database and run id; its N
    events read as a backlog once every hospital is ready; then checked: every event applied,
    every arrival decided, the stored ticks replayed give the stored decisions (what
    `hospital solve` checks), and the decisions topic holds each stored decision once."""
    try:
        return _one_hospital(events, speed, timeout_s, barrier)
    finally:
        delete_own_topics()


def _one_hospital(events: list[ev.Event], speed: float, timeout_s: float, barrier) -> dict:
    from sqlalchemy import select

    from scheduler.db.models import DecisionRow
    from scheduler.distributed.scheduler_service import replay
    from scheduler.engine import Scheduler

    with new_database({"DATABASE_URL": DB_URL}) as db:
        config = fresh_config()
        run_id = f"bench-{uuid.uuid4().hex[:8]}"
        clock = LiveClock(time.time(), speed)
        live = TimedScheduler(config, leased_ledger(db.url, config), run_id=run_id, clock=clock)
        try:
            live.start(fresh=True)
            produce(config, events, bus.headers(run_id, "bench"))
            live.expected = len(events)
            barrier.wait(timeout=timeout_s)
            last_ms = max(e.time_ms for e in events)
            clock.epoch_s = time.time() - (last_ms + live.tick_ms) / 1000 / speed  # a backlog
            timer = threading.Timer(timeout_s, live.stop.set)
            timer.start()
            started = time.time()
            live.run()
            timer.cancel()
            ended = time.time() - (time.perf_counter() - (live.done_at or time.perf_counter()))
        finally:
            live.close()
            let_go(live.ledger)
        c = live.scheduler.counters
        ledger = Ledger(db.url, config, config.scheduler.policy)
        try:
            problems = []
            try:
                replay(Scheduler(config), ledger, -1)
            except Exception as exc:  # noqa: BLE001 - reported, not raised
                problems.append(f"replay: {exc}")
            with ledger.engine.connect() as connection:
                stored = set(connection.scalars(select(DecisionRow.event_id)))
                decided = {
                    ev.parse_json(p, ev.DECISIONS).patient_id
                    for (p,) in connection.execute(
                        select(DecisionRow.payload).where(
                            DecisionRow.type.in_([ev.PatientAdmitted.TYPE, ev.PatientReferred.TYPE])
                        )
                    )
                }
        finally:
            ledger.close()
        arrivals = {e.patient_id for e in events if isinstance(e, ev.PatientArrived)}
        published = Counter(
            ev.parse_json(value, ev.DECISIONS).event_id
            for value in topic_values(config, config.kafka.decisions_topic, timeout_s)
        )
        if c["events"] != len(events) or c["rejected"]:
            problems.append(f"{c['events']} of {len(events)} applied, {c['rejected']} rejected")
        if arrivals - decided:
            problems.append(f"{len(arrivals - decided)} arrivals without a decision")
        doubled = sum(n > 1 for n in published.values())
        if set(published) != stored or doubled:
            problems.append(
                f"{len(stored - set(published))} of {len(stored)} stored decisions not on the "
                f"topic, {len(set(published) - stored)} not stored, {doubled} published twice"
            )
        return {
            "n": c["events"],
            "started": started,
            "ended": ended,
            "problems": problems,
            "complete": live.done_at is not None,
        }


def topic_values(config, topic: str, timeout_s: float) -> list[bytes]:
    """The values of every record of `topic`, read to its end (its end offsets count the
    markers of the relay's Kafka transactions too: records must be read, not counted)."""
    consumer = bus.consumer(config, group_id=None)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        values: list[bytes] = []
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < ends[tp] for tp in partitions):
            if time.monotonic() > deadline:
                raise RuntimeError(f"could not read {topic} to its end")
            for records in consumer.poll(timeout_ms=200).values():
                values += [r.value for r in records]
        return values
    finally:
        consumer.close(autocommit=False)


def ten_hospitals(events: list[ev.Event], speed: float, timeout_s: float, count: int) -> dict:
    """`count` hospitals at once, each a process of its own (as their schedulers would be),
    each with the N events: the aggregate rate from the first start to the last end."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, ProcessPoolExecutor(count, mp_context=context) as pool:
        barrier = manager.Barrier(count)
        runs = [
            f.result()
            for f in [
                pool.submit(one_hospital, events, speed, timeout_s, barrier) for _ in range(count)
            ]
        ]
    wall = max(r["ended"] for r in runs) - min(r["started"] for r in runs)
    return {
        "n": sum(r["n"] for r in runs),
        "wall_s": wall,
        "rate": sum(r["n"] for r in runs) / wall,
        "correct": sum(not r["problems"] and r["complete"] for r in runs),
        "count": count,
        "problems": [p for r in runs for p in r["problems"]],
    }


def pairs(events: list[ev.Event], args) -> tuple[dict, dict, list[float]]:
    """Parts 1 and 2, `--repeat` times, alternately, each on topics of its own: the raw
    figures and the scheduler's of the median pair, and every pair's ratio."""
    runs = []
    for n in range(1, args.repeat + 1):
        raw = raw_baseline(events, args.timeout)
        with new_database({"DATABASE_URL": DB_URL}) as db:  # not the tests' shared database
            sched = through_scheduler(
                events, args.fast_speed, args.stop_at_last_event, args.timeout, db.url
            )
        delete_own_topics()
        ratio = sched["rate"] / raw["rate"]
        runs.append((ratio, raw, sched))
        print(
            f"pair {n}: 1. raw: produced in {raw['produce_s']:.2f} s, consumed in "
            f"{raw['consume_s']:.2f} s, {raw['rate']:.0f} msg/s\n"
            f"        2. scheduler: start {sched['start_s']:.2f} s, produce "
            f"{sched['produce_s']:.2f} s, run {sched['run_s']:.2f} s ({sched['ticks']} ticks, "
            f"{sched['applied']} applied, {sched['rejected']} rejected, clock at "
            f"{sched['sim_s']:.0f} sim s), {sched['rate']:.0f} ev/s"
            + ("" if sched["complete"] else "  INCOMPLETE: stopped before all N were handled")
            + f"\n           of the run: engine {sched['engine_s']:.2f} s, DB commits "
            f"{sched['db_s']:.2f} s, outbox relay {sched['relay_s']:.2f} s\n"
            f"        ratio {ratio:.3f}"
        )
        if sched["rejected"]:
            print(
                "   (the backlog is read 500 messages a poll, so ticks differ from the recorded "
                "ones and the recorded completions no longer match the tasks: rejected, "
                "dead-lettered)"
            )
    ratios = [ratio for ratio, _, _ in runs]
    _, raw, sched = sorted(runs, key=lambda run: run[0])[(len(runs) - 1) // 2]
    return raw, sched, ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--hours", type=float, default=2.0, help="simulated run giving the N events"
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="pairs of 1 and 2, alternately (median shown)"
    )
    parser.add_argument("--fast-speed", type=float, default=10_000, help="LiveClock speed for 2")
    parser.add_argument(
        "--stop-at-last-event",
        action="store_true",
        help="2 ends at until_ms just past the last event, not when all N are in",
    )
    parser.add_argument("--speed", type=float, default=100, help="LiveClock speed for 3")
    parser.add_argument("--latency-minutes", type=float, default=60, help="simulated, for 3")
    parser.add_argument("--timeout", type=float, default=120, help="wall seconds per part")
    parser.add_argument(
        "--hospitals",
        type=int,
        default=10,
        help="hospitals at once on the broker, for 4 (0: skip 4)",
    )
    args = parser.parse_args()

    events = recorded_events(args.hours)
    n = len(events)
    print(
        f"{n} inbound events from {args.hours:g} simulated hours; {os.cpu_count()} CPUs; "
        f"Kafka {BOOTSTRAP}, PostgreSQL 127.0.0.1:5432"
    )
    try:
        raw, sched, ratios = pairs(events, args)
        with new_database({"DATABASE_URL": DB_URL}) as db:
            lat = latency(args.speed, args.latency_minutes, args.timeout, db.url)
    finally:
        delete_own_topics()
    print(
        f"3. latency: {lat['n']}/{lat['arrivals']} arrivals decided, {lat['ticks']} ticks, "
        f"{lat['rejected']} rejected, "
        f"{args.latency_minutes:g} sim min at speed {args.speed:g} ({lat['wall_s']:.0f} s wall)"
    )
    many = (
        ten_hospitals(events, args.fast_speed, args.timeout, args.hospitals)
        if args.hospitals
        else None
    )
    if many:
        print(
            f"4. {many['count']} hospitals at once: {many['correct']}/{many['count']} correct, "
            f"{many['n']} events applied in {many['wall_s']:.2f} s"
            + "".join(f"\n   PROBLEM: {p}" for p in many["problems"])
        )
    print()
    print(f"{'measure':42} {'messages':>9} {'figure':>14}")
    print(f"{'1. raw produce+consume':42} {raw['n']:9d} {raw['rate']:10.0f} msg/s")
    print(
        f"{f'2. through LiveScheduler (speed {args.fast_speed:g})':42} {sched['n']:9d} "
        f"{sched['rate']:10.0f} ev/s"
    )
    print(f"{'   ratio scheduler / raw, median of pairs':42} {'':9} {median(ratios):14.3f}")
    print(
        f"{f'3. arrival->decision p50 (speed {args.speed:g})':42} {lat['n']:9d} "
        f"{lat['p50']:11.1f} ms"
    )
    print(f"{'   arrival->decision p99':42} {'':9} {lat['p99']:11.1f} ms")
    print(f"{'   arrival->decision max':42} {'':9} {lat['max']:11.1f} ms")
    if many:
        count, correct = many["count"], many["correct"]
        print(
            f"{f'4. {count} hospitals at once, aggregate':42} {many['n']:9d} "
            f"{many['rate']:10.0f} ev/s"
        )
        print(
            f"{'   ratio aggregate / raw (median pair)':42} {'':9} "
            f"{many['rate'] / raw['rate']:14.3f}"
        )
        print(f"{'   hospitals correct':42} {'':9} {f'{correct}/{count}':>14}")
    print(f"cpu count: {os.cpu_count()}")


if __name__ == "__main__":
    main()
