"""The policies that decide a tick: `cpsat` (the optimum of the rules' CP-SAT model) and
`greedy` (first come, first served, first free resource). Both take a `TickProblem` and
return a `Solution`, so they can be swapped and compared.
"""

from __future__ import annotations

from typing import Any, Protocol

import rules
from scheduler.assignment import assign
from scheduler.config import RulesConfig
from scheduler.problem import Arrival, FreeStaff, OpenTask, Solution, TickProblem


class Policy(Protocol):
    name: str

    def solve(self, problem: TickProblem) -> Solution: ...


class GreedyPolicy:
    """First come, first served, as the original prototype did, following every hard rule as
    a careful dispatcher would: arrivals admitted in order of urgency then arrival
    (`TickProblem.admitted`), each into the first free room it may use (those needing
    isolation placed first, the others kept out of isolation rooms while other rooms are
    free); tasks in order of urgency then creation, each to the first free staff member who
    may do it (nurses before doctors, by roster order)."""

    name = "greedy"

    def solve(self, problem: TickProblem) -> Solution:
        free_rooms = list(problem.free_rooms)
        bookings = {}
        admitted = sorted(problem.admitted(), key=lambda a: not a.isolation)
        if not problem.isolation_rooms and not any(a.isolation for a in admitted):
            # No room is kept apart: each arrival takes the first free room.
            for arrival, room in zip(admitted, free_rooms):
                bookings[arrival.patient_id] = room
        else:
            for arrival in admitted:
                fitting = [r for r in free_rooms if problem.may_book(arrival, r)]
                plain = [r for r in fitting if r not in problem.isolation_rooms]
                room = (plain or fitting)[0]
                free_rooms.remove(room)
                bookings[arrival.patient_id] = room
        dispatches: dict[str, str] = {}
        if not problem.staff:
            return Solution(bookings, dispatches)
        free_staff = list(problem.staff)
        # Without the skills rule, the first free staff member who may do a task is the
        # first of its role.
        of_role: dict[str, list[FreeStaff]] = {}
        if not problem.skills:
            for staff in free_staff:
                of_role.setdefault(staff.role, []).append(staff)
        for task in sorted(
            problem.tasks, key=lambda t: (t.acuity, t.created_ms, not t.for_arrival)
        ):
            if task.for_arrival and task.patient_id not in bookings:
                continue
            if not problem.skills:
                waiting_staff = of_role.get(task.role)
                if waiting_staff:
                    dispatches[task.key] = waiting_staff.pop(0).staff_id
                continue
            chosen = next((s for s in free_staff if problem.may_do(task, s)), None)
            if chosen is not None:
                free_staff.remove(chosen)
                dispatches[task.key] = chosen.staff_id
        return Solution(bookings, dispatches)


def soft_rules(weights: RulesConfig) -> list[tuple[Any, float]]:
    """The soft rules that are switched on, with their weights."""
    found = [(rule, getattr(weights, rule.__name__.rsplit(".", 1)[-1])) for rule in rules.SOFT]
    return [(rule, weight) for rule, weight in found if weight]


