"""The hospital's configuration: `config.toml`, overridden key by key from the environment.

Every key `[section] key` can be set by the variable `HOSPITAL_<SECTION>_<KEY>`; the
conventional `DATABASE_URL` and `KAFKA_BOOTSTRAP_SERVERS` work too. Values are checked on
load and a bad one raises `ConfigError` naming the key.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from scheduler.events import MAX_TIME_S, shown

# A soft rule's weight is at most this: with it, the objective's totals stay exact integers
# (only the ratios between the weights matter, so no hospital needs more).
MAX_WEIGHT = 1000
MIN_TICK_S = 0.001
# Bounds past which a value can only be a mistake, and would make a run hang on building
# its hospital or overflow the 64-bit integers of the solver and the database.
MAX_ROOMS = 100_000  # in the whole hospital
MAX_STAFF = 100_000  # per role
MAX_SECONDS = MAX_TIME_S  # any time in seconds: about 31 years
MAX_PARTITIONS = 10_000
MIN_SEED, MAX_SEED = -(2**63), 2**63 - 1  # what a database keeps in a BIGINT
# A terminal clean, after an isolation patient, takes this many routine cleans unless given.
TERMINAL_CLEANING_FACTOR = 1.5
# Arrivals faster than one a millisecond would share their milliseconds: time is kept in ms.
MAX_RATE_PER_HOUR = 3_600_000.0
MIN_RATE_PER_HOUR = 1e-6  # at the busiest hour: fewer is no arrival in the longest run
# A coefficient of variation past which a duration is all tail: nearly always about nothing,
# now and then years.
MAX_CV = 10.0


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message names the key."""


@dataclass(frozen=True)
class HospitalConfig:
    floors: tuple[str, ...] = ("A", "B")
    rooms_per_floor: int = 3
    isolation_rooms: tuple[str, ...] = ()  # rooms able to isolate a patient
    reserve_isolation_rooms: bool = False  # keep them for patients who need isolation


@dataclass(frozen=True)
class StaffConfig:
    porters: int = 2
    nurses: int = 2
    doctors: int = 1
    cleaners: int = 2


@dataclass(frozen=True)
class ArrivalsConfig:
    """`fixed`: a patient every `interval_s`; `poisson`: a Poisson process of that mean
    interval; `profile`: a Poisson process whose rate follows the clock, `rates_per_hour[h]`
    patients an hour from h:00 (hour 0 is simulated 00:00 and the day repeats) times
    `day_factors[d]` on day d of the week (day 0 is the run's first simulated day; none: every
    day alike). `interval_s` is unused by `profile`, the rates by the others."""

    process: str = "fixed"
    interval_s: float = 5.0
    seed: int = 1
    acuity_mix: tuple[float, ...] = (0.0, 0.0, 1.0, 0.0, 0.0)  # shares of ESI levels 1-5
    isolation_share: float = 0.0
    rates_per_hour: tuple[float, ...] = ()  # 24 mean arrival counts, hours 0-23
    day_factors: tuple[float, ...] = ()  # 7 factors, days 0-6 of the run; none: all 1


@dataclass(frozen=True)
class DurationsConfig:
    """Mean durations of the work done in a room (walking is the travel model's). A `_cv` of
    0 makes every one its mean; above 0 each is drawn from `distribution` with that
    coefficient of variation (standard deviation / mean), per patient (`scheduler/demand.py`)."""

    treatment_s: float = 10.0
    cleaning_s: float = 9.0
    # After an isolation patient. Not given: TERMINAL_CLEANING_FACTOR times `cleaning_s`
    # (`from_mapping` works it out; 13.5 is that of the default cleaning).
    terminal_cleaning_s: float = 13.5
    treatment_s_by_acuity: tuple[float, ...] = ()  # 5 means, ESI 1-5; none: treatment_s
    treatment_cv: float = 0.0
    cleaning_cv: float = 0.0
    terminal_cleaning_cv: float = 0.0
    distribution: str = "lognormal"  # lognormal | gamma (gamma with cv 1: exponential)


@dataclass(frozen=True)
class TravelConfig:
    model: str = "seed"
    floor_s: float = 1.0
    room_s: float = 1.0
    corridor_s: float = 1.0


