"""`hospital explain` as a user runs it, on the decisions of a small simulated run with
reasons on, an acuity mix, isolation patients and target waits."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from cli.main import app
from scheduler.config import Config
from scheduler.runs import simulate_run

runner = CliRunner()
LINE = re.compile(r"^\d\d:\d\d:\d\d  tick +\d+  (\S.*)$")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Five simulated minutes of a busy hospital: ESI 1-5, a third needing isolation (A1 and
    B1 isolate), targets for escorts, visits and cleans; the decisions with reasons."""
    out = tmp_path_factory.mktemp("explain") / "dec.jsonl"
    config = Config().replace(
        scheduler={"explain": True},
        hospital={"isolation_rooms": ["A1", "B1"]},
        arrivals={
            "interval_s": 3.0,
            "acuity_mix": [0.2, 0.2, 0.3, 0.2, 0.1],
            "isolation_share": 0.3,
        },
        sla={"escort_in_s": 5.0, "visit_s": 10.0, "clean_s": 5.0},
    )
    report = simulate_run(config, 300_000, out=out)
    assert report["invariants_checked"]
    decisions = [json.loads(line) for line in out.read_text().splitlines()]
    return out, decisions


def explain(*args):
    return runner.invoke(app, ["explain", *map(str, args)])


def first(decisions, **fields):
    return next(d for d in decisions if all(d.get(k) == v for k, v in fields.items()))


def test_a_discharged_isolation_patients_timeline_with_reasons(run):
    path, decisions = run
    terminal = first(decisions, type="task.dispatched", kind="clean_terminal")
    patient = terminal["patient_id"]
    result = explain(path, "--patient", patient)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert all(LINE.match(line) for line in lines), lines
    texts = [LINE.match(line).group(1) for line in lines]
    room = first(decisions, type="patient.admitted", patient_id=patient)["room_id"]
    assert room in ("A1", "B1")
    # the whole stay, in order: admitted, escorted in, seen, escorted out, discharged, the
    # terminal clean of its room
    kinds = [t.split()[0] for t in texts]
    assert texts[0] == f"{patient} admitted to {room}"
    order = [
        kinds.index(k, 1) for k in ("escort_in", "visit", "escort_out", patient, "clean_terminal")
    ]
    assert order == sorted(order), texts
    assert f"{patient} discharged from {room}" in texts
    # every dispatch says who and why: the walk and the wait
    for text in texts:
        if " to " in text and "(" in text:
            assert " — " in text and " s walk" in text and "waited " in text, text
    escort_out = next(t for t in texts if t.startswith("escort_out"))
    assert f"frees room {room}" in escort_out


def test_a_referred_patient_says_why(run):
    path, decisions = run
    referral = first(decisions, type="patient.referred")
    result = explain(path, "--patient", referral["patient_id"])
    assert result.exit_code == 0, result.output
    (line,) = result.stdout.splitlines()
    assert line.endswith(f"referred: {referral['reason']}")
    assert referral["reason"] and referral["reason"] != "no free room"


def test_a_referral_says_the_patients_esi_and_isolation_and_the_rooms_by_state(tmp_path):
    """Issue 22, item 5: "all 24 rooms occupied or being cleaned" named neither the patient's
    ESI level nor their isolation, and lumped dirty rooms with rooms being cleaned, which
    hid that the cleaners were the bottleneck (here: one cleaner, slow cleans)."""
    config = Config().replace(
        scheduler={"explain": True},
        staff={"cleaners": 1},
        durations={"cleaning_s": 30.0},
        hospital={"isolation_rooms": ["A1", "B1"]},
        arrivals={"interval_s": 3.0, "acuity_mix": [0.2, 0.2, 0.3, 0.2, 0.1]},
    )
    config = config.replace(arrivals={"isolation_share": 0.3})
    events, out = tmp_path / "ev.jsonl", tmp_path / "dec.jsonl"
    simulate_run(config, 600_000, record=events, out=out)
    arrived = {
        e["patient_id"]: e
        for e in map(json.loads, events.read_text().splitlines())
        if e["type"] == "patient.arrived"
    }
    referrals = [
        d for d in map(json.loads, out.read_text().splitlines()) if d["type"] == "patient.referred"
    ]
    words = re.compile(
        r"^ESI (?P<esi>[1-5])(?P<isolation>, needs isolation)?: "
        r"(?P<which>all 6 rooms in use: |no free isolation room \(all 2 in use: )(?P<rooms>.*)$"
    )
    states = re.compile(r"(\d+) (booked|occupied|dirty \(waiting for a cleaner\)|being cleaned)")
    seen = set()
    for referral in referrals:
        match = words.match(referral["reason"])
        assert match, referral["reason"]
        patient = arrived[referral["patient_id"]]
        assert int(match["esi"]) == patient.get("acuity", 3)
        assert bool(match["isolation"]) == patient.get("isolation", False)
        rooms = (
            match["rooms"].removesuffix(")") if "isolation" in match["which"] else match["rooms"]
        )
        counted = states.findall(rooms)
        assert ", ".join(f"{n} {state}" for n, state in counted) == rooms
        assert sum(int(n) for n, _ in counted) == (2 if "isolation" in match["which"] else 6)
        seen |= {state for _, state in counted} | {bool(match["isolation"])}
    assert {"dirty (waiting for a cleaner)", "being cleaned", True, False} <= seen, seen
    # and `hospital explain` prints it as the patient's timeline
    dirty = next(r for r in referrals if "dirty" in r["reason"])
    result = explain(out, "--patient", dirty["patient_id"])
    assert result.stdout.splitlines()[-1].endswith(f"referred: {dirty['reason']}")


