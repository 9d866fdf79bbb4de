"""`hospital run` in the distributed mode: start the services as separate processes, restart
one that dies before the end, stop them all when the run is over.

The supervisor starts every service first, and fixes the run's clock only once they are all
up (each has said so in its log, and waits for the clock in a file): a loaded machine, which
takes many seconds to start a Python process, does not eat into the run. Then it records the
run in the database, with where it begins in each partition of the inbound topic, and writes
the clock's epoch in the file. The scheduler resumes that run; one started again later reads
the same file at once.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from scheduler.config import Config

log = logging.getLogger("hospital.supervisor")
# A service that exits with an error is started again after a delay that doubles with each
# failure in a row (1, 2, 4, ... s, at most RESTART_DELAY_MAX_S), so that one waiting for a
# database or broker that is restarting does not burn its chances in seconds. A service up
# STABLE_S has recovered: its failures in a row count from zero again. After MAX_RESTARTS
# failures in a row (about two minutes of them), the run fails.
MAX_RESTARTS = 8
RESTART_DELAY_MAX_S = 30.0
STABLE_S = 60.0


def restart_delay(failures: int) -> float:
    """Seconds before the restart that follows `failures` failures in a row (1 or more)."""
    return min(RESTART_DELAY_MAX_S, 2.0 ** (failures - 1))


READY_S = 180  # how long a service may take to start
# The exit code of a service that cannot use its input (cli/common.py `fail`): at start, its
# configuration is wrong, and a restart would only say so again.
BAD_INPUT = 2
# What a service logs once up: the scheduler waits for the clock (cli/service_commands.py); the
# generator and the workers log that they started, once connected, and wait for time 0.
READY = (b"waiting for the run's clock", b" started: ")
FINISH_S = 90  # past the end: how long the scheduler may take to finish the run


class SupervisorError(RuntimeError):
    pass


@dataclass
class Child:
    name: str
    args: list[str]
    process: subprocess.Popen | None = None
    restarts: int = 0
    log_path: Path | None = None
    failures: int = 0  # in a row, each within STABLE_S of its start
    started_at: float = 0.0  # time.monotonic()
    restart_at: float | None = None  # a restart waiting for its delay
    log_start: int = 0  # where this start's lines begin in its log (restarts append)
    env: dict[str, str] = field(default_factory=dict)  # over the supervisor's environment

    def start(self) -> None:
        self.started_at, self.restart_at = time.monotonic(), None
        env = {**os.environ, **self.env, SUPERVISOR_PID: str(os.getpid())}
        with open(self.log_path or os.devnull, "ab") as log_file:  # the child keeps its own
            self.log_start = log_file.tell()
            self.process = subprocess.Popen(
                [sys.executable, "-m", "cli", *self.args],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=env,
            )
        log.info("started %s (pid %d)", self.name, self.process.pid)

    def this_start_logged(self) -> bytes:
        """What the service logged since it was last started."""
        if self.log_path is None:
            return b""
        with open(self.log_path, "rb") as log_file:
            log_file.seek(self.log_start)
            return log_file.read()

    def is_up(self) -> bool:
        """Whether it has logged, since it was last started, that it is up."""
        logged = self.this_start_logged()
        return any(line in logged for line in READY)

    def error_line(self) -> str:
        """The one-line error it ended with (`hospital: error: ...`), if any."""
        prefix = b"hospital: error: "
        errors = [
            line[len(prefix) :]
            for line in self.this_start_logged().splitlines()
            if line.startswith(prefix)
        ]
        return errors[-1].decode(errors="replace") if errors else ""


# The supervisor's pid, in its services' environment: each asks to be stopped when it dies.
SUPERVISOR_PID = "SUPERVISED_BY_PID"


def stop_with_supervisor() -> None:
    """In a service the supervisor started: SIGTERM when the supervisor dies, however it
    dies (SIGKILL included), so that no service runs on for hours for a run nobody watches.
    Asked of the kernel by the service itself (PR_SET_PDEATHSIG; Linux only), since a
    pre-exec hook is unsafe in a supervisor with threads."""
    supervisor = os.environ.get(SUPERVISOR_PID)
    if not supervisor:
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return  # elsewhere: the services stop at the run's end by themselves
    if str(os.getppid()) != supervisor:  # it died before the request: stop now
        os.kill(os.getpid(), signal.SIGTERM)


@dataclass
class Supervisor:
    config: Config
    config_path: Path | None
    db_url: str
    duration_ms: int
    speed: float
    seed: int | None
    workers: dict[str, int]
    log_dir: Path
    run_id: str = field(default_factory=lambda: f"run-{int(time.time() * 1000)}")
    generate: bool = True  # False: no patient generator (the patients come over HL7)
    children: list[Child] = field(default_factory=list)

    def common(self, epoch_file: Path) -> list[str]:
        args = [
            "--run-id",
            self.run_id,
            "--epoch-file",
            str(epoch_file),
            "--speed",
            repr(self.speed),
        ]
        return args + (["--config", str(self.config_path)] if self.config_path else [])

    def run(self, on_progress=lambda sim_ms: None) -> None:
        from scheduler.distributed.clock import LiveClock

        self.log_dir.mkdir(parents=True, exist_ok=True)
        epoch_file = (self.log_dir / f"{self.run_id}.epoch").resolve()
        epoch_file.unlink(missing_ok=True)
        until = ["--until-ms", str(self.duration_ms)]
        common = self.common(epoch_file)
        seed = ["--seed", str(self.seed)] if self.seed is not None else []
        # The database URL may hold a password: in the scheduler's environment, which only
        # its user can read, never on its command line, which any local user can (`ps`).
        scheduler = Child(
            "scheduler",
            ["scheduler", *common, *until],
            log_path=self.log_dir / "scheduler.log",
            env={"DATABASE_URL": self.db_url},
        )
        self.children = [scheduler]
        if self.generate:
            self.children.append(
                Child(
                    "generator",
                    ["generator", *common, "--duration-ms", str(self.duration_ms), *seed],
                    log_path=self.log_dir / "generator.log",
                )
            )
        for role, count in self.workers.items():
            for n in range(1, count + 1):
                name = f"{role}-worker-{n}"
                self.children.append(
                    Child(
                        name,
                        ["worker", role, *common, *until, *seed, "--worker-id", name],
                        log_path=self.log_dir / f"{name}.log",
                    )
                )
        for child in self.children:
            child.start()
        try:
            self.wait_ready(READY_S)
            clock = LiveClock(time.time() + 2, self.speed)  # the workers join their groups
            self.begin(clock)
            spare = epoch_file.with_suffix(".tmp")
            spare.write_text(repr(clock.epoch_s))
            spare.replace(epoch_file)  # whole, at once: a reader never sees half of it
            while clock.now_ms() <= self.duration_ms:
                self.watch()
                on_progress(max(0, clock.now_ms()))
                time.sleep(0.2)
            self.wait_finished(scheduler, timeout_s=FINISH_S)
        finally:
            self.stop_all()

    def begin(self, clock) -> None:
        from scheduler.db.ledger import Ledger
        from scheduler.distributed.scheduler_service import begin_run

        ledger = Ledger(self.db_url, self.config, self.config.scheduler.policy)
        try:
            begin_run(self.config, ledger, self.run_id, clock, until_ms=self.duration_ms)
        finally:
            ledger.close()

    def wait_ready(self, timeout_s: float) -> None:
        """Until every service has logged that it is up and waits for the clock, each within
        `timeout_s` of its start. One that dies meanwhile (killed, out of memory, its
        database not there yet) is started again as `watch` does, with the same delays and
        cap; one that exits with 2 cannot use its configuration, and ends the run at once."""
        waiting = list(self.children)
        while waiting:
            now = time.monotonic()
            for child in list(waiting):
                assert child.process is not None  # started
                if child.restart_at is not None:
                    if now >= child.restart_at:
                        child.start()
                    continue
                code = child.process.poll()
                if code == BAD_INPUT:
                    raise SupervisorError(
                        f"{child.name} exited at start (exit code {code}): "
                        f"{child.error_line() or 'an error'}: see {child.log_path}"
                    )
                if code is not None:
                    self.failed(child, code, now)
                elif child.is_up():
                    waiting.remove(child)
                elif now - child.started_at > timeout_s:
                    raise SupervisorError(
                        f"{child.name} not up after {timeout_s:.0f} s: see {child.log_path}"
                    )
            time.sleep(0.1)

    def wait_finished(self, scheduler: Child, timeout_s: float) -> None:
        """The scheduler stops by itself just past the end, once it has applied every event
        stamped up to the end and published every decision; one that dies meanwhile (or
        fails to publish) is started again, and finishes the run."""
        deadline = time.monotonic() + timeout_s
        assert scheduler.process is not None  # started
        while scheduler.process.poll() != 0:
            if time.monotonic() > deadline:
                raise SupervisorError(
                    f"the scheduler did not finish the run within "
                    f"{timeout_s:.0f} s of its end: see {scheduler.log_path}"
                )
            self.watch([scheduler])
            time.sleep(0.2)

    def watch(self, children: list[Child] | None = None) -> None:
        """Restart a service that exited with an error, once its delay is over."""
        now = time.monotonic()
        for child in self.children if children is None else children:
            assert child.process is not None  # every child is started before the watch
            if child.restart_at is not None:
                if now >= child.restart_at:
                    child.start()
                continue
            code = child.process.poll()
            if code is None or code == 0:
                continue
            self.failed(child, code, now)

    def failed(self, child: Child, code: int, now: float) -> None:
        """A service exited with `code`: start it again after its delay, or fail the run
        once it has failed `MAX_RESTARTS` times in a row."""
        if now - child.started_at >= STABLE_S:
            child.failures = 0
        if child.failures >= MAX_RESTARTS:
            raise SupervisorError(
                f"{child.name} keeps failing ({child.failures} times in "
                f"a row, last exit code {code}): see {child.log_path}"
            )
        child.failures += 1
        child.restarts += 1
        delay = restart_delay(child.failures)
        log.warning(
            "%s exited with code %d: restarting it (%d) in %g s",
            child.name,
            code,
            child.restarts,
            delay,
        )
        child.restart_at = now + delay

    def stop_all(self) -> None:
        for child in self.children:
            if child.process and child.process.poll() is None:
                child.process.terminate()
        for child in self.children:
            if child.process:
                try:
                    child.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    child.process.kill()
                    child.process.wait()
