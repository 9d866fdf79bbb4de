"""No credential on a command line: any local user reads every process's arguments
(`/proc/PID/cmdline`, `ps`), so a database password there is everybody's (issue 17, item 2).

A real `hospital run --kafka` against the real broker and PostgreSQL, with the password in
`DATABASE_URL` (the shared server's role's own, which PGPASSWORD holds elsewhere) and nowhere
else: while it runs, the arguments of it and of every process under it are read, again and
again, and none holds the password; the run, whose scheduler could reach the database only
with the URL's password, finishes and writes no password out."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from .conftest import Database, Topics, child_env

pytestmark = [pytest.mark.services, pytest.mark.timeout(300)]


def children_of(pid: int) -> list[int]:
    """Every process under `pid` (its children, theirs, ...), from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        # "PID (COMM) STATE PPID ...": COMM may hold spaces and parentheses
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        below = [child for child, of in parents.items() if of == parent]
        found += below
        frontier += below
    return found


def command_line(pid: int) -> bytes | None:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None


def test_no_process_of_a_kafka_run_has_the_database_password_on_its_command_line(
    topics: Topics, database: Database, tmp_path
):
    password = os.environ.get("PGPASSWORD")
    assert password, "PGPASSWORD unset: the shared server's role has no password to test with"
    url = make_url(database.url).set(password=password).render_as_string(hide_password=False)
    env = child_env({**topics.env, "DATABASE_URL": url})
    env.pop("PGPASSWORD", None)  # the URL's password is the only one the run has
    run = subprocess.Popen(
        [sys.executable, "-m", "cli", "run", "--kafka", "--speed", "20", "--duration", "1m",
         "-q"],
        env=env,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    seen: dict[int, bytes] = {}
    try:
        deadline = time.monotonic() + 240
        while run.poll() is None and time.monotonic() < deadline:
            for pid in [run.pid, *children_of(run.pid)]:
                line = command_line(pid)
                if line:
                    seen[pid] = line
            time.sleep(0.05)
        stdout, stderr = run.communicate(timeout=30)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    logs = sorted((tmp_path / "hospital-logs").glob("*.log"))
    assert run.returncode == 0, (
        stderr.decode(errors="replace")
        + "".join(f"\n--- {p.name}\n{p.read_text()[-1500:]}" for p in logs)
    ).replace(password, "<the password>")
    services = [line.split(b"\0") for line in seen.values() if b"\0-m\0cli\0" in line]
    commands = {args[3].decode() for args in services if len(args) > 3}
    assert commands == {"run", "scheduler", "generator", "worker"}, commands  # all were read
    with_password = [
        line.replace(b"\0", b" ").replace(password.encode(), b"<the password>").decode()
        for line in seen.values()
        if password.encode() in line
    ]
    assert not with_password, f"the password is on a command line: {with_password}"
    written = [stdout, stderr, *(p.read_bytes() for p in logs)]
    assert not [text for text in written if password.encode() in text], (
        "the password was written out"
    )
