"""A distributed region's processes (`hospital region scheduler | coordinator | world`), and
`hospital run --kafka --region`, which starts them all (`scheduler.distributed.region`)."""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from cli.common import fail, load_config, log_to_stderr, service_errors
from cli.region import CoordinatorOption, RegionOption, _check_coordinator, _load
from cli.service_commands import _check_run_id, _service_setup
from scheduler.config import Config

RegionRunId = Annotated[str, typer.Option(help="The region's run, shared by all its processes.")]


def _base(db: str | None) -> Config:
    """The broker and database of the environment (KAFKA_*, DATABASE_URL)."""
    settings = load_config(None)
    if db:
        from dataclasses import replace

        settings = replace(settings, database=replace(settings.database, url=db))
    if not settings.database.url.startswith("postgresql"):
        raise fail("a distributed region keeps its hospitals in PostgreSQL: set DATABASE_URL")
    return settings


def region_scheduler(
    config: RegionOption,
    run_id: RegionRunId,
    scheduler_id: Annotated[
        str | None,
        typer.Option(help="This process's name (default: host and pid).", show_default=False),
    ] = None,
) -> None:
    """A scheduler process of a distributed region: it serves the hospitals Kafka's group
    protocol assigns it, and takes over those of a process that dies."""
    from scheduler.distributed.region.host import RegionHost

    _check_run_id(run_id)
    region, base = _load(config), _base(None)
    stop, _ = _service_setup(None, None)
    with service_errors(), contextlib.suppress(KeyboardInterrupt):
        RegionHost(region, base, run_id=run_id, host_id=scheduler_id, stop=stop).serve()


def region_coordinator(
    config: RegionOption,
    run_id: RegionRunId,
    coordinator: CoordinatorOption = "cpsat",
    coordinator_id: Annotated[
        str,
        typer.Option(help="This coordinator's name in its lease (two coordinators: two names)."),
    ] = "coordinator",
) -> None:
    """The region's coordinator: offers each hospital's transfer requests to hospitals with
    room, refers out of the region those nobody takes in time. Start two (or more): one is
    active, the others wait as its standbys and take over within seconds of its death."""
    from scheduler.db.lease import LeaseHeld
    from scheduler.distributed.region.coordinator_service import CoordinatorService

    _check_run_id(run_id)
    _check_coordinator(coordinator)
    region, base = _load(config), _base(None)
    stop, _ = _service_setup(None, None)
    with service_errors(), contextlib.suppress(KeyboardInterrupt):
        service = CoordinatorService(
            region,
            base,
            run_id=run_id,
            coordinator=coordinator,
            coordinator_id=coordinator_id,
            stop=stop,
        )
        try:
            service.serve()
        except LeaseHeld as exc:
            raise fail(str(exc).replace("--scheduler-id", "--coordinator-id")) from None


def region_world(
    config: RegionOption,
    run_id: RegionRunId,
    seed: Annotated[
        int | None, typer.Option(help="The region's seed (default: region.seed).")
    ] = None,
) -> None:
    """The region's patients and staff: each hospital's arrivals, and each task dispatched
    reported done on time."""
    from scheduler.distributed.region.host import run_clock
    from scheduler.distributed.region.world import RegionWorld

    _check_run_id(run_id)
    region, base = _load(config), _base(None)
    stop, _ = _service_setup(None, None)
    with service_errors(), contextlib.suppress(KeyboardInterrupt):
        clock, until_ms = _begun(run_clock(region, base, run_id, stop), run_id, stop)
        if clock is None:
            return
        if until_ms is None:
            raise fail(f"run {run_id} has no end: the world sends patients until its end")
        RegionWorld(
            region, base, run_id=run_id, clock=clock, duration_ms=until_ms, seed=seed, stop=stop
        ).run()


