"""The `hospital` command."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from cli import region_services, service_commands
from cli.bench import bench
from cli.common import (
    ConfigOption,
    DbOption,
    PolicyOption,
    StopSignals,
    WarmupOption,
    check_label,
    check_outputs,
    fail,
    frozen_heap,
    load_config,
    one_line,
    parse_duration,
    parse_speed,
    parse_warmup,
    service_errors,
    sqlite_file_missing,
    warn_about,
)
from cli.dashboard import dashboard
from cli.explain import explain
from cli.hl7 import hl7_app
from cli.region import region_app
from cli.report import report
from cli.runs import runs
from cli.staff import staff
from scheduler import config as config_module
from scheduler.config import Config, ConfigError
from scheduler.events import shown
from scheduler.jsonl import LogError
from scheduler.validator import InvariantViolation

app = typer.Typer(
    help="An event-driven hospital: patients, rooms, porters, medical staff and cleaners, "
    "scheduled tick by tick with OR-tools CP-SAT.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",  # docstrings' wrapped lines flow as one paragraph
)
db_app = typer.Typer(help="The database schema (Alembic migrations).", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(hl7_app, name="hl7")
app.add_typer(region_app, name="region")


@app.command()
def run(
    duration: Annotated[
        str, typer.Option(help="Simulated time to run: 8h, 30m, 1h30m, 45s.")
    ] = "8h",
    speed: Annotated[
        str,
        typer.Option(
            help="Simulated seconds per wall second, or 'max' to run as fast as the CPU allows."
        ),
    ] = "1",
    seed: Annotated[
        int | None,
        typer.Option(
            help="Seed of the arrival process (default: arrivals.seed of the config).",
            show_default=False,
        ),
    ] = None,
    policy: PolicyOption = None,
    config: ConfigOption = None,
    record: Annotated[
        Path | None,
        typer.Option(
            help="Write the inbound events, each with the tick that consumed it, as JSONL.",
            show_default=False,
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Write the decisions as JSONL.", show_default=False)
    ] = None,
    report: Annotated[
        Path | None, typer.Option(help="Write the KPI report as JSON.", show_default=False)
    ] = None,
    db: Annotated[
        str | None,
        typer.Option(
            help="Database URL (default: database.url of the config, a SQLite file; "
            "DATABASE_URL). Any local user reads a command line: a URL with a password "
            "belongs in DATABASE_URL.",
            show_default=False,
        ),
    ] = None,
    no_db: Annotated[bool, typer.Option("--no-db", help="Keep nothing in a database.")] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No live view or progress bar.")
    ] = False,
    kafka: Annotated[
        bool | None,
        typer.Option(
            "--kafka/--embedded",
            help="Run the services as separate processes over Kafka, the run "
            "kept in --db (default: kafka.enabled of the config).",
            show_default=False,
        ),
    ] = None,
    workers: Annotated[
        str,
        typer.Option(
            help="With --kafka: worker processes per role, e.g. porter=2,medical=1,cleaner=1."
        ),
    ] = "porter=1,medical=1,cleaner=1",
    dashboard: Annotated[
        bool,
        typer.Option(
            "--dashboard",
            help="Serve a live web dashboard of the run (and /metrics; with --region, the "
            "region's page).",
        ),
    ] = False,
    dashboard_port: Annotated[
        int, typer.Option(help="With --dashboard: its port on 127.0.0.1 (0: any free one).")
    ] = 8050,
    dashboard_hold: Annotated[
        bool,
        typer.Option(
            "--dashboard-hold", help="With --dashboard: keep it up after the run, until Ctrl-C."
        ),
    ] = False,
    warmup: WarmupOption = None,
    label: Annotated[
        str | None,
        typer.Option(
            help="A name for the run, shown by hospital runs, its reports and its dashboard "
            "(and kept in its --record log).",
            show_default=False,
        ),
    ] = None,
    arrivals: Annotated[
        str,
        typer.Option(
            help="Where patients come from: generator (the config's arrival process), hl7 "
            "(hospital hl7 listen's ADT messages only) or generator+hl7.",
        ),
    ] = "generator",
    region: Annotated[
        str | None,
        typer.Option(
            help="With --kafka: run a region (a region.toml or a named region) over scheduler "
            "processes that share its hospitals, a coordinator and its standby (see the "
            "README's Regional network section).",
            show_default=False,
        ),
    ] = None,
    schedulers: Annotated[
        int, typer.Option(help="With --kafka --region: scheduler processes.")
    ] = 3,
) -> None:
    """Run the whole hospital: patients arrive, the scheduler books rooms and dispatches
    porters, medical staff and cleaners, tick by tick. Prints the KPIs at the end, with the
    capacity bound and the role that binds it."""
    from cli.view import LiveView, ProgressView, clock_text, summary_table
    from scheduler.runs import new_kpi, simulate_run

    duration_ms = parse_duration(duration)
    warmup_ms = parse_warmup(warmup, duration_ms)
    label = check_label(label)
    speed_value = parse_speed(speed)
    check_outputs(record=record, out=out, report=report)
    if seed is not None and not config_module.MIN_SEED <= seed <= config_module.MAX_SEED:
        raise typer.BadParameter(f"{seed}: a seed fits in 64 bits", param_hint="--seed")
    if not 0 <= dashboard_port <= 65535:
        raise typer.BadParameter(
            f"{dashboard_port}: expected a port from 0 to 65535", param_hint="--dashboard-port"
        )
    if arrivals not in ARRIVALS:
        raise typer.BadParameter(
            f"{arrivals!r}: expected one of {', '.join(ARRIVALS)}", param_hint="--arrivals"
        )
    from_hl7, generate = "hl7" in arrivals, "generator" in arrivals
    if from_hl7 and speed_value is None:
        raise fail("--arrivals with hl7 runs on the wall clock: give --speed a number")
    if from_hl7 and no_db and not kafka:
        raise fail("--arrivals with hl7 needs the database, where the listener keeps them")
    if region is not None:
        if not kafka or speed_value is None:
            raise fail(
                "--region runs the distributed region: give --kafka and a --speed number "
                "(hospital region run simulates one in a process)"
            )
        from cli.region_services import run_region_distributed

        run_region_distributed(
            region,
            db,
            duration_ms,
            speed_value,
            schedulers,
            "cpsat",
            seed,
            report,
            quiet,
            dashboard=dashboard_port if dashboard else None,
            dashboard_hold=dashboard_hold,
        )
        return
    settings = load_config(config, policy)
    warn_about(settings)
    if kafka if kafka is not None else settings.kafka.enabled:
        if speed_value is None:
            raise fail("the distributed mode runs on the wall clock: give --speed a number")
        if policy is not None:
            raise fail(
                "with --kafka, set the policy in the config (scheduler.policy) so "
                "that every service uses it"
            )
        from cli.dashboard import following_database
        from cli.distributed import run_distributed
        from cli.keeping import keep_distributed

        url = db or settings.database.url
        started = time.time()
        with (
            following_database(settings, url, dashboard_port)
            if dashboard
            else contextlib.nullcontext()
        ):
            run_distributed(
                settings,
                config,
                url,
                duration_ms,
                speed_value,
                seed,
                parse_workers(workers),
                record,
                out,
                report,
                quiet,
                warmup_ms,
                generate=generate,
            )
        with service_errors():
            keep_distributed(
                url,
                settings,
                seed,
                duration_ms,
                started,
                label,
                config.name if config else None,
                warmup_ms,
            )
        return
    from cli import dashboard as web
    from cli.keeping import keeping

    console = Console(stderr=True)
    view: ProgressView | LiveView | None
    if quiet:
        view = None
    elif speed_value is None:
        view = ProgressView(console, duration_ms)
    else:
        view = LiveView(console)
    # From here to the report, a signal stops the run at a tick boundary; a Ctrl-C at its
    # very end (the store's last commit, the copy of the kept run) waits for it.
    signals = StopSignals()
    kpi = new_kpi(settings, warmup_ms)  # the run's KPIs, which its dashboard reads
    try:
        with signals:
            store = None if no_db else open_store(db or settings.database.url, settings)
            with (
                service_errors(),
                (
                    keeping(
                        db or settings.database.url,
                        settings,
                        seed,
                        duration_ms,
                        label,
                        config.name if config else None,
                    )
                    if store is not None
                    else contextlib.nullcontext()
                ) as kept,
                (
                    web.embedded(
                        settings,
                        dashboard_port,
                        dashboard_hold,
                        duration_ms,
                        kpi,
                        kept.run_id if kept else None,
                        label,
                    )
                    if dashboard
                    else contextlib.nullcontext()
                ) as board,
                view or contextlib.nullcontext(),
                (
                    hl7_inbox(db or settings.database.url, kept.run_id)
                    if from_hl7 and kept
                    else contextlib.nullcontext()
                ) as inbox,
            ):
                with frozen_heap():
                    figures = simulate_run(
                        settings,
                        duration_ms,
                        speed=speed_value,
                        seed=seed,
                        store=store,
                        record=record,
                        out=out,
                        on_tick=web.chain(view, board.on_tick if board else None),
                        stop=signals.stop,
                        kpi=kpi,
                        header=run_header(duration_ms, label),
                        source=inbox,
                        generate=generate,
                    )
                figures.update(run_identity(settings, seed, kept.run_id if kept else None, label))
                figures["capacity"] = run_bound(settings, figures, warmup_ms)
                interrupted = "interrupted_at_ms" in figures
                if interrupted:
                    figures["interrupted_by"] = signal.Signals(signals.received).name
                if kept is not None:
                    kept.figures = figures
            if report:
                report.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    except KeyboardInterrupt:
        raise fail("interrupted", 130) from None
    except OSError as exc:
        raise fail(f"{exc.filename}: {exc.strerror}") from None
    except InvariantViolation as exc:  # a scheduler's bug, said in one line
        raise fail(f"invariant broken: {exc}", 1) from None
    Console().print(summary_table(figures, settings.scheduler.tick_s))
    if interrupted:
        if board is not None and dashboard_hold:
            board.server.stop()  # a run told to stop does not hold its dashboard up
        typer.echo(
            f"hospital: stopped by {figures['interrupted_by']} at "
            f"{clock_text(figures['interrupted_at_ms'])} of simulated time",
            err=True,
        )
        raise typer.Exit(128 + signals.received)
    if board is not None and dashboard_hold:
        board.hold()


ARRIVALS = ("generator", "hl7", "generator+hl7")


@contextlib.contextmanager
def hl7_inbox(url: str, run_id: str):
    """The run's inbox of HL7 messages (`hospital hl7 listen`): open while the run goes."""
    from scheduler.db.hl7 import Inbox

    with service_errors():
        inbox = Inbox(url, run_id)
    try:
        yield inbox
    finally:
        inbox.close()


