"""The run as FHIR R4B: every resource served or exported parses with fhir.resources in
strict mode, and the rooms' operationalStatus, the encounters' locations and the tasks'
statuses match the dashboard's state projection at the same tick. The API searches by
status and _lastUpdated; `hospital export --fhir` writes a transaction Bundle."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.encounter import Encounter
from fhir.resources.R4B.location import Location
from fhir.resources.R4B.task import Task

from dashboard.app import create_app
from dashboard.fhir import FhirProjection, FhirView
from dashboard.projection import Projection
from scheduler import config as config_module
from scheduler.runs import simulate_run

ROOT = Path(__file__).resolve().parents[2]
MODELS = {"Location": Location, "Encounter": Encounter, "Task": Task}


def clinical_config(travel: str = "layout") -> config_module.Config:
    return config_module.load(None, {}).replace(
        travel={"model": travel},
        arrivals={
            "process": "poisson",
            "acuity_mix": [0.1, 0.2, 0.4, 0.2, 0.1],
            "isolation_share": 0.2,
        },
        hospital={"isolation_rooms": ["A1", "B1"]},
        scheduler={"explain": True},
    )


def strict(resource: dict) -> None:
    MODELS[resource["resourceType"]].model_validate(resource, strict=True)


def bed_codes(state: str, isolated: bool, terminal: bool) -> str:
    """What table 0116 says of a room the projection shows in `state`."""
    if state == "free":
        return "U"
    if state in ("booked", "occupied"):
        return "I" if isolated else "O"
    return "K" if terminal else "H"


def compare(projection: Projection, view: FhirView, isolated: set[str], terminal: set[str]) -> None:
    """The FHIR view against the projection, at the same tick."""
    locations = {r["id"]: r for r in view.resources("Location")}
    for room in projection.rooms.values():
        code = locations[room.room_id]["operationalStatus"]["code"]
        want = bed_codes(room.state, room.patient_id in isolated, room.room_id in terminal)
        assert code == want, (room, code)
    in_rooms = {r.patient_id: r for r in projection.rooms.values() if r.patient_id}
    placed = {}
    for encounter in view.resources("Encounter"):
        for place in encounter.get("location", []):
            if place["status"] in ("planned", "active"):
                placed[encounter["identifier"][0]["value"]] = (
                    place["location"]["reference"].split("/")[1],
                    place["status"],
                    encounter["status"],
                )
    assert set(placed) == set(in_rooms)
    for patient_id, (room_id, status, encounter_status) in placed.items():
        room = in_rooms[patient_id]
        assert room_id == room.room_id
        assert (status, encounter_status) == (
            ("planned", "arrived") if room.state == "booked" else ("active", "in-progress")
        ), (room, status)
    waiting = {t for tasks in projection.waiting.values() for t in tasks}
    statuses = {t["id"]: t["status"] for t in view.resources("Task")}
    open_tasks = {t for t, s in statuses.items() if s != "completed"}
    assert open_tasks == set(projection.tasks)
    for task_id in projection.tasks:
        assert (
            statuses[task_id] == "requested"
            if task_id in waiting
            else statuses[task_id]
            in (
                "accepted",
                "in-progress",
            )
        ), task_id


@pytest.mark.parametrize("travel", ["seed", "layout"])
def test_the_resources_are_strict_r4b_and_match_the_projection_at_every_tick(travel):
    config = clinical_config(travel)
    projection, view = Projection.for_config(config), FhirView(config, start_s=1_796_450_400.0)
    isolated: set[str] = set()  # patients who need isolation, as the run's arrivals say
    terminal: set[str] = set()  # rooms owed a terminal clean, as its decisions say
    checked, seen = 0, set()

    def on_tick(scheduler, result):
        nonlocal checked
        projection.apply_result(result)
        view.on_tick(scheduler, result)
        for event in result.consumed:
            if event.TYPE == "patient.arrived" and event.isolation:
                isolated.add(event.patient_id)
        for decision in result.decisions:
            if (
                decision.TYPE in ("task.queued", "task.dispatched")
                and decision.kind == "clean_terminal"
            ):
                terminal.add(decision.room_id)
            if decision.TYPE == "room.available":
                terminal.discard(decision.room_id)
        compare(projection, view, isolated, terminal)
        seen.update(t["status"] for t in view.resources("Task"))
        if result.tick % 97 == 0:
            for kind in ("Location", "Encounter", "Task"):
                for resource in view.resources(kind):
                    strict(resource)
        checked += 1

    simulate_run(config, 12 * 60_000, on_tick=on_tick)
    assert checked > 300
    assert seen == {"requested", "accepted", "in-progress", "completed"}
    codes = {r["operationalStatus"]["code"] for r in view.resources("Location")}
    assert codes <= {"U", "O", "I", "H", "K"}
    Bundle.model_validate(view.bundle(), strict=True)
    reasons = [t for t in view.resources("Task") if "reasonCode" in t]
    assert reasons and all(t["reasonCode"]["text"] for t in reasons)  # explain: why this staff


@pytest.fixture(scope="module")
def api():
    config = clinical_config().replace(staff={"cleaners": 1})  # rooms wait for their clean
    view = FhirView(config, start_s=1_796_450_400.0)
    projection = FhirProjection.for_config(config, fhir=view)
    simulate_run(config, 5 * 60_000, on_tick=view.on_tick)
    return TestClient(create_app(projection)), view


def test_search_by_status_and_last_updated(api):
    client, view = api
    waiting = client.get("/fhir/Task", params={"status": "requested"})
    assert waiting.status_code == 200
    assert waiting.headers["content-type"].startswith("application/fhir+json")
    body = waiting.json()
    Bundle.model_validate(body, strict=True)
    assert body["type"] == "searchset"
    want = [t["id"] for t in view.resources("Task") if t["status"] == "requested"]
    assert [e["resource"]["id"] for e in body["entry"]] == want and want
    both = client.get("/fhir/Task", params={"status": "requested,completed"}).json()
    assert both["total"] == sum(
        1 for t in view.resources("Task") if t["status"] in ("requested", "completed")
    )
    since = view.instant(4 * 60_000)
    recent = client.get("/fhir/Encounter", params=[("_lastUpdated", f"ge{since}")]).json()
    assert recent["total"] == sum(
        1 for e in view.resources("Encounter") if e["meta"]["lastUpdated"] >= since
    )
    assert 0 < recent["total"] < len(view.resources("Encounter"))
    window = client.get(
        "/fhir/Encounter", params=[("_lastUpdated", f"ge{since}"), ("_lastUpdated", f"lt{since}")]
    ).json()
    assert window["total"] == 0
    free = client.get("/fhir/Location", params={"operational-status": "U"}).json()
    assert all(e["resource"]["operationalStatus"]["code"] == "U" for e in free["entry"])


def test_read_one_metadata_and_errors(api):
    client, view = api
    room = client.get("/fhir/Location/A1")
    assert room.status_code == 200
    Location.model_validate(room.json(), strict=True)
    CapabilityStatement.model_validate(client.get("/fhir/metadata").json(), strict=True)
    missing = client.get("/fhir/Task/task-0")
    assert missing.status_code == 404 and missing.json()["resourceType"] == "OperationOutcome"
    assert client.get("/fhir/Patient").status_code == 404
    bad = client.get("/fhir/Task", params={"priority": "stat"})
    assert bad.status_code == 400 and "unknown search parameter" in bad.text
    assert client.get("/fhir/Task", params={"_lastUpdated": "yesterday"}).status_code == 400


def test_hospital_export_fhir_writes_a_strict_transaction_bundle(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    url = f"sqlite:///{tmp_path / 'h.db'}"
    run = [sys.executable, "-m", "cli", "run", "--speed", "max", "--duration", "10m", "--quiet"]
    subprocess.run(
        [*run, "--db", url, "--out", "dec.jsonl"],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [sys.executable, "-m", "cli", "export", "--db", url, "--fhir", "bundle.json"],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
    )
    bundle = json.loads((tmp_path / "bundle.json").read_text())
    Bundle.model_validate(bundle, strict=True)
    assert bundle["type"] == "transaction"
    for entry in bundle["entry"]:
        strict(entry["resource"])
        assert entry["request"] == {"method": "PUT", "url": entry["fullUrl"]}
    decisions = [json.loads(line) for line in (tmp_path / "dec.jsonl").open()]
    kinds = [e["resource"]["resourceType"] for e in bundle["entry"]]
    decided = sum(1 for d in decisions if d["type"] in ("patient.admitted", "patient.referred"))
    assert kinds.count("Location") == 6 and kinds.count("Encounter") == decided
    assert kinds.count("Task") == len({d["task_id"] for d in decisions if "task_id" in d})
    again = tmp_path / "again.json"
    subprocess.run(
        [sys.executable, "-m", "cli", "export", "--db", url, "--fhir", str(again)],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
    )
    assert again.read_bytes() == (tmp_path / "bundle.json").read_bytes()  # deterministic
