"""Scheduler snapshots: a run snapshotted and loaded again at any tick makes exactly the
decisions of the run that never stopped; a snapshot is JSON checked on load (never a
pickle), holds no config value nor credential, and stays small however long the run."""

from __future__ import annotations

import base64
import json
import pickle
import random
import zlib
from functools import cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scheduler import config as config_module
from scheduler import events as ev
from scheduler.config import Config
from scheduler.engine import Scheduler
from scheduler.simulation import simulate
from scheduler.snapshot import (
    MAX_BYTES,
    ConfigMismatch,
    SnapshotError,
    dump,
    fingerprint,
    load,
)

GOLDEN = Path(__file__).parents[1] / "golden"
CONFIGS = [
    "default",
    "acuity_mix",
    "isolation",
    "shift_change",
    "sla_pressure",
    "layout_travel",
    "default_greedy",
    "acuity_mix+lookahead",
    "isolation+lookahead",
]
DURATION_MS = 15 * 60_000


@cache
def config_of(name: str) -> Config:
    """A golden scenario's config; `NAME+lookahead`: with `[scheduler] lookahead_s`."""
    name, _, lookahead = name.partition("+")
    config = (
        Config() if name == "default" else config_module.load(GOLDEN / name / "config.toml", {})
    )
    return config.replace(scheduler={"validate": True, "lookahead_s": 60.0 if lookahead else 0.0})


class Resumed:
    """A scheduler that, after each tick whose number of order is in `at`, is replaced by
    a new one loaded from its snapshot, as a restarted service would be."""

    def __init__(self, config: Config, at: set[int]):
        self.inner, self.config, self.at, self.count = Scheduler(config), config, at, 0

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def tick(self, tick: int, inbound: list[ev.Event]):
        result = self.inner.tick(tick, inbound)
        if self.count in self.at:
            data = dump(self.inner)
            loaded = load(self.config, data)
            assert dump(loaded) == data  # loaded, it is the state it was
            assert loaded.auditor == self.inner.auditor  # its counts too, worked out again
            self.inner = loaded
        self.count += 1
        return result


def run(config: Config, at: set[int] = frozenset()) -> tuple[list[str], bytes, int]:
    """The decisions of a run, its end state and how many ticks it had."""
    scheduler = Resumed(config, at)
    made: list[str] = []
    simulate(
        config,
        scheduler,
        DURATION_MS,  # type: ignore[arg-type]
        on_tick=lambda result: made.extend(d.to_json() for d in result.decisions),
    )
    return made, dump(scheduler.inner), scheduler.count


@cache
def uninterrupted(name: str) -> tuple[list[str], bytes, int]:
    return run(config_of(name))


@pytest.mark.parametrize("name", CONFIGS)
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_run_resumed_from_snapshots_decides_exactly_as_the_uninterrupted_one(name, data):
    expected, end_state, ticks = uninterrupted(name)
    at = data.draw(st.sets(st.integers(0, ticks - 1), min_size=1, max_size=6), label="at")
    made, state, _ = run(config_of(name), at)
    assert made == expected  # byte-identical decisions, validator on
    assert state == end_state


def test_holds_live_at_a_snapshot_survive_the_restart():
    """Looking ahead, a restart at each tick after a hold is declared (the hold live in the
    snapshot, with its time and its class) decides as the run that never stopped."""
    config = config_of("acuity_mix+lookahead")
    expected, end_state, _ = uninterrupted("acuity_mix+lookahead")
    order: list[int] = []  # the tick's number of order, for each decision
    count = -1
    last_tick = None
    for line in expected:
        decision = json.loads(line)
        if decision["tick"] != last_tick:
            count, last_tick = count + 1, decision["tick"]
        order.append(count)
    held = {
        order[n]
        for n, line in enumerate(expected)
        if json.loads(line)["type"] in ("staff.held", "room.held")
    }
    assert {"staff.held", "room.held"} <= {json.loads(line)["type"] for line in expected}
    made, state, _ = run(config, set(sorted(held)[:40]))
    assert made == expected
    assert state == end_state
    live = json.loads(dump(_stopped_after_a_hold(config)))
    assert any("held_until_ms" in r for r in live["hospital"]["rooms"].values()) or any(
        "held_until_ms" in s for s in live["hospital"]["staff"].values()
    )


