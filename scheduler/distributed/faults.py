"""Fault points of the live scheduler, for the crash tests: they make it fail on purpose in
the windows that matter, which a kill from outside hits only by luck.

`HOSPITAL_FAULT` (read once, when the scheduler starts; no effect when unset) is a
comma-separated list of `point:argument`:

  after_commit:T    die (`os._exit(137)`, as if SIGKILLed) right after the database commit of
                    the first tick >= T, before its messages are relayed to Kafka
  after_publish:T   die right after the broker acknowledged messages of a tick >= T, before
                    the outbox marks them published
  send_fails:T      the first relay of messages of a tick >= T fails once, as if the broker
                    had refused the first of them (it is not sent); later relays work
  tick_raises:ID    a tick that applies the inbound event ID raises `InvariantViolation`
                    after it has changed the hospital's state

A tick point (T) counts only if the run had not reached T when the process started, so that
the scheduler restarted after the fault goes on instead of failing again.
"""

from __future__ import annotations

import logging
import os
import sys

log = logging.getLogger("hospital.faults")
VARIABLE = "HOSPITAL_FAULT"
TICK_POINTS = ("after_commit", "after_publish", "send_fails")
POINTS = (*TICK_POINTS, "tick_raises")


class Faults:
    def __init__(self, spec: str | None, resumed_after: int = -1):
        self.ticks: dict[str, int] = {}
        self.raising: set[str] = set()
        for item in filter(None, (part.strip() for part in (spec or "").split(","))):
            point, _, argument = item.partition(":")
            if (
                point not in POINTS
                or not argument
                or (point in TICK_POINTS and not argument.lstrip("-").isdigit())
            ):
                raise ValueError(
                    f"{VARIABLE}: {item!r} is not one of "
                    f"{', '.join(p + ':TICK' for p in TICK_POINTS)}, "
                    f"tick_raises:EVENT_ID"
                )
            if point == "tick_raises":
                self.raising.add(argument)
            elif int(argument) > resumed_after:
                self.ticks[point] = int(argument)
        if self.ticks or self.raising:
            log.warning(
                "fault points armed: %s",
                ",".join(
                    [f"{point}:{tick}" for point, tick in self.ticks.items()]
                    + [f"tick_raises:{event_id}" for event_id in sorted(self.raising)]
                ),
            )

    @classmethod
    def from_environment(cls, resumed_after: int) -> Faults:
        return cls(os.environ.get(VARIABLE), resumed_after)

    def reached(self, point: str, ticks: list[int]) -> bool:
        """True once, the first time a tick >= the point's is among `ticks`."""
        at = self.ticks.get(point)
        if at is None or not any(tick >= at for tick in ticks):
            return False
        del self.ticks[point]
        return True

    def die_if(self, point: str, ticks: list[int]) -> None:
        if self.reached(point, ticks):
            print(f"fault point {point}: dying at tick {max(ticks)}", file=sys.stderr, flush=True)
            os._exit(137)

    def check_tick(self, tick: int, consumed) -> None:
        from scheduler.validator import InvariantViolation

        hit = sorted(e.event_id for e in consumed if e.event_id in self.raising)
        if hit:
            raise InvariantViolation(f"tick {tick}: fault point tick_raises:{hit[0]}")
