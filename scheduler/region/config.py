"""`region.toml`: the hospitals of a region, the ambulance travel times between them and the
transfer rules.

    [region]
    seed = 1                    # the region's seed: each hospital draws from its own stream
    policy = "greedy"           # optional: every hospital's scheduler policy (else its own)

    [transfers]
    max_wait_s = 900            # a request no hospital accepts by then is referred out
    move_urgent = false         # whether ESI 1-2 patients may be moved
    move_isolation = true       # whether isolation patients may be moved (to an isolation room)

    [travel]                    # either a matrix, in the hospitals' order ...
    minutes = [[0, 12], [12, 0]]
    # ... or coordinates (`at_km` of each hospital) and a speed:
    # speed_kmh = 50.0
    # handover_min = 5.0        # added to every trip: loading, hand-over

    [[hospitals]]
    id = "north"
    scenario = "ward"           # a named scenario, or `config = "north.toml"` (beside this file)
    stream = 1                  # optional: its seed stream (default: its position, from 1)
    at_km = [0.0, 0.0]          # with speed_kmh
    set = { "arrivals.interval_s" = 8.0 }   # optional: keys changed from its config

Hospital i's seed is `region seed * 1000 + its stream`: a run of region seed S gives every
hospital a different stream, and the same patients to every coordinator (common random
numbers across coordinators, replications paired by the region's seed).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scheduler import config as config_module
from scheduler import scenarios
from scheduler.config import Config, ConfigError

ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,39}")
SEED_STRIDE = 1000  # hospital seed = region seed * SEED_STRIDE + stream
SECTIONS = ("region", "transfers", "travel", "hospitals")


class RegionError(ConfigError):
    """A region config that cannot be used; the message says why, in one line."""


@dataclass(frozen=True)
class TransferRules:
    max_wait_s: float = 900.0
    move_urgent: bool = False
    move_isolation: bool = True

    @property
    def max_wait_ms(self) -> int:
        return round(self.max_wait_s * 1000)


@dataclass(frozen=True)
class Member:
    """One hospital of the region: its id, its config and its seed stream."""

    hospital_id: str
    config: Config
    stream: int
    source: str  # the scenario or file it came from, for the record's header

    def seed(self, region_seed: int) -> int:
        return region_seed * SEED_STRIDE + self.stream

    @property
    def rooms(self) -> int:
        return len(self.config.hospital.floors) * self.config.hospital.rooms_per_floor


@dataclass(frozen=True)
class RegionConfig:
    hospitals: tuple[Member, ...]
    travel_ms: Mapping[tuple[str, str], int]  # (from, to) -> ambulance travel, ms
    rules: TransferRules = TransferRules()
    seed: int = 1
    tick_ms: int = 1000
    data: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # as read, for headers

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(m.hospital_id for m in self.hospitals)

    def member(self, hospital_id: str) -> Member:
        for member in self.hospitals:
            if member.hospital_id == hospital_id:
                return member
        raise KeyError(hospital_id)

    def with_policy(self, policy: str) -> RegionConfig:
        """Every hospital run by `policy` (cpsat | greedy)."""
        members = tuple(
            dataclasses.replace(m, config=_replace(m.config, {"scheduler.policy": policy}, m))
            for m in self.hospitals
        )
        return dataclasses.replace(self, hospitals=members)


REGION_FOLDER = "regions"  # the named regions, in the scenarios' folder


def region_names() -> list[str]:
    return sorted(p.stem for p in (scenarios.directory() / REGION_FOLDER).glob("*.toml"))


def region_path(name: str) -> Path:
    """A named region (`region-5`) or a region file's own path."""
    if name.endswith(".toml") or "/" in name:
        return Path(name)
    candidate = scenarios.directory() / REGION_FOLDER / f"{name}.toml"
    if not candidate.is_file():
        known = ", ".join(region_names()) or "none"
        raise RegionError(f"unknown region {name!r} (available: {known})")
    return candidate


def load(path: str | Path) -> RegionConfig:
    """The region of a `region.toml`; `RegionError` says what is wrong with it."""
    path = Path(path)
    data = config_module.read_toml(path, kind="region", error=RegionError)
    try:
        return from_mapping(data, path.parent)
    except ConfigError as exc:
        raise RegionError(f"{path}: {exc}") from None