@dataclass(frozen=True)
class SchedulerConfig:
    policy: str = "cpsat"
    tick_s: float = 1.0
    validate: bool = True
    explain: bool = False  # a `reason` on each referral and dispatch
    # Looking ahead (`scheduler.forecast`): each tick weighs its decisions against what the
    # next `lookahead_s` seconds are expected to bring, and may hold a staff member or a
    # room back for it, each hold at most `max_hold_s`. 0: today's myopic scheduler.
    lookahead_s: float = 0.0
    max_hold_s: float = 60.0


@dataclass(frozen=True)
class ShiftsConfig:
    """Who works when: entries "STAFF-ID HH:MM-HH:MM [break HH:MM-HH:MM]...", in a day of
    `cycle_s` that repeats; staff without an entry are always on duty."""

    roster: tuple[str, ...] = ()
    cycle_s: float = 86_400.0


@dataclass(frozen=True)
class SlaConfig:
    """Target waits per task kind in seconds (0: none); `_urgent_s` for ESI 1-2 patients
    (0: the routine target). A cleaning is nobody's urgency: one target each."""

    escort_in_s: float = 0.0
    escort_in_urgent_s: float = 0.0
    visit_s: float = 0.0
    visit_urgent_s: float = 0.0
    escort_out_s: float = 0.0
    escort_out_urgent_s: float = 0.0
    clean_s: float = 0.0
    clean_terminal_s: float = 0.0


@dataclass(frozen=True)
class RulesConfig:
    longest_wait_first: float = 1.0
    minimise_walking: float = 1.0
    free_rooms_fast: float = 30.0
    urgency: float = 60.0  # seconds of waiting one ESI level of urgency is worth
    sla_breach: float = 1.0  # per second a task is past its target wait
    spare_isolation_rooms: float = 300.0  # seconds of waiting an isolation room kept is worth
    spare_doctors: float = 0.0  # seconds of waiting a doctor kept for ESI 1-2 is worth
    tie_break: bool = True
    skills: bool = True  # hard: visits to ESI 1-2 patients need a doctor


@dataclass(frozen=True)
class KafkaConfig:
    enabled: bool = False
    bootstrap_servers: str = "127.0.0.1:9092"
    inbound_topic: str = "hospital.inbound"
    decisions_topic: str = "hospital.decisions"
    dispatch_topic_prefix: str = "hospital.dispatch."
    dead_letter_topic: str = "hospital.dead-letter"
    partitions: int = 3
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = ""
    sasl_username: str = ""
    ssl_cafile: str = ""  # PEM of the CA that signed the broker's certificate


@dataclass(frozen=True)
class DatabaseConfig:
    url: str = "sqlite:///hospital.db"


@dataclass(frozen=True)
class Hl7Config:
    """`hospital hl7 listen`: where it listens, and where an ADT message's fields are
    (`scheduler/hl7/fields.py`: "SEG-N", "SEG-N.C", or "OBX[CODE]", the OBX-5 of the OBX whose
    OBX-3 is CODE; "" for none). It decides nothing in the scheduler: the events it makes
    carry the values."""

    host: str = "127.0.0.1"
    port: int = 2575
    patient_id_field: str = "PID-3"  # PID-3.1, the first identifier; "PV1-19": a visit number
    acuity_field: str = "OBX[75636-1]"  # LOINC 75636-1, Emergency severity index: 1-5, ESI-n
    isolation_field: str = "OBX[ISOLATION]"  # a local code: no standard one exists
    isolation_yes: tuple[str, ...] = ("Y", "YES", "TRUE", "1", "CONTACT", "DROPLET", "AIRBORNE")
    isolation_no: tuple[str, ...] = ("N", "NO", "FALSE", "0", "NONE")
    tls_cert: str = ""  # PEM: the listener's certificate chain; with tls_key, MLLP over TLS
    tls_key: str = ""
    send_to: str = ""  # host:port of a downstream MLLP listener for A02 and A20


