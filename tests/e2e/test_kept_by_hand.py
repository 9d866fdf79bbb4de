"""A run whose services are started by hand (`hospital scheduler`, `generator`, `worker`) is
kept like `hospital run`'s: `hospital runs` lists it, `hospital report` reports it with the
figures kept, and `hospital export` starts the events with the run's config and seed, so that
`hospital solve` reproduces its decisions with nothing else given, for a config that is not
the default. Against the real broker and database; every service its own process."""

from __future__ import annotations

import json
import re
import time
import uuid

import pytest

from scheduler import jsonl
from scheduler.distributed import bus

from .conftest import Services, Topics, hospital, jsonl_lines
from .test_distributed import (
    assert_solve_reproduces,
    common_args,
    export,
    wait_run_started,
    wait_scheduler_then_stop_rest,
)

pytestmark = [pytest.mark.services, pytest.mark.timeout(300)]

SPEED = 20
RUN_MS = 300_000  # 5 simulated minutes: 15 s of wall time at speed 20
STARTUP_S = 20  # time 0 this long after the start: a loaded machine is slow


def test_hand_started_services_keep_their_run_and_export_its_header(
    services: Services, topics: Topics, database, tmp_path
):
    config = tmp_path / "cd.toml"  # other floors: a replay with the defaults cannot match
    config.write_text('[hospital]\nfloors = ["C", "D"]\n')
    run_id = f"e2e-{uuid.uuid4().hex[:8]}"
    epoch = time.time() + STARTUP_S
    common = [*common_args(run_id, epoch, SPEED), "--config", str(config)]
    scheduler = services.start(
        "scheduler",
        "scheduler",
        *common,
        "--until-ms",
        str(RUN_MS),
        "--db",
        database.url,
        "--fresh",
    )
    # the others once the run is in the database, or their first messages would be older
    # than the run (however late they start, the generator sends what is due at once)
    wait_run_started(database.url, run_id, services, scheduler)
    others = [services.start("generator", "generator", *common, "--duration-ms", str(RUN_MS))]
    others += [
        services.start(
            f"{role}-worker",
            "worker",
            role,
            *common,
            "--until-ms",
            str(RUN_MS),
            "--worker-id",
            f"{role}-worker-1",
        )
        for role in bus.ROLES
    ]
    wait_scheduler_then_stop_rest(services, scheduler, others, epoch, SPEED, RUN_MS)

    listed = hospital(["runs", "--db", database.url, "--json"], topics.env)
    assert listed.returncode == 0, listed.stderr
    rows = {r["run_id"]: r for r in map(json.loads, listed.stdout.splitlines())}
    assert run_id in rows, f"the run is not listed: {listed.stdout}\n{services.logs()}"
    kept = rows[run_id]
    assert (kept["mode"], kept["status"]) == ("distributed", "finished"), kept
    assert kept["duration_s"] == RUN_MS / 1000
    assert kept["figures"]["arrivals"] > 0, services.logs()

    page = tmp_path / "report.html"
    made = hospital(["report", run_id, "--db", database.url, "--out", str(page)], topics.env)
    assert made.returncode == 0, made.stderr
    shown = dict(re.findall(r'<td data-figure="([^"]+)">([^<]*)</td>', page.read_text()))
    for key in ("arrivals", "admitted", "referred", "discharged", "ticks"):
        assert shown[key] == str(kept["figures"][key]), key

    events, decisions = export(database.url, topics.env, tmp_path)
    header = jsonl.header(events)
    assert header is not None, "the export has no run header"
    assert header["config"]["hospital"]["floors"] == ["C", "D"]
    assert header["seed"] == kept["seed"]
    assert {d["room_id"] for d in jsonl_lines(decisions) if "room_id" in d} <= {
        f"{floor}{n}" for floor in "CD" for n in (1, 2, 3)
    }
    assert_solve_reproduces(events, decisions, topics.env, tmp_path)  # no --config given
