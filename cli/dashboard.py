"""`hospital dashboard` and `hospital run --dashboard`: the live web page, thin over the
`dashboard` package."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.common import ConfigOption, fail, load_config

PortOption = Annotated[
    int, typer.Option(help="Port on 127.0.0.1 to serve the dashboard on (0: any free one).")
]
DEFAULT_PORT = 8050


def start_server(projection: Any, port: int, create: Any = None) -> Any:
    """The dashboard of `projection` on 127.0.0.1:`port`, its address said on stderr; the
    application `create` makes (default: the hospital's page)."""
    from dashboard.server import DashboardServer

    if not 0 <= port <= 65535:
        raise fail(f"dashboard: port {port}: expected a port from 0 to 65535")
    try:
        options = {"create": create} if create is not None else {}
        server = DashboardServer(projection, port=port, **options).start()
    except OSError as exc:
        raise fail(f"dashboard: cannot listen on 127.0.0.1:{port}: {exc.strerror}") from None
    typer.echo(f"dashboard: {server.url}", err=True)
    return server


class Board:
    """The dashboard beside an embedded run: `on_tick` for the run; `hold` keeps the page
    up after it until Ctrl-C."""

    def __init__(self, projection: Any, server: Any):
        self.projection, self.server = projection, server
        # (scheduler, result): one tick of the run (a page that follows a database: none)
        self.on_tick = getattr(projection, "on_tick", None)

    def hold(self) -> None:
        typer.echo(f"dashboard: the run is over; {self.server.url} stays up until Ctrl-C", err=True)
        try:
            with contextlib.suppress(KeyboardInterrupt):
                threading.Event().wait()
        finally:
            self.server.stop()


@contextlib.contextmanager
def embedded(
    settings: Any,
    port: int,
    hold: bool,
    duration_ms: int,
    kpi: Any,
    run_id: str | None = None,
    label: str | None = None,
) -> Iterator[Board]:
    """The dashboard for the length of an embedded run, whose KPIs `kpi` collects; with
    `hold`, the server stays up when the run is over, for `Board.hold`."""
    import time

    from dashboard.embedded import LiveProjection
    from dashboard.fhir import FhirView

    projection = LiveProjection.for_config(
        settings, kpi=kpi, run_id=run_id, label=label, duration_ms=duration_ms
    )
    fhir = projection.fhir = FhirView(settings, start_s=time.time())  # type: ignore[attr-defined]
    board = Board(projection, start_server(projection, port))
    board.on_tick = chain(board.on_tick, fhir.on_tick)
    stop = True
    try:
        yield board
        projection.finish(duration_ms)
        stop = not hold
    finally:
        if stop:
            board.server.stop()


@contextlib.contextmanager
def following_database(settings: Any, url: str, port: int) -> Iterator[None]:
    """The dashboard beside `hospital run --kafka`: it follows the new run in the database
    (not the one there before it) while the services run."""
    from dashboard import sources
    from dashboard.fhir import FhirProjection, FhirView, run_start

    before = sources.current_run(url)
    projection = FhirProjection.for_config(settings, fhir=FhirView(settings, run_start(url)))
    server = start_server(projection, port)
    lag = sources.KafkaLag(settings)
    thread, stop = sources.follower(
        sources.follow_database, projection, url, skip_run=before, lag=lag
    )
    try:
        yield
    finally:
        stop.set()
        thread.join(5)
        lag.close()
        projection.finish()
        server.stop()


@contextlib.contextmanager
def following_region(
    region: Any,
    coordinator: str,
    url: str,
    run_id: str,
    port: int,
    label: str | None = None,
    hold: bool = False,
) -> Iterator[Board]:
    """The region's live page beside `hospital run --kafka --region`: it follows run `run_id`
    in the hospitals' schemas (once it is begun) while the processes run, and at the end
    what is left; with `hold`, the server stays up when the run is over, for `Board.hold`."""
    from cli.common import service_errors
    from dashboard import sources
    from dashboard.app import create_region_app
    from dashboard.region import RegionView
    from dashboard.region_follow import RegionFollower

    view = RegionView(region, coordinator, label=label)
    with service_errors():
        follower = RegionFollower(view, url, run_id)
    server = start_server(view, port, create_region_app)
    thread, stop = sources.follower(follower.follow)
    over = False
    try:
        yield Board(view, server)
        over = True
    finally:
        stop.set()
        thread.join(5)
        if over and not thread.is_alive() and not view.finished:  # else: it drained already
            follower.drain()
        follower.close()
        if not (over and hold):
            server.stop()


def follow_region(name: str, url: str, run_id: str | None, port: int, coordinator: str) -> None:
    """`hospital dashboard --region`: the region's page of run `run_id` (default: the one its
    schemas hold), until Ctrl-C."""
    from cli.common import check_coordinator, load_region, service_errors
    from dashboard import sources
    from dashboard.app import create_region_app
    from dashboard.region import RegionView
    from dashboard.region_follow import RegionFollower, region_runs

    region = load_region(name)
    check_coordinator(coordinator)
    if not url.startswith("postgresql"):
        raise fail(
            "--region: a distributed region keeps its hospitals in PostgreSQL: give --db "
            "or set DATABASE_URL"
        )
    with service_errors():
        runs = [r.run_id for r in region_runs(url, region)]
    if not runs:
        raise fail(f"--region {name}: no run of the region in the database")
    if run_id is not None and run_id not in runs:
        raise fail(f"run {run_id!r} is not the region's run in the database ({runs[0]})")
    view = RegionView(region, coordinator, label=name)
    with service_errors():
        follower = RegionFollower(view, url, run_id or runs[0])
    server = start_server(view, port, create_region_app)
    thread, stop = sources.follower(follower.follow)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        thread.join(5)
        follower.close()
        server.stop()


def chain(*callbacks: Callable[[Any, Any], None] | None) -> Callable[[Any, Any], None] | None:
    """One `on_tick` calling each of these in turn (None for none)."""
    present = [c for c in callbacks if c is not None]
    if len(present) <= 1:
        return present[0] if present else None

    def on_tick(scheduler: Any, result: Any) -> None:
        for callback in present:
            callback(scheduler, result)

    return on_tick


def dashboard(
    follow: Annotated[
        Path | None,
        typer.Option(
            help="Follow a decisions file as a run writes it (hospital run --out FILE).",
            show_default=False,
        ),
    ] = None,
    db: Annotated[
        str | None,
        typer.Option(
            help="Follow the run kept in this database (default: database.url of the config), "
            "e.g. the one `hospital run --kafka` writes.",
            show_default=False,
        ),
    ] = None,
    run_id: Annotated[
        str | None,
        typer.Option(
            "--run-id", help="The run to follow: it must be the database's run.", show_default=False
        ),
    ] = None,
    kafka: Annotated[
        bool,
        typer.Option(
            "--kafka",
            help="With --db: also the scheduler's consumer lag, from the broker "
            "(kafka.bootstrap_servers).",
        ),
    ] = False,
    region: Annotated[
        str | None,
        typer.Option(
            help="Follow a distributed region's run (hospital run --kafka --region) in the "
            "database: its page of hospitals as tiles, transfers on the road, KPIs. A "
            "region.toml or a named region, as the run was given.",
            show_default=False,
        ),
    ] = None,
    coordinator: Annotated[
        str,
        typer.Option(
            help="With --region: the coordinator the page names (the database does not say; "
            "hospital run --kafka --region runs cpsat)."
        ),
    ] = "cpsat",
    port: PortOption = DEFAULT_PORT,
    config: ConfigOption = None,
) -> None:
    """A live web dashboard of a run in another process: rooms floor by floor, staff, waiting
    lists, KPI tiles and charts, with Prometheus metrics at /metrics; with --region, the
    region's page. Serves until Ctrl-C."""
    from cli.common import service_errors
    from dashboard import sources

    settings = load_config(config)
    if region is not None:
        if follow is not None or kafka:
            raise fail("--region follows the region's database: not with --follow or --kafka")
        follow_region(region, db or settings.database.url, run_id, port, coordinator)
        return
    from dashboard.fhir import FhirProjection, FhirView, run_start

    start_s = run_start(db or settings.database.url) if follow is None else 0.0
    projection = FhirProjection.for_config(
        settings, run_id=run_id, fhir=FhirView(settings, start_s)
    )
    lag = None
    target: Callable[..., None]  # a follower: of a decisions file, or of a database
    arg: Path | str
    if follow is not None:
        target, arg, options = sources.follow_file, follow, {}
    else:
        url = db or settings.database.url
        if run_id is not None:
            check_run(url, run_id)
        if kafka:
            with service_errors():
                lag = sources.KafkaLag(settings)
        target, arg, options = sources.follow_database, url, {"lag": lag}
    server = start_server(projection, port)
    thread, stop = sources.follower(target, projection, arg, **options)
    try:
        while thread.is_alive():
            thread.join(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        thread.join(5)
        if lag is not None:
            lag.close()
        server.stop()


def check_run(url: str, run_id: str) -> None:
    from sqlalchemy import text

    from cli.common import service_errors
    from scheduler.db.store import connect

    with service_errors():
        engine = connect(url)
    try:
        with engine.connect() as db:
            runs = [r[0] for r in db.execute(text("SELECT run_id FROM runs"))]
    finally:
        engine.dispose()
    if run_id not in runs:
        raise fail(
            f"run {run_id!r} is not in the database (it holds: {', '.join(runs) or 'no run'})"
        )
