"""Event logs as JSONL: one event a line, keys sorted, so that files diff cleanly. A log that
`hospital run --record` writes starts with a `run.header` line: the run's whole config
(passwords masked) and seed, so that `hospital solve` replays it with nothing else given."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from scheduler import events as ev


class LogError(ValueError):
    """A line of an event log that cannot be read; the message names the file and line."""


@dataclass(frozen=True)
class Recorded:
    event: ev.Event
    tick: int | None   # the tick that consumed it, when the log says
    line: int


HEADER = "run.header"


def write_header(stream: IO[str], config: dict[str, Any], seed: int) -> None:
    stream.write(json.dumps({"type": HEADER, "config": config, "seed": seed},
                            sort_keys=True) + "\n")


def header(path: str | Path) -> dict[str, Any] | None:
    """The log's `run.header` (its first line), or None for a log without one."""
    try:
        with open(path, encoding="utf-8") as stream:
            first = next((line for line in stream if line.strip()), "")
    except (OSError, UnicodeDecodeError):
        return None   # `read` says what is wrong with the file
    try:
        data = json.loads(first)
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) and data.get("type") == HEADER else None


def dumps(event: ev.Event, **extra) -> str:
    return json.dumps({**event.to_dict(), **extra}, sort_keys=True) if extra else event.to_json()


def write(stream: IO[str], events: Iterable[ev.Event], **extra) -> None:
    for event in events:
        stream.write(dumps(event, **extra) + "\n")


def read(path: str | Path, vocabulary: Mapping[str, type[ev.Event]] | None = None
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
                if number == 1 and isinstance(data, dict) and data.get("type") == HEADER:
                    continue
                event = ev.parse(data, vocabulary)
            except json.JSONDecodeError as exc:
                raise LogError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
            except ev.BadEvent as exc:
                raise LogError(f"{path}:{number}: {exc}") from None
            yield Recorded(event, ev.recorded_tick(data), number)
