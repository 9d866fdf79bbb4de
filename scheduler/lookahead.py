"""The `cpsat` policy looking ahead (`[scheduler] lookahead_s`): each part of the tick is
still one exact assignment, over more units and items (`rules.forecast_value`,
`rules.hold_rooms`, `rules.declared_holds`).

**A role's plan.** Units: the role's staff free now, then those the forecast expects free
within the role's horizon (each with an item of its own, "not needed", at no cost, so that
the plan uses them only where they help). Items: the waiting tasks, then the tasks the
forecast expects within the horizon. As many members free now as possible get an item (the
hard rule "no idle staff while a task waits", with holds), then the least total cost, then
the tie-break. Only the pairs of members free now are carried out: a waiting task is
dispatched; an expected task makes a hold, declared if a task the member may do is left
waiting (otherwise the member is simply free).

**Bookings.** Units: the free rooms. Items: the admitted arrivals, then the phantoms of the
rooms kept (`TickProblem.room_plan`). A phantom's room is held, declared if an arrival of
another class was referred beside it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

from rules import forecast_value
from rules.units import per_second
from scheduler.assignment import assign
from scheduler.problem import (
    Arrival,
    ExpectedTask,
    FreeStaff,
    Hold,
    OpenTask,
    TickProblem,
    in_class,
)

# The `cpsat` policy (`scheduler.policies.CpSatPolicy`), whose rules' costs the plans use:
# not imported, as it imports this module.
CpSatPolicy = Any


class _PlanWalking(Mapping[tuple[str, str], int]):
    """Walking for the plan's pairs: the tick's own for a member free now and a waiting
    task, the forecast's for the others, from where each member is or will be."""

    def __init__(
        self,
        problem: TickProblem,
        places: dict[str, str],
        future: set[str],
        rooms: dict[str, tuple[str, str | None]],
    ):
        assert problem.lookahead is not None
        self._now = problem.walking_ms
        self._walking = problem.lookahead.walking
        self._places = places  # staff id -> where they are, or will be when free
        self._future = future  # the members free later
        self._rooms = rooms  # item key -> (kind, room) of the items not waiting now
        self._waiting = {t.key: (t.kind, t.room_id) for t in problem.tasks}

    def __getitem__(self, pair: tuple[str, str]) -> int:
        key, staff_id = pair
        where = self._rooms.get(key)
        if where is None:
            if staff_id not in self._future:
                return self._now[pair]
            where = self._waiting[key]
        kind, room = where
        return self._walking(self._places[staff_id], kind, room)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(())

    def __len__(self) -> int:
        return 0


def plan_role(
    policy: CpSatPolicy, problem: TickProblem, tasks: list[OpenTask], staff: list[FreeStaff]
) -> tuple[dict[str, str], dict[str, Hold], dict[str, str]]:
    """A role's dispatches, new holds and notes for the reasons, from its plan over the
    horizon; with nothing expected in it, the myopic part."""
    plan = plan_of(policy, problem, tasks, staff)
    if plan is None or (not plan.certain and not plan.needs):
        return _myopic(policy, problem, tasks, staff), {}, {}
    dispatches, holds, notes = plan.solve()
    if not plan.keeps_anyone and not plan.needs:
        # The forecast changes nothing this tick: the myopic part's own optimum (the plan's
        # extra rows and columns would only move its tie-break).
        return _myopic(policy, problem, tasks, staff), {}, {}
    return dispatches, holds, notes


def plan_of(
    policy: CpSatPolicy, problem: TickProblem, tasks: list[OpenTask], staff: list[FreeStaff]
) -> _Plan | None:
    """A role's plan: the members and tasks of now and of the horizon (None: nothing in
    the horizon)."""
    lookahead = problem.lookahead
    assert lookahead is not None
    role, now = staff[0].role, problem.now_ms
    horizon = lookahead.horizon_ms[role]
    future = [u for u in lookahead.future_staff if u.role == role and 0 < u.free_ms - now < horizon]
    expected = [
        e for e in lookahead.expected_tasks if e.role == role and 0 < e.due_ms - now < horizon
    ]
    if not future and not expected:
        return None
    return _Plan(policy, problem, tasks, staff, future, expected, horizon)