def run_identity(
    settings: Config, seed: int | None, run_id: str | None, label: str | None = None
) -> dict:
    """What a KPI report says of the run that made it: its id (when kept), label (when
    given), seed, and the whole resolved config (the policy is there already), with the seed
    the run drew its patients from."""
    from scheduler.db.basics import safe_url

    resolved = config_module.to_mapping(settings)
    resolved["database"]["url"] = safe_url(resolved["database"]["url"])
    if seed is not None:
        resolved["arrivals"]["seed"] = seed
    identity = {"seed": resolved["arrivals"]["seed"], "config": resolved}
    if run_id is not None:
        identity["run_id"] = run_id
    if label is not None:
        identity["label"] = label
    return identity


def run_header(duration_ms: int, label: str | None) -> dict:
    """What a `--record` log's header says of the run beside its config and seed: its planned
    duration, and its label if given (`hospital report` of the files shows them)."""
    header: dict = {"duration_s": duration_ms / 1000}
    if label is not None:
        header["label"] = label
    return header


def run_bound(settings: Config, figures: dict, warmup_ms: int) -> dict:
    """The capacity bound of the run's hospital (`scheduler.capacity`), over the time its
    figures cover: the long run's with its bottleneck, and hour by hour."""
    from scheduler.capacity import run_bound as bound

    return bound(settings, round(figures["duration_s"] * 1000), warmup_ms)


