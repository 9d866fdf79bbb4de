"""`scripts/backing-services down` stops what its own directory's `up` started, and nothing
else: a state directory whose `up` found the PostgreSQL cluster already running (the shared
one, seen from a dedicated directory) leaves it running. Played on a cluster of the test's
own, so that a failure never stops the server the other tests use."""

from __future__ import annotations

import subprocess

import pytest

from tests.dedicated import Dedicated, dedicated_postgres

pytestmark = pytest.mark.services


def accepting(port: str) -> bool:
    return subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1", "-p", port]).returncode == 0


def test_down_leaves_a_cluster_it_found_running(services_env, tmp_path):
    with dedicated_postgres(tmp_path / "pg", services_env["KAFKA_BOOTSTRAP_SERVERS"]) as owner:
        port = owner.env["BACKING_SERVICES_PG_PORT"]
        state = tmp_path / "another"
        another = Dedicated(state, {**owner.env, "BACKING_SERVICES_STATE": str(state)})
        another.up()  # the same cluster, running already
        another.down()
        assert accepting(port), "down stopped a cluster its up had found running"

        owner.down()  # the directory that started it still stops it
        assert not accepting(port)
        owner.up()
        assert accepting(port)