def region_export(
    config: RegionOption,
    hospital: Annotated[str, typer.Option(help="The hospital whose run to export.")],
    events: Annotated[
        Path, typer.Option(help="Write its applied inbound events here (JSONL, with ticks).")
    ],
    out: Annotated[Path, typer.Option(help="Write its decisions here (JSONL).")],
    seed: Annotated[
        int | None, typer.Option(help="The region's seed (default: region.seed).")
    ] = None,
) -> None:
    """Export one hospital of a distributed region's run (the one its schema holds), for
    `hospital solve`, which replays it with the hospital's own scheduler: the same decisions,
    byte for byte."""
    from cli.common import check_outputs
    from scheduler import config as config_module
    from scheduler.db.ledger import Ledger
    from scheduler.distributed.region import members

    check_outputs(events=events, out=out)
    region, base = _load(config), _base(None)
    if hospital not in region.ids:
        raise fail(f"--hospital: {hospital!r} is not one of the region's ({', '.join(region.ids)})")
    settings = members.member_config(region, hospital, base)
    member_seed = region.member(hospital).seed(region.seed if seed is None else seed)
    with service_errors():
        ledger = Ledger(settings.database.url, settings, settings.scheduler.policy)
        try:
            if ledger.current_run() is None:
                raise fail(f"{members.schema_of(hospital)} holds no run")
            ledger.parse = _member_parse()
            header = (config_module.shareable(settings), member_seed)
            counted = ledger.export(events, out, header=header, region_member=hospital)
        finally:
            ledger.close()
    typer.echo(f"{counted[0]} events, {counted[1]} decisions")


def _member_parse():
    from scheduler.region import events as rev

    return rev.parse_member_event


def _begun(clock_and_end, run_id: str, stop) -> tuple:
    """The run's clock and end; an error if it was not begun in time (not when stopped)."""
    if clock_and_end[0] is None and not stop.is_set():
        raise fail(f"run {run_id} was not begun in time (hospital run --kafka --region begins it)")
    return clock_and_end


def run_region_distributed(
    region_name: str,
    db: str | None,
    duration_ms: int,
    speed: float,
    schedulers: int,
    coordinator: str,
    seed: int | None,
    report: Path | None,
    quiet: bool,
    dashboard: int | None = None,
    dashboard_hold: bool = False,
) -> None:
    """`hospital run --kafka --region`: start the region's processes, wait for the end of
    the run, print what it did; with `dashboard` (a port), the region's live page."""
    from cli.dashboard import following_region
    from scheduler.distributed.region.launch import Region, region_figures
    from scheduler.distributed.supervisor import SupervisorError

    _check_coordinator(coordinator)
    if schedulers < 1:
        raise fail("--schedulers: at least 1")
    region = _load(region_name)
    base = _base(db)
    log_to_stderr(logging.WARNING if quiet else logging.INFO)
    from scheduler.region.config import region_path

    launcher = Region(
        region_path(region_name),
        region,
        base,
        duration_ms=duration_ms,
        speed=speed,
        coordinator=coordinator,
        log_dir=Path("hospital-logs"),
        seed=seed,
    )
    page = (
        following_region(
            region,
            coordinator,
            base.database.url,
            launcher.run_id,
            dashboard,
            label=region_name,
            hold=dashboard_hold,
        )
        if dashboard is not None
        else contextlib.nullcontext()
    )
    try:
        with service_errors():
            with page as board:
                launcher.run(schedulers)
            figures = region_figures(region, base, launcher.run_id)
    except SupervisorError as exc:
        raise fail(str(exc), 1) from None
    except KeyboardInterrupt:
        raise fail("interrupted", 130) from None
    if report:
        report.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    _show(figures)
    typer.echo(f"processes' logs: {launcher.log_dir}/", err=True)
    if board is not None and dashboard_hold:
        board.hold()


def _show(figures: dict) -> None:
    table = Table(title=f"region run {figures['run_id']}")
    for column in ("hospital", "arrivals", "admitted", "requested", "accepted", "declined"):
        table.add_column(column, justify="left" if column == "hospital" else "right")
    for hospital_id, h in figures["hospitals"].items():
        table.add_row(
            hospital_id,
            *(str(h[k]) for k in ("arrivals", "admitted", "requested", "accepted", "declined")),
        )
    Console().print(table)
    region = figures["region"]
    travel = region["mean_travel_min"]
    Console().print(
        f"region: {region['arrivals']} arrivals, {region['transfers']} transfers"
        + (f" (mean drive {travel:.1f} min)" if travel is not None else "")
        + f", {region['referred_out']} referred out of the region "
        f"({100 * region['referred_out_rate']:.2f} %)"
    )
