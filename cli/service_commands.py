"""The distributed mode's services, each its own process: `hospital scheduler`,
`hospital generator`, `hospital worker ROLE`; and `hospital status` / `hospital export` to
look into a run kept in the database."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli.common import (
    ConfigOption,
    fail,
    frozen_heap,
    load_config,
    log_to_stderr,
    service_errors,
)

if TYPE_CHECKING:
    from scheduler.distributed.clock import LiveClock

RunId = Annotated[str, typer.Option(help="The run's id, shared by all its services.")]
Epoch = Annotated[
    float | None,
    typer.Option(
        help="Unix time at which simulated time 0 falls (default: now).", show_default=False
    ),
]
Speed = Annotated[float, typer.Option(help="Simulated seconds per wall second.")]
EpochFile = Annotated[
    Path | None,
    typer.Option(
        hidden=True,
        show_default=False,
        help="Once up, wait for this file and take --epoch from it (`hospital run --kafka`).",
    ),
]
Db = Annotated[
    str | None,
    typer.Option(
        help="Database URL (default: database.url, DATABASE_URL). Any local user reads a "
        "command line: a URL with a password belongs in DATABASE_URL.",
        show_default=False,
    ),
]


def _check_run_id(run_id: str | None) -> None:
    """A run id that could not be kept (too long, odd characters): one line, exit 2, before
    anything is touched."""
    from scheduler.db.basics import run_id_problem

    problem = None if run_id is None else run_id_problem(run_id)
    if problem is not None:
        raise fail(problem)


def _await_epoch(epoch_file: Path, stop: threading.Event) -> float | None:
    """The epoch in `epoch_file`, once the supervisor has written it (it does once every
    service has logged that it is up). None if stopped before."""
    while not stop.is_set():
        try:
            return float(epoch_file.read_text())
        except (OSError, ValueError):
            stop.wait(0.05)
    return None


def _service_setup(
    speed: float | None, epoch: float | None, epoch_file: Path | None = None
) -> tuple[threading.Event, LiveClock]:
    """The stop event and the run's clock. With `epoch_file`, the clock is the supervisor's,
    started in the background when the file appears: the service gets on with connecting
    meanwhile (its clock reads far before time 0 until then)."""
    from scheduler.distributed.clock import LiveClock
    from scheduler.distributed.supervisor import stop_with_supervisor

    log_to_stderr(logging.INFO)
    stop = threading.Event()
    # SIGTERM (the supervisor, a container runtime) ends a service as cleanly as Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop_with_supervisor()
    if speed is not None and not speed > 0:
        raise fail("--speed must be greater than 0 in the distributed mode")
    if epoch_file is None:
        return stop, LiveClock(time.time() if epoch is None else epoch, speed or 1.0)
    clock = LiveClock(time.time() + NOT_YET_S, speed or 1.0)

    def start_clock() -> None:
        epoch = _await_epoch(epoch_file, stop)
        if epoch is not None:
            clock.epoch_s = epoch

    threading.Thread(target=start_clock, name="clock", daemon=True).start()
    return stop, clock


NOT_YET_S = 10.0**9  # a clock not started yet: time 0 is decades away


def scheduler_service(
    run_id: Annotated[
        str | None,
        typer.Option(
            help="The run's id, shared by all its services. A run the database does not hold is "
            "started (the one it held is kept, see `hospital runs`); without it, the run "
            "the database holds is resumed.",
            show_default=False,
        ),
    ] = None,
    epoch: Annotated[
        float | None,
        typer.Option(
            help="Unix time at which simulated time 0 falls, for a new run (default: now); a "
            "resumed run keeps its own.",
            show_default=False,
        ),
    ] = None,
    speed: Annotated[
        float | None,
        typer.Option(
            help="Simulated seconds per wall second, for a new run (default: 1); a resumed run "
            "keeps its own.",
            show_default=False,
        ),
    ] = None,
    until_ms: Annotated[
        int | None,
        typer.Option(
            help="End the run at this simulated time (ms) (default: when stopped). Stored "
            "with the run: a resumed run, or one a standby takes over, ends when it was "
            "to end (another value is an error).",
            show_default=False,
        ),
    ] = None,
    epoch_file: EpochFile = None,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Start the run anew, even if the database holds it.")
    ] = False,
    standby: Annotated[
        bool,
        typer.Option(
            "--standby",
            help="Wait while another scheduler is active, and take over the run "
            "when it stops or dies (its lease expires).",
        ),
    ] = False,
    scheduler_id: Annotated[
        str | None,
        typer.Option(
            help="This scheduler's name in the lease (default: the host name). Two schedulers "
            "of one database need two names.",
            show_default=False,
        ),
    ] = None,
    db: Db = None,
    config: ConfigOption = None,
) -> None:
    """The scheduler service: consumes the inbound topic, decides each tick, keeps the run in
    the database and publishes the decisions. Restarted, it resumes where it stopped. One
    scheduler is active at a time (it holds a lease in the database); a --standby one waits
    and takes over within seconds of the active one's death."""
    from scheduler.db.lease import Lease, LeaseHeld, LeaseLost, default_scheduler_id
    from scheduler.db.ledger import Ledger
    from scheduler.db.store import StoreError, connect
    from scheduler.distributed.faults import Faults
    from scheduler.distributed.scheduler_service import Follower
    from scheduler.simulation import warm_up

    _check_run_id(run_id)
    settings = load_config(config)
    if standby and fresh:
        raise fail("--standby takes over the run the database holds: it cannot be --fresh")
    try:
        Faults.from_environment(-1)  # a typo in HOSPITAL_FAULT: said now, not mid-run
    except ValueError as exc:
        raise fail(str(exc)) from None
    stop, _ = _service_setup(speed, epoch)
    log = logging.getLogger("hospital.scheduler")
    url = db or settings.database.url
    with service_errors(), contextlib.suppress(KeyboardInterrupt):
        ledger: Ledger | None = Ledger(url, settings, settings.scheduler.policy)  # migrated
        warm_up(settings)  # before the run's clock: the first tick decides as fast as the rest
        if epoch_file is not None:  # up, the database migrated: the supervisor's clock
            logging.getLogger("hospital.service").info(
                "up: waiting for the run's clock in %s", epoch_file
            )
            epoch = _await_epoch(epoch_file, stop)
            if epoch is None:
                if ledger is not None:
                    ledger.close()
                return
        if standby:
            _check_resumable(ledger, run_id, epoch, speed, until_ms)
        lease = Lease(connect(url), scheduler_id or default_scheduler_id())
        follower = None
        try:
            while True:
                if standby:
                    follower = Follower(
                        settings, ledger or Ledger(url, settings, settings.scheduler.policy)
                    )
                    ledger = follower.ledger
                    log.info("scheduler %s: standby, waiting for the lease", lease.holder)
                try:
                    if not lease.wait(standby, stop, idle=follower and follower.follow):
                        return
                except LeaseHeld as exc:
                    raise fail(str(exc)) from None
                log.info("scheduler %s: active, lease epoch %d", lease.holder, lease.epoch)
                if ledger is None:
                    ledger = Ledger(url, settings, settings.scheduler.policy)
                else:
                    ledger.reload()  # another may have written since it was opened
                ledger.lease = lease
                try:
                    _lead(ledger, settings, run_id, epoch, speed, until_ms, fresh, stop, follower)
                    return
                except (LeaseLost, StoreError) as exc:
                    if not isinstance(exc, LeaseLost) and not lease.lost():
                        raise
                    log.warning("%s: stepping down to standby", exc)
                    ledger, standby, fresh = None, True, False
        finally:
            lease.release()
            lease.close()
            if ledger is not None:
                ledger.close()


