"""scripts/backing-services brings up a working Kafka broker and PostgreSQL server.

Slow on a cold machine (Maven fetch of the Kafka jars, maybe an apt install of
PostgreSQL): marked `services`. The services are left running for other tests.
"""

import subprocess
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ROOT / "scripts" / "backing-services"
TOPIC = "services-smoke"


def _run(*args: str, timeout: float) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [str(SERVICES), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, (
        f"scripts/backing-services {' '.join(args)} exited {proc.returncode}\n"
        f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    )
    return proc


def _settings(stdout: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in stdout.splitlines() if "=" in line)
    return {key.strip(): value.strip() for key, value in pairs}


def _kafka_round_trip(bootstrap: str) -> None:
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    try:
        admin.create_topics([NewTopic(TOPIC, num_partitions=1, replication_factor=1)])
    except TopicAlreadyExistsError:
        pass  # left by an earlier run: the services are kept between runs
    finally:
        admin.close()

    payload = uuid.uuid4().bytes
    producer = KafkaProducer(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    try:
        # The topic's leader may need a moment after creation: get() retries are
        # left to the producer, bounded by the timeout.
        meta = producer.send(TOPIC, payload).get(timeout=30)
    finally:
        producer.close(timeout=5)

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        request_timeout_ms=10_000,
    )
    try:
        partition = TopicPartition(TOPIC, meta.partition)
        consumer.assign([partition])
        consumer.seek(partition, meta.offset)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=1_000).values():
                if any(record.value == payload for record in records):
                    return
        pytest.fail(f"the message produced at offset {meta.offset} was not consumed back")
    finally:
        consumer.close()


def _select_one(url: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(url, connect_args={"connect_timeout": 10})
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("select 1")).scalar() == 1
    finally:
        engine.dispose()


@pytest.mark.services
def test_services_up_gives_working_kafka_and_postgres():
    up = _run("up", timeout=600)
    settings = _settings(up.stdout)
    assert settings.keys() >= {"KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL"}, up.stdout

    _kafka_round_trip(settings["KAFKA_BOOTSTRAP_SERVERS"])
    _select_one(settings["DATABASE_URL"])

    status = _run("status", timeout=60).stdout.splitlines()
    assert [line.split(":", 1)[0] for line in status] == ["kafka", "postgres"], status
    assert all(" running " in line for line in status), status


@pytest.mark.services
def test_postgres_lets_the_project_role_in_with_its_password_only(monkeypatch):
    up = _run("up", timeout=600)
    exports = _settings(_run("env", timeout=60).stdout.replace("export ", ""))
    password = exports.get("PGPASSWORD")
    assert password, "scripts/backing-services env gives no PGPASSWORD"
    assert password not in up.stdout + up.stderr, "`up` printed the password"
    url = exports["DATABASE_URL"]
    assert password not in url

    monkeypatch.setenv("PGPASSWORD", password)
    _select_one(url)
    monkeypatch.delenv("PGPASSWORD")
    with pytest.raises(Exception, match="password"):
        _select_one(url)  # no `trust` left: without the password, no way in
    monkeypatch.setenv("PGPASSWORD", "not-the-password")
    with pytest.raises(Exception, match="password authentication failed"):
        _select_one(url)
