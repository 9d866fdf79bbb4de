"""What the `hospital` commands share: their common options, parsing of durations and
speeds, one-line errors and exit codes, signals that stop a run at a tick boundary, loading
the config. Below every command module: it imports none of them."""

from __future__ import annotations

import contextlib
import gc
import logging
import math
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from scheduler import config as config_module
from scheduler.config import Config, ConfigError
from scheduler.events import MAX_TIME_S

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="A config.toml; without it, the built-in defaults. "
        "`HOSPITAL_<SECTION>_<KEY>` variables override any key.",
        envvar="HOSPITAL_CONFIG",
        show_default=False,
    ),
]
PolicyOption = Annotated[
    str | None,
    typer.Option(
        "--policy",
        help="cpsat or greedy (default: scheduler.policy of the config).",
        show_default=False,
    ),
]

WarmupOption = Annotated[
    str | None,
    typer.Option(
        help="Leave the run's first simulated time out of every KPI (1h, 30m): the figures "
        "are those of the patients who arrived after it, the tasks created after it, the "
        "rooms and staff from it on.",
        show_default=False,
    ),
]

DbOption = Annotated[
    str | None,
    typer.Option(help="Database URL (default: database.url of the config).", show_default=False),
]


_DURATION = re.compile(r"(\d+(?:\.\d+)?)([dhms])")
_UNIT_MS = {"d": 86_400_000, "h": 3_600_000, "m": 60_000, "s": 1000}
MIN_SPEED = 0.001  # slower, a tick of a second takes more than a quarter of an hour


def parse_duration(text: str) -> int:
    """'8h', '90m', '1h30m', '45s', '2d' or a plain number of seconds, in ms."""
    text = text.strip().lower()
    try:
        seconds = float(text)
    except ValueError:
        parts = _DURATION.findall(text)
        if not parts or "".join(n + u for n, u in parts) != text:
            raise typer.BadParameter(
                f"{text!r}: expected a duration such as 8h, 30m, 1h30m or 45s"
            ) from None
        seconds = sum(float(n) * _UNIT_MS[u] for n, u in parts) / 1000
    if not 0 <= seconds <= MAX_TIME_S:  # also NaN and infinity
        raise typer.BadParameter(f"{text!r}: expected a duration from 0 to {MAX_TIME_S} s")
    return round(seconds * 1000)


def parse_warmup(text: str | None, duration_ms: int | None = None) -> int:
    """A `--warmup` in ms (0 without one); shorter than the run's `duration_ms` if known."""
    if text is None:
        return 0
    try:
        warmup_ms = parse_duration(text)
    except typer.BadParameter as exc:
        raise typer.BadParameter(str(exc), param_hint="--warmup") from None
    if duration_ms is not None and warmup_ms and warmup_ms >= duration_ms:
        raise typer.BadParameter(
            f"{text}: the warm-up must be shorter than the run ({duration_ms / 1000:g} s)",
            param_hint="--warmup",
        )
    return warmup_ms


MAX_LABEL = 200  # characters: a name to tell runs apart, not a description


def check_label(label: str | None) -> str | None:
    """A `--label`: printable text of 1 to MAX_LABEL characters, stripped."""
    if label is None:
        return None
    text = label.strip()
    if not 0 < len(text) <= MAX_LABEL or not text.isprintable():
        raise typer.BadParameter(
            f"{one_line(label[:60])!r}: expected 1 to {MAX_LABEL} printable characters",
            param_hint="--label",
        )
    return text


def parse_speed(text: str) -> float | None:
    if text.strip().lower() == "max":
        return None
    try:
        speed = float(text)
    except ValueError:
        speed = 0.0
    if not MIN_SPEED <= speed < math.inf:
        raise typer.BadParameter(f"{text!r}: expected a number from {MIN_SPEED} up, or 'max'")
    return speed


def one_line(text: str) -> str:
    """`text` as one printable line: a newline or a control character that came from the
    input (an id in a rejected event, a key in a config) is shown escaped, so that it can
    neither split the message nor forge another one."""
    return "".join(
        c if c.isprintable() else c.encode("unicode_escape", "backslashreplace").decode("ascii")
        for c in text
    )


def fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"hospital: error: {one_line(message)}", err=True)
    return typer.Exit(code)