class _Plan:
    """One role's plan (see the module's docstring). Rows: the members free now, then the
    members free later who may do a task certain to come. Columns: the waiting tasks, the
    tasks certain to come (a member free now paired with one is held for it, a member free
    later takes it when both are there), one "kept free" column per member free now whom
    the arrivals expected may need (held for them), and one "not needed" column per member
    free later. A member free later takes no waiting task in the plan: what they change
    for one is only how long it waits if it is left (`_keep_cost`)."""

    def __init__(self, policy, problem, tasks, staff, future, expected, horizon):
        lookahead = problem.lookahead
        self.policy, self.problem, self.lookahead = policy, problem, lookahead
        self.tasks, self.staff, self.future, self.horizon = tasks, staff, future, horizon
        self.now = now = problem.now_ms
        role = staff[0].role
        # The tasks certain to come that a member free now may be held for: due within a
        # hold, the soonest first; at most two for each member free now, and no more than
        # the tasks waiting (a hold matters only where it leaves one of them waiting). The
        # members free later who free up soonest, at most one for each of those tasks.
        latest = now + lookahead.max_hold_ms
        self.certain = [e for e in expected if e.certain and e.due_ms <= latest][
            : min(2 * len(staff), len(tasks))
        ]
        likely = [e for e in expected if not e.certain]
        # An expected task as a task fresh when it comes: its worth is its priority then.
        as_tasks = [
            OpenTask(e.key, e.kind, role, e.room_id, "", now, e.acuity)
            for e in (*self.certain, *likely)
        ]
        as_staff = [FreeStaff(u.staff_id, role, u.location) for u in future]
        places = {s.staff_id: s.location for s in (*staff, *as_staff)}
        rooms = {t.key: (t.kind, t.room_id) for t in as_tasks}
        self.plan_problem = dataclasses.replace(
            problem,
            tasks=(*tasks, *as_tasks),
            staff=(*staff, *as_staff),
            walking_ms=_PlanWalking(problem, places, {u.staff_id for u in future}, rooms),
            lookahead=None,
        )
        self.may_do = may_do = self.plan_problem.may_do
        self.coming = as_tasks[: len(self.certain)]
        later = sorted(
            (
                (u, member)
                for u, member in zip(future, as_staff)
                if any(may_do(task, member) for task in self.coming)
            ),
            key=lambda pair: (pair[0].free_ms, pair[0].staff_id),
        )[: len(self.coming)]
        self.absorbing = [u for u, _ in later]
        self.units = [*staff, *(member for _, member in later)]
        self.items = [*tasks, *self.coming]
        self.worth = policy.task_worths(self.plan_problem, self.items)
        self.pairs: list[list[int]] = []  # worked out by `matrix`
        self.needs = _needs(
            policy, self.plan_problem, likely, as_tasks[len(self.certain) :], staff, future
        )
        self.holdable = [
            n
            for n, member in enumerate(staff)
            if member.staff_id in lookahead.may_hold_staff
            and any(self.may_do(need.task, member) for need in self.needs)
        ]
        self.lengths: dict[tuple[int, int], int] = {}
        self.keeps_anyone = False  # a member kept free while a task they may do waits

    def matrix(self) -> tuple[list[list[int]], list[list[bool]]]:
        """The plan as an assignment problem: its costs and its allowed pairs."""
        n_now = len(self.staff)
        self.pairs = self.policy.pair_costs(self.plan_problem, self.items, self.staff)
        if len(self.units) > n_now:
            zeros = [0] * len(self.tasks)
            self.pairs += [
                zeros + row
                for row in self.policy.pair_costs(
                    self.plan_problem, self.coming, self.units[n_now:]
                )
            ]
        cost, allowed = [], []
        for row in range(len(self.units)):
            costs, ok = self._row(row)
            cost.append(costs)
            allowed.append(ok)
        return cost, allowed

    def solve(self) -> tuple[dict[str, str], dict[str, Hold], dict[str, str]]:
        cost, allowed = self.matrix()
        n_now, n_tasks, n_items = len(self.staff), len(self.tasks), len(self.items)
        dispatches: dict[str, str] = {}
        kept: dict[int, ExpectedTask | None] = {}
        for row, col in assign(cost, self.policy.weights.tie_break, allowed):
            if row >= n_now:
                continue  # the plan of a member free later: not carried out
            if col < n_tasks:
                dispatches[self.tasks[col].key] = self.staff[row].staff_id
            elif col < n_items:
                kept[row] = self.certain[col - n_tasks]
            elif col < n_items + len(self.holdable):
                kept[row] = None
        return dispatches, self._holds(kept, dispatches), self._notes(dispatches)

    def _notes(self, dispatches: dict[str, str]) -> dict[str, str]:
        """For the reasons: the dispatches of a member whom more urgent arrivals expected may
        need (only they could serve them): how many come while the task keeps them busy."""
        if not self.needs or not self.problem.lookahead:
            return {}
        notes = {}
        rows = {member.staff_id: row for row, member in enumerate(self.staff)}
        for col, task in enumerate(self.tasks):
            staff_id = dispatches.get(task.key)
            if staff_id is None or (rows[staff_id], col) not in self.lengths:
                continue
            member = self.staff[rows[staff_id]]
            busy_until = self.now + self.lengths[rows[staff_id], col]
            coming = [
                n
                for n in self.needs
                if self.may_do(n.task, member)
                and n.expected.due_ms < busy_until
                and n.task.acuity < task.acuity
            ]
            if coming:
                urgent = [n for n in coming if n.task.acuity <= 2]
                shown = urgent or coming
                count = sum(n.expected.probability for n in shown)
                who = "ESI 1-2 arrivals" if urgent else "arrivals"
                notes[task.key] = (
                    f"looking ahead: {count:.1f} {who} expected while busy "
                    f"({_seconds(busy_until - self.now)}), worth less than this task"
                )
        return notes

    def _row(self, row: int) -> tuple[list[int], list[bool]]:
        n_now, n_tasks = len(self.staff), len(self.tasks)
        unit, now, horizon = self.units[row], self.now, self.horizon
        free_ms = now if row < n_now else self.absorbing[row - n_now].free_ms
        # Held, a member leaves a waiting task to someone else, who walks it anyway: the walk
        # of the cheapest one they may do is not saved by holding them.
        unsaved = 0
        if row < n_now:
            unsaved = min(
                (self.pairs[row][col] for col, t in enumerate(self.tasks) if self.may_do(t, unit)),
                default=0,
            )
        costs, ok = [], []
        for col, item in enumerate(self.items):
            fits = (row < n_now or col >= n_tasks) and self.may_do(item, unit)
            start = free_ms
            if col >= n_tasks:
                due = self.certain[col - n_tasks].due_ms
                start = max(free_ms, due)
                if row < n_now:  # a hold until the task comes
                    fits = fits and _may_hold(
                        self.problem, unit.staff_id, _until(self.problem, due)
                    )
            ok.append(fits)
            if not fits:
                costs.append(0)
                continue
            lost = 0.0
            if row < n_now and col >= n_tasks:  # held: idle until the task comes
                lost = self._idle_cost(start - now) + unsaved
            if row < n_now and col < n_tasks and self.needs:
                length = self.lookahead.task_ms(unit.location, item.kind, item.room_id, item.acuity)
                self.lengths[row, col] = length
                lost = _potential(self.needs, unit, now + length, horizon, self.may_do)
            costs.append(
                forecast_value.pair_cost(
                    self.pairs[row][col] + lost, self.worth[col], start - now, horizon
                )
            )
        keep = self._keep_cost(row, costs[:n_tasks], ok[:n_tasks]) if row in self.holdable else 0
        ok += [row == n for n in self.holdable]
        costs += [keep] * len(self.holdable)
        ok += [row - n_now == other for other in range(len(self.absorbing))]
        costs += [0] * len(self.absorbing)
        return costs, ok

    def _idle_cost(self, idle_ms: int) -> float:
        """A member kept waiting is, like one walking, on no task: a second of it costs
        what `minimise_walking` says a second walked does."""
        return per_second(idle_ms, self.policy.weights.minimise_walking)

    def _keep_cost(self, row: int, costs: list[int], fits: list[bool]) -> int:
        """Keeping a member free for the arrivals expected rather than giving them their
        best task: that task waits for the next member who may do it, and loses what the
        wait costs it; nothing of its walk is saved (only the forecast may make keeping the
        member better)."""
        best = min((col for col, ok in enumerate(fits) if ok), key=costs.__getitem__, default=None)
        if best is None:
            return 0
        task, member = self.tasks[best], self.staff[row]
        others = [
            u.free_ms
            for u in self.future
            if u.staff_id != member.staff_id
            and self.may_do(task, FreeStaff(u.staff_id, u.role, u.location))
        ]
        delay = min(others, default=self.now + self.horizon) - self.now
        return (
            forecast_value.pair_cost(self.pairs[row][best], self.worth[best], delay, self.horizon)
            + 1
        )

    def _holds(
        self, kept: dict[int, ExpectedTask | None], dispatches: dict[str, str]
    ) -> dict[str, Hold]:
        """The holds to declare: only where a member kept free leaves a task they may do
        waiting (otherwise they are simply free); a live hold goes on as it was declared."""
        waiting = [col for col, t in enumerate(self.tasks) if t.key not in dispatches]
        holds = {}
        for row, target in kept.items():
            member = self.staff[row]
            declined = [col for col in waiting if self.may_do(self.tasks[col], member)]
            self.keeps_anyone = self.keeps_anyone or bool(declined)
            if member.staff_id in self.lookahead.held_staff or not declined:
                continue
            if target is not None:
                due_in = (target.due_ms - self.now) / 1000
                holds[member.staff_id] = Hold(
                    _until(self.problem, target.due_ms),
                    f"kept free for {target.about}, due in {due_in:g} s",
                )
                continue
            length = min(
                self.lengths.get((row, col))
                or self.lookahead.task_ms(
                    member.location, self.tasks[col].kind, self.tasks[col].room_id, 3
                )
                for col in declined
            )
            holds[member.staff_id] = _arrivals_hold(
                self.problem, member, self.needs, self.now + length
            )
        return holds


