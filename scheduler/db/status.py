"""What `hospital status` shows: the rooms, staff and waiting lists of the run kept in the
database, as the scheduler last committed them, and which scheduler is active."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from scheduler.db.models import (
    OutboxRow,
    Patient,
    Room,
    Run,
    Staff,
    Task,
    Tick,
    outbox_owed,
)
from scheduler.db.store import StoreError, connect, reason, safe_url
from scheduler.layout import ROLE_OF_KIND


def hospital_status(url: str) -> dict[str, Any]:
    engine = connect(url)
    try:
        with Session(engine) as session:
            schedulers = _schedulers(session)
        with Session(engine) as session:
            open_tasks = session.scalars(
                select(Task)
                .where(Task.completed_at.is_(None))
                .order_by(Task.created_at, Task.task_id)
            ).all()
            doing = {t.staff_id: t for t in open_tasks if t.staff_id}
            waiting: dict[str, list[Task]] = {"porter": [], "medical": [], "cleaner": []}
            for task in open_tasks:
                if task.staff_id is None:
                    waiting[ROLE_OF_KIND[task.kind]].append(task)
            patients = dict(
                session.execute(select(Patient.status, func.count()).group_by(Patient.status)).all()
            )
            return {
                "schedulers": schedulers,
                "run": session.scalar(select(Run.run_id)),
                "last_tick": session.execute(
                    select(Tick.tick, Tick.time).order_by(Tick.tick.desc()).limit(1)
                ).first(),
                "rooms": [
                    (r.room_id, r.status, r.current_patient_id or "")
                    for r in session.scalars(select(Room).order_by(Room.room_id))
                ],
                "staff": [
                    (
                        s.staff_id,
                        s.role,
                        f"{doing[s.staff_id].kind} {doing[s.staff_id].patient_id} "
                        f"{doing[s.staff_id].room_id}"
                        if s.staff_id in doing
                        else "idle",
                    )
                    for s in session.scalars(select(Staff).order_by(Staff.staff_id))
                ],
                "waiting": {
                    role: [(t.task_id, t.kind, t.patient_id, t.room_id) for t in tasks]
                    for role, tasks in waiting.items()
                },
                "patients": patients,
                "dead_letters": session.scalar(
                    select(func.count())
                    .select_from(OutboxRow)
                    .where(OutboxRow.dead_letter.is_(True))
                )
                or 0,
                "unpublished": session.scalar(
                    select(func.count()).select_from(OutboxRow).where(*outbox_owed())
                )
                or 0,
            }
    except Exception as exc:
        raise StoreError(f"cannot read the run at {safe_url(url)}: {reason(exc)}") from None
    finally:
        engine.dispose()


def _schedulers(session: Session) -> dict[str, Any] | None:
    """The lease, or None if no scheduler took it yet (or the database predates it)."""
    from sqlalchemy.exc import SQLAlchemyError

    from scheduler.db.lease import lease_status

    try:
        return lease_status(session)
    except SQLAlchemyError:
        return None


def scheduler_lines(lease: dict[str, Any] | None) -> list[str]:
    """Which scheduler is active, since when, and the standbys that said they wait."""
    import time

    if lease is None:
        return ["scheduler: none has run on this database yet"]
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(lease["since"]))
    who = f"{lease['holder']} ({lease['host']}, pid {lease['pid']})"
    if lease["expires_in"] > 0:
        lines = [f"scheduler: active {who}, lease epoch {lease['epoch']}, since {since}"]
    else:
        lines = [
            f"scheduler: none active; the last was {who}, lease epoch {lease['epoch']}, "
            f"from {since}, expired {-lease['expires_in']:.0f} s ago"
        ]
    lines += [
        f"standby: {holder} ({host}, pid {pid}), seen {ago:.0f} s ago"
        for holder, host, pid, ago in lease["standbys"]
    ]
    return lines


def status_tables(snapshot: dict[str, Any]) -> list:
    from rich.table import Table

    tick = snapshot["last_tick"]
    title = f"Run {snapshot['run'] or '(none)'}" + (
        f", tick {tick[0]} at {tick[1]:.0f} s" if tick else ", no tick yet"
    )
    rooms = Table(title=title, title_justify="left")
    for column in ("room", "state", "patient"):
        rooms.add_column(column)
    for row in snapshot["rooms"]:
        rooms.add_row(*row)
    staff = Table(title="Staff", title_justify="left")
    for column in ("staff", "role", "doing"):
        staff.add_column(column)
    for row in snapshot["staff"]:
        staff.add_row(*row)
    waiting = Table(title="Waiting lists", title_justify="left")
    for column in ("role", "waiting", "tasks"):
        waiting.add_column(column)
    for role, tasks in snapshot["waiting"].items():
        waiting.add_row(role, str(len(tasks)), ", ".join(f"{k} {p}" for _, k, p, _ in tasks[:5]))
    counts = ", ".join(f"{status} {n}" for status, n in sorted(snapshot["patients"].items()))
    footer = (
        f"patients: {counts or 'none'}; dead letters: {snapshot['dead_letters']}; "
        f"decisions not yet published: {snapshot['unpublished']}"
    )
    return ["\n".join(scheduler_lines(snapshot.get("schedulers"))), rooms, staff, waiting, footer]
