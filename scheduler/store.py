"""Where a run's ticks are kept. The scheduler hands each tick's result to a `Store`; the
embedded default is SQLite, PostgreSQL is the same code with another URL."""

from __future__ import annotations

from typing import Protocol

from scheduler.engine import TickResult


class Store(Protocol):
    def save_tick(self, result: TickResult) -> None:
        """Keep one tick: the inbound events it consumed and the decisions it made."""

    def flush(self) -> None:
        """Commit the ticks kept so far (a store may buffer them until then)."""

    def close(self) -> None:
        """Write whatever is buffered and release the connection."""


class NullStore:
    """Keeps nothing: for dry runs."""

    def save_tick(self, result: TickResult) -> None:
        pass

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass
