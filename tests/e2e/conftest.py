"""End-to-end fixtures: the real Kafka broker and PostgreSQL server, one set of topics and one
database per test, and the hospital's services as real subprocesses.

The backing services come from the environment (KAFKA_BOOTSTRAP_SERVERS, DATABASE_URL, as CI
sets them); when those are unset, `scripts/backing-services up` starts them and
`scripts/backing-services env` gives the settings. If neither works the tests FAIL: they are
never skipped silently.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ROOT / "scripts" / "backing-services"
SETTINGS = ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL")


# --- the backing services ----------------------------------------------------------------


def _parse_exports(text: str, names: tuple[str, ...] = SETTINGS) -> dict[str, str]:
    found = {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("export "):
            line = line[len("export ") :]
        if "=" not in line:
            continue
        name, _, value = line.partition("=")
        if name in names:
            found[name] = shlex.split(value)[0] if value else ""
    return found


@pytest.fixture(scope="session")
def services_env() -> dict[str, str]:
    """KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL: from the environment, else from
    `scripts/backing-services up` + `scripts/backing-services env`. Fails (never skips)
    without them."""
    settings = {name: os.environ[name] for name in SETTINGS if os.environ.get(name)}
    if len(settings) < len(SETTINGS):
        try:
            up = subprocess.run(
                [str(SERVICES), "up"], capture_output=True, text=True, timeout=600, cwd=ROOT
            )
            if up.returncode != 0:
                pytest.fail(
                    f"scripts/backing-services up failed ({up.returncode}): {up.stderr[-2000:]}"
                )
            env = subprocess.run(
                [str(SERVICES), "env"], capture_output=True, text=True, timeout=120, cwd=ROOT
            )
        except subprocess.TimeoutExpired as exc:
            pytest.fail(f"scripts/backing-services timed out: {exc}")
        settings = {**_parse_exports(env.stdout), **settings}
        # The database role's password travels in the environment, as libpq reads it.
        password = _parse_exports(env.stdout, ("PGPASSWORD",)).get("PGPASSWORD")
        if password and not os.environ.get("PGPASSWORD"):
            os.environ["PGPASSWORD"] = password
    missing = [name for name in SETTINGS if not settings.get(name)]
    if missing:
        pytest.fail(f"{', '.join(missing)} unset and scripts/backing-services did not provide them")
    for name in SETTINGS:
        if "127.0.0.1" not in settings[name]:
            pytest.fail(f"{name}={settings[name]!r}: the e2e tests use loopback (127.0.0.1) only")
    return settings


# --- one database per test ---------------------------------------------------------------


@dataclass
class Database:
    url: str
    name: str
    created: bool  # False: the shared `hospital_test`, which the scheduler's --fresh resets
    how: str = ""


def _as_postgres_psql(sql: str, port: int) -> tuple[bool, str]:
    """Run one statement as the `postgres` superuser over the local socket."""
    psql = [
        "psql",
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "-p",
        str(port),
        "-d",
        "postgres",
        "-c",
        sql,
    ]
    attempts = []
    if shutil.which("runuser") and os.geteuid() == 0:
        attempts.append(["runuser", "-u", "postgres", "--", *psql])
    if shutil.which("sudo"):
        attempts.append(["sudo", "-n", "-u", "postgres", *psql])
    if shutil.which("su") and os.geteuid() == 0:
        attempts.append(["su", "postgres", "-c", shlex.join(psql)])
    errors = []
    for command in attempts:
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd="/tmp")
        except (OSError, subprocess.TimeoutExpired) as exc:
            errors.append(f"{command[0]}: {exc}")
            continue
        if done.returncode == 0:
            return True, command[0]
        errors.append(f"{command[0]}: {done.stderr.strip()[-300:]}")
    return False, "; ".join(errors)


@contextlib.contextmanager
def new_database(services_env: dict[str, str]) -> Iterator[Database]:
    """A fresh PostgreSQL database `hospital_e2e_<uuid>` owned by the project role, dropped at
    the end. When the role cannot create databases (no CREATEDB, as on these machines), the
    `postgres` superuser creates it; failing that, the tests reuse `hospital_test` (which the
    scheduler's --fresh resets)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    base = make_url(services_env["DATABASE_URL"])
    owner = base.username or "hospital"
    name = f"hospital_e2e_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            can_create = connection.scalar(
                text("SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user")
            )
            if can_create:
                connection.execute(text(f'CREATE DATABASE "{name}" OWNER "{owner}"'))
                how = "sqlalchemy"
        if not can_create:
            ok, how = _as_postgres_psql(
                f'CREATE DATABASE "{name}" OWNER "{owner}"', base.port or 5432
            )
            if not ok:
                yield Database(
                    base.set(database="hospital_test").render_as_string(hide_password=False),
                    "hospital_test",
                    False,
                    f"fallback ({how})",
                )
                return
        try:
            yield Database(
                base.set(database=name).render_as_string(hide_password=False), name, True, how
            )
        finally:
            _drop_database(admin, name)
    finally:
        admin.dispose()


def _drop_database(admin, name: str) -> None:
    """The owner may drop its database, and end its own sessions with it (FORCE), but not
    another role's: an autovacuum worker vacuuming the database refuses the drop as one
    (PostgreSQL 15, InsufficientPrivilege). It leaves in moments: try again."""
    from sqlalchemy import text
    from sqlalchemy.exc import ProgrammingError

    for attempt in range(40):
        try:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            return
        except ProgrammingError as error:
            if getattr(error.orig, "pgcode", None) != "42501" or attempt == 39:
                raise
            time.sleep(0.25)