def _stopped_after_a_hold(config: Config) -> Scheduler:
    """A scheduler stopped right after the first tick that declared a hold."""
    scheduler = Scheduler(config)
    stop = {"at": None}

    def on_tick(result) -> None:
        if stop["at"] is None and any(
            isinstance(d, (ev.StaffHeld, ev.RoomHeld)) for d in result.decisions
        ):
            stop["at"] = result.tick

    class Stopping:
        def __getattr__(self, name):
            return getattr(scheduler, name)

        def tick(self, tick, inbound):
            if stop["at"] is not None:
                raise _Stop
            return scheduler.tick(tick, inbound)

    try:
        simulate(config, Stopping(), DURATION_MS, on_tick=on_tick)  # type: ignore[arg-type]
    except _Stop:
        pass
    return scheduler


class _Stop(Exception):
    pass


# --- checked on load -------------------------------------------------------------------------


@cache
def valid() -> tuple[Config, dict]:
    config = config_of("isolation")
    scheduler = Scheduler(config)
    simulate(config, scheduler, 300_000)
    state = json.loads(dump(scheduler))
    assert state["hospital"]["tasks"] and state["auditor"]["tasks"]
    return config, state


def tampered(change):
    """A snapshot made from the valid one by `change`, when the test asks for it."""

    def make() -> bytes:
        state = json.loads(json.dumps(valid()[1]))
        change(state)
        return json.dumps(state).encode()

    return make


def busy(state: dict) -> tuple[str, dict]:
    """A staff member doing a task, and the task."""
    task = next(t for t in state["hospital"]["tasks"] if t["staff"])
    return task["staff"], task


def bitmap(data: bytes) -> str:
    return base64.b64encode(zlib.compress(data)).decode()


class Evil:
    ran = False

    def __reduce__(self):
        return (setattr, (Evil, "ran", True))


