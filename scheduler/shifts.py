"""Shifts and breaks: who is on duty when.

`[shifts] roster` has one entry per rostered staff member, "STAFF-ID FROM-TO [break
FROM-TO]...", with times of day as HH:MM or HH:MM:SS in a day of `cycle_s` seconds that
repeats (24 h by default); a shift may run past midnight (22:00-06:00). Staff without an
entry are always on duty. Off duty, a staff member gets no new task: they finish the one they
have.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from scheduler.events import shown  # a leaf module, as this one is

_TIME = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2}))?$")


class RosterError(ValueError):
    """A roster entry that cannot be read; the message says which and why."""


def _seconds(text: str, entry: str) -> int:
    match = _TIME.match(text)
    if not match:
        raise RosterError(f"{shown(entry)}: {shown(text)} is not a time of day (HH:MM or HH:MM:SS)")
    hours, minutes, seconds = (int(g or 0) for g in match.groups())
    if minutes > 59 or seconds > 59 or hours > 24:
        raise RosterError(f"{shown(entry)}: {shown(text)} is not a time of day")
    return hours * 3600 + minutes * 60 + seconds


def _span(text: str, entry: str) -> tuple[int, int]:
    start, dash, end = text.partition("-")
    if not dash:
        raise RosterError(f"{shown(entry)}: expected FROM-TO, got {shown(text)}")
    return _seconds(start, entry) * 1000, _seconds(end, entry) * 1000


def _inside(time_ms: int, span: tuple[int, int]) -> bool:
    start, end = span
    return start <= time_ms < end if start <= end else time_ms >= start or time_ms < end


def _within(inner: tuple[int, int], outer: tuple[int, int]) -> bool:
    """Whether the span `inner` lies inside `outer`, either of them maybe across midnight."""
    (start, end), (outer_start, outer_end) = inner, outer
    if outer_start < outer_end:  # within one day: so must `inner` be
        return outer_start <= start < end <= outer_end
    if start < end:  # `outer` runs across midnight: `inner` before it or after it
        return start >= outer_start or end <= outer_end
    return start >= outer_start and end <= outer_end  # both across midnight


def _check_spans(
    entry: str,
    staff_id: str,
    work_text: str,
    work: tuple[int, int],
    break_texts: list[str],
    breaks: list[tuple[int, int]],
    cycle_ms: int,
) -> None:
    """A shift that never begins, and a break of no time or outside its shift, can only be
    mistakes: said, rather than a member silently never on duty or never on a break."""
    if work[0] == work[1]:
        raise RosterError(
            f"{shown(entry)}: the shift {work_text} holds no time on duty (leave "
            f"{staff_id[:40]} out of the roster to keep them on duty)"
        )
    for text, span in zip(break_texts, breaks):
        if span[0] == span[1]:
            raise RosterError(f"{shown(entry)}: the break {text} lasts no time")
        if work != (0, cycle_ms) and not _within(span, work):  # a whole cycle holds any
            raise RosterError(
                f"{shown(entry)}: the break {text} is not within {staff_id[:40]}'s "
                f"shift {work_text}"
            )


@dataclass(frozen=True)
class Shift:
    work: tuple[int, int]  # ms of the day, start inclusive, end exclusive
    breaks: tuple[tuple[int, int], ...] = ()


class Roster:
    def __init__(self, entries: tuple[str, ...], cycle_s: float, staff_ids: set[str]):
        self.cycle_ms = round(cycle_s * 1000)
        self.shifts: dict[str, Shift] = {}
        for entry in entries:
            words = entry.split()
            if len(words) < 2 or len(words) % 2:
                raise RosterError(f"{shown(entry)}: expected 'STAFF-ID FROM-TO [break FROM-TO]...'")
            staff_id, work, rest = words[0], _span(words[1], entry), words[2:]
            if staff_id not in staff_ids:
                raise RosterError(f"{shown(entry)}: no staff member {staff_id[:40]}")
            if staff_id in self.shifts:
                raise RosterError(f"{shown(entry)}: {staff_id[:40]} has two entries")
            breaks = []
            for word, text in zip(rest[::2], rest[1::2]):
                if word != "break":
                    raise RosterError(
                        f"{shown(entry)}: expected 'break FROM-TO', got {shown(word)}"
                    )
                breaks.append(_span(text, entry))
            for span in (work, *breaks):
                if max(span) > self.cycle_ms:
                    raise RosterError(f"{shown(entry)}: a time past the cycle of {cycle_s:g} s")
            _check_spans(entry, staff_id, words[1], work, rest[1::2], breaks, self.cycle_ms)
            self.shifts[staff_id] = Shift(work, tuple(breaks))

    def on_duty(self, staff_id: str, time_ms: int) -> bool:
        shift = self.shifts.get(staff_id)
        if shift is None:
            return True
        of_day = time_ms % self.cycle_ms
        return _inside(of_day, shift.work) and not any(_inside(of_day, b) for b in shift.breaks)
