"""The named scenarios: complete config files in the repository's `scenarios/` folder.

    from scheduler import scenarios
    scenarios.names()              # ['default', 'layout', 'ward', 'ward-overload', ...]
    scenarios.load("ward")         # its Config
    scenarios.path("ward")         # .../scenarios/ward.toml

The folder sits beside the `scheduler` package, so it is found from a source checkout and
from an editable install alike; `HOSPITAL_SCENARIO_DIR` points elsewhere.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from scheduler import config as config_module
from scheduler.config import Config, ConfigError

SCENARIO_DIR = Path(__file__).resolve().parent.parent / "scenarios"
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
    candidate = directory() / f"{name}.toml"
    if not candidate.is_file():
        available = ", ".join(names()) or f"none: no *.toml in {directory()}"
        raise UnknownScenario(f"unknown scenario {name!r} (available: {available})")
    return candidate


def load(name: str, environ: Mapping[str, str] | None = None) -> Config:
    """The scenario's config. The environment is not applied unless given: a scenario is the
    same hospital wherever it runs."""
    return config_module.load(path(name), {} if environ is None else environ)