def from_mapping(data: Mapping[str, Any], base: Path = Path(".")) -> RegionConfig:
    for name in data:
        if name not in SECTIONS:
            raise RegionError(f"[{name}]: unknown section (expected one of {', '.join(SECTIONS)})")
    region = _table(data, "region", ("seed", "policy"))
    seed = _integer("region.seed", region.get("seed", 1), 0)
    rules = _rules(_table(data, "transfers", ("max_wait_s", "move_urgent", "move_isolation")))
    listed = data.get("hospitals")
    if not isinstance(listed, list) or not listed:
        raise RegionError("[[hospitals]]: a region needs at least one hospital")
    members: list[Member] = []
    places: dict[str, tuple[float, float] | None] = {}
    for position, entry in enumerate(listed, start=1):
        member, place = _member(entry, position, base)
        if any(m.hospital_id == member.hospital_id for m in members):
            raise RegionError(f"hospitals: id {member.hospital_id!r} is given twice")
        if any(m.stream == member.stream for m in members):
            raise RegionError(f"hospitals.{member.hospital_id}.stream: {member.stream} is taken")
        members.append(member)
        places[member.hospital_id] = place
    policy = region.get("policy")
    if policy is not None:
        if policy not in ("cpsat", "greedy"):
            raise RegionError(f"region.policy: {policy!r}: expected cpsat or greedy")
        members = [
            dataclasses.replace(m, config=_replace(m.config, {"scheduler.policy": policy}, m))
            for m in members
        ]
    ticks = {m.config.scheduler.tick_s for m in members}
    if len(ticks) > 1:
        raise RegionError(f"hospitals: every hospital needs the same scheduler.tick_s, not {ticks}")
    ids = [m.hospital_id for m in members]
    travel = _travel(_table(data, "travel", ("minutes", "speed_kmh", "handover_min")), ids, places)
    return RegionConfig(tuple(members), travel, rules, seed, round(ticks.pop() * 1000), dict(data))


def _table(data: Mapping[str, Any], name: str, keys: tuple[str, ...]) -> Mapping[str, Any]:
    table = data.get(name, {})
    if not isinstance(table, Mapping):
        raise RegionError(f"[{name}] must be a table")
    for key in table:
        if key not in keys:
            raise RegionError(f"{name}.{key}: unknown key (expected one of {', '.join(keys)})")
    return table