class CpSatPolicy:
    """The rules' CP-SAT model, solved part by part. The model's parts are independent: the
    bookings (which free room each admitted arrival takes) and, for each role, which waiting
    task each free staff member takes; they share no variable once the admitted arrivals are
    known, and the hard rules fix those (`TickProblem.admitted`: by urgency, then arrival, as
    many as the free rooms can take). Every soft rule's term is a cost per pair, so each part
    is an assignment problem, solved exactly with the tie-break (`scheduler.assignment`): the
    optimum of the whole model in CP-SAT (`scheduler.full_model`), in a fraction of the
    time, and unique at any size."""

    name = "cpsat"
    limited = 0  # ticks where a limit cut the search: none, every part is exact
    worst_gap = 0.0
    looks_ahead = True  # with `[scheduler] lookahead_s`: `scheduler.lookahead`

    def __init__(self, weights: RulesConfig | None = None):
        self.weights = weights or RulesConfig()
        soft = soft_rules(self.weights)

        def parts(name: str) -> list[tuple[Any, float]]:
            return [(getattr(rule, name), weight) for rule, weight in soft if hasattr(rule, name)]

        self._task_cost, self._pair_cost = parts("task_cost"), parts("pair_cost")
        self._arrival_cost, self._room_cost = parts("arrival_cost"), parts("room_cost")
        self._booking_cost = parts("booking_cost")
        self.solved = 0  # ticks where some part had a choice
        self.forced = 0  # ticks where no part had any: one possible decision

    def solve(self, problem: TickProblem) -> Solution:
        if problem.lookahead is not None:
            return self._solve_looking_ahead(problem)
        admitted = problem.admitted()
        sizes = [(len(problem.free_rooms), len(admitted))]
        bookings = self._bookings(problem, admitted)
        tasks_of, staff_of = _by_role(problem, bookings)
        dispatches: dict[str, str] = {}
        for role, staff in staff_of.items():
            tasks = tasks_of.get(role)
            if not tasks:
                continue
            sizes.append((len(staff), len(tasks)))
            if len(staff) == 1 and len(tasks) == 1 and not (problem.skills and role == "medical"):
                # One pair, which the hard rules take: no cost to weigh (two ticks in five).
                dispatches[tasks[0].key] = staff[0].staff_id
                continue
            allowed = None
            if problem.skills and role == "medical":
                allowed = [[problem.may_do(t, s) for t in tasks] for s in staff]
            for s, t in assign(
                self._dispatch_costs(problem, tasks, staff), self.weights.tie_break, allowed
            ):
                dispatches[tasks[t].key] = staff[s].staff_id
        if all(min(size) == 0 or size == (1, 1) for size in sizes):
            self.forced += 1
        else:
            self.solved += 1
        return Solution(bookings, dispatches)

    def _solve_looking_ahead(self, problem: TickProblem) -> Solution:
        """Each part as a plan over the forecast (`scheduler.lookahead`)."""
        from scheduler import lookahead

        self.solved += 1
        bookings, room_holds = lookahead.book(self, problem, problem.admitted())
        tasks_of, staff_of = _by_role(problem, bookings)
        dispatches: dict[str, str] = {}
        staff_holds = {}
        notes: dict[str, str] = {}
        for role, staff in staff_of.items():
            tasks = tasks_of.get(role)
            if not tasks:
                continue
            chosen, held, noted = lookahead.plan_role(self, problem, tasks, staff)
            dispatches.update(chosen)
            staff_holds.update(held)
            notes.update(noted)
        return Solution(bookings, dispatches, staff_holds, room_holds, notes)

    def task_worths(self, problem: TickProblem, tasks: list[OpenTask]) -> list[int]:
        """Each task's part of a dispatch's cost: the negative of its priority."""
        return [sum(cost(problem, t, weight) for cost, weight in self._task_cost) for t in tasks]

    def pair_costs(
        self, problem: TickProblem, tasks: list[OpenTask], staff: list[FreeStaff]
    ) -> list[list[int]]:
        """Staff (rows) by tasks (columns): each dispatch's own part of its cost (walking)."""
        if not self._pair_cost:
            return [[0] * len(tasks) for _ in staff]
        return [
            [sum(cost(problem, t, s, weight) for cost, weight in self._pair_cost) for t in tasks]
            for s in staff
        ]

    def _bookings(self, problem: TickProblem, admitted: tuple[Arrival, ...]) -> dict[str, str]:
        rooms = problem.free_rooms
        if not admitted:
            return {}
        if len(rooms) == 1 and len(admitted) == 1 and not problem.isolation_rooms:
            return {admitted[0].patient_id: rooms[0]}  # one pair, which the hard rules take
        by_room = [sum(cost(problem, r, weight) for cost, weight in self._room_cost) for r in rooms]
        by_arrival = [
            sum(cost(problem, a, weight) for cost, weight in self._arrival_cost) for a in admitted
        ]
        matrix = [[r + a for a in by_arrival] for r in by_room]
        if self._booking_cost and problem.isolation_rooms:
            matrix = [
                [
                    c + sum(cost(problem, a, r, weight) for cost, weight in self._booking_cost)
                    for c, a in zip(row, admitted)
                ]
                for row, r in zip(matrix, rooms)
            ]
        allowed = None
        if problem.isolation_rooms:
            allowed = [[problem.may_book(a, r) for a in admitted] for r in rooms]
        return {
            admitted[a].patient_id: rooms[r]
            for r, a in assign(matrix, self.weights.tie_break, allowed)
        }

    def _dispatch_costs(
        self, problem: TickProblem, tasks: list[OpenTask], staff: list[FreeStaff]
    ) -> list[list[int]]:
        """Staff (rows) by tasks (columns): what each dispatch costs under the soft rules."""
        by_task = [sum(cost(problem, t, weight) for cost, weight in self._task_cost) for t in tasks]
        if not self._pair_cost:
            return [by_task] * len(staff)
        return [
            [
                c + sum(cost(problem, t, s, weight) for cost, weight in self._pair_cost)
                for c, t in zip(by_task, tasks)
            ]
            for s in staff
        ]


def is_forced(problem: TickProblem) -> bool:
    """True when the hard rules leave exactly one decision: no choice of arrivals or rooms,
    and in each role no choice of tasks or staff. Then the solver has nothing to decide."""
    due = problem.admissions_due()
    if due and not (len(problem.arrivals) == 1 and len(problem.free_rooms) == 1):
        return False
    for role in problem.roles:
        tasks = [t for t in problem.tasks_of(role) if not t.for_arrival or due]
        if problem.dispatches_due(role) and not (
            len(tasks) == 1 and len(problem.staff_of(role)) == 1
        ):
            return False
    return True


def _by_role(
    problem: TickProblem, bookings: dict[str, str]
) -> tuple[dict[str, list[OpenTask]], dict[str, list[FreeStaff]]]:
    """Each role's part of the tick: its tasks (an arrival's escort in only once booked) and
    its free staff."""
    tasks_of: dict[str, list[OpenTask]] = {}
    for task in problem.tasks:
        if not task.for_arrival or task.patient_id in bookings:
            tasks_of.setdefault(task.role, []).append(task)
    staff_of: dict[str, list[FreeStaff]] = {}
    for member in problem.staff:
        staff_of.setdefault(member.role, []).append(member)
    return tasks_of, staff_of
