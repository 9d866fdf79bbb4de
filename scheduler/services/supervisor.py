"""`hospital run` in the distributed mode: start the services as separate processes, restart
one that dies before the end, stop them all when the run is over.

The scheduler starts first and records where the new run begins in each partition; only
then do the generator and the workers start, so no event of the run is missed.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from scheduler.config import Config

log = logging.getLogger("hospital.supervisor")
MAX_RESTARTS = 5
READY_TIMEOUT_S = 60


class SupervisorError(RuntimeError):
    pass


@dataclass
class Child:
    name: str
    args: list[str]
    process: subprocess.Popen | None = None
    restarts: int = 0
    log_path: Path | None = None

    def start(self, resume: bool = False) -> None:
        args = [a for a in self.args if not (resume and a == "--fresh")]
        log_file = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self.process = subprocess.Popen([sys.executable, "-m", "cli", *args],
                                        stdout=log_file, stderr=subprocess.STDOUT)
        log.info("started %s (pid %d)", self.name, self.process.pid)


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
    children: list[Child] = field(default_factory=list)

    def common(self, epoch: float) -> list[str]:
        args = ["--run-id", self.run_id, "--epoch", repr(epoch), "--speed", repr(self.speed)]
        return args + (["--config", str(self.config_path)] if self.config_path else [])

    def run(self, on_progress=lambda sim_ms: None) -> None:
        from scheduler.services.clock import LiveClock

        self.log_dir.mkdir(parents=True, exist_ok=True)
        # Simulated time starts a few seconds from now, when every process is up.
        epoch = time.time() + 5
        until = ["--until-ms", str(self.duration_ms)]
        scheduler = Child("scheduler", ["scheduler", *self.common(epoch), *until, "--db",
                                        self.db_url, "--fresh"],
                          log_path=self.log_dir / "scheduler.log")
        scheduler.start()
        self.children = [scheduler]
        self.wait_ready(scheduler)
        self.children.append(Child("generator", ["generator", *self.common(epoch),
                                                 "--duration-ms", str(self.duration_ms),
                                                 *(["--seed", str(self.seed)] if self.seed is not None else [])],
                                   log_path=self.log_dir / "generator.log"))
        for role, count in self.workers.items():
            for n in range(1, count + 1):
                name = f"{role}-worker-{n}"
                self.children.append(Child(name, ["worker", role, *self.common(epoch), *until,
                                                  "--worker-id", name],
                                           log_path=self.log_dir / f"{name}.log"))
        for child in self.children[1:]:
            child.start()
        clock = LiveClock(epoch, self.speed)
        try:
            while clock.now_ms() <= self.duration_ms:
                self.watch()
                on_progress(max(0, clock.now_ms()))
                time.sleep(0.2)
            # Give the scheduler a moment past the end to commit its last ticks.
            self.wait_exit(scheduler, timeout_s=15)
        finally:
            self.stop_all()

    def wait_ready(self, scheduler: Child) -> None:
        """The scheduler is ready once the run is in the database."""
        from scheduler.db.ledger import Ledger

        deadline = time.time() + READY_TIMEOUT_S
        ledger = None
        try:
            while time.time() < deadline:
                if scheduler.process.poll() is not None:
                    raise SupervisorError(f"the scheduler exited at start (code "
                                          f"{scheduler.process.returncode}): see "
                                          f"{scheduler.log_path}")
                try:
                    ledger = ledger or Ledger(self.db_url, self.config, self.config.scheduler.policy)
                    if ledger.run(self.run_id) is not None:
                        return
                except Exception:  # not migrated yet: the scheduler is on it
                    ledger = None
                time.sleep(0.2)
        finally:
            if ledger is not None:
                ledger.close()
        raise SupervisorError(f"the scheduler was not ready after {READY_TIMEOUT_S} s: "
                              f"see {scheduler.log_path}")

    def watch(self) -> None:
        """Restart a service that exited before the end of the run."""
        for child in self.children:
            code = child.process.poll()
            if code is None or code == 0:
                continue
            if child.restarts >= MAX_RESTARTS:
                raise SupervisorError(f"{child.name} keeps failing (exit code {code}): see "
                                      f"{child.log_path}")
            child.restarts += 1
            log.warning("%s exited with code %d: restarting it (%d)", child.name, code,
                        child.restarts)
            child.start(resume=True)

    @staticmethod
    def wait_exit(child: Child, timeout_s: float) -> None:
        try:
            child.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            pass

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
