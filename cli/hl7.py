"""`hospital hl7`: the MLLP listener that feeds a live run with ADT messages, and what it
answered (`scheduler.distributed.hl7_listener`, `scheduler.db.hl7`)."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.common import ConfigOption, DbOption, fail, load_config, service_errors

hl7_app = typer.Typer(
    help="HL7 v2: ADT messages in over MLLP, for a live run (see the README's HL7 section).",
    no_args_is_help=True,
)


@hl7_app.command("listen")
def listen(
    host: Annotated[
        str | None,
        typer.Option(help="Address to bind (default: hl7.host, 127.0.0.1).", show_default=False),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(help="Port (default: hl7.port, 2575; 0: any free one).", show_default=False),
    ] = None,
    db: DbOption = None,
    kafka: Annotated[
        bool | None,
        typer.Option(
            "--kafka/--embedded",
            help="Feed the distributed run (the inbound topic) rather than the embedded run "
            "of --db (default: kafka.enabled).",
            show_default=False,
        ),
    ] = None,
    tls_cert: Annotated[
        Path | None,
        typer.Option(
            help="PEM certificate chain: MLLP over TLS (with --tls-key).", show_default=False
        ),
    ] = None,
    tls_key: Annotated[
        Path | None, typer.Option(help="PEM private key of --tls-cert.", show_default=False)
    ] = None,
    send_to: Annotated[
        str | None,
        typer.Option(
            help="HOST:PORT of a downstream MLLP listener: the run's decisions as ADT^A02 "
            "(a patient in their room) and A20 (bed status) (default: hl7.send_to).",
            show_default=False,
        ),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Listen for ADT messages (A01, A04, A08, A11) over MLLP and feed them to the live run:
    the embedded run of the database (`hospital run --arrivals hl7`) or, with `--kafka`, the
    distributed run. Each message is answered with an ACK once kept: AA applied, AE its
    content refused (the reason in MSA-3 and ERR), AR not taken (send it again later)."""
    from scheduler.distributed.hl7_listener import (
        EmbeddedIntake,
        KafkaIntake,
        Listener,
        Worker,
        tls_context,
    )
    from scheduler.hl7.mapping import Fields

    settings = load_config(config)
    options = settings.hl7
    host = options.host if host is None else host
    port = options.port if port is None else port
    if not 0 <= port <= 65535:
        raise typer.BadParameter(f"{port}: expected a port from 0 to 65535", param_hint="--port")
    cert = str(tls_cert) if tls_cert else options.tls_cert
    key = str(tls_key) if tls_key else options.tls_key
    if bool(cert) != bool(key):
        raise fail("--tls-cert and --tls-key go together (MLLP over TLS)")
    tls = None
    if cert:
        try:
            tls = tls_context(cert, key)
        except (OSError, ValueError) as exc:
            raise fail(f"--tls-cert {cert}, --tls-key {key}: {exc}") from None
    url = db or settings.database.url
    distributed = settings.kafka.enabled if kafka is None else kafka
    with service_errors():
        intake: Any = KafkaIntake(settings, url) if distributed else EmbeddedIntake(url)
    worker = Worker(intake, Fields.of(options))

    def ready(bound_host: str, bound_port: int) -> None:
        mode = "the distributed run (Kafka)" if distributed else "the embedded run"
        scheme = "mllps" if tls else "mllp"
        typer.echo(f"listening on {scheme}://{bound_host}:{bound_port} for {mode}", err=True)
        print(f"port {bound_port}", flush=True)  # for scripts: the port, when 0 was asked

    listener = Listener(worker, host, port, tls, on_ready=ready)
    stop = listener.stop
    destination = options.send_to if send_to is None else send_to
    forwarder = None
    if destination:
        from scheduler.config import ConfigError
        from scheduler.distributed.hl7_forwarder import Forwarder

        try:
            settings.replace(hl7={"send_to": destination})  # checks HOST:PORT
        except ConfigError as exc:
            raise fail(f"--send-to: {str(exc).split(': ', 1)[1]}") from None
        with service_errors():
            forwarder = Forwarder(settings, url, destination, stop).start()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    try:
        listener.serve()
    except OSError as exc:
        raise fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    finally:
        stop.set()
        if forwarder is not None:
            forwarder.thread.join(timeout=15)
        worker.stop()
        intake.close()
    counts = worker.counts.by_code
    typer.echo(
        "answered " + ", ".join(f"{code} {counts[code]}" for code in ("AA", "AE", "AR")), err=True
    )


@hl7_app.command("status")
def status(db: DbOption = None, config: ConfigOption = None, run_id: str | None = None) -> None:
    """What the listener answered, by code, and the last messages not applied (the dead
    letters) with their reasons, for the latest run (or --run-id)."""
    from sqlalchemy import func, inspect, select

    from scheduler.db.hl7 import Hl7Message
    from scheduler.db.store import connect

    url = db or load_config(config).database.url
    with service_errors():
        engine = connect(url)
    try:
        if not inspect(engine).has_table("hl7_messages"):
            typer.echo("no HL7 messages (hospital db upgrade makes the tables)")
            return
        with engine.connect() as conn:
            run = (
                run_id
                or conn.execute(
                    select(Hl7Message.run_id).order_by(Hl7Message.message_id.desc()).limit(1)
                ).scalar()
            )
            if run is None:
                typer.echo("no HL7 messages")
                return
            counts = dict(
                conn.execute(
                    select(Hl7Message.code, func.count())
                    .where(Hl7Message.run_id == run)
                    .group_by(Hl7Message.code)
                ).all()
            )
            untaken = conn.execute(
                select(func.count()).where(
                    Hl7Message.run_id == run,
                    Hl7Message.event.is_not(None),
                    Hl7Message.taken_tick.is_(None),
                    Hl7Message.time_ms.is_(None),
                )
            ).scalar()
            dead = conn.execute(
                select(Hl7Message.control_id, Hl7Message.code, Hl7Message.reason)
                .where(Hl7Message.run_id == run, Hl7Message.code != "AA")
                .order_by(Hl7Message.message_id.desc())
                .limit(10)
            ).all()
    finally:
        engine.dispose()
    typer.echo(f"run {run}: " + ", ".join(f"{c} {counts.get(c, 0)}" for c in ("AA", "AE", "AR")))
    if untaken:
        typer.echo(f"{untaken} accepted and not (yet) taken by the run")
    for control_id, code, reason in dead:
        typer.echo(f"  {code} {control_id or '-'}: {reason}")
