"""Event logs as JSONL: one event a line, keys sorted, so that files diff cleanly. A log that
`hospital run --record` writes starts with a `run.header` line: the run's whole config
(passwords masked) and seed, so that `hospital solve` replays it with nothing else given."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from scheduler import events as ev


class LogError(ValueError):
    """A line of an event log that cannot be read; the message names the file and line."""


@dataclass(frozen=True)
class Recorded:
    event: ev.Event
    tick: int | None  # the tick that consumed it, when the log says
    line: int


HEADER = "run.header"


def write_header(stream: IO[str], config: dict[str, Any], seed: int, **more: Any) -> None:
    """The first line of a log: the run's config and seed, and what else is known of it
    (`duration_s`, `label`)."""
    fields = {**more, "type": HEADER, "config": config, "seed": seed}
    stream.write(json.dumps(fields, sort_keys=True) + "\n")


def header(path: str | Path) -> dict[str, Any] | None:
    """The log's `run.header` (its first line), or None for a log without one."""
    try:
        with open(path, encoding="utf-8-sig") as stream:
            first = next((line for line in stream if line.strip()), "")
        data = ev.loads(first)
    except (OSError, UnicodeDecodeError, ev.BadEvent):
        return None  # `read` says what is wrong with the file
    return data if isinstance(data, dict) and data.get("type") == HEADER else None


def dumps(event: ev.Event, **extra) -> str:
    return json.dumps({**event.to_dict(), **extra}, sort_keys=True) if extra else event.to_json()


def write(stream: IO[str], events: Iterable[ev.Event], **extra) -> None:
    for event in events:
        stream.write(dumps(event, **extra) + "\n")


def read(
    path: str | Path,
    vocabulary: Mapping[str, type[ev.Event]] | None = None,
    parse: Callable[[Any], ev.Event] | None = None,
) -> Iterator[Recorded]:
    """The events of a log, in file order (each parsed by `parse`, if given: a region
    member's events). Raises `LogError` at the first bad line: not UTF-8, not JSON, not an
    event, a `run.header` past the first line, or a tick before the tick of a line above it
    (a recorded log is in tick order; the scheduler cannot go back)."""
    try:
        # bytes: a line that is not UTF-8 is named, not the file; opened before the `with`
        # so that only its own error is caught here
        stream = open(path, "rb")  # noqa: SIM115
    except OSError as exc:
        raise LogError(f"{path}: cannot read: {exc.strerror}") from None
    first = True
    last_tick, last_tick_line = -1, 0
    with stream:
        for number, raw in enumerate(stream, start=1):
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise LogError(
                    f"{path}:{number}: not UTF-8 text (byte {exc.start + 1} of the line)"
                ) from None
            if not line.strip():
                continue
            try:
                data = ev.loads(line)
                if isinstance(data, dict) and data.get("type") == HEADER:
                    if first:
                        first = False
                        continue
                    raise ev.BadEvent(
                        f"a {HEADER} belongs on the first line of a log, not in the middle"
                    )
                first = False
                event = parse(data) if parse is not None else ev.parse(data, vocabulary)
                tick = ev.recorded_tick(data)
            except ev.BadEvent as exc:
                raise LogError(f"{path}:{number}: {exc}") from None
            if tick is not None:
                if tick < last_tick:
                    raise LogError(
                        f"{path}:{number}: tick {tick} comes after tick {last_tick} "
                        f"of line {last_tick_line}: a recorded log is in tick "
                        f"order"
                    )
                last_tick, last_tick_line = tick, number
            yield Recorded(event, tick, number)