@dataclass(frozen=True)
class Config:
    hospital: HospitalConfig = field(default_factory=HospitalConfig)
    staff: StaffConfig = field(default_factory=StaffConfig)
    arrivals: ArrivalsConfig = field(default_factory=ArrivalsConfig)
    durations: DurationsConfig = field(default_factory=DurationsConfig)
    travel: TravelConfig = field(default_factory=TravelConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    rules: RulesConfig = field(default_factory=RulesConfig)
    shifts: ShiftsConfig = field(default_factory=ShiftsConfig)
    sla: SlaConfig = field(default_factory=SlaConfig)
    kafka: KafkaConfig = field(default_factory=KafkaConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    hl7: Hl7Config = field(default_factory=Hl7Config)

    def replace(self, **sections: dict[str, Any]) -> Config:
        """A copy with some keys changed: `config.replace(staff={"porters": 1})`."""
        merged = to_mapping(self)
        for name, values in sections.items():
            merged[name].update(values)
        return from_mapping(merged)


def staff_roster(config: Config) -> list[tuple[str, str]]:
    """(staff_id, role) for everybody on duty, in a fixed order."""
    roster = []
    for title, count, role in (
        ("porter", config.staff.porters, "porter"),
        ("nurse", config.staff.nurses, "medical"),
        ("doctor", config.staff.doctors, "medical"),
        ("cleaner", config.staff.cleaners, "cleaner"),
    ):
        roster += [(f"{title}-{n}", role) for n in range(1, count + 1)]
    return roster


CHOICES = {
    ("arrivals", "process"): ("fixed", "poisson", "profile"),
    ("durations", "distribution"): ("lognormal", "gamma"),
    ("travel", "model"): ("seed", "layout"),
    ("scheduler", "policy"): ("cpsat", "greedy"),
    ("kafka", "security_protocol"): ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"),
}
CONVENTIONAL_ENV = {
    "DATABASE_URL": ("database", "url"),
    "KAFKA_BOOTSTRAP_SERVERS": ("kafka", "bootstrap_servers"),
}


def load(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Defaults, then the TOML file (if any), then the environment."""
    data = {} if path is None else read_toml(path)
    return from_mapping(data, os.environ if environ is None else environ)


def read_toml(
    path: str | Path, kind: str = "config", error: type[ConfigError] = ConfigError
) -> dict[str, Any]:
    """A TOML file's tables; `error` says in one line why it cannot be had."""
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{kind} file not found: {path}") from None
    except IsADirectoryError:
        raise error(f"{path}: is a directory, not a {kind} file") from None
    except OSError as exc:
        raise error(f"{path}: cannot be read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise error(f"{path}: not a text file (not valid UTF-8)") from None
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:
        raise error(f"{path}: not valid TOML: nested too deeply") from None


def from_mapping(data: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Config:
    environ = environ or {}
    known_sections = {f.name for f in dataclasses.fields(Config)}
    _check_environment_names(environ)
    for name in data:
        if name not in known_sections:
            raise ConfigError(
                f"[{_short(name)}]: unknown section (expected one of "
                f"{', '.join(sorted(known_sections))})"
            )
    sections = {}
    for section in dataclasses.fields(Config):
        given = data.get(section.name, {})
        if not isinstance(given, Mapping):
            raise ConfigError(f"[{section.name}] must be a table")
        factory: Any = section.default_factory  # the section's dataclass
        known = {f.name: f for f in dataclasses.fields(factory)}
        for key in given:
            if key not in known:
                raise ConfigError(f"{section.name}.{_short(key)}: unknown key")
        values: dict[str, Any] = {}
        for key, spec in known.items():
            name = f"{section.name}.{key}"
            kind = cast(str, spec.type)  # a string: the annotations are postponed
            raw = given.get(key, spec.default)
            env_name = variable_of(name)
            if env_name in environ:
                raw = _from_env(environ[env_name], kind, name)
            elif key not in given and name in DERIVED_DEFAULTS:
                raw = DERIVED_DEFAULTS[name](values)
            for conventional, target in CONVENTIONAL_ENV.items():
                if target == (section.name, key) and conventional in environ:
                    raw = environ[conventional]
            values[key] = _check(name, raw, kind)
        sections[section.name] = factory(**values)
    config = Config(**sections)
    _check_semantics(config)
    return config


# Keys whose default follows another key of their section (given, or its own default), from
# the section's values worked out so far (the dataclass's order).
DERIVED_DEFAULTS = {
    "durations.terminal_cleaning_s": lambda values: TERMINAL_CLEANING_FACTOR * values["cleaning_s"],
}


def warnings(config: Config) -> list[str]:
    """Values that load, but that are most likely a mistake: one sentence each, for the
    command line to show before it runs."""
    found = []
    durations = config.durations
    isolating = bool(config.hospital.isolation_rooms)  # else no terminal clean is ever done
    if isolating and durations.terminal_cleaning_s < durations.cleaning_s:
        found.append(
            f"durations.terminal_cleaning_s ({durations.terminal_cleaning_s:g} s) is shorter "
            f"than durations.cleaning_s ({durations.cleaning_s:g} s): a terminal clean, after "
            f"an isolation patient, takes longer than a routine one (leave it out for "
            f"{TERMINAL_CLEANING_FACTOR:g} times a cleaning)"
        )
    return found


def variable_of(name: str) -> str:
    """The environment variable that overrides the key `section.key`."""
    return "HOSPITAL_" + name.replace(".", "_").upper()


def _check_environment_names(environ: Mapping[str, str]) -> None:
    """A `HOSPITAL_<SECTION>_<KEY>` variable whose section exists but whose key does not is
    a typo that would be ignored without a word: an error, as an unknown key in a file is.
    Other `HOSPITAL_*` variables (`HOSPITAL_CONFIG`) are not config keys."""
    for section in dataclasses.fields(Config):
        prefix = f"HOSPITAL_{section.name.upper()}_"
        factory: Any = section.default_factory  # the section's dataclass
        keys = {f.name.upper() for f in dataclasses.fields(factory)}
        for variable in environ:
            if variable.startswith(prefix) and variable[len(prefix) :] not in keys:
                raise ConfigError(
                    f"{_short(variable)}: no key "
                    f"{shown(variable[len(prefix) :].lower())} in "
                    f"[{section.name}] (expected one of "
                    f"{', '.join(sorted(k.lower() for k in keys))})"
                )


# Sections that change no decision: a log recorded with other ones still replays exactly.
NOT_DECIDING = ("kafka", "database", "hl7")
# Keys added after logs and snapshots took their shape: shared only when they differ from
# their default, so that a run without them records the same header (and golden file) and
# has the same snapshot fingerprint as before they existed.
SHARED_WHEN_SET = {
    "scheduler": ("lookahead_s", "max_hold_s"),
    "arrivals": ("rates_per_hour", "day_factors"),
    "durations": (
        "treatment_s_by_acuity",
        "treatment_cv",
        "cleaning_cv",
        "terminal_cleaning_cv",
        "distribution",
    ),
}


def shareable(config: Config) -> dict[str, dict[str, Any]]:
    """What a log may carry of the config: the sections that decide. Where the broker and
    the database are, and who logs in to them, stay with the deployment."""
    shared = {}
    defaults = to_mapping(Config())
    for section, values in to_mapping(config).items():
        if section in NOT_DECIDING:
            continue
        for key in SHARED_WHEN_SET.get(section, ()):
            if values[key] == defaults[section][key]:
                del values[key]
        shared[section] = values
    return shared


def differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """`section.key` of every deciding value that differs between two config mappings."""
    return [
        f"{section}.{key}"
        for section in sorted(set(a) | set(b))
        if section not in NOT_DECIDING
        for key in sorted(set(a.get(section, {})) | set(b.get(section, {})))
        if a.get(section, {}).get(key) != b.get(section, {}).get(key)
    ]


def to_mapping(config: Config) -> dict[str, dict[str, Any]]:
    return {
        name: {
            k: list(v) if isinstance(v, tuple) else v
            for k, v in dataclasses.asdict(getattr(config, name)).items()
        }
        for name in (f.name for f in dataclasses.fields(Config))
    }


def _short(name: Any) -> str:
    """A section or key name as given, cut short, quoted if it is not a plain word."""
    text = str(name)
    return text if text.isidentifier() and len(text) <= 60 else shown(name)


def _from_env(text: str, kind: str, name: str) -> Any:
    if kind == "tuple[str, ...]":
        return [part.strip() for part in text.split(",") if part.strip()]
    if kind == "tuple[float, ...]":
        try:
            return [float(part) for part in text.split(",") if part.strip()]
        except ValueError:
            raise ConfigError(
                f"{name}: expected numbers separated by commas, got {shown(text)}"
            ) from None
    if kind == "bool":
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name}: expected true or false, got {shown(text)}")
    if kind == "int":
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"{name}: expected an integer, got {shown(text)}") from None
    if kind == "float":
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"{name}: expected a number, got {shown(text)}") from None
    return text


def _check(name: str, value: Any, kind: str) -> Any:
    if kind == "tuple[float, ...]":
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name}: expected a list of numbers, got {shown(value)}")
        return tuple(_check(name, v, "float") for v in value)
    if kind == "tuple[str, ...]":
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{name}: expected a list of strings, got {shown(value)}")
        return tuple(value)
    if kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{name}: expected true or false, got {shown(value)}")
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name}: expected an integer, got {shown(value)}")
        return value
    if kind == "float":
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
        ):
            raise ConfigError(f"{name}: expected a finite number, got {shown(value)}")
        return float(value)
    if not isinstance(value, str):
        raise ConfigError(f"{name}: expected a string, got {shown(value)}")
    return value


