"""What the scheduler can know of the next minutes: a deterministic forecast, made each tick
from the config and the hospital's state (`[scheduler] lookahead_s`).

    outlook = Outlook(config, layout, roster)      # once per run: the config's part
    lookahead = outlook.lookahead(now_ms, state)   # each tick: a `problem.Lookahead`

It expects, from now to the horizon:

- **releases**: each staff member busy now is free again when their task's expected length
  has passed since its dispatch (the walk, which never varies, and the configured mean of
  the treatment or cleaning); one off duty comes back when the roster says;
- **next steps**: the task each task in progress creates when it ends (a visit after an
  escort in, an escort out after a visit, a cleaning after an escort out), at that time,
  for that patient and room; and the visit after each escort in that is dispatched now;
- **arrivals**: the config's arrival process (a `fixed` process's exact times, a `poisson`
  or `profile` process's rate of the hour), each arrival of ESI level a with the acuity
  mix's share, needing isolation with the isolation share;
- **rooms**: each room being cleaned is free again when its cleaning's expected length
  has passed.

Nothing is sampled: the same config and state give the same forecast, so a replay or a
restored snapshot decides exactly as the run did. The drawn durations of the patients are
never used (the scheduler does not know them): only the configured means.

How far each role's plan looks (`role_horizon_ms`): the expected length of one of its tasks,
and at most `lookahead_s`. Within it a staff member busy now does at most one more task, so a
plan that gives each member at most one is faithful; beyond it, it would not be.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator
from dataclasses import dataclass

from rules.hold_rooms import rooms_to_keep
from scheduler.config import Config
from scheduler.demand import arrival_profile, mean_cleaning_s, mean_treatment_s
from scheduler.layout import ENTRANCE, NEXT_KIND, ROLE_OF_KIND, Layout
from scheduler.problem import (
    ISOLATION,
    URGENT,
    ExpectedTask,
    FutureStaff,
    Lookahead,
    RoomReservation,
)
from scheduler.shifts import Roster

ROLES = ("porter", "medical", "cleaner")
# At most this many arrivals are looked at ahead: the plan cannot use more than the staff
# and rooms it has, and a horizon of a busy campus would otherwise hold hundreds.
MAX_EXPECTED_ARRIVALS = 32


@dataclass(frozen=True)
class Busy:
    """A task in progress, as the forecast needs it: who does it from where since when."""

    task_id: str
    kind: str
    staff_id: str
    origin: str  # where the staff member set off from (their place until it ends)
    room_id: str
    patient_id: str
    acuity: int
    isolation: bool  # the patient's: their escort out leaves a terminal clean
    dispatched_ms: int


@dataclass(frozen=True)
class Waiting:
    """An escort in that is waiting (or an arrival of this tick, `room_id` None): its visit
    follows it."""

    key: str
    patient_id: str
    room_id: str | None
    acuity: int


@dataclass(frozen=True)
class Pending:
    """A task waiting for a staff member, as the forecast needs it: the next step of its
    room's turnover."""

    kind: str
    room_id: str
    acuity: int
    isolation: bool  # the patient's


@dataclass(frozen=True)
class State:
    """The hospital as the forecast sees it at a tick, with the holds."""

    busy: tuple[Busy, ...]
    free_staff: tuple[str, ...]  # on duty, doing nothing
    off_duty: tuple[str, ...]  # not busy, off duty now
    staff_location: dict[str, str]
    staff_role: dict[str, str]
    free_rooms: tuple[str, ...]
    waiting_escorts: tuple[Waiting, ...]
    pending: tuple[Pending, ...]  # every waiting task with a room
    held_staff: dict[str, int]
    held_rooms: dict[str, tuple[str, int]]
    spent_staff: frozenset[str]
    spent_rooms: frozenset[str]