def _may_hold(problem: TickProblem, staff_id: str, until_ms: int) -> bool:
    from rules.declared_holds import may_hold_until

    assert problem.lookahead is not None
    return may_hold_until(problem.lookahead, staff_id, until_ms, problem.now_ms)


@dataclasses.dataclass(frozen=True)
class _Need:
    """An expected arrival's task in the potential: when it comes, its weight (probability
    times worth, in the rules' units, shared among the members free now who may do it), and
    when another member who may do it is expected free."""

    task: OpenTask
    expected: ExpectedTask
    weight: float
    other_free_ms: int | None


def _needs(policy, problem, likely, as_tasks, staff, future) -> list[_Need]:
    worths = policy.task_worths(problem, as_tasks)
    needs = []
    for e, task, worth in zip(likely, as_tasks, worths):
        able = sum(1 for s in staff if problem.may_do(task, s))
        if able != 1 or worth >= 0:  # the only one free now who could do it, or none
            continue
        others = [
            u.free_ms
            for u in future
            if problem.may_do(task, FreeStaff(u.staff_id, u.role, u.location))
        ]
        needs.append(_Need(task, e, e.probability * -worth, min(others, default=None)))
    return needs


def _potential(
    needs: list[_Need], member: FreeStaff, busy_until: int, horizon: int, may_do
) -> float:
    """What keeping `member` busy until `busy_until` costs the arrivals expected whose
    tasks they may do: each waits until then, or until another member who may do it is
    expected free, whichever comes first; its worth decays with the wait as in the plan
    (`rules.forecast_value`)."""
    lost = 0.0
    for need in needs:
        if not may_do(need.task, member):
            continue
        served = busy_until if need.other_free_ms is None else min(busy_until, need.other_free_ms)
        wait = served - need.expected.due_ms
        if wait > 0:
            lost += need.weight * wait / horizon
    return lost