def _check_semantics(config: Config) -> None:
    for (section, key), allowed in CHOICES.items():
        value = getattr(getattr(config, section), key)
        if value not in allowed:
            raise ConfigError(
                f"{section}.{key}: expected one of {', '.join(allowed)}, got {shown(value)}"
            )
    floors = config.hospital.floors
    if not floors or len(set(floors)) != len(floors) or not all(f.isalpha() for f in floors):
        raise ConfigError(f"hospital.floors: expected distinct letters, got {shown(list(floors))}")
    if not 1 <= config.kafka.partitions <= MAX_PARTITIONS:
        raise ConfigError(f"kafka.partitions: must be from 1 to {MAX_PARTITIONS}")
    if config.hospital.rooms_per_floor < 1:
        raise ConfigError("hospital.rooms_per_floor: must be at least 1")
    if len(floors) * config.hospital.rooms_per_floor > MAX_ROOMS:
        raise ConfigError(
            f"hospital.rooms_per_floor: at most {MAX_ROOMS} rooms in all, got "
            f"{len(floors)} floors of {config.hospital.rooms_per_floor}"
        )
    for key in ("porters", "nurses", "doctors", "cleaners"):
        if getattr(config.staff, key) < 0:
            raise ConfigError(f"staff.{key}: must not be negative")
        if getattr(config.staff, key) > MAX_STAFF:
            raise ConfigError(f"staff.{key}: must be at most {MAX_STAFF}")
    if not MIN_SEED <= config.arrivals.seed <= MAX_SEED:
        raise ConfigError(f"arrivals.seed: must fit in 64 bits (from {MIN_SEED} to {MAX_SEED})")
    # Every role has work in the lifecycle: with nobody in one, patients would never leave.
    for key in ("porters", "cleaners"):
        if getattr(config.staff, key) < 1:
            raise ConfigError(f"staff.{key}: must be at least 1 (every patient needs one)")
    if config.staff.nurses + config.staff.doctors < 1:
        raise ConfigError(
            "staff.nurses + staff.doctors: must be at least 1 (every patient needs a medical visit)"
        )
    if config.scheduler.tick_s < MIN_TICK_S:
        raise ConfigError(
            f"scheduler.tick_s: must be at least {MIN_TICK_S} s (time is kept "
            f"in milliseconds), got {config.scheduler.tick_s}"
        )
    _check_demand(config)
    positive = {
        "arrivals.interval_s": config.arrivals.interval_s,
        "scheduler.tick_s": config.scheduler.tick_s,
        "scheduler.max_hold_s": config.scheduler.max_hold_s,
    }
    non_negative = {
        "durations.treatment_s": config.durations.treatment_s,
        "durations.cleaning_s": config.durations.cleaning_s,
        "travel.floor_s": config.travel.floor_s,
        "travel.room_s": config.travel.room_s,
        "travel.corridor_s": config.travel.corridor_s,
        "rules.longest_wait_first": config.rules.longest_wait_first,
        "rules.minimise_walking": config.rules.minimise_walking,
        "rules.free_rooms_fast": config.rules.free_rooms_fast,
        "rules.urgency": config.rules.urgency,
        "rules.sla_breach": config.rules.sla_breach,
        "rules.spare_isolation_rooms": config.rules.spare_isolation_rooms,
        "rules.spare_doctors": config.rules.spare_doctors,
        "durations.terminal_cleaning_s": config.durations.terminal_cleaning_s,
        "scheduler.lookahead_s": config.scheduler.lookahead_s,
        **{f"sla.{f.name}": getattr(config.sla, f.name) for f in dataclasses.fields(SlaConfig)},
    }
    for name, value in positive.items():
        if not value > 0:
            raise ConfigError(f"{name}: must be greater than 0, got {value}")
    for name, value in non_negative.items():
        if not value >= 0:
            raise ConfigError(f"{name}: must not be negative, got {value}")
    for name, value in {
        **positive,
        **non_negative,
        "shifts.cycle_s": config.shifts.cycle_s,
    }.items():
        if name.endswith("_s") and value > MAX_SECONDS:
            raise ConfigError(f"{name}: must be at most {MAX_SECONDS} s, got {value}")
    _check_clinical(config)
    _check_hl7(config)
    for key in (
        "longest_wait_first",
        "minimise_walking",
        "free_rooms_fast",
        "urgency",
        "sla_breach",
        "spare_isolation_rooms",
        "spare_doctors",
    ):
        if getattr(config.rules, key) > MAX_WEIGHT:
            raise ConfigError(
                f"rules.{key}: must be at most {MAX_WEIGHT} (only the ratios "
                f"between weights matter), got {getattr(config.rules, key)}"
            )