BAD = {
    "not JSON": (lambda: b"{'format': 1", "not valid JSON"),
    "a pickle": (lambda: pickle.dumps(Evil()), "not UTF-8"),
    "a text pickle": (lambda: pickle.dumps(Evil(), protocol=0), "not valid JSON"),
    "not an object": (lambda: b"[1, 2]", "Input should be"),
    "nested deep": (lambda: b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
    "too large": (lambda: b" " * (MAX_BYTES + 1), "larger than"),
    "another format": (tampered(lambda s: s.update(format=1)), "format 1, not 2"),
    "a string for a number": (
        tampered(lambda s: s["engine"].update(last_tick="5")),
        "engine.last_tick",
    ),
    "a huge number": (tampered(lambda s: s["engine"].update(last_tick=10**30)), "engine.last_tick"),
    "a number of 5000 digits": (
        lambda: b'{"format": 2, "n": ' + b"9" * 5000 + b"}",
        "not valid JSON",
    ),
    "NaN": (tampered(lambda s: s["hospital"].update(task_count=float("nan"))), "not valid JSON"),
    "a negative time": (
        tampered(lambda s: s["hospital"]["tasks"][0].update(created_ms=-1)),
        "created_ms",
    ),
    "an unknown key": (tampered(lambda s: s.update(code="__import__('os')")), "code: Extra"),
    "an unknown room": (
        tampered(lambda s: s["hospital"]["rooms"].update(Z9=s["hospital"]["rooms"].pop("A1"))),
        "not this config's rooms",
    ),
    "a task in an unknown room": (
        tampered(lambda s: s["hospital"]["tasks"][0].update(room="Z9")),
        "unknown room Z9",
    ),
    "an unknown place": (
        tampered(lambda s: s["hospital"]["staff"]["porter-1"].update(location="roof")),
        "unknown location",
    ),
    "a stage that is not one": (
        tampered(lambda s: s["hospital"]["patients"][0].update(stage="flying")),
        "stage",
    ),
    "an acuity out of range": (
        tampered(lambda s: s["hospital"]["patients"][0].update(acuity=9)),
        "acuity",
    ),
    "a task id past the counter": (
        tampered(lambda s: s["hospital"]["tasks"][0].update(id="task-999999")),
        "not a task id up to",
    ),
    "a task its staff member is not doing": (
        tampered(lambda s: s["hospital"]["staff"][busy(s)[0]].update(task=None)),
        "is not doing it",
    ),
    "a task being done on the waiting list": (
        tampered(lambda s: s["hospital"]["waiting"].append(busy(s)[1]["id"])),
        "hospital.waiting",
    ),
    "a patient in the building and gone": (
        tampered(
            lambda s: s["hospital"]["finished"].update(other=[s["hospital"]["patients"][0]["id"]])
        ),
        "both in the building and gone",
    ),
    "a bitmap that is not base64": (
        tampered(lambda s: s["engine"]["seen"]["bits"].update({"arrival-": "%%%"})),
        "engine.seen: bitmap 'arrival-': not base64",
    ),
    "a bitmap that inflates past the limit": (
        tampered(
            lambda s: s["engine"]["seen"]["bits"].update(
                {"arrival-": bitmap(b"\xff" * (ev.IdSet.MAX_BITMAP_BYTES + 1))}
            )
        ),
        "larger than",
    ),
    "a sparse bitmap": (
        tampered(
            lambda s: s["engine"]["seen"]["bits"].update(
                {"arrival-": bitmap(b"\x01" + bytes(1 << 20))}
            )
        ),
        "bytes for 1 ids",
    ),
    "an id in a bitmap and in the plain list": (
        tampered(lambda s: s["engine"]["seen"]["other"].append("arrival-1")),
        "both in a bitmap and in 'other'",
    ),
    "an auditor room that is unknown": (
        tampered(lambda s: s["auditor"]["terminal"].append("Z9")),
        "auditor.terminal",
    ),
    "no auditor while validating": (
        tampered(lambda s: s.update(auditor=None)),
        "auditor: present exactly",
    ),
}


@pytest.mark.parametrize("case", BAD)
def test_a_tampered_snapshot_is_rejected_with_a_clear_error(case):
    make, message = BAD[case]
    config, _ = valid()
    with pytest.raises(SnapshotError, match=message) as caught:
        load(config, make())
    assert len(str(caught.value)) < 400 and "\n" not in str(caught.value)
    assert not Evil.ran


def test_an_untouched_snapshot_loads():
    config, state = valid()
    assert load(config, json.dumps(state).encode()).last_tick == state["engine"]["last_tick"]


def test_a_snapshot_of_another_config_is_told_apart():
    config, state = valid()
    with pytest.raises(ConfigMismatch):
        load(config.replace(rules={"urgency": 30.0}), json.dumps(state))


# --- what is inside --------------------------------------------------------------------------

SECRETS = {
    "database": {"url": "postgresql://hospital:s3cr3t-Passw0rd@db.internal:5432/run"},
    "kafka": {
        "bootstrap_servers": "broker.internal:9093",
        "sasl_username": "svc-kafka",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
    },
}


def keys(value) -> set[str]:
    if isinstance(value, dict):
        return set(value).union(*map(keys, value.values()))
    if isinstance(value, list):
        return set().union(*map(keys, value))
    return set()


def test_no_config_value_nor_credential_is_inside():
    config = config_of("shift_change").replace(**SECRETS)
    assert config.shifts.roster
    scheduler = Scheduler(config)
    simulate(config, scheduler, 120_000)
    text = dump(scheduler).decode()
    for secret in (
        "s3cr3t",
        "Passw0rd",
        "postgresql",
        "db.internal",
        "broker.internal",
        "svc-kafka",
        "SCRAM",
        "SASL",
        *config.shifts.roster,
    ):
        assert secret not in text
    state = json.loads(text)
    assert set(state) == {"format", "config", "engine", "policy_counters", "hospital", "auditor"}
    config_keys = set().union(*map(set, config_module.to_mapping(config).values()))
    assert not keys(state) & config_keys
    assert state["config"] == fingerprint(config)


def test_the_fingerprint_is_of_the_deciding_sections_only():
    config = Config()
    assert fingerprint(config.replace(**SECRETS)) == fingerprint(config)
    assert fingerprint(config.replace(rules={"urgency": 30.0})) != fingerprint(config)
    assert fingerprint(config.replace(scheduler={"policy": "greedy"})) != fingerprint(config)


def test_a_day_long_run_has_a_small_snapshot():
    config = Config()
    scheduler = Scheduler(config)
    sizes = {}

    def measure(result):
        if result.tick in (3600, 6 * 3600, 24 * 3600):
            sizes[result.tick] = len(dump(scheduler))

    simulate(config, scheduler, 24 * 3600_000, on_tick=measure)
    assert scheduler.auditor is not None and scheduler.auditor.arrived > 17_000
    assert sizes[24 * 3600] < 16_000  # measured 4.3 KB; the pickle was 1.2 MB
    assert sizes[24 * 3600] < sizes[3600] + 2_000  # it hardly grows with the run


# --- IdSet as JSON ---------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    ids=st.lists(
        st.one_of(
            st.builds(
                lambda p, n: p + str(n),
                st.sampled_from(["arrival-", "task-", "x", ""]),
                st.one_of(st.integers(0, 3000), st.integers(0, 10**20)),
            ),
            st.text(min_size=1, max_size=12),
        ),
        max_size=400,
    ),
    recent=st.sampled_from([4, 64, 1 << 16]),
)
def test_an_idset_through_json_is_the_same_set(ids, recent):
    saved, ev.IdSet.RECENT = ev.IdSet.RECENT, recent
    try:
        original = ev.IdSet(ids)
        before = set(original)
        data = json.loads(json.dumps(original.to_json()))
        assert set(original) == before  # folding for the JSON changed nothing
        copy = ev.IdSet.from_json(data)
        probes = (
            set(ids)
            | {p + str(n) for p in ("arrival-", "task-", "x", "") for n in range(0, 3100, 7)}
            | {"task-007", "x00"}
        )
        assert all((p in copy) == (p in before) for p in probes)
        assert len(copy) == len(before) and set(copy) == before
        copy.add("task-5000")
        assert "task-5000" in copy
    finally:
        ev.IdSet.RECENT = saved


def test_an_idset_folds_its_numbers_in_order():
    """Folded in order, a run's ids all go into the bitmap (in hash order, an id far ahead
    of the bitmap's end would go to the plain set, and stay there)."""
    ids = [f"task-{n}" for n in range(1, 20_001)]
    random.Random(1).shuffle(ids)
    saved, ev.IdSet.RECENT = ev.IdSet.RECENT, 10_000
    try:
        folded = ev.IdSet(ids)
    finally:
        ev.IdSet.RECENT = saved
    assert not folded._other and folded._counts == {"task-": 20_000}


def test_the_same_ids_give_the_same_json_whatever_was_folded_when():
    """A snapshot loaded and run on folds its ids at other times than the run that never
    stopped; its bitmaps may have other room to spare, but not other text."""
    step_by_step = ev.IdSet(["task-20"])
    step_by_step.to_json()  # folds task-20 alone
    step_by_step.add("task-8")
    at_once = ev.IdSet(["task-8", "task-20"])
    assert step_by_step.to_json() == at_once.to_json()
