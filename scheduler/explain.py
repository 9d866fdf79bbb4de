"""Reasons, in words a nurse would use, for the scheduler's referrals and dispatches
(`[scheduler] explain`), and the timeline `hospital explain` prints from a decisions file.

A reason is worked out from the tick's problem — the free rooms and staff, the walks, the
waits, the targets — and the decision taken, never from the solver's internals: it says what
made this choice the right one under the rules.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from scheduler.problem import URGENT, Arrival, Hold, Solution, TickProblem


def referral(
    problem: TickProblem, patient_id: str, solution: Solution, rooms: Mapping[str, str]
) -> str:
    """Why a patient is referred: who they are (ESI level, isolation), then what kept every
    room they may use from them. `rooms` is each room's state (free, booked, occupied,
    dirty, cleaning) as the tick found it."""
    arrival = next(a for a in problem.arrivals if a.patient_id == patient_id)
    return f"{_patient(arrival)}: {_no_room(problem, arrival, solution, rooms)}"


def _patient(arrival: Arrival) -> str:
    return f"ESI {arrival.acuity}" + (", needs isolation" if arrival.isolation else "")


def _no_room(
    problem: TickProblem, arrival: Arrival, solution: Solution, rooms: Mapping[str, str]
) -> str:
    usable = [r for r in problem.free_rooms if problem.may_book(arrival, r)]
    if not problem.free_rooms:
        if len(rooms) == 1:
            return f"the only room is {_in_use(rooms.values())}"
        return f"all {len(rooms)} rooms in use: {_in_use(rooms.values())}"
    if not usable:
        if arrival.isolation:
            isolating = [rooms[r] for r in sorted(problem.isolation_rooms) if r in rooms]
            return (
                f"no free isolation room (all {len(problem.isolation_rooms)} in use: "
                f"{_in_use(isolating)})"
            )
        return "the free rooms are kept for patients who need isolation"
    kept = _kept_rooms(problem, solution, usable)
    if kept:
        return kept
    takers = [a for a in problem.arrivals if solution.bookings.get(a.patient_id) in usable]
    more_urgent = any(a.acuity < arrival.acuity for a in takers)
    rooms_word = "room" if len(usable) == 1 else f"{len(usable)} rooms"
    return (
        f"the last free {rooms_word} went to "
        f"{'more urgent patients' if more_urgent else 'patients who arrived first'}"
    )


# A room's state in a referral's words, in the order of a room's turn: a dirty room waits
# for a cleaner, which says where the rooms go when the cleaners are the bottleneck.
ROOM_STATE_WORDS = {
    "booked": "booked",
    "occupied": "occupied",
    "dirty": "dirty (waiting for a cleaner)",
    "cleaning": "being cleaned",
}


def _in_use(states: Iterable[str]) -> str:
    """'3 occupied, 1 dirty (waiting for a cleaner)': how many rooms are in each state, in a
    room's turn order (any other state after them, by name)."""
    counts = Counter(states)
    order = [*ROOM_STATE_WORDS, *sorted(set(counts) - set(ROOM_STATE_WORDS))]
    if len(counts) == 1 and sum(counts.values()) == 1:  # one room: its state alone
        return ROOM_STATE_WORDS.get(next(iter(counts)), next(iter(counts)))
    return ", ".join(
        f"{counts[state]} {ROOM_STATE_WORDS.get(state, state)}" for state in order if counts[state]
    )