def _check_demand(config: Config) -> None:
    """The arrival profile and the spread of the durations."""
    arrivals, durations = config.arrivals, config.durations
    rates, factors = arrivals.rates_per_hour, arrivals.day_factors
    if arrivals.process == "profile" and not rates:
        raise ConfigError(
            "arrivals.rates_per_hour: the profile process needs 24 arrival rates, one an hour"
        )
    if rates and (len(rates) != 24 or min(rates) < 0 or not any(rates)):
        raise ConfigError(
            f"arrivals.rates_per_hour: expected 24 rates (patients an hour, from 00:00), "
            f"none negative, not all 0; got {shown(list(rates))}"
        )
    if factors and (len(factors) != 7 or min(factors) < 0 or not any(factors)):
        raise ConfigError(
            f"arrivals.day_factors: expected 7 factors (days 0-6 of the run), none "
            f"negative, not all 0; got {shown(list(factors))}"
        )
    if rates:
        _check_busiest_hour(max(rates), max(factors, default=1.0), bool(factors))
    by_acuity = durations.treatment_s_by_acuity
    if by_acuity and (len(by_acuity) != 5 or min(by_acuity) < 0):
        raise ConfigError(
            f"durations.treatment_s_by_acuity: expected 5 mean treatments in seconds "
            f"(ESI 1 to 5), none negative; got {shown(list(by_acuity))}"
        )
    if max(by_acuity, default=0.0) > MAX_SECONDS:
        raise ConfigError(
            f"durations.treatment_s_by_acuity: must be at most {MAX_SECONDS} s each, "
            f"got {max(by_acuity)}"
        )
    for key in ("treatment_cv", "cleaning_cv", "terminal_cleaning_cv"):
        cv = getattr(durations, key)
        if not 0 <= cv <= MAX_CV:
            raise ConfigError(f"durations.{key}: expected from 0 to {MAX_CV:g}, got {cv}")


