"""`hospital region`: a regional network of hospitals in one process (`scheduler.region`):
run it, replay its record, compare its coordinators."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.common import (
    WarmupOption,
    check_coordinator,
    check_outputs,
    fail,
    load_region,
    parse_duration,
    parse_speed,
    parse_warmup,
)
from scheduler.jsonl import LogError
from scheduler.region import config as region_config
from scheduler.region.audit import RegionViolation
from scheduler.region.coordinator import COORDINATORS
from scheduler.validator import InvariantViolation

region_app = typer.Typer(
    help="A regional network: hospitals that transfer the patients they cannot take to a "
    "hospital with room (see the README's Regional network section).",
    no_args_is_help=True,
)

RegionOption = Annotated[
    str,
    typer.Option(
        "--config",
        help="The region: a region.toml, or a named region (region-5, region-20).",
    ),
]
CoordinatorOption = Annotated[
    str,
    typer.Option(help=f"Who decides the transfers: {', '.join(COORDINATORS)}."),
]


def _load(name: str) -> region_config.RegionConfig:
    return load_region(name)


_check_coordinator = check_coordinator


@region_app.command("run")
def run(
    config: RegionOption,
    duration: Annotated[str, typer.Option(help="Simulated time: 24h, 90m, 45s.")] = "24h",
    speed: Annotated[
        str, typer.Option(help="'max' (as fast as the CPU allows) or a multiple of real time.")
    ] = "max",
    coordinator: CoordinatorOption = "cpsat",
    seed: Annotated[
        int | None, typer.Option(help="The region's seed (default: region.seed).")
    ] = None,
    record: Annotated[
        Path | None, typer.Option(help="Write every hospital's inbound events (JSONL).")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Write every decision (JSONL).")] = None,
    report: Annotated[Path | None, typer.Option(help="Write the KPIs (JSON).")] = None,
    dashboard: Annotated[
        int | None,
        typer.Option(
            help="Serve a live page of the region on this port of 127.0.0.1 (0: any free "
            "one): the hospitals as tiles, the transfers on the road, the KPIs. Watch it "
            "with --speed N.",
            show_default=False,
        ),
    ] = None,
    dashboard_hold: Annotated[
        bool,
        typer.Option(
            "--dashboard-hold", help="With --dashboard: keep it up after the run, until Ctrl-C."
        ),
    ] = False,
) -> None:
    """Simulate the whole region in one process: each hospital's own scheduler, and the
    coordinator's transfers between them. Deterministic: the same region, seed and
    coordinator give the same decisions, byte for byte (with the dashboard on too)."""
    from scheduler.region.simulation import simulate_region

    _check_coordinator(coordinator)
    region = _load(config)
    duration_ms = parse_duration(duration)
    pace = parse_speed(speed)
    check_outputs(record=record, out=out, report=report)
    with _live_page(region, coordinator, duration_ms, dashboard, config) as page:
        try:
            result = simulate_region(
                region,
                coordinator,
                duration_ms,
                seed=seed,
                record=record,
                out=out,
                speed=pace,
                on_tick=page.view.apply if page else None,
            )
        except OSError as exc:
            raise fail(f"{exc.filename}: {exc.strerror}") from None
        except (InvariantViolation, RegionViolation) as exc:
            raise fail(f"invariant broken: {exc}", 1) from None
        if page:
            page.view.finish(duration_ms)
        _show(result.report)
        if report:
            report.write_text(json.dumps(result.report, indent=2, sort_keys=True) + "\n")
        if page and dashboard_hold:
            page.hold()


@dataclass
class _LivePage:
    """The region's live page: its view (`dashboard.region.RegionView`), fed every tick,
    and the server that serves it."""

    view: Any
    server: Any

    def hold(self) -> None:
        """Keep the page up after the run, until Ctrl-C."""
        typer.echo(f"dashboard: the run is over; {self.server.url} stays up until Ctrl-C", err=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


@contextlib.contextmanager
def _live_page(
    region: region_config.RegionConfig,
    coordinator: str,
    duration_ms: int,
    port: int | None,
    label: str,
) -> Iterator[_LivePage | None]:
    """The region's live page for the length of the run (None without `--dashboard`)."""
    if port is None:
        yield None
        return
    from cli.dashboard import start_server
    from dashboard.app import create_region_app
    from dashboard.region import RegionView

    view = RegionView(region, coordinator, duration_ms=duration_ms, label=label)
    server = start_server(view, port, create_region_app)
    try:
        yield _LivePage(view, server)
    finally:
        server.stop()


