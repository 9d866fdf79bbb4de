"""The named scenarios: complete config files in the repository's `scenarios/` folder.

    from scheduler import scenarios
    scenarios.names()              # ['default', 'layout', 'ward', 'ward-overload', ...]
    scenarios.load("ward")         # its Config
    scenarios.path("ward")         # .../scenarios/ward.toml
    scenarios.load("my/dept.toml") # a config file of one's own, by its path

The folder is the `scenarios` package, whose data the files are: found through
`importlib.resources` from a source checkout, an editable install or an installed wheel
alike; `HOSPITAL_SCENARIO_DIR` points elsewhere.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

from scheduler import config as config_module
from scheduler.config import Config, ConfigError


def _packaged() -> Path:
    """The `scenarios` package's folder; or, where that package cannot be imported (an
    editable install made before it was one), the folder beside `scheduler`."""
    try:
        return Path(str(resources.files("scenarios")))
    except ModuleNotFoundError:
        return Path(__file__).resolve().parent.parent / "scenarios"


SCENARIO_DIR = _packaged()
# The order they are listed and benchmarked in: small to large, each base before its twin.
ORDER = (
    "default",
    "layout",
    "ward",
    "ward-overload",
    "ed-day",
    "ed-day-overload",
    "hospital",
    "hospital-overload",
    "campus",
    "campus-overload",
)


class UnknownScenario(ConfigError):
    """A scenario name that has no file; the message lists the ones there are."""


def directory() -> Path:
    return Path(os.environ.get("HOSPITAL_SCENARIO_DIR") or SCENARIO_DIR)


def names() -> list[str]:
    """Every scenario in the folder: the known ones in ORDER, then any others by name."""
    found = {p.stem for p in directory().glob("*.toml")}
    return [n for n in ORDER if n in found] + sorted(found - set(ORDER))


def path(name: str) -> Path:
    """The file of a scenario: a name of the folder's, or a config file's own path (one
    ending in `.toml`, or naming a directory), so that a hospital of one's own is benchmarked
    as the named ones are."""
    if name.endswith(".toml") or "/" in name:
        given = Path(name)
        if not given.is_file():
            raise UnknownScenario(f"no config file {name!r}")
        return given
    candidate = directory() / f"{name}.toml"
    if not candidate.is_file():
        available = ", ".join(names()) or f"none: no *.toml in {directory()}"
        raise UnknownScenario(f"unknown scenario {name!r} (available: {available})")
    return candidate


def load(name: str, environ: Mapping[str, str] | None = None) -> Config:
    """The scenario's config (a name, or a config file's path). The environment is not
    applied unless given: a scenario is the same hospital wherever it runs."""
    return config_module.load(path(name), {} if environ is None else environ)


def overrides(environ: Mapping[str, str], settings: list[str]) -> dict[str, str]:
    """The `HOSPITAL_<SECTION>_<KEY>` variables of `environ`, then each `section.key=value`
    of `settings` as such a variable: what `load` applies over a scenario's file, checked
    as the config checks any variable."""
    sections = tuple(f"HOSPITAL_{f.name.upper()}_" for f in dataclasses.fields(Config))
    # the variables of config keys: not HOSPITAL_CONFIG, HOSPITAL_SCENARIO_DIR and the like
    found = {name: value for name, value in environ.items() if name.startswith(sections)}
    for setting in settings:
        key, equals, value = setting.partition("=")
        section, dot, name = key.strip().partition(".")
        if not (equals and dot and section and name):
            raise ConfigError(f"--set {setting!r}: expected SECTION.KEY=VALUE")
        found[f"HOSPITAL_{section}_{name}".upper()] = value.strip()
    return found
