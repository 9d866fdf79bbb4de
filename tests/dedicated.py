"""A Kafka broker or a PostgreSQL cluster of a test's own, beside the shared ones, for tests
that stop and start a server for real: `scripts/backing-services` runs it from a state
directory of its own (BACKING_SERVICES_STATE) on free loopback ports, so the broker and the
cluster every other test uses are never touched.

    with dedicated_broker(tmp_path / "kafka", database_url) as broker:
        broker.settings["KAFKA_BOOTSTRAP_SERVERS"]   # 127.0.0.1:<port>
        broker.down()   # SIGTERM to the broker, until it has exited
        broker.up()     # started again, on the same data and port, until it answers

    with dedicated_cluster(tmp_path / "kafka", database_url) as cluster:   # 3 KRaft nodes
        cluster.settings["KAFKA_BOOTSTRAP_SERVERS"]   # the three brokers, comma-separated
        cluster.kill(2)   # SIGKILL to node 2 (broker id 2), until it has exited
        cluster.up()      # every node not running started again, until all three have joined

On leaving the block, `scripts/backing-services drop` stops it and deletes it (the broker's
data; the PostgreSQL cluster, its settings and its role's password), whatever happened in the
block.
A broker reuses the jars of the shared one: no second download.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ROOT / "scripts" / "backing-services"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def free_ports(count: int) -> list[int]:
    """`count` different free ports: all held open while the next is chosen."""
    with contextlib.ExitStack() as held:
        probes = [held.enter_context(socket.socket()) for _ in range(count)]
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in probes]


def shared_kafka_libs() -> Path | None:
    """The jars `scripts/backing-services up` fetched for the shared broker: this checkout's,
    or, in a git worktree, the main checkout's."""
    candidates = [ROOT / ".backing-services" / "kafka" / "libs"]
    common = subprocess.run(
        ["git", "rev-parse", "--path-format=absolute", "--git-common-dir"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if common.returncode == 0 and common.stdout.strip():
        candidates.append(
            Path(common.stdout.strip()).parent / ".backing-services" / "kafka" / "libs"
        )
    return next((c for c in candidates if any(c.glob("kafka_2.13-*.jar"))), None)


class Dedicated:
    """`scripts/backing-services up|down|env|drop` with the environment of one dedicated set."""

    def __init__(self, state: Path, env: dict[str, str], options: tuple[str, ...] = ()):
        self.state = state
        self.env = env
        self.options = options  # given to every command, e.g. ("--brokers", "3")
        self.settings: dict[str, str] = {}

    def _services(self, command: str, timeout_s: float = 300) -> str:
        done = subprocess.run(
            [str(SERVICES), command, *self.options],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        assert done.returncode == 0, (
            f"scripts/backing-services {command} failed:\n{done.stderr[-3000:]}"
        )
        return done.stdout

    def up(self) -> None:
        """Started (or started again), and answering."""
        self._services("up")
        exports = self._services("env")
        for line in exports.splitlines():
            name, _, value = line.removeprefix("export ").partition("=")
            if value:
                self.settings[name] = shlex.split(value)[0]

    def down(self) -> None:
        self._services("down")

    def drop(self) -> None:
        self._services("drop")


class DedicatedCluster(Dedicated):
    """A Kafka cluster of its own (`scripts/backing-services up --brokers N`): node N is
    broker id N."""

    def pid(self, node: int) -> int:
        return int((self.state / "kafka" / f"node-{node}" / "kafka.pid").read_text())

    def kill(self, node: int, timeout_s: float = 30) -> None:
        """SIGKILL to the node's JVM, until it is gone (its parent, init, reaps it)."""
        pid = self.pid(node)
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + timeout_s
        while _running(pid):
            assert time.monotonic() < deadline, f"node {node} (pid {pid}) still there"
            time.sleep(0.05)

    def keep_logs(self, into: Path) -> None:
        """The nodes' logs, copied out of the state directory that `drop` deletes."""
        for log in self.state.glob("kafka/node-*/logs/*.log"):
            (into / log.parts[-3]).mkdir(parents=True, exist_ok=True)
            shutil.copy(log, into / log.parts[-3] / log.name)


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _base_env(state: Path) -> dict[str, str]:
    """The test's environment without the shared services' settings, which
    `scripts/backing-services` would use in place of starting its own."""
    env = {
        k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL")
    }
    return {**env, "BACKING_SERVICES_STATE": str(state)}


@contextlib.contextmanager
def dedicated_broker(state: Path, database_url: str) -> Iterator[Dedicated]:
    """A single-node KRaft broker of its own; `database_url` (a reachable database, the shared
    one) keeps `scripts/backing-services` from starting a PostgreSQL cluster too."""
    state.mkdir(parents=True, exist_ok=True)
    libs = shared_kafka_libs()
    if libs is not None:
        (state / "kafka").mkdir(exist_ok=True)
        (state / "kafka" / "libs").symlink_to(libs, target_is_directory=True)
    env = {
        **_base_env(state),
        "DATABASE_URL": database_url,
        "BACKING_SERVICES_KAFKA_PORT": str(free_port()),
        "BACKING_SERVICES_KAFKA_CONTROLLER_PORT": str(free_port()),
        "BACKING_SERVICES_KAFKA_SECURE_PORT": str(free_port()),
    }
    broker = Dedicated(state, env)
    try:
        broker.up()
        yield broker
    finally:
        broker.drop()


@contextlib.contextmanager
def dedicated_cluster(
    state: Path, database_url: str, brokers: int = 3
) -> Iterator[DedicatedCluster]:
    """A Kafka cluster of its own, `brokers` KRaft nodes (each broker and controller) on free
    loopback ports, with the topics' defaults of `up --brokers` (replication factor 3,
    min.insync.replicas 2); as `dedicated_broker` otherwise."""
    state.mkdir(parents=True, exist_ok=True)
    libs = shared_kafka_libs()
    if libs is not None:
        (state / "kafka").mkdir(exist_ok=True)
        (state / "kafka" / "libs").symlink_to(libs, target_is_directory=True)
    ports = free_ports(2 * brokers)
    env = {
        **_base_env(state),
        "DATABASE_URL": database_url,
        "BACKING_SERVICES_KAFKA_PORTS": ",".join(map(str, ports[:brokers])),
        "BACKING_SERVICES_KAFKA_CONTROLLER_PORTS": ",".join(map(str, ports[brokers:])),
    }
    cluster = DedicatedCluster(state, env, ("--brokers", str(brokers)))
    try:
        cluster.up()
        yield cluster
    finally:
        cluster.keep_logs(state.with_name(f"{state.name}-logs"))
        cluster.drop()


@contextlib.contextmanager
def dedicated_postgres(state: Path, bootstrap_servers: str) -> Iterator[Dedicated]:
    """A PostgreSQL cluster of its own (Debian's pg_createcluster), with the `hospital` role,
    a password of its own (`settings["PGPASSWORD"]`) and the `hospital` database;
    `bootstrap_servers` (a reachable broker, the shared one) keeps `scripts/backing-services` from
    starting a broker too."""
    state.mkdir(parents=True, exist_ok=True)
    env = {
        **_base_env(state),
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap_servers,
        "BACKING_SERVICES_PG_PORT": str(free_port()),
        "BACKING_SERVICES_PG_CLUSTER": f"e2e_{uuid.uuid4().hex[:10]}",
    }
    cluster = Dedicated(state, env)
    try:
        cluster.up()
        yield cluster
    finally:
        cluster.drop()