MAX_WORKERS = 64  # processes per role: more would only crowd the machine


def parse_workers(text: str) -> dict[str, int]:
    counts = {"porter": 1, "medical": 1, "cleaner": 1}
    for part in filter(None, (p.strip() for p in text.split(","))):
        role, _, count = part.partition("=")
        if (
            role not in counts
            or not re.fullmatch(r"[0-9]{1,3}", count)
            or not 1 <= int(count) <= MAX_WORKERS
        ):
            raise typer.BadParameter(
                f"{part!r}: expected ROLE=COUNT, ROLE one of "
                f"porter, medical, cleaner and COUNT from 1 to "
                f"{MAX_WORKERS}",
                param_hint="--workers",
            )
        counts[role] = int(count)
    return counts


def open_store(url: str, settings: Config):
    from scheduler.db.store import SqlStore

    with service_errors():
        return SqlStore(url, settings, settings.scheduler.policy)


def replay_config(events: Path, config: Path | None, policy: str | None) -> Config:
    """The config of the run that recorded `events` (its header), or the one given; both
    given must agree on everything that decides, or nothing would replay. So must the
    `HOSPITAL_*` variables: one that would decide differently is refused as `--config` is;
    the others (where the database and the broker are) change nothing in a replay."""
    from scheduler import jsonl

    header = jsonl.header(events)
    if header is None:
        return load_config(config, policy)
    recorded = _recorded_config(events, header)
    given = load_config(config, policy) if config else _with_environment(header["config"], policy)
    changed = config_module.differences(
        config_module.to_mapping(recorded), config_module.to_mapping(given)
    )
    if changed:
        raise fail(_another_config(events, changed, config, policy))
    return given