def _number(name: str, value: Any, low: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RegionError(f"{name}: expected a number, not {value!r}")
    if value < low:
        raise RegionError(f"{name}: {value} is below {low}")
    return float(value)


def _integer(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise RegionError(f"{name}: expected a whole number >= {low}, not {value!r}")
    return value


def _boolean(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise RegionError(f"{name}: expected true or false, not {value!r}")
    return value


def _rules(table: Mapping[str, Any]) -> TransferRules:
    default = TransferRules()
    return TransferRules(
        max_wait_s=_number(
            "transfers.max_wait_s", table.get("max_wait_s", default.max_wait_s), 0.0
        ),
        move_urgent=_boolean(
            "transfers.move_urgent", table.get("move_urgent", default.move_urgent)
        ),
        move_isolation=_boolean(
            "transfers.move_isolation", table.get("move_isolation", default.move_isolation)
        ),
    )


HOSPITAL_KEYS = ("id", "scenario", "config", "stream", "at_km", "set")


def _member(entry: Any, position: int, base: Path) -> tuple[Member, tuple[float, float] | None]:
    where = f"hospitals[{position}]"
    if not isinstance(entry, Mapping):
        raise RegionError(f"{where}: expected a table")
    for key in entry:
        if key not in HOSPITAL_KEYS:
            raise RegionError(f"{where}.{key}: unknown key (expected {', '.join(HOSPITAL_KEYS)})")
    hospital_id = entry.get("id")
    if not isinstance(hospital_id, str) or not ID_PATTERN.fullmatch(hospital_id):
        raise RegionError(
            f"{where}.id: expected 1-40 letters, digits, '_', '.', '-', not {hospital_id!r}"
        )
    where = f"hospitals.{hospital_id}"
    scenario, file = entry.get("scenario"), entry.get("config")
    if (scenario is None) == (file is None):
        raise RegionError(f"{where}: give either scenario or config")
    try:
        if scenario is not None:
            if not isinstance(scenario, str):
                raise RegionError(f"{where}.scenario: expected a name, not {scenario!r}")
            config, source = scenarios.load(scenario), scenario
        else:
            if not isinstance(file, str):
                raise RegionError(f"{where}.config: expected a file name, not {file!r}")
            config, source = config_module.load(base / file, {}), file
    except RegionError:
        raise
    except ConfigError as exc:
        raise RegionError(f"{where}: {exc}") from None
    stream = _integer(f"{where}.stream", entry.get("stream", position), 0)
    member = Member(hospital_id, config, stream, source)
    changes = entry.get("set", {})
    if not isinstance(changes, Mapping):
        raise RegionError(f"{where}.set: expected a table of section.key = value")
    if changes:
        member = dataclasses.replace(member, config=_replace(config, changes, member))
    place = entry.get("at_km")
    if place is not None:
        if not isinstance(place, list) or len(place) != 2:
            raise RegionError(f"{where}.at_km: expected [x, y] in km")
        place = (
            _number(f"{where}.at_km", place[0], -1e6),
            _number(f"{where}.at_km", place[1], -1e6),
        )
    return member, place


def _replace(config: Config, changes: Mapping[str, Any], member: Member) -> Config:
    sections: dict[str, dict[str, Any]] = {}
    for key, value in changes.items():
        section, dot, name = key.partition(".")
        if not dot or not name:
            raise RegionError(f"hospitals.{member.hospital_id}.set: {key!r}: expected section.key")
        sections.setdefault(section, {})[name] = value
    merged = config_module.to_mapping(config)
    for section, values in sections.items():
        if section not in merged:
            raise RegionError(f"hospitals.{member.hospital_id}.set: unknown section {section!r}")
        merged[section].update(values)
    try:
        return config_module.from_mapping(merged)
    except ConfigError as exc:
        raise RegionError(f"hospitals.{member.hospital_id}.set: {exc}") from None


def _travel(
    table: Mapping[str, Any],
    ids: list[str],
    places: Mapping[str, tuple[float, float] | None],
) -> dict[tuple[str, str], int]:
    matrix, speed = table.get("minutes"), table.get("speed_kmh")
    if (matrix is None) == (speed is None):
        raise RegionError("travel: give either minutes (a matrix) or speed_kmh with at_km")
    if matrix is not None:
        if "handover_min" in table:
            raise RegionError("travel.handover_min: only with speed_kmh")
        return _matrix(matrix, ids)
    speed_kmh = _number("travel.speed_kmh", speed, 0.0)
    if speed_kmh <= 0:
        raise RegionError("travel.speed_kmh: must be above 0")
    handover = _number("travel.handover_min", table.get("handover_min", 0.0), 0.0)
    travel = {}
    for a in ids:
        for b in ids:
            pa, pb = places[a], places[b]
            if pa is None or pb is None:
                missing = a if pa is None else b
                raise RegionError(f"hospitals.{missing}.at_km: needed with travel.speed_kmh")
            km = math.dist(pa, pb)
            minutes = 0.0 if a == b else handover + km / speed_kmh * 60
            travel[a, b] = round(minutes * 60_000)
    return travel


def _matrix(matrix: Any, ids: list[str]) -> dict[tuple[str, str], int]:
    n = len(ids)
    if not isinstance(matrix, list) or len(matrix) != n:
        raise RegionError(f"travel.minutes: expected {n} rows, one per hospital")
    travel = {}
    for i, row in enumerate(matrix):
        if not isinstance(row, list) or len(row) != n:
            raise RegionError(f"travel.minutes[{i + 1}]: expected {n} numbers")
        for j, value in enumerate(row):
            minutes = _number(f"travel.minutes[{i + 1}][{j + 1}]", value, 0.0)
            if i == j and minutes:
                raise RegionError(f"travel.minutes[{i + 1}][{j + 1}]: a hospital is 0 from itself")
            travel[ids[i], ids[j]] = round(minutes * 60_000)
    return travel