def _until(problem: TickProblem, due_ms: int) -> int:
    """The tick that sees a time, at most `max_hold_s` from now."""
    lookahead = problem.lookahead
    assert lookahead is not None
    tick = lookahead.tick_ms
    at = -(-due_ms // tick) * tick
    latest = problem.now_ms + lookahead.max_hold_ms // tick * tick
    return min(max(at, problem.now_ms + tick), latest)


def _arrivals_hold(problem, member, needs, busy_until) -> Hold:
    """A member kept free for the arrivals expected while the task they were offered would
    have kept them busy, until then: the reason in words."""
    mine = [n for n in needs if problem.may_do(n.task, member) and n.expected.due_ms < busy_until]
    urgent = [n for n in mine if n.task.acuity <= 2]
    shown = urgent or mine
    count = sum(n.expected.probability for n in shown)
    who = "ESI 1-2 arrivals" if urgent else "arrivals"
    window = _seconds(busy_until - problem.now_ms)
    reason = f"kept free: {count:.1f} {who} expected in the next {window}"
    return Hold(_until(problem, busy_until), reason)


def _seconds(ms: int) -> str:
    return f"{ms / 1000:g} s"


def _myopic(policy, problem, tasks, staff) -> dict[str, str]:
    allowed = None
    if problem.skills and staff[0].role == "medical":
        allowed = [[problem.may_do(t, s) for t in tasks] for s in staff]
    costs = policy._dispatch_costs(problem, tasks, staff)
    return {
        tasks[t].key: staff[s].staff_id for s, t in assign(costs, policy.weights.tie_break, allowed)
    }


# --- bookings ---------------------------------------------------------------------------------


def book(
    policy: CpSatPolicy, problem: TickProblem, admitted: tuple[Arrival, ...]
) -> tuple[dict[str, str], dict[str, Hold]]:
    """The bookings and the new room holds: one assignment of the free rooms to the admitted
    arrivals and the phantoms of the rooms kept, at the rules' costs (a phantom's: the
    room's). Phantoms come last among the items, so that the tie-break keeps the rooms the
    rules like best (the nearest) for them."""
    lookahead = problem.lookahead
    assert lookahead is not None
    _, phantoms = problem.room_plan() if lookahead.reservations else ((), ())
    items = [*admitted, *phantoms]
    rooms = problem.free_rooms
    if not items:
        return {}, {}
    matrix, allowed = [], []
    for room in rooms:
        costs, ok = [], []
        base = sum(cost(problem, room, weight) for cost, weight in policy._room_cost)
        for item in items:
            reserved_for = _kept_for(item)
            if reserved_for is None:
                fits = problem.may_book(item, room)
                extra = sum(cost(problem, item, weight) for cost, weight in policy._arrival_cost)
                if problem.isolation_rooms:
                    extra += sum(
                        cost(problem, item, room, weight) for cost, weight in policy._booking_cost
                    )
            else:
                fits = problem.may_keep(room, reserved_for)
                held = lookahead.held_rooms.get(room)
                # A room held for the class already is the one kept, all else equal.
                extra = -1 if held is not None and held[0] == reserved_for else 0
            ok.append(fits)
            costs.append(base + extra if fits else 0)
        matrix.append(costs)
        allowed.append(ok)
    bookings: dict[str, str] = {}
    kept: dict[str, str] = {}
    for r, i in assign(matrix, policy.weights.tie_break, allowed):
        item = items[i]
        reserved_for = _kept_for(item)
        if reserved_for is None:
            bookings[item.patient_id] = rooms[r]
        else:
            kept[rooms[r]] = reserved_for
    booked = set(bookings)
    referred = [a for a in problem.arrivals if a.patient_id not in booked]
    holds = {}
    for room_id, reserved_for in kept.items():
        if room_id in lookahead.held_rooms:
            continue  # held already: it goes on as declared
        turned_away = [
            a for a in referred if problem.may_book(a, room_id) and not in_class(a, reserved_for)
        ]
        if turned_away:
            holds[room_id] = _room_hold(problem, reserved_for)
    return bookings, holds


def _kept_for(arrival: Arrival) -> str | None:
    if arrival.patient_id.startswith("kept:"):
        return arrival.patient_id.split(":")[1]
    return None


def _room_hold(problem: TickProblem, reserved_for: str) -> Hold:
    lookahead = problem.lookahead
    assert lookahead is not None
    reservation = next(r for r in lookahead.reservations if r.reserved_for == reserved_for)
    who = "ESI 1-2 patients" if reserved_for == "urgent" else "patients who need isolation"
    reason = (
        f"kept for {who}: {reservation.expected:.1f} expected in the next "
        f"{_seconds(reservation.window_ms)}, before another room comes free"
    )
    return Hold(problem.now_ms + reservation.window_ms, reason, reserved_for)