def region_member(events: Path) -> dict[str, Any]:
    """How to replay a log of one hospital of a distributed region (`hospital region
    export`): by a member's scheduler, with the region's events; nothing for another log."""
    from scheduler import jsonl

    header = jsonl.header(events) or {}
    hospital_id = header.get("region_member")
    if hospital_id is None:
        return {}
    if not isinstance(hospital_id, str) or not hospital_id:
        raise fail(f"{events}:1: the run header's region_member must be a hospital id")
    from scheduler.region import events as rev
    from scheduler.region.member import MemberScheduler

    return {
        "make": lambda c: MemberScheduler(c, hospital_id, requests_transfers=True),
        "parse": rev.parse_member_data,
    }


def _another_config(
    events: Path, changed: list[str], config: Path | None, policy: str | None
) -> str:
    """Why a log is not replayed: the keys that differ, each with the variable that set it,
    and what to leave out to replay it as recorded."""
    set_by = {
        key: config_module.variable_of(key)
        for key in changed
        if config_module.variable_of(key) in os.environ
        and not (policy and key == "scheduler.policy")  # --policy wins over the variable
    }
    keys = [f"{key} ({set_by[key]})" if key in set_by else key for key in changed]
    options = [option for option, given in (("--config", config), ("--policy", policy)) if given]
    undo = [f"leave out {' and '.join(options)}"] if options else []
    undo += [f"unset {', '.join(set_by.values())}"] if set_by else []
    return (
        f"{events} was recorded with another config: {', '.join(keys[:5])}"
        f"{' ...' if len(keys) > 5 else ''} differ ({' and '.join(undo)} to replay it as "
        f"recorded)"
    )


def _recorded_config(events: Path, header: dict) -> Config:
    """The config and seed of a log's run header, checked: one line naming the field if
    either cannot be used."""
    if "config" not in header:
        raise fail(f"{events}:1: the run header has no config")
    if not isinstance(header["config"], dict):
        raise fail(f"{events}:1: the run header's config must be a JSON object")
    seed = header.get("seed")
    if (
        isinstance(seed, bool)
        or not isinstance(seed, int)
        or not config_module.MIN_SEED <= seed <= config_module.MAX_SEED
    ):
        raise fail(
            f"{events}:1: the run header's seed must be an integer of 64 bits, got "
            f"{shown(seed) if 'seed' in header else 'none'}"
        )
    try:
        return config_module.from_mapping(header["config"], {})
    except ConfigError as exc:
        raise fail(f"{events}:1: the run header's config cannot be used: {exc}") from None