def _check_resumable(
    ledger, run_id: str | None, epoch: float | None, speed: float | None, until_ms: int | None
) -> None:
    """A standby's options against the run the database holds already, if it is the run it
    is to take over: a clock or an end that disagrees is said now, not at the takeover."""
    from scheduler.distributed.scheduler_service import RunChoiceError, resolve_run

    current = ledger.current_run()
    if current is None or run_id not in (None, current.run_id):
        return
    try:
        resolve_run(ledger, run_id, epoch, speed, False, until_ms)
    except RunChoiceError as exc:
        raise fail(str(exc)) from None


def _lead(
    ledger,
    settings,
    run_id: str | None,
    epoch: float | None,
    speed: float | None,
    until_ms: int | None,
    fresh: bool,
    stop: threading.Event,
    follower=None,
) -> None:
    """The active scheduler's work: begin or resume the run and tick it to its end, the
    one stored with it if any (from the state a standby followed, if any)."""
    from cli.keeping import keeping_service
    from scheduler.distributed.scheduler_service import LiveScheduler, RunChoiceError, resolve_run

    try:
        run_id, clock, new, until_ms = resolve_run(ledger, run_id, epoch, speed, fresh, until_ms)
    except RunChoiceError as exc:
        raise fail(str(exc)) from None
    live = LiveScheduler(settings, ledger, run_id=run_id, clock=clock, until_ms=until_ms, stop=stop)
    try:
        live.start(fresh=new, warm=follower and follower.take(run_id, clock.epoch_s))
        with (
            keeping_service(ledger, settings, run_id, new_run=new, until_ms=until_ms, clock=clock),
            frozen_heap(),
        ):
            live.serve()
    finally:
        live.close()


def generator_service(
    run_id: RunId = "run-1",
    epoch: Epoch = None,
    speed: Speed = 1.0,
    duration_ms: Annotated[int, typer.Option(help="Send arrivals up to this simulated time.")] = 8
    * 3_600_000,
    seed: Annotated[
        int | None, typer.Option(show_default=False, help="Seed of the arrival process.")
    ] = None,
    epoch_file: EpochFile = None,
    config: ConfigOption = None,
) -> None:
    """The patient generator: sends `patient.arrived` to the inbound topic on time."""
    from scheduler.distributed.generator import run_generator

    _check_run_id(run_id)
    settings = load_config(config)
    stop, clock = _service_setup(speed, epoch, epoch_file)
    with service_errors(), contextlib.suppress(KeyboardInterrupt):
        run_generator(
            settings, run_id=run_id, clock=clock, duration_ms=duration_ms, seed=seed, stop=stop
        )