class Outlook:
    """The config's part of the forecast, worked out once: expected lengths of tasks, the
    arrival process, the roster."""

    def __init__(self, config: Config, layout: Layout, roster: Roster):
        self.config = config
        self.layout = layout
        self.roster = roster
        scheduler = config.scheduler
        self.lookahead_ms = round(scheduler.lookahead_s * 1000)
        self.max_hold_ms = round(scheduler.max_hold_s * 1000)
        self.tick_ms = round(scheduler.tick_s * 1000)
        arrivals = config.arrivals
        self.profile = arrival_profile(config)
        self.process = arrivals.process
        self.interval_ms = arrivals.interval_s * 1000
        mix = arrivals.acuity_mix
        self.acuity_share = {level: share / sum(mix) for level, share in enumerate(mix, 1)}
        self.urgent_share = self.acuity_share[1] + self.acuity_share[2]
        self.isolation_share = arrivals.isolation_share
        self.isolation_rooms = frozenset(config.hospital.isolation_rooms)
        self.reserve_isolation_rooms = config.hospital.reserve_isolation_rooms
        self.treatment_ms = {a: round(mean_treatment_s(config, a) * 1000) for a in range(1, 6)}
        self.cleaning_ms = {
            kind: round(mean_cleaning_s(config, kind) * 1000)
            for kind in ("clean", "clean_terminal")
        }
        self.horizon_ms = {role: self._role_horizon_ms(role) for role in ROLES}
        rooms = list(layout.rooms)
        self.mean_escort_in_ms = round(sum(map(self._escort_in_ms, rooms)) / len(rooms))

    # --- expected lengths ---------------------------------------------------------------

    def task_ms(self, origin: str, kind: str, room_id: str, acuity: int = 3) -> int:
        """The expected length of a task from `origin`: its walk, which never varies, and the
        configured mean of its work."""
        walk = self.layout.walking_ms(origin, kind, room_id)
        if kind == "visit":
            return walk + self.treatment_ms[acuity]
        return walk + self.cleaning_ms.get(kind, 0)

    def planned_task_ms(self, origin: str, kind: str, room_id: str | None, acuity: int) -> int:
        """`task_ms` of a task about to be dispatched; an arrival's escort, whose room is
        not booked yet, as the mean escort in."""
        if room_id is None:
            return self.walking(origin, kind, None) + self.mean_escort_in_ms
        return self.task_ms(origin, kind, room_id, acuity)

    def _escort_in_ms(self, room_id: str) -> int:
        return self.layout.task_ms(ENTRANCE, "escort_in", room_id)[0]

    def _role_horizon_ms(self, role: str) -> int:
        """The expected length of one of the role's tasks, from the entrance, over the
        rooms and the acuity mix; at most `lookahead_s`."""
        rooms = list(self.layout.rooms)
        kinds: tuple[str, ...]
        if role == "porter":
            kinds = ("escort_in", "escort_out")
        elif role == "medical":
            kinds = ("visit",)
        else:
            kinds = ("clean",)
        lengths = [
            sum(
                share * self.task_ms(ENTRANCE, kind, room, level)
                for level, share in self.acuity_share.items()
            )
            for kind in kinds
            for room in rooms
        ]
        return min(self.lookahead_ms, max(self.tick_ms, round(sum(lengths) / len(lengths))))

    def walking(self, location: str, kind: str, room_id: str | None) -> int:
        """Walking to where a task starts; a room not known yet is reached from the
        entrance (the walk there, in the layout model)."""
        layout = self.layout
        if room_id is None:
            return layout.walk(location, ENTRANCE) if layout.model == "layout" else 0
        return layout.walking_ms(location, kind, room_id)

    # --- arrivals -------------------------------------------------------------------------

    def arrivals_between(self, start_ms: int, end_ms: int) -> float:
        """The expected number of arrivals in (start, end]: for a `fixed` process the
        arrivals scheduled then, for the others the integral of the rate."""
        if end_ms <= start_ms:
            return 0.0
        if self.process == "fixed":
            return float(sum(1 for _ in self._fixed_times(start_ms, end_ms)))
        if self.profile is not None:
            return self.profile.expected(end_ms / 1000) - self.profile.expected(start_ms / 1000)
        return (end_ms - start_ms) / self.interval_ms

    def _fixed_times(self, start_ms: int, end_ms: int) -> Iterator[int]:
        n = math.floor(start_ms / self.interval_ms)
        while True:
            at = round(n * self.interval_ms)
            if at > end_ms:
                return
            if at > start_ms:
                yield at
            n += 1

    def arrival_times(self, start_ms: int, end_ms: int) -> list[int]:
        """When arrivals are expected in (start, end]: a `fixed` process's own times, else
        the middle of each unit of expected arrivals (the n-th at Lambda^-1(Lambda(start) +
        n - 1/2)); at most `MAX_EXPECTED_ARRIVALS`."""
        if self.process == "fixed":
            times = []
            for at in self._fixed_times(start_ms, end_ms):
                times.append(at)
                if len(times) == MAX_EXPECTED_ARRIVALS:
                    break
            return times
        times = []
        for n in range(MAX_EXPECTED_ARRIVALS):
            if self.profile is not None:
                base = self.profile.expected(start_ms / 1000)
                at = round(self.profile.time_of(base + n + 0.5) * 1000)
            else:
                at = round(start_ms + (n + 0.5) * self.interval_ms)
            if at > end_ms:
                break
            times.append(at)
        return times

    # --- the forecast ---------------------------------------------------------------------

    def lookahead(self, now_ms: int, state: State) -> Lookahead:
        releases = list(self._releases(now_ms, state))
        expected = list(self._next_steps(now_ms, state))
        expected += self._arrival_tasks(now_ms, state)
        expected.sort(key=lambda e: (e.due_ms, e.key))
        return Lookahead(
            horizon_ms=self.horizon_ms,
            max_hold_ms=self.max_hold_ms,
            tick_ms=self.tick_ms,
            future_staff=tuple(releases),
            expected_tasks=tuple(expected),
            reservations=tuple(self._reservations(now_ms, state)),
            held_staff=dict(state.held_staff),
            held_rooms=dict(state.held_rooms),
            may_hold_staff=frozenset(state.free_staff) - state.spent_staff,
            may_hold_rooms=frozenset(state.free_rooms) - state.spent_rooms,
            walking=self.walking,
            task_ms=self.planned_task_ms,
        )

    def _releases(self, now_ms: int, state: State) -> Iterator[FutureStaff]:
        """Staff busy now, or off duty, expected free (and on duty) within their role's
        horizon, in the roster's order."""
        ends = {}
        for task in state.busy:
            length = self.task_ms(task.origin, task.kind, task.room_id, task.acuity)
            end = self.layout.task_ms(task.origin, task.kind, task.room_id)[1]
            ends[task.staff_id] = (max(now_ms + self.tick_ms, task.dispatched_ms + length), end)
        for staff_id in state.off_duty:
            back = self._back_on_duty(staff_id, now_ms, state)
            if back is not None:
                ends[staff_id] = (back, state.staff_location[staff_id])
        for staff_id, role in state.staff_role.items():
            if staff_id not in ends:
                continue
            free_ms, location = ends[staff_id]
            if free_ms - now_ms > self.horizon_ms[role]:
                continue
            if not self.roster.on_duty(staff_id, free_ms):
                continue
            yield FutureStaff(staff_id, role, location, free_ms)

    def _back_on_duty(self, staff_id: str, now_ms: int, state: State) -> int | None:
        """The first tick within the role's horizon at which an off-duty member is on duty."""
        horizon = self.horizon_ms[state.staff_role[staff_id]]
        at = now_ms + self.tick_ms
        while at - now_ms <= horizon:
            if self.roster.on_duty(staff_id, at):
                return at
            at += self.tick_ms
        return None

    def _next_steps(self, now_ms: int, state: State) -> Iterator[ExpectedTask]:
        for task in state.busy:
            kind = NEXT_KIND.get(task.kind)
            if kind is None:
                continue
            if kind == "clean" and task.isolation:
                kind = "clean_terminal"
            role = ROLE_OF_KIND[kind]
            length = self.task_ms(task.origin, task.kind, task.room_id, task.acuity)
            due = max(now_ms + self.tick_ms, task.dispatched_ms + length)
            if due - now_ms > self.horizon_ms[role]:
                continue
            acuity = task.acuity if kind in ("visit", "escort_out") else 3
            about = (
                f"the {kind.replace('_', ' ')} of {task.patient_id}"
                + (f" (ESI {acuity})" if acuity <= 2 and kind == "visit" else "")
                + f" in {task.room_id}"
                if kind in ("visit", "escort_out")
                else f"the cleaning of {task.room_id}"
            )
            yield ExpectedTask(
                f"next:{task.task_id}", kind, role, task.room_id, acuity, due, 1.0, about
            )
        # Escorts in that porters free now will take: their visits follow the walk.
        if any(state.staff_role[s] == "porter" for s in state.free_staff):
            horizon = self.horizon_ms["medical"]
            for escort in state.waiting_escorts:
                walk = (
                    self._escort_in_ms(escort.room_id)
                    if escort.room_id is not None
                    else self.mean_escort_in_ms
                )
                due = now_ms + max(self.tick_ms, walk)
                if due - now_ms > horizon:
                    continue
                room = escort.room_id
                yield ExpectedTask(
                    f"after:{escort.key}",
                    "visit",
                    "medical",
                    room,
                    escort.acuity,
                    due,
                    1.0,
                    f"the visit of {escort.patient_id}"
                    + (f" (ESI {escort.acuity})" if escort.acuity <= 2 else "")
                    + (f" in {room}" if room else ""),
                )

    def _arrival_tasks(self, now_ms: int, state: State) -> list[ExpectedTask]:
        """The escorts in and visits of the arrivals expected within the horizons: each
        arrival's escort in (certain, if a room is expected for it), and a visit per ESI
        level with the mix's share, after the mean escort."""
        porter_h, medical_h = self.horizon_ms["porter"], self.horizon_ms["medical"]
        end = now_ms + max(porter_h, medical_h)
        rooms = self._rooms_by(now_ms, state)
        found: list[ExpectedTask] = []
        for n, at in enumerate(self.arrival_times(now_ms, end), start=1):
            if n > rooms(at):  # no room expected for it: referred, no task follows
                break
            if at - now_ms <= porter_h:
                found.append(
                    ExpectedTask(
                        f"arrival:{at}",
                        "escort_in",
                        "porter",
                        None,
                        3,
                        at,
                        1.0,
                        f"an arrival expected in {_seconds(at - now_ms)}",
                        certain=False,
                    )
                )
            due = at + self.mean_escort_in_ms
            if due - now_ms > medical_h:
                continue
            for level, share in self.acuity_share.items():
                if share:
                    found.append(
                        ExpectedTask(
                            f"arrival:{at}:esi-{level}",
                            "visit",
                            "medical",
                            None,
                            level,
                            due,
                            share,
                            f"an ESI {level} arrival expected in {_seconds(at - now_ms)}",
                            certain=False,
                        )
                    )
        return found

    def _rooms_by(self, now_ms: int, state: State):
        """How many rooms are expected free by a time: those free now and those whose
        turnover is expected to end by then."""
        ends = sorted(end for end, _ in self._room_releases(now_ms, state))
        free = len(state.free_rooms)

        def by(at_ms: int) -> int:
            return free + bisect.bisect_right(ends, at_ms)

        return by

    def _room_releases(self, now_ms: int, state: State) -> Iterator[tuple[int, str]]:
        """When each room that is not free is expected free again: the task under way in it
        (or waiting for it) ends, then the rest of its turnover, at the expected lengths
        (the visit, the escort out, the cleaning), as if nobody waited for staff."""
        tick = self.tick_ms
        for task in state.busy:
            end = max(
                now_ms + tick,
                task.dispatched_ms
                + self.task_ms(task.origin, task.kind, task.room_id, task.acuity),
            )
            yield (
                end + self._turnover_after(task.kind, task.room_id, task.acuity, task.isolation),
                task.room_id,
            )
        for waiting in state.pending:
            kind, room, acuity = waiting.kind, waiting.room_id, waiting.acuity
            start = now_ms + self.task_ms(ENTRANCE, kind, room, acuity)
            yield start + self._turnover_after(kind, room, acuity, waiting.isolation), room

    def _turnover_after(self, kind: str, room_id: str, acuity: int, isolation: bool) -> int:
        """The expected length of a room's turnover after a task of `kind` in it."""
        total = 0
        while kind in NEXT_KIND:
            kind = NEXT_KIND[kind]
            if kind == "clean" and isolation:
                kind = "clean_terminal"
            origin = room_id if kind != "escort_out" else ENTRANCE
            total += self.task_ms(origin, kind, room_id, acuity)
        return total

    def _reservations(self, now_ms: int, state: State) -> Iterator[RoomReservation]:
        """Trunk reservation, from the forecast: for each class of patient that rooms may
        be kept for, as many free rooms as arrivals of that class are expected (rounded)
        before another room they may use is expected to come free, and at most
        `max_hold_s` and `lookahead_s` ahead."""
        cap = min(self.max_hold_ms, self.lookahead_ms)
        ends = sorted(self._room_releases(now_ms, state))
        classes: list[tuple[str, float, frozenset[str] | None]] = []
        if self.urgent_share:
            classes.append((URGENT, self.urgent_share, None))
        if self.isolation_share and self.isolation_rooms:
            classes.append((ISOLATION, self.isolation_share, self.isolation_rooms))
        for reserved_for, share, usable in classes:
            next_free = next(
                (end for end, room in ends if usable is None or room in usable), now_ms + cap
            )
            window = max(self.tick_ms, min(cap, next_free - now_ms))
            expected = share * self.arrivals_between(now_ms, now_ms + window)
            rooms = rooms_to_keep(expected)
            if rooms:
                yield RoomReservation(reserved_for, rooms, expected, window)


def _seconds(ms: int) -> str:
    return f"{ms / 1000:g} s"
