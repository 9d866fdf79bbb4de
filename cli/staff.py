"""`hospital staff`: the staffing advisor. The search is `scheduler.staffing`'s (and by the
clock `scheduler.staffing_hourly`'s); this is the command line around it: parse, search,
print the answer with its intervals."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from cli.common import check_outputs, fail
from scheduler import scenarios
from scheduler.config import ConfigError
from scheduler.targets import TargetError, show, show_interval


def staff(
    hospital: Annotated[
        str,
        typer.Argument(
            help="The hospital: a scenario of scenarios/ by name, or a config file by its path.",
            show_default=False,
        ),
    ],
    target: Annotated[
        list[str],
        typer.Option(
            "--target",
            "-t",
            help="What the staffing must achieve, as FIGURE<VALUE (repeatable): referral<5%, "
            "wait.cleaner.mean<10m, wait.medical.p95<600, time_in_system<2h, "
            "sla_breaches<0.05, referral.esi2<1%, wait.medical.esi1.mean<60. Shares as 0.05 "
            "or 5%; times in seconds, or with s, m, h.",
            show_default=False,
        ),
    ],
    vary: Annotated[
        list[str] | None,
        typer.Option(
            "--vary",
            help="A role whose number to choose: porters, nurses, doctors, cleaners, or "
            "medical for both nurses and doctors (repeatable; default: all). The others stay "
            "as configured.",
            show_default=False,
        ),
    ] = None,
    replications: Annotated[
        int,
        typer.Option(
            min=1,
            help="Runs of each staffing tried, seeds 1..N: the same patients for every "
            "staffing, so that they compare fairly. A target is met when the upper end of "
            "the 95 % interval of its mean is below it, and the mean of the runs' second "
            "half too (a queue still growing is judged where it has got to).",
        ),
    ] = 5,
    check_replications: Annotated[
        int,
        typer.Option(
            min=2,
            help="Runs of the staffing found on fresh seeds (1001..), to check it on "
            "patients it was not chosen on.",
        ),
    ] = 10,
    hours: Annotated[
        float | None,
        typer.Option(
            min=0.01,
            help="Simulated hours judged in each run, after the warm-up (default 4; 72 "
            "when arrivals follow the clock: every hour of the day three times).",
            show_default=False,
        ),
    ] = None,
    warmup: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            help="Hours simulated first and left out of every figure, as an empty hospital "
            "flatters them (default: an hour, or the longest stay if longer).",
            show_default=False,
        ),
    ] = None,
    policy: Annotated[
        str | None,
        typer.Option(
            help="cpsat or greedy (default: scheduler.policy of the config).", show_default=False
        ),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="SECTION.KEY=VALUE over the config (repeatable; after the "
            "HOSPITAL_<SECTION>_<KEY> variables, which apply too).",
            show_default=False,
        ),
    ] = None,
    jobs: Annotated[
        int, typer.Option(min=1, help="Runs at once: processes here, or Dask workers.")
    ] = 1,
    engine: Annotated[
        str,
        typer.Option(
            help="Where the runs go: local (processes of this machine) or dask (a cluster: "
            "--engine-address, or a local one of --jobs workers; pip install '.[dask]').",
        ),
    ] = "local",
    engine_address: Annotated[
        str | None,
        typer.Option(
            help="The Dask scheduler to use, e.g. tcp://10.0.0.5:8786.", show_default=False
        ),
    ] = None,
    shift_lengths: Annotated[
        str,
        typer.Option(help="By the clock: the shift lengths a roster may use, in hours."),
    ] = "8,12",
    shift_starts: Annotated[
        str,
        typer.Option(
            help="By the clock: the hours of the day a shift may start at, e.g. 7,15,19 "
            "(default: every hour).",
            show_default=False,
        ),
    ] = "",
    out: Annotated[
        Path | None,
        typer.Option(
            help="Write the config with the staffing found (by the clock, with its [shifts] "
            "roster): a complete config file for hospital run --config.",
            show_default=False,
        ),
    ] = None,
    out_json: Annotated[
        Path | None,
        typer.Option(
            "--out-json",
            help="Write the whole answer as JSON: every figure with its interval, the "
            "search's steps, the hourly requirement and roster.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """The staffing advisor: the fewest staff per role that meets the targets, each figure
    with its 95 % interval, checked on fresh runs. It starts from queueing theory (the
    capacity bound, square-root staffing) and refines by simulation; a target that no
    staffing of the varied roles can meet is called infeasible, with what binds (the rooms,
    or a role held fixed). When arrivals follow the clock (arrivals.process = "profile") it
    staffs each hour of the day and covers that with a roster of shifts at least cost."""
    from scheduler import parallel, staffing, targets

    check_outputs(out=out, out_json=out_json)
    try:
        wanted = [targets.parse(text) for text in target]
        overrides = scenarios.overrides(os.environ, set_ or [])
        problem = staffing.Problem.load(hospital, wanted, vary or [], overrides)
        settings = staffing.Settings(
            replications=replications,
            hours=hours,
            warmup_h=warmup,
            check_replications=check_replications,
            policy=_policy(policy),
            shift_lengths=_hours_list("--shift-lengths", shift_lengths, 1, 24),
            shift_starts=_hours_list("--shift-starts", shift_starts, 0, 23) or tuple(range(24)),
        )
    except (TargetError, staffing.StaffingError, ConfigError) as exc:
        raise fail(str(exc)) from None
    console = Console(stderr=True)
    runs = [0]
    started = time.perf_counter()
    try:
        runner = parallel.runner(engine, jobs, engine_address)
    except parallel.EngineError as exc:
        raise fail(str(exc)) from None
    try:
        with console.status("searching") as status:

            def progress(batch: int) -> None:
                runs[0] += batch
                status.update(f"searching: {runs[0]} runs, {time.perf_counter() - started:.0f} s")

            advice = staffing.advise(problem, settings, runner, progress)
    except KeyboardInterrupt:
        raise fail("interrupted", 130) from None
    except ConfigError as exc:
        raise fail(str(exc)) from None
    finally:
        runner.close()
    typer.echo("\n".join(line.rstrip() for line in render(advice)))
    _write(advice, out, out_json)


def _policy(policy: str | None) -> str | None:
    if policy is not None and policy not in ("cpsat", "greedy"):
        raise ConfigError(f"--policy: expected cpsat or greedy, got {policy!r}")
    return policy


def _hours_list(option: str, text: str, low: int, high: int) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ConfigError(
            f"{option}: expected whole hours separated by commas, got {text!r}"
        ) from None
    if any(not low <= v <= high for v in values):
        raise ConfigError(f"{option}: each from {low} to {high}, got {text!r}")
    return values


def _write(advice, out: Path | None, out_json: Path | None) -> None:
    from scheduler import rostering, staffing

    try:
        if out is not None:
            config = staffing.staffed_config(advice)
            if config is not None:
                header = (
                    f"written by hospital staff from {advice.problem.scenario}, for "
                    + ", ".join(t.text for t in advice.problem.targets)
                )
                out.write_text(rostering.config_toml(config, header))
        if out_json is not None:
            out_json.write_text(json.dumps(staffing.advice_dict(advice), indent=2) + "\n")
    except OSError as exc:
        raise fail(f"{exc.filename}: {exc.strerror}") from None


# --- the answer, as text -----------------------------------------------------------------


def _counts(counts: dict[str, int], keys) -> str:
    return ", ".join(f"{counts[k]} {k}" for k in keys)


def _seeds(seeds) -> str:
    return f"seeds {seeds[0]}-{seeds[-1]}" if len(seeds) > 1 else f"seed {seeds[0]}"


def render(advice) -> list[str]:
    """The answer: what cannot be done, the staffing, its figures with their intervals on
    the search's seeds and on fresh ones, the evidence that it is minimal, the search."""
    problem, settings = advice.problem, advice.settings
    configured = problem.counts()
    fixed = [k for k in configured if k not in problem.vary]
    lines = [
        f"hospital staff {problem.scenario}: varying {', '.join(problem.vary)}"
        + (f"; {_counts(configured, fixed)} as configured" if fixed else ""),
        f"{settings.replications} runs of each staffing tried, {advice.hours:g} h each after a "
        f"{advice.warmup_h:g} h warm-up left out (seeds 1-{settings.replications}, the same for "
        f"every staffing; policy {advice.policy}). A target is met when the upper end of its "
        "95 % interval is below it, and the mean of the runs' second half too.",
        "",
    ]
    dropped = [e for e in problem.config.shifts.roster if e not in problem.fixed_roster()]
    if dropped and advice.hourly is None:
        lines += [
            f"The roster's {len(dropped)} entries for {', '.join(problem.vary)} are left out: "
            "the staffing found is on duty all the time.",
            "",
        ]
    for item in advice.infeasible:
        where = f" in hours {_hours(item.hours)}" if item.hours else ""
        lines.append(
            f"infeasible by {' and '.join(problem.vary)} alone: {item.target.text}{where}: "
            f"{item.reason}."
        )
    if advice.infeasible:
        lines.append("")
    if advice.hourly is not None:
        lines += _hourly_lines(advice)
    elif advice.staffing is None:
        lines.append("no staffing of the varied roles meets the other targets.")
    else:
        staffing = advice.staffing
        lines.append(
            "staffing: "
            + ", ".join(
                f"{staffing[k]} {k}"
                + (f" (configured {configured[k]})" if staffing[k] != configured[k] else "")
                for k in problem.vary
            )
        )
    lines += _figure_lines(advice)
    for neighbour in advice.neighbours:
        missed = "; ".join(_missed_text(t, neighbour.evaluation) for t in neighbour.missed)
        counts = dict(neighbour.evaluation.candidate)
        lines.append(f"minimal: {counts[neighbour.key]} {neighbour.key} miss {missed}")
    if advice.hourly is not None:
        rounds = len(advice.hourly.rounds)
        how = f"{rounds} rounds of the iterative staffing algorithm" + (
            "" if advice.hourly.stable else " (stopped before it was stable)"
        )
    else:
        how = " -> ".join(
            "/".join(str(n) for n in step["staffing"].values()) for step in advice.steps
        )
        how = f"{'/'.join(problem.vary)}: {how}" if how else "nothing to search"
    lines.append(f"search: {how}; {advice.runs} runs in {advice.wall_s:.1f} s ({advice.engine})")
    return lines


