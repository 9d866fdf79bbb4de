"""Event logs as JSONL: one event a line, keys sorted, so that files diff cleanly."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from scheduler import events as ev


class LogError(ValueError):
    """A line of an event log that cannot be read; the message names the file and line."""


@dataclass(frozen=True)
class Recorded:
    event: ev.Event
    tick: int | None   # the tick that consumed it, when the log says
    line: int


def dumps(event: ev.Event, **extra) -> str:
    return json.dumps({**event.to_dict(), **extra}, sort_keys=True) if extra else event.to_json()


def write(stream: IO[str], events: Iterable[ev.Event], **extra) -> None:
    for event in events:
        stream.write(dumps(event, **extra) + "\n")


def read(path: str | Path, vocabulary: dict[str, type[ev.Event]] | None = None
         ) -> Iterator[Recorded]:
    """The events of a log, in file order. Raises `LogError` at the first bad line."""
    try:
        stream = open(path, encoding="utf-8")
    except OSError as exc:
        raise LogError(f"{path}: cannot read: {exc.strerror}") from None
    with stream:
        for number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                event = ev.parse(data, vocabulary)
            except json.JSONDecodeError as exc:
                raise LogError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
            except ev.BadEvent as exc:
                raise LogError(f"{path}:{number}: {exc}") from None
            yield Recorded(event, ev.recorded_tick(data), number)