def _with_environment(recorded: dict, policy: str | None) -> Config:
    """The recorded config with the `HOSPITAL_*` variables (and `DATABASE_URL`, ...) over it,
    as any other command takes them over its config file, and `--policy` over them."""
    try:
        config = config_module.from_mapping(recorded, os.environ)
        return config.replace(scheduler={"policy": policy}) if policy else config
    except ConfigError as exc:
        raise fail(f"config: {exc}") from None


@app.command()
def solve(
    events: Annotated[
        Path,
        typer.Argument(
            help="A recorded event log (JSONL), e.g. from `hospital run --record`.",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            help="Write the decisions here as JSONL (default: standard output).", show_default=False
        ),
    ] = None,
    report: Annotated[
        Path | None, typer.Option(help="Write the KPI report as JSON.", show_default=False)
    ] = None,
    policy: PolicyOption = None,
    config: ConfigOption = None,
    warmup: WarmupOption = None,
) -> None:
    """Dry run: replay a recorded event log through the scheduler, with no broker and no
    database, and write its decisions: byte for byte the decisions of the run that recorded
    the log. A log of `hospital run --record` names its config and policy, so nothing else is
    needed: a `--config`, `--policy` or `HOSPITAL_*` variable that would decide otherwise is
    refused, naming it (variables that decide nothing, such as where the broker is, are
    taken). A log without a header (written by hand, or exported from a run that is not
    kept) takes `--config` and `--policy`."""
    from scheduler import jsonl
    from scheduler.runs import replay

    check_outputs(out=out, report=report)
    warmup_ms = parse_warmup(warmup)
    settings = replay_config(events, config, policy)
    member = region_member(events)
    try:
        if out is None:
            result = replay(
                settings,
                events,
                on_decisions=lambda ds: jsonl.write(sys.stdout, ds),
                warmup_ms=warmup_ms,
                **member,
            )
        else:
            result = replay(settings, events, out, warmup_ms=warmup_ms, **member)
    except LogError as exc:
        raise fail(str(exc)) from None
    except InvariantViolation as exc:
        raise fail(f"invariant broken: {exc}", 1) from None
    if report:
        result.report["capacity"] = run_bound(settings, result.report, warmup_ms)
        report.write_text(json.dumps(result.report, indent=2, sort_keys=True) + "\n")
    for line in result.rejected:
        typer.echo(one_line(f"hospital: rejected: {events}:{line}"), err=True)
    if result.rejected:
        raise fail(f"{len(result.rejected)} event(s) rejected", 1)


def _migration(action: str, db: str | None, config: Path | None) -> None:
    """Run `migrate.<action>` on the database, with one-line errors."""
    from scheduler.db import migrate
    from scheduler.db.store import connect, reason

    url = db or load_config(config).database.url
    missing = sqlite_file_missing(url)
    if missing and action == "check":  # alembic would create an empty file to check it
        raise fail(f"no database at {missing} (hospital db upgrade creates it)", 3)
    with service_errors():
        connect(url).dispose()  # a clear error for a database that is not there
    try:
        getattr(migrate, action)(url)
    except Exception as exc:  # alembic's: drift found, a failed migration
        raise fail(f"{action}: {reason(exc)}", 1) from None


@db_app.command("upgrade")
def db_upgrade(db: DbOption = None, config: ConfigOption = None) -> None:
    """Create or migrate the schema to the latest version."""
    _migration("upgrade", db, config)
    typer.echo("schema up to date")


@db_app.command("check")
def db_check(db: DbOption = None, config: ConfigOption = None) -> None:
    """Fail if the tables and the migrations disagree (Alembic's check)."""
    _migration("check", db, config)
    typer.echo("models and migrations agree")


# The commands of their own modules, each registered under its name.
app.command("scheduler")(service_commands.scheduler_service)
region_app.command("scheduler")(region_services.region_scheduler)
region_app.command("coordinator")(region_services.region_coordinator)
region_app.command("world")(region_services.region_world)
region_app.command("export")(region_services.region_export)
app.command("generator")(service_commands.generator_service)
app.command("worker")(service_commands.worker_service)
app.command("status")(service_commands.status)
app.command("export")(service_commands.export)
app.command("bench")(bench)
app.command("staff")(staff)
app.command("dashboard")(dashboard)
app.command("report")(report)
app.command("runs")(runs)
app.command("explain")(explain)