def _figure_lines(advice) -> list[str]:
    if advice.search is None:
        return []
    check = advice.check
    by_clock = advice.hourly is not None
    search_seeds = _seeds(advice.search.seeds)
    head = f"  {'target':<30} {'search (' + search_seeds + ')':<28}"
    if check is not None:
        head += f" {'fresh check (' + _seeds(check.seeds) + ')':<30}"
    lines = [head]
    for target in advice.problem.targets:
        row = f"  {target.text:<30} {_judged(target, advice.search, by_clock):<28}"
        if check is not None:
            row += f" {_judged(target, check, by_clock):<30}"
        lines.append(row)
    for evaluation, label in ((advice.search, "search"), (check, "check")):
        if evaluation is None or label == "search" and check is not None:
            continue
        busy = ", ".join(
            f"{role} {interval.mean:.1%} ± {interval.half_width or 0:.1%}"
            for role, interval in evaluation.utilisation.items()
        )
        lines.append(f"  busy ({label}): {busy}")
    return lines


def _judged(target, evaluation, by_clock: bool) -> str:
    """A target's figure, mean ± half-width, met or not; by the clock, with its worst hour
    (a per-hour target is judged in each hour)."""
    interval = evaluation.figures[target.metric]
    hours = evaluation.by_hour
    if by_clock and target.hourly and hours:
        worst = max(hours, key=lambda h: target.judged(hours[h][target.metric]))
        met = all(target.met_by(figures[target.metric]) for figures in hours.values())
        worst_text = show_interval(target.metric, hours[worst][target.metric])
        return (
            f"{show_interval(target.metric, interval)}, worst {worst:02d}h {worst_text} "
            f"{'met' if met else 'MISSED'}"
        )
    return (
        f"{show_interval(target.metric, interval)} {'met' if evaluation.met(target) else 'MISSED'}"
        + (
            f" (rising: {show(target.metric, evaluation.late[target.metric].mean)} in the "
            "second half)"
            if evaluation.rising(target)
            else ""
        )
    )