RecordedCoordinatorOption = Annotated[
    str | None,
    typer.Option(help="Who decides the transfers (default: the record's)."),
]


def _recorded_coordinator(recorded, given: str | None) -> str:
    """The coordinator given, else the one the record's header names."""
    chosen = given or recorded.header.get("coordinator")
    if not isinstance(chosen, str):
        raise fail("--coordinator: the record does not say which; give it")
    _check_coordinator(chosen)
    return chosen


def _warn_rejected(rejected: list[str]) -> None:
    if rejected:
        typer.echo(
            f"hospital: warning: {len(rejected)} recorded events did not fit the "
            f"replayed decisions (another coordinator or region?); the first: {rejected[0]}",
            err=True,
        )


@region_app.command("report")
def report_command(
    events: Annotated[Path, typer.Argument(help="A region's record (region run --record).")],
    config: RegionOption,
    coordinator: RecordedCoordinatorOption = None,
    out: Annotated[Path, typer.Option(help="The HTML file to write.")] = Path("report.html"),
    warmup: WarmupOption = None,
) -> None:
    """Write a region's run as one HTML file: the region's figures (referred out of the
    region, transfers and their travel, occupancy across hospitals), a table of the
    hospitals, the transfers from each hospital to each other, and plots (each hospital's
    occupancy over time, transfers and referrals out per hour). The record is replayed (as
    region solve does) to the run's own figures. It opens without a network."""
    from dashboard import region_report
    from scheduler.region.simulation import read_record, recorded_duration_ms

    region = _load(config)
    check_outputs(out=out)
    try:
        recorded = read_record(events, region)
        duration_ms = recorded_duration_ms(recorded)
    except LogError as exc:
        raise fail(str(exc)) from None
    try:
        warmup_ms = parse_warmup(warmup, duration_ms)
    except typer.BadParameter as exc:
        raise fail(f"--warmup: {exc}") from None
    chosen = _recorded_coordinator(recorded, coordinator)
    meta = {
        "region": config,
        "record": events.name,
        "coordinator": chosen,
        "seed": recorded.header.get("seed"),
        "simulated time (s)": duration_ms / 1000,
        "hospitals": ", ".join(region.ids),
    }
    if warmup_ms:
        meta["warm-up left out (s)"] = warmup_ms / 1000
    try:
        built = region_report.build(region, recorded, chosen, warmup_ms=warmup_ms, meta=meta)
    except LogError as exc:
        raise fail(str(exc)) from None
    except (InvariantViolation, RegionViolation) as exc:
        raise fail(f"invariant broken: {exc}", 1) from None
    _warn_rejected(built.rejected)
    title = f"{Path(config).stem}, {chosen}, {events.name}"
    try:
        region_report.write(built, title, out)
    except OSError as exc:
        raise fail(f"{out}: {exc.strerror}") from None
    typer.echo(f"report: {out}", err=True)