def _kept_rooms(problem: TickProblem, solution: Solution, usable: list[str]) -> str:
    """Looking ahead: the free rooms the patient might have had, kept for another class
    (`room.held`), with the hold's reason; "" when none is."""
    booked = set(solution.bookings.values())
    held = dict(solution.room_holds)
    if problem.lookahead is not None:
        for room_id, (reserved_for, until_ms) in problem.lookahead.held_rooms.items():
            held.setdefault(room_id, Hold(until_ms, "", reserved_for))
    kept = [r for r in usable if r not in booked and r in held]
    if not kept:
        return ""
    first = held[kept[0]]
    who = "ESI 1-2 patients" if first.reserved_for == URGENT else "patients who need isolation"
    rooms_word = f"room {kept[0]} is" if len(kept) == 1 else f"rooms {', '.join(kept)} are"
    why = first.reason.split(": ", 1)[1] if ": " in first.reason else ""
    return f"the free {rooms_word} kept for {who}" + (f" ({why})" if why else "")


def dispatch(problem: TickProblem, task_key: str, staff_id: str, note: str | None = None) -> str:
    task = next(t for t in problem.tasks if t.key == task_key)
    walk_ms = problem.walking_ms[task_key, staff_id]
    others = [
        problem.walking_ms[task_key, s.staff_id]
        for s in problem.staff
        if s.staff_id != staff_id and problem.may_do(task, s)
    ]
    parts = [f"{staff_id}: {walk_ms / 1000:g} s walk"]
    if others and walk_ms < min(others):
        parts[0] += f", the nearest of {len(others) + 1} free"
    elif others and walk_ms == min(others):
        parts[0] += f", as near as any of {len(others) + 1} free"
    parts.append(f"waited {(problem.now_ms - task.created_ms) / 1000:g} s")
    if task.acuity <= 2:
        parts.append(f"ESI {task.acuity}, urgent")
    target = problem.sla_ms.get((task.kind, task.acuity <= 2))
    if target and problem.now_ms - task.created_ms > target:
        parts.append(f"past its {_duration(target)} target")
    if task.kind == "escort_out":
        parts.append(f"frees room {task.room_id}")
    if note:
        parts.append(note)
    return "; ".join(parts)


def _duration(ms: int) -> str:
    return f"{ms / 1000:g} s" if ms < 120_000 else f"{ms / 60_000:g} min"


# --- hospital explain: one patient's, staff member's or room's timeline -------------------

_WORDS = {
    "patient.admitted": "{patient_id} admitted to {room_id}",
    "patient.referred": "{patient_id} referred: {reason}",
    "task.queued": "{kind} waits ({task_id}, room {room_id})",
    "task.dispatched": "{kind} ({task_id}, {patient_id}, room {room_id}) to {staff_id}",
    "task.escalated": "{kind} {task_id} past its target: waited {waited_s:g} s of {sla_s:g} s",
    "patient.discharged": "{patient_id} discharged from {room_id}",
    "room.available": "room {room_id} clean and free",
    "staff.off_duty": "{staff_id} off duty",
    "staff.on_duty": "{staff_id} on duty",
    "staff.held": "{staff_id} held until {until_s:g} s: {reason}",
    "room.held": "room {room_id} held for {reserved_for} until {until_s:g} s: {reason}",
}


def timeline(
    decisions: Iterable[dict[str, Any]],
    *,
    patient: str | None = None,
    staff: str | None = None,
    room: str | None = None,
) -> list[str]:
    """The lines of a timeline: every decision about the patient, staff member or room
    (tasks followed by id, so an escalation or a cleaning shows up with its patient)."""
    lines = []
    tasks: set[str] = set()
    for d in decisions:
        about = (
            (patient and d.get("patient_id") == patient)
            or (staff and d.get("staff_id") == staff)
            or (room and d.get("room_id") == room)
            or d.get("task_id") in tasks
        )
        if not about:
            continue
        if d.get("task_id"):
            tasks.add(d["task_id"])
        text = _WORDS.get(d.get("type", ""), "{type}").format_map(_Blank(d))
        if d.get("reason") and d.get("type") == "task.dispatched":
            text += f" — {d['reason']}"
        lines.append(f"{_clock(d.get('time', 0))}  tick {d.get('tick', '?'):>6}  {text}")
    return lines


def _clock(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


class _Blank(dict):
    def __missing__(self, key: str) -> str:
        return "?"
