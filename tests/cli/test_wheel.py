"""Installed as a package rather than run from the checkout: the wheel built from the
project, installed into a fresh virtual environment, benchmarks a named scenario (issue 22,
item 8: the scenarios were not package data, and an installed `hospital bench` found none).

The wheel is built as `pip wheel .` builds it (setuptools fetched from PyPI into an isolated
build environment). The environment sees the interpreter's own packages
(`--system-site-packages`), so that ortools, scipy and the rest need not be downloaded
again; the project itself must then come from the environment's site-packages, which the
test checks, and it runs from a temporary directory with no PYTHONPATH, never the checkout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def run(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and k != "PYTHONHOME"}
    env = {k: v for k, v in env.items() if not k.startswith("HOSPITAL_")}
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=500
    )


def source_copy(into: Path) -> Path:
    """What the wheel is built from, copied (a build writes `build/` and `*.egg-info` beside
    its sources): pyproject.toml, the README and the packages it names."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    top = {name.split(".")[0] for name in project["tool"]["setuptools"]["packages"]}
    source = into / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for name in sorted(top):
        shutil.copytree(
            ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )
    return source


def test_an_installed_wheel_benches_a_named_scenario(tmp_path):
    source = source_copy(tmp_path)
    wheels = tmp_path / "wheels"
    built = run(
        sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", wheels, source, cwd=tmp_path
    )
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = wheels.glob("hospital_scheduler-*.whl")

    venv = tmp_path / "venv"
    made = run(sys.executable, "-m", "venv", "--system-site-packages", venv, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    installed = run(python, "-m", "pip", "install", "-q", wheel, cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr[-3000:]

    elsewhere = tmp_path / "elsewhere"  # not the checkout: nothing of it on the path
    elsewhere.mkdir()
    where = run(
        python,
        "-c",
        "import scheduler, scenarios; print(scheduler.__file__, scenarios.__file__)",
        cwd=elsewhere,
    )
    site = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    assert where.returncode == 0, where.stderr
    for module in where.stdout.split():
        assert Path(module).is_relative_to(site / "site-packages"), where.stdout

    bench = run(
        venv / "bin" / "hospital",
        "bench",
        "--scenario",
        "ward",
        "--hours",
        "0.05",
        "--replications",
        "1",
        cwd=elsewhere,
    )
    assert bench.returncode == 0, bench.stderr[-3000:]
    assert "ward" in bench.stdout and "time in system" in bench.stdout
    listed = run(
        python, "-c", "from scheduler import scenarios; print(scenarios.names())", cwd=elsewhere
    )
    assert "'ed-day'" in listed.stdout and "'ward-acuity'" in listed.stdout, listed.stdout
    region = run(
        venv / "bin" / "hospital",
        "region",
        "run",
        "--config",
        "region-5",
        "--duration",
        "10m",
        cwd=elsewhere,
    )
    assert region.returncode == 0, region.stderr[-3000:]
    assert "referred out of the region" in region.stdout