def test_an_escalation_shows_up_in_its_patients_timeline(run):
    path, decisions = run
    escalation = first(decisions, type="task.escalated", kind="visit")
    task = first(decisions, task_id=escalation["task_id"])
    result = explain(path, "--patient", task["patient_id"])
    assert result.exit_code == 0, result.output
    assert f"visit {escalation['task_id']} past its target: waited " in result.stdout
    assert f"of {escalation['sla_s']:g} s" in result.stdout


def test_a_doctors_timeline_holds_the_urgent_visits(run):
    path, decisions = run
    result = explain(path, "--staff", "doctor-1")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    mine = [d for d in decisions if d.get("staff_id") == "doctor-1"]
    assert len(lines) == len(mine) > 0
    assert all("to doctor-1 — doctor-1: " in line for line in lines)
    assert any("urgent" in line for line in lines)
    # nurses never see an ESI 1-2 patient (the skills rule), so their reasons never say so
    nurse = explain(path, "--staff", "nurse-1")
    assert nurse.exit_code == 0 and nurse.stdout
    assert "urgent" not in nurse.stdout


def test_a_rooms_timeline(run):
    path, decisions = run
    result = explain(path, "--room", "A1")
    assert result.exit_code == 0, result.output
    assert "room A1 clean and free" in result.stdout
    assert "clean_terminal (" in result.stdout
    about = [d for d in decisions if d.get("room_id") == "A1"]
    assert len(result.stdout.splitlines()) >= len(about)


@pytest.fixture(scope="module")
def looking_ahead(tmp_path_factory):
    """Ten simulated minutes of the busy hospital with one doctor, looking ahead."""
    out = tmp_path_factory.mktemp("explain-lookahead") / "dec.jsonl"
    config = Config().replace(
        scheduler={"explain": True, "lookahead_s": 60.0},
        arrivals={"interval_s": 4.0, "acuity_mix": [0.1, 0.2, 0.4, 0.2, 0.1]},
    )
    assert simulate_run(config, 600_000, out=out)["invariants_checked"]
    return out, [json.loads(line) for line in out.read_text().splitlines()]


def test_a_hold_shows_up_in_its_members_timeline_with_its_reason(looking_ahead):
    path, decisions = looking_ahead
    hold = first(decisions, type="staff.held", staff_id="doctor-1")
    result = explain(path, "--staff", "doctor-1")
    assert result.exit_code == 0, result.output
    line = next(line for line in result.stdout.splitlines() if " held until " in line)
    assert line.endswith(f"doctor-1 held until {hold['until_s']:g} s: {hold['reason']}")
    assert hold["reason"].startswith("kept free")


def test_a_room_kept_and_a_referral_beside_it_say_why(looking_ahead):
    path, decisions = looking_ahead
    hold = first(decisions, type="room.held")
    assert hold["reserved_for"] == "urgent" and "ESI 1-2" in hold["reason"]
    result = explain(path, "--room", hold["room_id"])
    assert result.exit_code == 0, result.output
    assert f"held for urgent until {hold['until_s']:g} s" in result.stdout
    beside = first(decisions, type="patient.referred", tick=hold["tick"])
    assert f"{hold['room_id']}" in beside["reason"] and "kept for ESI 1-2" in beside["reason"]


@pytest.mark.parametrize(
    "selectors, named",
    [
        (["--patient", "patient-1", "--staff", "porter-1"], "--patient and --staff"),
        (["--staff", "porter-1", "--room", "B3"], "--staff and --room"),
        (["--patient", "p", "--staff", "s", "--room", "A1"], "--patient and --staff and --room"),
    ],
)
def test_several_selectors_are_one_error_line_and_exit_2(run, selectors, named):
    path, _ = run
    line = one_error_line(explain(path, *selectors))
    assert "give one of --patient ID, --staff ID or --room ID" in line and named in line, line


def one_error_line(result, code=2):
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hospital: "), result.stderr
    assert result.stdout == ""
    return lines[0]


def test_without_a_selector_one_error_line_and_exit_2(run):
    path, _ = run
    line = one_error_line(explain(path))
    assert "--patient" in line and "--staff" in line and "--room" in line


def test_a_missing_file_is_one_error_line_and_exit_2(tmp_path):
    line = one_error_line(explain(tmp_path / "nope.jsonl", "--patient", "patient-1"))
    assert "nope.jsonl" in line


@pytest.mark.parametrize(
    "text, words",
    [
        ('{"type": "patient.admitted", "tick": 0, "time": 0\n', ["bad.jsonl:1", "not valid JSON"]),
        (
            '{"event_id": "e", "patient_id": "p", "room_id": "A1", "tick": 0, "time": 0, '
            '"type": "patient.admitted"}\n{"type": "patient.arrived", "time": 1}\n',
            ["bad.jsonl:2", "patient.arrived"],
        ),
        (
            '{"event_id": "e", "patient_id": "p", "tick": "x", "time": 0, '
            '"type": "patient.referred", "reason": "r"}\n',
            ["bad.jsonl:1", "tick"],
        ),
    ],
)
def test_a_malformed_file_is_one_error_line_and_exit_2(tmp_path, text, words):
    path = tmp_path / "bad.jsonl"
    path.write_text(text)
    line = one_error_line(explain(path, "--patient", "p"))
    for word in words:
        assert word in line, line


def test_nobody_of_that_id_exits_1(run):
    path, _ = run
    line = one_error_line(explain(path, "--patient", "patient-9999"), code=1)
    assert "patient-9999" in line


def test_listed_in_the_help():
    result = runner.invoke(app, ["--help"])
    assert "explain" in result.stdout
