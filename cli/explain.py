"""`hospital explain`: one patient's, staff member's or room's timeline from a decisions
file, with the reasons the scheduler gave (`[scheduler] explain`). The work is
`scheduler.explain.timeline`'s; this is the command line around it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from scheduler import events as ev
from scheduler import jsonl
from scheduler.explain import timeline


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"hospital: error: {message}", err=True)
    return typer.Exit(code)


def explain(
    decisions: Annotated[
        Path,
        typer.Argument(
            help="A decisions file (JSONL), e.g. from `hospital run --out` or `hospital solve "
            "--out`; with `[scheduler] explain = true` it carries the reasons.",
            show_default=False,
        ),
    ],
    patient: Annotated[
        str | None, typer.Option(help="A patient id, e.g. patient-12.", show_default=False)
    ] = None,
    staff: Annotated[
        str | None, typer.Option(help="A staff id, e.g. porter-1.", show_default=False)
    ] = None,
    room: Annotated[
        str | None, typer.Option(help="A room id, e.g. A1.", show_default=False)
    ] = None,
) -> None:
    """Print the timeline of one patient, staff member or room (give one of --patient,
    --staff and --room), with the reasons for each referral and dispatch. Exits with 1 when
    no decision is about them."""
    given = [
        option
        for option, value in (("--patient", patient), ("--staff", staff), ("--room", room))
        if value is not None
    ]
    if len(given) != 1:
        raise _fail(
            "give one of --patient ID, --staff ID or --room ID"
            + (f", not {' and '.join(given)} together" if given else "")
        )
    try:
        records = [r.event.to_dict() for r in jsonl.read(decisions, ev.DECISIONS)]
    except jsonl.LogError as exc:
        raise _fail(str(exc)) from None
    lines = timeline(records, patient=patient, staff=staff, room=room)
    if not lines:
        about = ", ".join(
            f"{name} {value}"
            for name, value in (("patient", patient), ("staff", staff), ("room", room))
            if value
        )
        typer.echo(f"hospital: no decision about {about} in {decisions}", err=True)
        raise typer.Exit(1)
    for line in lines:
        typer.echo(line)
