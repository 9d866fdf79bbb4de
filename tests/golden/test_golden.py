"""Golden files: recorded scenarios whose decisions are committed and reviewed as diffs.

Each folder holds a scenario's `config.toml` and `scenario.toml` (duration, policy), the
inbound events its simulation records (`events.jsonl`) and the decisions (`decisions.jsonl`).
A test fails when the simulation or `hospital solve` no longer gives the same bytes.
`pytest --update-goldens` rewrites the files and still fails, once.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from rules.tie_break import EXACT_PAIRS, pair_count
from scheduler import config as config_module
from scheduler.policies import CpSatPolicy
from scheduler.runs import simulate_run
from tests import oracle

HERE = Path(__file__).parent
SCENARIOS = sorted(p.name for p in HERE.iterdir() if (p / "scenario.toml").exists())


def scenario(name: str):
    folder = HERE / name
    settings = tomllib.loads((folder / "scenario.toml").read_text())
    config = config_module.load(folder / "config.toml", {})
    return folder, config, settings


def check_or_update(request, produced: Path, golden: Path) -> None:
    if request.config.getoption("--update-goldens"):
        if not golden.exists() or golden.read_bytes() != produced.read_bytes():
            golden.write_bytes(produced.read_bytes())
            pytest.fail(f"{golden.relative_to(HERE)} rewritten: review the diff, then run again")
        return
    assert golden.exists(), f"{golden} missing: run pytest --update-goldens"
    if produced.read_bytes() != golden.read_bytes():
        produced_lines = produced.read_text().splitlines()
        golden_lines = golden.read_text().splitlines()
        first = next(
            (i for i, (a, b) in enumerate(zip(produced_lines, golden_lines)) if a != b),
            min(len(produced_lines), len(golden_lines)),
        )
        pytest.fail(
            f"{golden.name} differs from line {first + 1}:\n"
            f"  golden:   {golden_lines[first] if first < len(golden_lines) else '<end>'}\n"
            f"  produced: {produced_lines[first] if first < len(produced_lines) else '<end>'}"
        )


def test_there_are_enough_scenarios():
    assert len(SCENARIOS) >= 5


@pytest.mark.parametrize("name", SCENARIOS)
def test_simulation_reproduces_the_golden_run(name, tmp_path, request):
    folder, config, settings = scenario(name)
    simulate_run(
        config,
        round(settings["duration_s"] * 1000),
        seed=settings.get("seed"),
        record=tmp_path / "events.jsonl",
        out=tmp_path / "decisions.jsonl",
    )
    check_or_update(request, tmp_path / "events.jsonl", folder / "events.jsonl")
    check_or_update(request, tmp_path / "decisions.jsonl", folder / "decisions.jsonl")


@pytest.mark.parametrize("name", SCENARIOS)
def test_solve_reproduces_the_golden_decisions(name, tmp_path, request):
    folder, _, _ = scenario(name)
    if not (folder / "events.jsonl").exists():
        pytest.fail(f"{name}: events.jsonl missing: run pytest --update-goldens")
    result = CliRunner().invoke(
        app,
        [
            "solve",
            str(folder / "events.jsonl"),
            "--config",
            str(folder / "config.toml"),
            "--out",
            str(tmp_path / "decisions.jsonl"),
        ],
    )
    assert result.exit_code == 0, result.output
    check_or_update(request, tmp_path / "decisions.jsonl", folder / "decisions.jsonl")


def test_past_30_pairs_every_tick_is_the_models_optimum_and_the_tie_breaks(monkeypatch):
    """The large-tick scenario: each tick with more pairs than the full model's 2^k
    tie-break can weigh is checked by the oracle: optimal, and the tie-break's one answer."""
    _, config, settings = scenario("long_waiting_lists")
    checked = []

    class Checked(CpSatPolicy):
        def solve(self, problem):
            solution = super().solve(problem)
            if pair_count(problem) > EXACT_PAIRS:
                assert oracle.objective_value(problem, solution, config.rules) == oracle.optimum(
                    problem, config.rules
                )
                assert oracle.is_the_tie_breaks_optimum(problem, solution, config.rules)
                checked.append(pair_count(problem))
            return solution

    monkeypatch.setattr("scheduler.engine.make_policy", lambda name, weights: Checked(weights))
    simulate_run(config, round(settings["duration_s"] * 1000))
    assert len(checked) >= 30 and max(checked) > 100
