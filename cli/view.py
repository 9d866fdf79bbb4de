"""What `hospital run` shows: a live view of rooms, staff and queues at a human speed, a
progress bar at `--speed max`, and the KPI summary at the end."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from scheduler.engine import Scheduler, TickResult

ROOM_STYLE = {
    "free": "green",
    "booked": "yellow",
    "occupied": "cyan",
    "dirty": "red",
    "cleaning": "magenta",
}


def clock_text(ms: int) -> str:
    seconds = ms // 1000
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _patient_text(patient: Any) -> str:
    text = patient.patient_id
    if patient.acuity != 3:
        text += f" ESI {patient.acuity}"
    if patient.isolation:
        text += " isolation"
    return text


def hospital_view(scheduler: Scheduler, result: TickResult) -> Group:
    hospital = scheduler.hospital
    rooms = Table(
        title=f"Rooms at {clock_text(result.time_ms)} (tick {result.tick})", title_justify="left"
    )
    rooms.add_column("room")
    rooms.add_column("state")
    rooms.add_column("patient")
    for room in hospital.rooms.values():
        style = ROOM_STYLE.get(room.status, "")
        patient = hospital.patients.get(room.patient_id) if room.patient_id else None
        rooms.add_row(
            room.room_id + (" (iso)" if room.room_id in hospital.isolation_rooms else ""),
            f"[{style}]{room.status}[/]",
            _patient_text(patient) if patient else "",
        )
    staff = Table(title="Staff", title_justify="left")
    staff.add_column("staff")
    staff.add_column("doing")
    staff.add_column("at, or set off from")
    for member in hospital.staff.values():
        task = hospital.tasks.get(member.task_id) if member.task_id else None
        doing = f"{task.kind} {task.patient_id} {task.room_id}" if task else "[dim]idle[/]"
        if not member.on_duty:
            doing += " [yellow](off duty)[/]" if task else " [dim](off duty)[/]"
        staff.add_row(member.staff_id, doing, member.location)
    queues = Table(title="Waiting lists", title_justify="left")
    queues.add_column("role")
    queues.add_column("waiting")
    queues.add_column("tasks")
    for role, tasks in hospital.queues().items():
        queues.add_row(
            role,
            str(len(tasks)),
            ", ".join(
                f"{t.kind} {t.patient_id}"
                + (f" ESI {t.acuity}" if t.acuity != 3 else "")
                + (" [red]late[/]" if t.escalated else "")
                for t in tasks[:4]
            )
            + (" ..." if len(tasks) > 4 else ""),
        )
    counters = scheduler.counters
    footer = (
        f"ticks {counters['ticks']}  events {counters['events']}  "
        f"rejected {counters['rejected']}  duplicates {counters['duplicates']}"
    )
    return Group(rooms, staff, queues, footer)


class LiveView:
    """Redraws the hospital after each tick."""

    def __init__(self, console: Console):
        self.live = Live(console=console, auto_refresh=False, transient=False)

    def __enter__(self) -> LiveView:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.live.__exit__(*exc)
        if not self.live.console.is_terminal:
            # Rich ends the last view with a newline only on a terminal: without this, the
            # summary that follows on a shared pipe starts on the view's last line.
            self.live.console.line()

    def __call__(self, scheduler: Scheduler, result: TickResult) -> None:
        self.live.update(hospital_view(scheduler, result), refresh=True)


class ProgressView:
    """A progress bar over simulated time, redrawn at most ten times a second."""

    def __init__(self, console: Console, duration_ms: int):
        self.progress = Progress(
            TextColumn("simulating"),
            BarColumn(),
            TextColumn("{task.fields[clock]}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self.task = self.progress.add_task("run", total=duration_ms, clock="00:00:00")
        self._last = 0.0

    def __enter__(self) -> ProgressView:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.__exit__(*exc)

    def __call__(self, scheduler: Scheduler, result: TickResult) -> None:
        now = time.monotonic()
        if now - self._last >= 0.1:
            self._last = now
            self.progress.update(
                self.task, completed=result.time_ms, clock=clock_text(result.time_ms)
            )


# The rooms' states as the summary names them: a dirty room waits for a cleaner.
ROOM_STATE_NAMES = {"dirty": "dirty, awaiting a cleaner", "cleaning": "being cleaned"}


def wait_text(wait: dict[str, Any], tick_s: float) -> str:
    """'mean / p95' of a role's waits. The scheduler decides once a tick, so a wait shorter
    than a tick is "within a tick", not a figure below the mean's hundredths (a p95 of
    0.00 s beside a mean of 0.01 s reads as a bug)."""
    p95 = wait["p95"]
    shown = f"within a tick ({tick_s:g} s)" if p95 < tick_s else f"{p95:.1f} s"
    return f"{wait['mean']:.2f} s / {shown}"


def bound_text(bound: dict[str, Any]) -> str:
    """The capacity bound: the lowest referral rate any policy could sustain, and the role
    (or the rooms) that binds it."""
    return f"{bound['min_referral_rate']:.1%} at least, bottleneck: {bound['bottleneck']}"


def summary_table(report: dict[str, Any], tick_s: float = 1.0) -> Table:
    title = "Run summary"
    if report.get("label"):
        title += f": {report['label']}"
    if "interrupted_at_ms" in report:
        title += (
            f" (interrupted at {clock_text(report['interrupted_at_ms'])}"
            f"{' by ' + report['interrupted_by'] if 'interrupted_by' in report else ''})"
        )
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("figure")
    table.add_column("value", justify="right")
    rows: list[tuple[str, Any]] = [
        ("policy", report.get("policy", "")),
        ("simulated time", clock_text(round(report["duration_s"] * 1000))),
    ]
    if report.get("warmup_s"):
        rows.append(
            ("figures from (warm-up left out)", clock_text(round(report["warmup_s"] * 1000)))
        )
    rows += [
        ("arrivals", report["arrivals"]),
        ("admitted", report["admitted"]),
        ("referred", f"{report['referred']} ({report['referral_rate']:.1%})"),
    ]
    bound = report.get("capacity")
    if bound:
        rows.append(("referred, capacity bound", bound_text(bound)))
        busiest = bound.get("busiest_hour")
        if busiest and busiest["min_referral_rate"] != bound["min_referral_rate"]:
            rows.append(
                (
                    f"capacity bound, busiest hour ({busiest['hour']:02d}h)",
                    f"{busiest['min_referral_rate']:.1%} at least",
                )
            )
    rows += [
        ("discharged", report["discharged"]),
        ("mean length of stay", f"{report['mean_length_of_stay_s']:.1f} s"),
        ("room occupancy", f"{report['room_occupancy']:.1%}"),
    ]
    for state, share in report.get("room_states", {}).items():
        rows.append((f"rooms {ROOM_STATE_NAMES.get(state, state)} (time)", f"{share:.1%}"))
    for role, wait in report["wait_s"].items():
        rows.append((f"{role} wait mean / p95", wait_text(wait, tick_s)))
    for role, share in report["utilisation"].items():
        rows.append((f"{role} utilisation", f"{share:.1%}"))
    solve = report["tick_solve_ms"]
    rows.append(("ticks solved", report["ticks_solved"]))
    rows.append(
        (
            "tick solve p50 / p95 / max",
            f"{solve['p50']:.2f} / {solve['p95']:.2f} / {solve['max']:.2f} ms",
        )
    )
    by_acuity = report.get("by_acuity", {})
    if set(by_acuity) - {"3"}:  # a mix of ESI levels
        for level, figures in by_acuity.items():
            rows.append(
                (
                    f"ESI {level}: referred / wait mean",
                    f"{figures['referral_rate']:.1%} / {figures['wait_s']['mean']:.2f} s",
                )
            )
    for kind, count in report.get("sla_breaches", {}).items():
        rows.append((f"{kind} past its target", count))
    if report.get("rejected_events") or report.get("duplicate_events"):
        rows.append(
            (
                "rejected / duplicate events",
                f"{report['rejected_events']} / {report['duplicate_events']}",
            )
        )
    for name, value in rows:
        table.add_row(name, str(value))
    return table


def stamp(seconds: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds)) if seconds else ""
