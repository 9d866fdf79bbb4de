"""The run's clock, shared by every service process: simulated time is the wall time since
the run's epoch, times the speed. All processes of one run get the same epoch and speed."""

from __future__ import annotations

import time


class LiveClock:
    def __init__(self, epoch_s: float, speed: float):
        if not speed > 0:
            raise ValueError("the distributed mode runs in real time: speed must be > 0")
        self.epoch_s = epoch_s
        self.speed = speed

    def now_ms(self) -> int:
        return int((time.time() - self.epoch_s) * self.speed * 1000)

    def wall_seconds_until(self, sim_ms: int) -> float:
        """How long to wait, in wall seconds, for simulated time to reach `sim_ms`."""
        return max(0.0, self.epoch_s + sim_ms / 1000 / self.speed - time.time())

    def sleep_until(self, sim_ms: int) -> None:
        delay = self.wall_seconds_until(sim_ms)
        if delay > 0:
            time.sleep(delay)
