"""The projection as Prometheus metrics: one collector that reads it at scrape time, so the
scheduler's path pays nothing for them. Names follow Prometheus' guide: the `hospital_`
prefix, base units in the name, `_total` on counters, no patient ids as labels."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from dashboard.projection import ROLES, ROOM_STATES, Projection

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class ProjectionCollector(Collector):
    def __init__(self, projection: Projection):
        self.projection = projection

    def collect(self) -> Iterator[Metric]:
        p = self.projection
        with p.lock:
            counts = dict(p.counts)
            ticks = p.ticks
            events = dict(p.events_by_type)
            decisions = dict(p.decisions_by_type)
            solve = (p.solve.cumulative(), p.solve.total)
            waits = {role: (h.cumulative(), h.total) for role, h in p.wait_histograms().items()}
            waiting = p.waiting_counts()
            busy = dict(p.busy)
            staff = Counter(s.role for s in p.staff.values() if not s.off_duty)
            escalations = dict(p.escalations)
            rooms = Counter(r.state for r in p.rooms.values())
            busy_ms = dict(p.busy_ms)
            time_s = p.time_ms / 1000
            lag = dict(p.lag)
            dead_letters = p.dead_letters
            rows_skipped = p.rows_skipped

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            return CounterMetricFamily(name, doc, value=value)

        yield counter("hospital_ticks", "Ticks the scheduler has run.", ticks)
        yield HistogramMetricFamily(
            "hospital_tick_solve_seconds",
            "Time to solve a tick that had something to decide.",
            buckets=solve[0],
            sum_value=solve[1],
        )
        applied = CounterMetricFamily(
            "hospital_events_applied",
            "Inbound events the scheduler applied, by type.",
            labels=["type"],
        )
        for kind, n in sorted(events.items()):
            applied.add_metric([kind], n)
        yield applied
        by_type = CounterMetricFamily(
            "hospital_decisions", "Decisions made, by type.", labels=["type"]
        )
        for kind, n in sorted(decisions.items()):
            by_type.add_metric([kind], n)
        yield by_type
        yield counter(
            "hospital_arrivals",
            "Patients who arrived (admitted or referred).",
            counts.get("arrivals", 0),
        )
        yield counter(
            "hospital_admissions", "Patients booked into a room.", counts.get("admitted", 0)
        )
        yield counter(
            "hospital_referrals",
            "Patients referred to another hospital.",
            counts.get("referred", 0),
        )
        yield counter("hospital_discharges", "Patients escorted out.", counts.get("discharged", 0))
        yield counter(
            "hospital_rejected_events",
            "Inbound events rejected as impossible.",
            counts.get("rejected", 0),
        )
        yield counter(
            "hospital_duplicate_events",
            "Inbound events seen before, ignored.",
            counts.get("duplicates", 0),
        )
        breaches = CounterMetricFamily(
            "hospital_sla_breaches",
            "Tasks still waiting past their target wait, by kind.",
            labels=["kind"],
        )
        for kind, n in sorted(escalations.items()):
            breaches.add_metric([kind], n)
        yield breaches
        yield counter(
            "hospital_dead_letters", "Messages sent to the dead-letter topic.", dead_letters
        )
        yield counter(
            "hospital_dashboard_rows_skipped",
            "Rows of the followed run's database, or lines of its decisions file, that did not "
            "parse, left out of the page.",
            rows_skipped,
        )
        wait = HistogramMetricFamily(
            "hospital_task_wait_seconds",
            "A task's wait from its creation to its dispatch.",
            labels=["role"],
        )
        for role, (buckets, total) in waits.items():
            wait.add_metric([role], buckets, total)
        yield wait
        busy_time = CounterMetricFamily(
            "hospital_staff_busy_seconds",
            "Staff time spent on finished tasks, by role.",
            labels=["role"],
        )
        for role in ROLES:
            busy_time.add_metric([role], busy_ms[role] / 1000)
        yield busy_time
        for name, doc, values in (
            ("hospital_waiting_tasks", "Tasks on each role's waiting list.", waiting),
            ("hospital_busy_staff", "Staff members on a task, by role.", busy),
            ("hospital_staff", "Staff members on duty, by role.", staff),
        ):
            gauge = GaugeMetricFamily(name, doc, labels=["role"])
            for role in ROLES:
                gauge.add_metric([role], values.get(role, 0))
            yield gauge
        room_gauge = GaugeMetricFamily("hospital_rooms", "Rooms in each state.", labels=["state"])
        for state in ROOM_STATES:
            room_gauge.add_metric([state], rooms.get(state, 0))
        yield room_gauge
        yield GaugeMetricFamily(
            "hospital_patients_in_rooms", "Patients in a room now.", value=counts.get("in_rooms", 0)
        )
        yield GaugeMetricFamily(
            "hospital_simulated_time_seconds",
            "The run's clock: seconds since its start.",
            value=time_s,
        )
        lag_gauge = GaugeMetricFamily(
            "hospital_consumer_lag_messages",
            "Distributed mode: messages not yet consumed, by topic.",
            labels=["topic"],
        )
        for topic, n in sorted(lag.items()):
            lag_gauge.add_metric([topic], n)
        yield lag_gauge


def registry_for(projection: Projection) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ProjectionCollector(projection))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