def worker_service(
    role: Annotated[str, typer.Argument(help="porter, medical or cleaner.")],
    run_id: RunId = "run-1",
    epoch: Epoch = None,
    speed: Speed = 1.0,
    until_ms: Annotated[
        int | None, typer.Option(help="Stop at this simulated time (ms).", show_default=False)
    ] = None,
    worker_id: Annotated[
        str | None, typer.Option(help="This worker's name.", show_default=False)
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(
            show_default=False,
            help="The run's seed, from which treatments and cleanings are drawn "
            "(default: arrivals.seed).",
        ),
    ] = None,
    epoch_file: EpochFile = None,
    config: ConfigOption = None,
) -> None:
    """A worker of one role: does the tasks dispatched to the role's staff and reports their
    completion. Several workers of one role share the work."""
    from scheduler.distributed.bus import ROLES
    from scheduler.distributed.worker import run_worker

    if role not in ROLES:
        raise fail(f"unknown role {role!r}: expected one of {', '.join(ROLES)}")
    _check_run_id(run_id)
    settings = load_config(config)
    stop, clock = _service_setup(speed, epoch, epoch_file)
    with service_errors(), contextlib.suppress(KeyboardInterrupt):
        run_worker(
            settings,
            role,
            run_id=run_id,
            clock=clock,
            worker_id=worker_id or f"{role}-worker",
            until_ms=until_ms,
            stop=stop,
            seed=seed,
        )


def status(db: Db = None, config: ConfigOption = None) -> None:
    """The rooms, staff and waiting lists of the run in the database."""
    from rich.console import Console

    from scheduler.db.status import hospital_status, status_tables

    settings = load_config(config)
    with service_errors():
        snapshot = hospital_status(db or settings.database.url)
    Console().print(*status_tables(snapshot))


def export(
    events: Annotated[
        Path | None,
        typer.Option(
            help="Write the applied inbound events here (JSONL, with their ticks).",
            show_default=False,
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Write the decisions here (JSONL).", show_default=False)
    ] = None,
    fhir: Annotated[
        Path | None,
        typer.Option(
            help="Write the run as a FHIR R4B transaction Bundle (JSON): its rooms, "
            "encounters and tasks at its end.",
            show_default=False,
        ),
    ] = None,
    db: Db = None,
    config: ConfigOption = None,
) -> None:
    """Export the run in the database: for `hospital solve`, which reproduces its decisions
    with nothing else given (the events start with the run's config and seed, as kept), or
    as FHIR (`--fhir`)."""
    from cli.common import check_outputs
    from cli.keeping import export_header
    from scheduler.db.ledger import Ledger

    if (events is None) != (out is None) or (events is None and fhir is None):
        raise fail("give --events and --out (for hospital solve), --fhir, or all three")
    check_outputs(events=events, out=out, fhir=fhir)
    settings = load_config(config)
    url = db or settings.database.url
    with service_errors():
        ledger = Ledger(url, settings, settings.scheduler.policy)
        try:
            header = export_header(ledger.engine)
            if events is not None and out is not None:
                counted = ledger.export(events, out, header=header)
                typer.echo(f"{counted[0]} events, {counted[1]} decisions")
            if fhir is not None:
                recorded = _recorded(header, settings)
                write_fhir(ledger, recorded, url, fhir)
        finally:
            ledger.close()
    if events is None:
        return
    if header is None:
        typer.echo(
            "the run is not kept (hospital runs): the events have no run header; give "
            "hospital solve the run's --config",
            err=True,
        )


def _recorded(header: Any, settings: Any) -> Any:
    """The run's own config, when the database keeps it: its rooms and travel model."""
    from scheduler import config as config_module

    if header is None:
        return settings
    try:
        return config_module.from_mapping(header[0], {})
    except config_module.ConfigError:
        return settings


def write_fhir(ledger: Any, settings: Any, url: str, path: Path) -> None:
    """The run's ticks through a `FhirView`, then its Bundle, as canonical JSON."""
    import json

    from dashboard.fhir import FhirView, run_start
    from scheduler import events as ev

    view = FhirView(settings, run_start(url))
    tick_ms = round(settings.scheduler.tick_s * 1000)
    for tick, inbound, decisions in ledger.history():
        view.apply(
            tick, tick * tick_ms, [ev.parse_json(d, ev.DECISIONS) for d in decisions], inbound
        )
    bundle = view.bundle()
    path.write_text(json.dumps(bundle, indent=1, sort_keys=True) + "\n")
    typer.echo(f"{len(bundle['entry'])} FHIR resources")
