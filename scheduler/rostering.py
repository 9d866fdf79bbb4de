"""Rosters from staffings by hour of day: the `[shifts] roster` a config accepts.

    entries = requirement_roster("nurse", [3, 3, 2, ...])     # 24 counts: who is on when
    plan = cover([3, 3, 2, ...], lengths=(8, 12), starts=range(24))   # shifts, by CP-SAT
    entries = shift_roster("nurse", plan)                     # "nurse-1 07:00-15:00", ...
    text = config_toml(config)                                # a complete config file

**A requirement as a roster** (`requirement_roster`): member k is on duty in the hours
whose requirement is k or more, so that exactly the required number is on duty each hour.
Their hours need not be one block: the longest stretch off duty is the time between two
shifts, the other stretches off are breaks within the shift.

**A roster of shifts at least cost** (`cover`): how many staff start a shift of each allowed
length at each allowed hour, so that every hour of the day (the day repeats) has at least
its requirement on duty, with the fewest staff-hours: an integer program (a cyclic shift
cover, as in Dantzig's 1954 toll-booth staffing and `pyworkforce`'s OR-tools cover), solved
by CP-SAT with one worker and a fixed seed, so that the same requirement always gives the
same roster. Its cost against the sum of the hourly requirements (the staff-hours no roster
can go below) is the price of whole shifts.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from scheduler.config import Config, shareable

HOURS = 24


class RosterPlanError(ValueError):
    """Shifts that cannot cover a requirement (no allowed shift covers some hour)."""


def _clock(hour: int) -> str:
    return f"{hour % HOURS:02d}:00"


def _runs(hours: set[int]) -> list[tuple[int, int]]:
    """The stretches of consecutive hours of the day in `hours` (the day wraps), each as
    (first hour, length), longest first, then by first hour."""
    runs = []
    for hour in sorted(hours):
        if (hour - 1) % HOURS in hours:
            continue  # not the first of its stretch
        length = 1
        while (hour + length) % HOURS in hours and length < HOURS:
            length += 1
        runs.append((hour, length))
    return sorted(runs, key=lambda run: (-run[1], run[0]))


def entry(staff_id: str, on_duty: set[int]) -> str | None:
    """The roster entry of someone on duty in the hours `on_duty` (None: always on duty,
    who needs no entry)."""
    if len(on_duty) >= HOURS:
        return None
    if not on_duty:
        raise RosterPlanError(f"{staff_id}: on duty in no hour")
    off = set(range(HOURS)) - on_duty
    (rest_start, rest_length), *breaks = _runs(off)
    text = f"{staff_id} {_clock(rest_start + rest_length)}-{_clock(rest_start)}"
    for start, length in sorted(breaks):
        text += f" break {_clock(start)}-{_clock(start + length)}"
    return text


def requirement_roster(title: str, requirement: Sequence[int]) -> list[str]:
    """Entries for `title`-1..max(requirement): exactly requirement[h] on duty in hour h."""
    entries = []
    for k in range(1, max(requirement, default=0) + 1):
        line = entry(f"{title}-{k}", {h for h in range(HOURS) if requirement[h] >= k})
        if line:
            entries.append(line)
    return entries


@dataclass(frozen=True)
class Plan:
    """A roster of shifts: how many start a shift of each length at each hour."""

    requirement: tuple[int, ...]
    shifts: tuple[tuple[int, int, int], ...]  # (start hour, length in hours, staff)

    @property
    def staff(self) -> int:
        return sum(n for _, _, n in self.shifts)

    @property
    def cost(self) -> int:
        """Staff-hours a day."""
        return sum(length * n for _, length, n in self.shifts)

    @property
    def required(self) -> int:
        """The requirement's staff-hours a day: what no roster can go below."""
        return sum(self.requirement)

    def on_duty(self) -> list[int]:
        counts = [0] * HOURS
        for start, length, n in self.shifts:
            for h in range(start, start + length):
                counts[h % HOURS] += n
        return counts

    def as_dict(self) -> dict[str, Any]:
        return {
            "requirement": list(self.requirement),
            "on_duty": self.on_duty(),
            "shifts": [
                {"start": _clock(s), "hours": length, "staff": n} for s, length, n in self.shifts
            ],
            "staff": self.staff,
            "staff_hours": self.cost,
            "required_staff_hours": self.required,
        }


def cover(requirement: Sequence[int], lengths: Iterable[int], starts: Iterable[int]) -> Plan:
    """The roster of shifts of the allowed `lengths` (hours) starting at the allowed
    `starts` (hours of the day) with the fewest staff-hours that has at least
    requirement[h] on duty in every hour h."""
    from ortools.sat.python import cp_model

    need = [int(n) for n in requirement]
    shifts = sorted({(s % HOURS, int(length)) for s in starts for length in lengths})
    for hour in range(HOURS):
        if need[hour] and not any(_covers(s, length, hour) for s, length in shifts):
            raise RosterPlanError(f"no allowed shift covers {_clock(hour)}-{_clock(hour + 1)}")
    model = cp_model.CpModel()
    top = max(need, default=0)
    count = {shift: model.new_int_var(0, top, f"x{shift[0]}_{shift[1]}") for shift in shifts}
    for hour in range(HOURS):
        model.add(
            sum(x for (s, length), x in count.items() if _covers(s, length, hour)) >= need[hour]
        )
    model.minimize(sum(length * x for (_, length), x in count.items()))
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1  # deterministic: the same roster every time
    solver.parameters.random_seed = 1
    solver.parameters.max_deterministic_time = 30.0
    status = solver.solve(model)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        raise RosterPlanError("no roster found (the solver gave up)")
    chosen = tuple(
        (s, length, int(solver.value(x))) for (s, length), x in count.items() if solver.value(x)
    )
    return Plan(tuple(need), chosen)


def _covers(start: int, length: int, hour: int) -> bool:
    return (hour - start) % HOURS < length


def shift_roster(title: str, plan: Plan, first: int = 1) -> list[str]:
    """The plan's shifts as roster entries, `title`-first.. in order of start."""
    entries, k = [], first
    for start, length, n in sorted(plan.shifts):
        for _ in range(n):
            if length < HOURS:
                entries.append(f"{title}-{k} {_clock(start)}-{_clock(start + length)}")
            k += 1
    return entries


def config_toml(config: Config, header: str = "") -> str:
    """A complete config file of `config`'s deciding sections (where the broker and the
    database are stays with the deployment, as in a recorded log's header)."""
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    for section, values in shareable(config).items():
        lines += ["", f"[{section}]"]
        for key, value in values.items():
            lines.append(f"{key} = {_toml(value)}")
    return "\n".join(lines).lstrip("\n") + "\n"


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    items = [_toml(v) for v in value]
    if sum(len(i) for i in items) < 80:
        return "[" + ", ".join(items) + "]"
    return "[\n" + "".join(f"    {i},\n" for i in items) + "]"
