"""The secured deployment: the broker's SASL_SSL listener (SCRAM-SHA-512 over TLS, made by
`scripts/backing-services up --secure`, which the test command runs) lets in only a client that
trusts its CA and knows the password, and a whole distributed run through it is correct.
The password is read from the environment only: no log, file or table of the run holds it."""

from __future__ import annotations

import json
import shlex
import subprocess

import pytest
from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaConfigurationError
from sqlalchemy import create_engine, inspect, text

from scheduler.config import load
from scheduler.distributed import bus

from .conftest import ROOT, SERVICES, Topics, run_kafka
from .test_distributed import assert_solve_reproduces

SECURE_KEYS = (
    "KAFKA_BOOTSTRAP_SERVERS",
    "HOSPITAL_KAFKA_SECURITY_PROTOCOL",
    "HOSPITAL_KAFKA_SASL_MECHANISM",
    "HOSPITAL_KAFKA_SASL_USERNAME",
    "HOSPITAL_KAFKA_SSL_CAFILE",
    "KAFKA_SASL_PASSWORD",
)


@pytest.fixture(scope="module")
def secure_env() -> dict[str, str]:
    done = subprocess.run(
        [str(SERVICES), "env", "--secure"], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    if done.returncode != 0:
        pytest.fail(
            f"scripts/backing-services env --secure failed "
            f"(run `scripts/backing-services up --secure`):"
            f" {done.stderr[-1000:]}"
        )
    found = {}
    for line in done.stdout.splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        found[name] = shlex.split(value)[0] if value else ""
    missing = [key for key in SECURE_KEYS if not found.get(key)]
    assert not missing, f"scripts/backing-services env --secure lacks {missing}"
    return {key: found[key] for key in SECURE_KEYS}


def can_list_topics(options: dict) -> bool:
    try:
        admin = KafkaAdminClient(**options, request_timeout_ms=5000)
    except KafkaConfigurationError:
        raise  # a mistake of the test's, not a refusal
    except Exception:  # noqa: BLE001 - refused, whichever way the client says it
        return False
    try:
        admin.list_topics()
        return True
    except Exception:  # noqa: BLE001
        return False
    finally:
        admin.close()


def test_the_secured_listener_lets_in_only_a_client_with_the_ca_and_the_password(
    secure_env, monkeypatch
):
    for key, value in secure_env.items():
        monkeypatch.setenv(key, value)
    good = bus.client_options(load(None))
    assert good["security_protocol"] == "SASL_SSL" and good["ssl_cafile"]
    assert can_list_topics(good)

    servers = good["bootstrap_servers"]
    assert not can_list_topics({"bootstrap_servers": servers}), "plaintext let in"
    assert not can_list_topics({**good, "sasl_plain_password": "not-the-password"}), (
        "a wrong password let in"
    )
    without_ca = {key: value for key, value in good.items() if key != "ssl_cafile"}
    assert not can_list_topics(without_ca), "a client that does not trust our CA got in"


def test_a_distributed_run_over_sasl_ssl_is_correct_and_leaks_no_password(
    secure_env, topics: Topics, database, tmp_path
):
    password = secure_env["KAFKA_SASL_PASSWORD"]
    env = {**topics.env, **secure_env}
    run = run_kafka(env, database.url, tmp_path, speed=4, duration="2m")
    record, out, report, logs, done = run.record, run.out, run.report, run.logs, run.done

    figures = json.loads(report.read_text())
    assert figures["arrivals"] == 25, figures["arrivals"]  # every 5 s from 0 s to 120 s
    assert figures["admitted"] + figures["referred"] == figures["arrivals"]
    assert figures["discharged"] > 0
    assert_solve_reproduces(record, out, env, tmp_path)

    written = [
        done.stdout,
        done.stderr,
        *(p.read_text() for p in logs),
        *(p.read_text() for p in (record, out, report)),
    ]
    assert not [text for text in written if password in text], "the password was written out"
    engine = create_engine(database.url)
    try:
        with engine.connect() as connection:
            for table in inspect(connection).get_table_names():
                rows = connection.execute(text(f'SELECT * FROM "{table}"')).fetchall()
                assert password not in repr(rows), f"the password is in table {table}"
    finally:
        engine.dispose()