@region_app.command("solve")
def solve(
    events: Annotated[Path, typer.Argument(help="A region's record (region run --record).")],
    config: RegionOption,
    coordinator: RecordedCoordinatorOption = None,
    out: Annotated[Path | None, typer.Option(help="Write the decisions (JSONL).")] = None,
) -> None:
    """Replay a recorded region through its hospitals and coordinator, no simulation: the
    decisions of the recorded run, byte for byte, given the same region and coordinator."""
    from scheduler.region.simulation import read_record, replay_region

    region = _load(config)
    check_outputs(out=out)
    try:
        recorded = read_record(events, region)
    except LogError as exc:
        raise fail(str(exc)) from None
    chosen = _recorded_coordinator(recorded, coordinator)
    try:
        result = replay_region(region, recorded, chosen, out)
    except LogError as exc:
        raise fail(str(exc)) from None
    except (InvariantViolation, RegionViolation) as exc:
        raise fail(f"invariant broken: {exc}", 1) from None
    _warn_rejected(result.rejected)
    _show(result.report)


@region_app.command("bench")
def bench(
    scenario: Annotated[
        list[str] | None,
        typer.Option(help="A named region or region.toml (repeat; default: every named one)."),
    ] = None,
    coordinator: Annotated[
        list[str] | None, typer.Option(help="Coordinators to compare (repeat; default: all).")
    ] = None,
    replications: Annotated[int, typer.Option(min=1, help="Seeds 1..N, paired.")] = 10,
    duration: Annotated[str, typer.Option(help="Simulated time per run.")] = "24h",
    out_json: Annotated[Path | None, typer.Option(help="Write every figure (JSON).")] = None,
    out_md: Annotated[Path | None, typer.Option(help="Write the table (Markdown).")] = None,
) -> None:
    """Compare the coordinators on regions: patients referred out of the region, transfers
    and their mean travel time, over paired replications with 95 % intervals, and the
    region's fluid bound (the fewest referrals out any coordinator could reach)."""
    names = scenario or region_config.region_names()
    chosen = coordinator or list(COORDINATORS)
    for name in chosen:
        _check_coordinator(name)
    bench_regions(names, chosen, replications, parse_duration(duration), out_json, out_md)


def bench_regions(
    names: list[str],
    coordinators: list[str],
    replications: int,
    duration_ms: int,
    out_json: Path | None,
    out_md: Path | None,
) -> None:
    """The region bench's table on stdout, progress on stderr (`hospital region bench`, and
    `hospital bench --scenario region-5`)."""
    from scheduler.region.bench import run_region_bench, to_markdown

    for name in names:
        _load(name)
    check_outputs(out_json=out_json, out_md=out_md)

    def done(record: dict) -> None:
        typer.echo(
            f"{record['region']} {record['coordinator']} seed {record['seed']}: "
            f"{record['referred_out']} referred out, {record['transfers']} transfers "
            f"({record['wall_s']:.1f} s)",
            err=True,
        )

    try:
        result = run_region_bench(names, coordinators, replications, duration_ms, on_done=done)
    except KeyboardInterrupt:
        raise fail("interrupted", 130) from None
    table = to_markdown(result)
    typer.echo(table)
    try:
        if out_json:
            out_json.write_text(json.dumps(result, indent=2) + "\n")
        if out_md:
            out_md.write_text(table)
    except OSError as exc:
        raise fail(f"{exc.filename}: {exc.strerror}") from None


def _show(report: dict) -> None:
    region = report["region"]
    typer.echo(
        f"region ({region['coordinator']}): {region['arrivals']} arrivals, "
        f"{region['referred_out']} referred out of the region "
        f"({region['referred_out_rate']:.2%}), {region['transfers']} transfers, "
        f"mean travel {region['mean_transfer_travel_s'] / 60:.1f} min, "
        f"occupancy spread {region['occupancy_spread']:.3f}"
    )
    for hospital_id, figures in report["hospitals"].items():
        typer.echo(
            f"  {hospital_id}: {figures['arrivals']} arrivals, {figures['not_taken']} not "
            f"taken, {figures['transfers_out']} sent, {figures['transfers_in']} received, "
            f"{figures['referred_out']} referred out, occupancy {figures['room_occupancy']:.2f}"
        )