def _check_busiest_hour(rate: float, factor: float, factors_given: bool) -> None:
    """The busiest hour's rate, `rate * factor`, between what a run can tell from none and
    one arrival a millisecond (the arithmetic of the profile stays exact in between)."""
    busiest = rate * factor
    key = "arrivals.day_factors" if factors_given and rate <= MAX_RATE_PER_HOUR else ""
    key = key or "arrivals.rates_per_hour"
    if busiest > MAX_RATE_PER_HOUR:
        raise ConfigError(
            f"{key}: at most {MAX_RATE_PER_HOUR:.0f} arrivals an hour (one a millisecond), "
            f"got {busiest:.6g} at the busiest hour"
        )
    if busiest < MIN_RATE_PER_HOUR:
        raise ConfigError(
            f"{key}: at least {MIN_RATE_PER_HOUR:g} arrivals an hour at the busiest hour "
            f"(fewer is none in the longest run), got {busiest:.6g}"
        )


def _check_clinical(config: Config) -> None:
    from scheduler.shifts import Roster, RosterError  # a leaf module: no import cycle

    mix = config.arrivals.acuity_mix
    if len(mix) != 5 or any(share < 0 for share in mix) or not 0 < sum(mix) < math.inf:
        raise ConfigError(
            f"arrivals.acuity_mix: expected 5 shares (ESI 1 to 5), none "
            f"negative, not all 0; got {shown(list(mix))}"
        )
    if config.rules.skills and (mix[0] or mix[1]) and config.staff.doctors < 1:
        raise ConfigError(
            "staff.doctors: must be at least 1 when arrivals.acuity_mix has ESI "
            "1-2 patients and rules.skills is on (only a doctor may see them)"
        )
    if not 0 <= config.arrivals.isolation_share <= 1:
        raise ConfigError(
            f"arrivals.isolation_share: expected a share from 0 to 1, got "
            f"{config.arrivals.isolation_share}"
        )
    rooms = {
        f"{floor}{n}"
        for floor in config.hospital.floors
        for n in range(1, config.hospital.rooms_per_floor + 1)
    }
    unknown = [r for r in config.hospital.isolation_rooms if r not in rooms]
    if unknown:
        raise ConfigError(
            f"hospital.isolation_rooms: no room {shown(unknown)[1:-1]} in this hospital"
        )
    if config.arrivals.isolation_share > 0 and not config.hospital.isolation_rooms:
        raise ConfigError(
            "arrivals.isolation_share: patients needing isolation, but "
            "hospital.isolation_rooms lists no room able to isolate"
        )
    if not config.shifts.cycle_s > 0:
        raise ConfigError(f"shifts.cycle_s: must be greater than 0, got {config.shifts.cycle_s}")
    try:
        Roster(
            config.shifts.roster,
            config.shifts.cycle_s,
            {staff_id for staff_id, _ in staff_roster(config)},
        )
    except RosterError as exc:
        raise ConfigError(f"shifts.roster: {exc}") from None


