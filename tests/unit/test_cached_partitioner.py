"""The producers' partitioner: kafka-python's default choice, remembered."""

from __future__ import annotations

from kafka.partitioner import DefaultPartitioner

from scheduler.distributed.bus import cached_partitioner


class Cluster:
    """What a partitioner asks of the producer's metadata."""

    def __init__(self, partitions: dict[str, int]):
        self.partitions = partitions

    def topics(self):
        return set(self.partitions)

    def partitions_for_topic(self, topic):
        return set(range(self.partitions[topic])) if topic in self.partitions else None

    def available_partitions_for_topic(self, topic):
        return self.partitions_for_topic(topic)


def choose(partitioner, cluster, topic, key):
    return partitioner.partition(topic, key, key, b"{}", b"{}", cluster)


def test_it_chooses_as_the_default_partitioner_does_each_time():
    cluster = Cluster({"decisions": 6, "dead-letter": 1})
    cached, default = cached_partitioner()(), DefaultPartitioner()
    keys = [f"patient-{n}".encode() for n in range(300)] + [b"", b"F1-12"]
    for _ in range(2):  # the second time from what it remembers
        for topic in ("decisions", "dead-letter"):
            assert [choose(cached, cluster, topic, k) for k in keys] == [
                choose(default, cluster, topic, k) for k in keys
            ]
    assert len({choose(cached, cluster, "decisions", k) for k in keys}) == 6


def test_a_topic_grown_since_is_chosen_for_anew():
    cluster = Cluster({"dispatch": 2})
    cached, default = cached_partitioner()(), DefaultPartitioner()
    keys = [f"porter-{n}".encode() for n in range(40)]
    before = [choose(cached, cluster, "dispatch", k) for k in keys]
    cluster.partitions["dispatch"] = 7
    after = [choose(cached, cluster, "dispatch", k) for k in keys]
    assert after == [choose(default, cluster, "dispatch", k) for k in keys] != before