def load_region(name: str):
    """A region (a region.toml, or a named region), or one line and exit code 2."""
    from scheduler.region import config as region_config

    try:
        return region_config.load(region_config.region_path(name))
    except region_config.RegionError as exc:
        raise fail(f"region: {exc}") from None


def check_coordinator(name: str) -> None:
    """A region's coordinator by its name, or one line and exit code 2."""
    from scheduler.region.coordinator import COORDINATORS

    if name not in COORDINATORS:
        raise fail(f"--coordinator: {name!r}: expected one of {', '.join(COORDINATORS)}")


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """What is alive before a run (modules, config, the dashboard's web stack) lives as long
    as the run: out of the garbage collector's way meanwhile, whose every full collection
    would otherwise walk it again (the dashboard's web stack alone is some 40,000 objects;
    frozen, a `--speed max` run with the dashboard open went from +19 % to +12.6 %; the
    scheduler service's collections of a 2,642-event backlog took 0.03-0.10 s instead of
    0.13-0.28 s, with Kafka's and SQLAlchemy's objects out of their way)."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@contextlib.contextmanager
def service_errors() -> Iterator[None]:
    """An unusable database (exit 3) or broker (exit 4) as one line on stderr."""
    from scheduler.db.basics import StoreError
    from scheduler.distributed.bus import BusError

    try:
        yield
    except StoreError as exc:
        raise fail(str(exc), 3) from None
    except BusError as exc:
        raise fail(str(exc), 4) from None


def check_outputs(**paths: Path | None) -> None:
    """Fail at once, before any work, on an output file (named by its option) that could not
    be written at the end: in a missing directory, a directory itself, not writable, or one
    file given for two outputs."""
    seen: dict[Path, str] = {}
    for option, path in paths.items():
        if path is None:
            continue
        name = f"--{option.replace('_', '-')} {path}"
        parent = path.parent
        if path.is_dir():
            raise fail(f"{name}: is a directory")
        if not parent.is_dir():
            raise fail(
                f"{name}: {parent} is not a directory"
                if parent.exists()
                else f"{name}: no directory {parent}"
            )
        if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
            raise fail(f"{name}: not writable")
        same = seen.setdefault(path.resolve(), name)
        if same != name:
            raise fail(f"{same.split()[0]} and {name}: one file for two outputs")


class StopSignals:
    """SIGINT (Ctrl-C) and SIGTERM, while installed, ask a run to stop at its next tick
    boundary (`stop`, the simulation's flag) instead of killing it mid-tick; a second one
    aborts at once (KeyboardInterrupt). `received` is the first signal's number (0: none)."""

    def __init__(self) -> None:
        from scheduler.simulation import StopFlag

        self.stop = StopFlag()
        self.received = 0

    def _handle(self, signum: int, frame: object) -> None:
        if self.received:
            raise KeyboardInterrupt
        self.received = signum
        self.stop.set()

    def __enter__(self) -> StopSignals:
        import threading

        # Only the main thread may handle signals (a run invoked from another has none).
        self._previous = {
            signum: signal.signal(signum, self._handle)
            for signum in (signal.SIGINT, signal.SIGTERM)
            if threading.current_thread() is threading.main_thread()
        }
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def load_config(path: Path | None, policy: str | None = None) -> Config:
    try:
        config = config_module.load(path)
        if policy is not None:
            config = config.replace(scheduler={"policy": policy})
        return config
    except ConfigError as exc:
        raise fail(f"config: {exc}") from None


def warn_about(config: Config, where: str = "config") -> None:
    """The config's values that load but are most likely a mistake, one line each on
    stderr (`hospital: warning: ...`): the run goes on."""
    for text in config_module.warnings(config):
        typer.echo(one_line(f"hospital: warning: {where}: {text}"), err=True)


def sqlite_file_missing(url: str) -> str | None:
    """The file of a SQLite URL when there is no such file (SQLite would create it)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return None  # `connect` says what is wrong with it
    name = parsed.database
    if (
        parsed.get_backend_name() != "sqlite"
        or name in (None, "", ":memory:")
        or name.startswith("file:")
        or Path(name).exists()
    ):
        return None
    return name


def log_to_stderr(level: int) -> None:
    """A service's log: one line a record, on stderr."""
    logging.basicConfig(level=level, format="%(asctime)s %(name)s: %(message)s")
    # Alembic 1.16+ logs each plugin it sets up, on import, at INFO: a dozen lines of noise.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