def _check_hl7(config: Config) -> None:
    from scheduler.hl7.fields import FieldError, parse_spec  # a leaf module: no import cycle

    hl7 = config.hl7
    if not 0 <= hl7.port <= 65535:
        raise ConfigError(f"hl7.port: expected a port from 0 to 65535, got {hl7.port}")
    for key in ("patient_id_field", "acuity_field", "isolation_field"):
        try:
            spec = parse_spec(getattr(hl7, key))
        except FieldError as exc:
            raise ConfigError(f"hl7.{key}: {exc}") from None
        if key == "patient_id_field" and spec is None:
            raise ConfigError("hl7.patient_id_field: a patient needs an id: give one, e.g. PID-3")
    both = {v.upper() for v in hl7.isolation_yes} & {v.upper() for v in hl7.isolation_no}
    if both:
        raise ConfigError(f"hl7.isolation_no: {shown(sorted(both))} is in isolation_yes too")
    if bool(hl7.tls_cert) != bool(hl7.tls_key):
        raise ConfigError("hl7.tls_cert, hl7.tls_key: give both (MLLP over TLS) or neither")
    if hl7.send_to:
        host, _, port = hl7.send_to.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) <= 65535:
            raise ConfigError(f"hl7.send_to: expected HOST:PORT, got {shown(hl7.send_to)}")
