"""How many replicas the hospital's topics get, by the brokers of the cluster
(`bus.replication`, which `ensure_topics` asks with the cluster's broker count)."""

from __future__ import annotations

import pytest

from scheduler.distributed.bus import replication


def test_a_single_broker_keeps_one_replica_and_the_brokers_defaults():
    assert replication(1) == (1, {})


@pytest.mark.parametrize("brokers", [3, 4, 7])
def test_three_brokers_or_more_give_three_replicas_two_of_them_in_sync(brokers):
    assert replication(brokers) == (3, {"min.insync.replicas": "2"})


def test_two_brokers_give_two_replicas_one_of_them_enough():
    assert replication(2) == (2, {"min.insync.replicas": "1"})


def test_a_cluster_that_shows_no_broker_yet_is_asked_for_one_replica():
    assert replication(0) == (1, {})
