"""Fuzzing what a user hands the `hospital` command: random bytes, recorded logs cut short or
with lines dropped, repeated, swapped and changed, random valid-looking events, to `hospital
solve`; random TOML documents and environments to the config loader.

Whatever the input: no traceback and no hang. `hospital solve` ends with exit 0, 1 (events
rejected: one `hospital: rejected:` line each, then one error line) or 2 (one `hospital:
error:` line); the config loader returns a Config or raises ConfigError. In process, through
the CLI's own click command, each case under a time bound. The runs are derandomized, so CI
sees the same cases every time: 10,000 of them in all, in about a minute."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import math
import os
import signal
import time
import traceback
from pathlib import Path

import click.testing
import pytest
import typer.main
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli.main import app
from scheduler import config as config_module
from scheduler.config import Config, ConfigError

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
COMMAND = typer.main.get_command(app)  # built once: a case costs milliseconds, not more
RUNNER = click.testing.CliRunner()
CASE_BOUND_S = 20  # a case takes milliseconds; this long is a hang
# A longer search, new cases each time: HOSPITAL_FUZZ_SCALE=10 HOSPITAL_FUZZ_RANDOM=1.
SCALE = float(os.environ.get("HOSPITAL_FUZZ_SCALE", "1"))
RANDOM = bool(os.environ.get("HOSPITAL_FUZZ_RANDOM"))


def fuzz(examples: int):
    """Hypothesis settings of a fuzz test: a fixed number of cases, the same cases every run,
    no deadline (the machine may be busy: `bounded` catches a hang instead)."""
    return settings(
        max_examples=cases(examples),
        deadline=None,
        derandomize=not RANDOM,
        database=None,
        suppress_health_check=list(HealthCheck),
    )


def cases(examples: int) -> int:
    return max(1, round(examples * SCALE))


class Hang(Exception):
    pass


@contextlib.contextmanager
def bounded(seconds: float = CASE_BOUND_S):
    """Raise `Hang` in a case that runs longer; then put back the alarm it borrowed (that of
    pytest-timeout, bounding the whole test)."""

    def interrupt(signum, frame):
        raise Hang(f"a case took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, interrupt)
    outer, interval = signal.setitimer(signal.ITIMER_REAL, seconds)
    started = time.monotonic()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer:
            left = outer - (time.monotonic() - started)
            signal.setitimer(signal.ITIMER_REAL, max(left, 0.001), interval)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def solve(path: Path, *options: str) -> click.testing.Result:
    with bounded():
        result = RUNNER.invoke(COMMAND, ["solve", str(path), *options])
    check_clean_exit(result)
    return result


def check_clean_exit(result: click.testing.Result) -> None:
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError("".join(traceback.format_exception(result.exception)))
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    lines = result.stderr.splitlines()
    if result.exit_code == 0:
        assert lines == [], result.stderr
    elif result.exit_code == 1:
        *rejected, last = lines
        assert rejected and all(line.startswith("hospital: rejected: ") for line in rejected), (
            result.stderr
        )
        assert last == f"hospital: error: {len(rejected)} event(s) rejected", result.stderr
    else:
        assert result.exit_code == 2, (result.exit_code, result.stderr)
        assert len(lines) == 1 and lines[0].startswith("hospital: error: "), result.stderr
    for line in result.stdout.splitlines():  # the decisions, whatever happened after
        json.loads(line)


# --- random bytes ------------------------------------------------------------------------

LINE_BREAKS = st.sampled_from([b"\n", b"\r\n", b"\r", b"", b"\n\n"])
FRAGMENTS = [
    b"\n",
    b"\r\n",
    b"\r",
    b" ",
    b"\xef\xbb\xbf",
    b"\xed\xa0\x80",
    b"\xff",
    b"\x00",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b'"',
    b"\\",
    b"null",
    b"true",
    b"NaN",
    b"-Infinity",
    b"1e999",
    b"9" * 5000,
    b"[" * 5000,
    b'"type"',
    b'"time"',
    b'"tick"',
    b'"patient_id"',
    b'"run.header"',
    b'"patient.arrived"',
    b'"escort.completed"',
    b'"config"',
    b'{"type": "run.header", "config": {}, "seed": 1}\n',
    b'{"type": "patient.arrived", "event_id": "a", "time": 0, "patient_id": "p"}\n',
]
# Bytes of any kind; text of any kind as UTF-8; pieces of JSON and of events, shuffled.
RANDOM_BYTES = st.one_of(
    st.binary(max_size=400),
    st.text(max_size=200).map(lambda text: text.encode("utf-8")),
    st.lists(st.sampled_from(FRAGMENTS), max_size=12).map(b"".join),
)


def test_solve_of_random_bytes(workdir):
    path = workdir / "bytes.jsonl"
    count = 0

    @fuzz(3000)
    @given(RANDOM_BYTES)
    def case(content: bytes) -> None:
        nonlocal count
        count += 1
        path.write_bytes(content)
        solve(path)

    case()
    assert count >= cases(3000)


# --- recorded logs, damaged ---------------------------------------------------------------


def base_logs() -> list[list[str]]:
    """The first lines of some golden scenarios' recorded logs (header included): the
    default hospital and the clinical rules, greedy and CP-SAT."""
    names = [
        "default_hospital",
        "default_greedy",
        "isolation",
        "shift_change",
        "sla_pressure",
        "acuity_mix",
    ]
    return [(GOLDEN / name / "events.jsonl").read_text().splitlines()[:24] for name in names]


BASES = base_logs()
IDS = [
    "patient-1",
    "patient-2",
    "task-1",
    "task-2",
    "task-3",
    "A1",
    "A2",
    "B3",
    "porter-1",
    "nurse-1",
    "doctor-1",
    "cleaner-1",
    "arrival-1",
    "done-task-1",
    "",
    " ",
    "\n",
    "é☃",
    "\udc80",
    "x" * 300,
]
FIELDS = [
    "type",
    "event_id",
    "time",
    "tick",
    "patient_id",
    "task_id",
    "staff_id",
    "room_id",
    "direction",
    "acuity",
    "isolation",
    "config",
    "seed",
]
# Values that broke, or could break, a parser: as likely as all the others together.
NASTY = st.sampled_from(
    [
        None,
        True,
        False,
        0,
        -1,
        1,
        2,
        5,
        6,
        0.5,
        1.5,
        -0.0,
        1e-300,
        1e9,
        1e9 + 1,
        1e308,
        math.inf,
        -math.inf,
        math.nan,
        2**63,
        -(2**63),
        10**30,
        10**400,
        "",
        " ",
        "3",
        "in",
        "out",
        "\n",
        "\udc80",
        "x" * 300,
        [],
        {},
        [1],
        {"type": "run.header"},
        "patient.arrived",
        "escort.completed",
        "visit.completed",
        "cleaning.completed",
        "run.header",
        "task.dispatched",
    ]
)
SCALARS = st.one_of(
    NASTY,
    st.integers(-3, 40),
    st.integers(),
    st.floats(),
    st.sampled_from(IDS),
    st.text(max_size=12),
)
JSON_VALUES = st.one_of(
    NASTY,
    SCALARS,
    st.lists(SCALARS, max_size=3),
    st.dictionaries(st.sampled_from(FIELDS), SCALARS, max_size=2),
)


def dumps(value) -> str:
    """JSON as a hand-written log might have it: NaN and Infinity tokens, any integer."""
    return json.dumps(value, sort_keys=True)


@st.composite
def damaged_log(draw) -> bytes:
    lines = list(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(
            st.sampled_from(
                ["drop", "repeat", "swap", "field", "unset", "header", "insert", "truncate", "flip"]
            )
        )
        n = draw(st.integers(0, len(lines) - 1)) if lines else 0
        if not lines and op != "insert":
            continue
        if op == "drop":
            del lines[n]
        elif op == "repeat":
            lines.insert(n, lines[n])
        elif op == "swap":
            m = draw(st.integers(0, len(lines) - 1))
            lines[n], lines[m] = lines[m], lines[n]
        elif op in ("field", "unset"):
            try:
                data = json.loads(lines[n])
            except ValueError:
                continue
            if not isinstance(data, dict):
                continue
            key = draw(
                st.sampled_from(sorted(data) or ["type"]) | st.sampled_from(FIELDS)
                if op == "field"
                else st.sampled_from(sorted(data) or ["type"])
            )
            if op == "field":
                data[key] = draw(JSON_VALUES)
            else:
                data.pop(key, None)
            lines[n] = dumps(data)
        elif op == "header":  # a value of the recorded config, of any type
            try:
                data = json.loads(lines[0])
                section = draw(st.sampled_from(sorted(data["config"])))
                key = draw(st.sampled_from(sorted(data["config"][section]) + ["nokey"]))
                data["config"][section][key] = draw(JSON_VALUES)
                lines[0] = dumps(data)
            except (ValueError, KeyError, TypeError, AttributeError, IndexError):
                continue
        elif op == "insert":
            lines.insert(n, draw(st.one_of(JSON_VALUES.map(dumps), st.text(max_size=40))))
        elif op == "truncate":
            text = "\n".join(lines)
            lines = text[: draw(st.integers(0, len(text)))].split("\n")
        elif op == "flip":
            line = lines[n]
            at = draw(st.integers(0, max(len(line) - 1, 0)))
            lines[n] = line[:at] + draw(st.text(max_size=3)) + line[at + 1 :]
    return "\n".join(lines).encode("utf-8", "surrogatepass") + draw(LINE_BREAKS)


def test_solve_of_damaged_recorded_logs(workdir):
    path = workdir / "damaged.jsonl"
    count = 0

    @fuzz(3000)
    @given(damaged_log())
    def case(content: bytes) -> None:
        nonlocal count
        count += 1
        path.write_bytes(content)
        solve(path)

    case()
    assert count >= cases(3000)


# --- valid-looking events -----------------------------------------------------------------

ID = st.sampled_from(IDS[:14])
TIME = st.one_of(
    st.integers(0, 60),
    st.floats(0, 60),
    st.floats(),
    st.sampled_from([0.0005, 1e9, 1e9 + 1, 10**30, math.inf, -1, math.nan]),
)
EVENT_FIELDS = {
    "patient.arrived": {"patient_id": ID},
    "escort.completed": {
        "task_id": ID,
        "staff_id": ID,
        "patient_id": ID,
        "room_id": ID,
        "direction": st.sampled_from(["in", "out", "up"]),
    },
    "visit.completed": {"task_id": ID, "staff_id": ID, "patient_id": ID, "room_id": ID},
    "cleaning.completed": {"task_id": ID, "staff_id": ID, "room_id": ID},
}


@st.composite
def valid_looking_event(draw) -> dict:
    kind = draw(st.sampled_from(sorted(EVENT_FIELDS)))
    event = {
        "type": kind,
        "event_id": draw(st.sampled_from(["e1", "e2", "e3"]) | ID),
        "time": draw(TIME),
        **{name: draw(value) for name, value in EVENT_FIELDS[kind].items()},
    }
    if kind == "patient.arrived" and draw(st.booleans()):
        event["acuity"] = draw(st.integers(0, 6))
        event["isolation"] = draw(st.booleans())
    return event


@st.composite
def valid_looking_log(draw) -> bytes:
    events = draw(st.lists(valid_looking_event(), min_size=1, max_size=8))
    if draw(st.booleans()):  # recorded: ticks, mostly in order
        ticks = sorted(
            draw(
                st.lists(
                    st.integers(0, 70) | st.integers(), min_size=len(events), max_size=len(events)
                )
            )
        )
        if draw(st.integers(0, 4)) == 0:
            ticks.reverse()
        for event, tick in zip(events, ticks):
            event["tick"] = tick
    lines = [dumps(e) for e in events]
    if draw(st.booleans()):  # a header of a config of this scenario, or a changed one
        header = {
            "type": "run.header",
            "seed": 1,
            "config": config_module.to_mapping(draw(st.sampled_from(CONFIGS))),
        }
        lines.insert(0, dumps(header))
    return "\n".join(lines).encode("utf-8", "surrogatepass") + b"\n"


CONFIGS = [
    Config(),
    config_module.load(GOLDEN / "isolation" / "config.toml", {}),
    config_module.load(GOLDEN / "shift_change" / "config.toml", {}),
    Config().replace(scheduler={"policy": "greedy", "explain": True}),
]


def test_solve_of_valid_looking_events(workdir):
    path = workdir / "events.jsonl"
    count = 0

    @fuzz(1500)
    @given(valid_looking_log(), st.sampled_from([(), (), ("--policy", "greedy")]))
    def case(content: bytes, options: tuple[str, ...]) -> None:
        nonlocal count
        count += 1
        path.write_bytes(content)
        solve(path, *options)

    case()
    assert count >= cases(1500)


# --- the config loader ---------------------------------------------------------------------

SECTIONS = {
    f.name: [k.name for k in dataclasses.fields(f.default_factory)]
    for f in dataclasses.fields(Config)
}


def toml_key(name: str) -> str:
    return (
        name
        if name.replace("_", "").replace("-", "").isalnum() and name.isascii()
        else json.dumps(name)
    )


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return (
            "nan"
            if math.isnan(value)
            else ("inf" if value > 0 else "-inf")
            if math.isinf(value)
            else repr(value)
        )
    if isinstance(value, str):
        return json.dumps(value)  # JSON's escapes are TOML's (a lone surrogate is not)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


# Values as TOML text, most from a fixed list (one draw each: the strategy stays cheap).
PLAIN_VALUES = [
    True,
    False,
    0,
    1,
    -1,
    2,
    3,
    5,
    20,
    1000,
    1001,
    100_000,
    100_001,
    2**63 - 1,
    -(2**63),
    0.0,
    -0.0,
    0.0001,
    0.001,
    0.5,
    1.0,
    9.0,
    1e9,
    1e9 + 1,
    1e300,
    -1.5,
    math.inf,
    -math.inf,
    math.nan,
    "",
    "A",
    "B",
    "AB",
    "C1",
    "A1",
    "é",
    "cpsat",
    "greedy",
    "fixed",
    "poisson",
    "seed",
    "layout",
    "PLAINTEXT",
    "SASL_SSL",
    "sqlite:///x.db",
    "nurse-1 08:00-16:00",
    "porter-1 22:00-06:00",
    "porter-1 00:00-12:00 break 03:00-04:00",
    "cleaner-1 25:00-26:00",
    datetime.date(2026, 1, 2),
    datetime.time(8, 30),  # of no key's type
    datetime.datetime(2026, 1, 2, 8, 30),
]
VALUE_TEXTS = [toml_value(v) for v in PLAIN_VALUES] + [
    toml_value(v)
    for v in (
        [],
        ["A", "B"],
        ["A", "A"],
        ["A", 1],
        [0, 0, 1, 0, 0],
        [1, 1, 1, 1, 1],
        [0, 0, 0, 0, 0],
        [1, 2],
        [[1], [2]],
        ["A1", "Z9"],
        {"a": 1},
        ["nurse-1 08:00-16:00", "nurse-1 09:00-10:00"],
    )
]
TOML_VALUES = st.one_of(
    st.sampled_from(VALUE_TEXTS),
    st.integers().map(str),
    st.floats().map(toml_value),
    st.text(max_size=10).map(toml_value),
    st.lists(st.sampled_from(VALUE_TEXTS[: len(PLAIN_VALUES)]), max_size=6).map(
        lambda texts: "[" + ", ".join(texts) + "]"
    ),
)


@st.composite
def toml_document(draw) -> str:
    names = draw(
        st.lists(st.sampled_from(sorted(SECTIONS)) | st.text(max_size=8), max_size=4, unique=True)
    )
    text = []
    for name in names:
        keys = SECTIONS.get(name, [])
        chosen = draw(
            st.lists(
                st.sampled_from(keys) | st.text(max_size=8) if keys else st.text(max_size=8),
                max_size=3,
                unique=True,
            )
        )
        text.append(f"[{toml_key(name)}]")
        text += [f"{toml_key(key)} = {draw(TOML_VALUES)}" for key in chosen]
    document = "\n".join(text) + "\n"
    if draw(st.integers(0, 5)) == 0:  # a slip of the keyboard
        at = draw(st.integers(0, len(document)))
        document = document[:at] + draw(st.text(max_size=3)) + document[at + 1 :]
    return document


ENV_NAMES = [
    f"HOSPITAL_{section}_{key}".upper() for section, keys in SECTIONS.items() for key in keys
] + ["HOSPITAL_STAFF_PORTERZ", "HOSPITAL_CONFIG", "DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS"]
ENVIRONMENT = st.dictionaries(
    st.sampled_from(ENV_NAMES),
    st.one_of(
        st.text(max_size=12),
        st.sampled_from(["0", "1", "-1", "1e400", "nan", "true", "A,B", "0,0,1,0,0", "9" * 5000]),
    ),
    max_size=3,
)


def test_config_loader_of_random_toml(workdir):
    path = workdir / "config.toml"
    count = 0

    @fuzz(2500)
    @given(toml_document(), ENVIRONMENT)
    def case(document: str, environ: dict[str, str]) -> None:
        nonlocal count
        count += 1
        path.write_bytes(document.encode("utf-8", "surrogatepass"))
        with bounded():
            try:
                loaded = config_module.load(path, environ)
            except ConfigError as exc:
                assert "\n" not in str(exc) and len(str(exc)) < 400, str(exc)
            else:
                assert isinstance(loaded, Config)

    case()
    assert count >= cases(2500)