@pytest.fixture
def database(services_env) -> Iterator[Database]:
    with new_database(services_env) as db:
        yield db


# --- one set of topics per test ----------------------------------------------------------


@dataclass
class Topics:
    env: dict[str, str]  # what the subprocesses get
    config: object  # scheduler.config.Config with the same topics, for the test


@contextlib.contextmanager
def new_topics(services_env: dict[str, str], database: Database) -> Iterator[Topics]:
    """Topic names of its own (a uuid), deleted at the end."""
    from scheduler.config import load
    from scheduler.distributed import bus
    from tests.kafka_topics import delete_topics

    name = f"e2e-{uuid.uuid4().hex[:12]}"
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": services_env["KAFKA_BOOTSTRAP_SERVERS"],
        "DATABASE_URL": database.url,
        "HOSPITAL_KAFKA_INBOUND_TOPIC": f"{name}.inbound",
        "HOSPITAL_KAFKA_DECISIONS_TOPIC": f"{name}.decisions",
        "HOSPITAL_KAFKA_DISPATCH_TOPIC_PREFIX": f"{name}.dispatch.",
        "HOSPITAL_KAFKA_DEAD_LETTER_TOPIC": f"{name}.dead-letter",
    }
    config = load(None, env)
    bus.ensure_topics(config)  # before the services, which would otherwise race to create them
    try:
        yield Topics(env, config)
    finally:
        delete_topics(config)


@pytest.fixture
def topics(services_env, database) -> Iterator[Topics]:
    with new_topics(services_env, database) as made:
        yield made


# --- the services as subprocesses --------------------------------------------------------


def child_env(extra: dict[str, str]) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("HOSPITAL_") and k not in SETTINGS
    }
    env.update(extra)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


@dataclass
class Service:
    name: str
    process: subprocess.Popen
    log_path: Path
    started: float = field(default_factory=time.monotonic)

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self, tail: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except OSError:
            return ""


class Services:
    """Starts `python -m cli ...` processes; every one is stopped (TERM, then KILL) by
    `close`, which the fixture calls whatever happens."""

    def __init__(self, tmp_path: Path, env: dict[str, str]):
        self.cwd = tmp_path
        self.dir = tmp_path / "logs"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.env = child_env(env)
        self.started: list[Service] = []
        self.counts: dict[str, int] = defaultdict(int)

    def start(self, name: str, *args: str, cwd: Path | None = None) -> Service:
        self.counts[name] += 1
        log_path = self.dir / f"{name}.{self.counts[name]}.log"
        with open(log_path, "wb") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", "cli", *args],
                env=self.env,
                cwd=cwd or self.cwd,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        service = Service(name, process, log_path)
        self.started.append(service)
        return service

    def wait(self, service: Service, timeout_s: float) -> int:
        try:
            return service.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{service.name} still running after {timeout_s:.0f} s; log:\n{service.log()}"
            ) from None

    def stop(self, service: Service, timeout_s: float = 10) -> int | None:
        if service.process.poll() is None:
            service.process.send_signal(signal.SIGTERM)
            try:
                service.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                service.process.kill()
                service.process.wait(timeout=10)
        return service.process.returncode

    def close(self) -> None:
        for service in self.started:
            if service.process.poll() is None:
                service.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for service in self.started:
            try:
                service.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                service.process.kill()
                try:
                    service.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass

    def logs(self) -> str:
        return "\n".join(
            f"--- {s.name} (pid {s.pid}, exit {s.process.poll()}):\n{s.log(1500)}"
            for s in self.started
        )


@contextlib.contextmanager
def new_services(directory: Path, topics: Topics) -> Iterator[Services]:
    running = Services(directory, topics.env)
    try:
        yield running
    finally:
        running.close()


@pytest.fixture
def services(tmp_path, topics) -> Iterator[Services]:
    with new_services(tmp_path, topics) as running:
        yield running


def hospital(
    args: list[str], env: dict[str, str], timeout_s: float = 120, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    """One `python -m cli` command to its end (killed at the timeout)."""
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        env=child_env(env),
        cwd=cwd or ROOT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        stdin=subprocess.DEVNULL,
    )


@dataclass
class KafkaRun:
    """A finished `hospital run --kafka`: its output, files and services' logs."""

    done: subprocess.CompletedProcess
    record: Path
    out: Path
    report: Path
    logs: list[Path]

    def figures(self) -> dict:
        return json.loads(self.report.read_text())


def run_kafka(
    env: dict[str, str], db_url: str, tmp_path: Path, *options: str, speed: float, duration: str
) -> KafkaRun:
    """`hospital run --kafka` to its end in `tmp_path`, with --record, --out and --report;
    fails with the services' logs unless it exits 0."""
    record, out, report = tmp_path / "ev.jsonl", tmp_path / "dec.jsonl", tmp_path / "kpi.json"
    done = hospital(
        ["run", "--kafka", "--speed", str(speed), "--duration", duration, "--db", db_url,
         "--record", str(record), "--out", str(out), "--report", str(report), "-q", *options],
        env,
        timeout_s=240,
        cwd=tmp_path,
    )  # fmt: skip
    logs = sorted((tmp_path / "hospital-logs").glob("*.log"))
    assert done.returncode == 0, f"{done.stderr}\n" + "\n".join(
        f"--- {p.name}\n{p.read_text()[-1500:]}" for p in logs
    )
    return KafkaRun(done, record, out, report, logs)


def jsonl_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