def _missed_text(target, evaluation) -> str:
    text = f"{target.metric} {show_interval(target.metric, evaluation.figures[target.metric])}"
    if evaluation.rising(target):
        text += f", rising to {show(target.metric, evaluation.late[target.metric].mean)}"
    return text


def _hours(hours) -> str:
    return ", ".join(f"{h:02d}h" for h in sorted(hours))


def _hourly_lines(advice) -> list[str]:
    hourly = advice.hourly
    lines = ["staff on duty by hour of day (required by the search / on the roster):"]
    lines.append("  " + " " * 9 + " ".join(f"{h:>3}" for h in range(24)))
    for key, requirement in hourly.requirement.items():
        plan = hourly.plans[key]
        lines.append(f"  {key:<9}" + " ".join(f"{n:>3}" for n in requirement))
        lines.append(f"  {'roster':<9}" + " ".join(f"{n:>3}" for n in plan.on_duty()))
    for key, plan in hourly.plans.items():
        lengths = sorted({length for _, length, _ in plan.shifts})
        extra = plan.cost / plan.required - 1 if plan.required else 0.0
        lines.append(
            f"roster: {plan.staff} {key} on shifts of {'/'.join(map(str, lengths))} h: "
            f"{plan.cost} staff-hours a day against {plan.required} required hour by hour "
            f"(+{extra:.1%})"
        )
    total, required = (
        sum(p.cost for p in hourly.plans.values()),
        sum(p.required for p in hourly.plans.values()),
    )
    if len(hourly.plans) > 1:
        lines.append(f"roster: {total} staff-hours a day in all against {required} required")
    lines.append("figures of the requirement (search) and of the roster (fresh check):")
    return lines
