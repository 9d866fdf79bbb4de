"""Topics of a test's own on the real broker: their names, their removal, and reading one to
its end. Shared by the integration and end-to-end tests."""

from __future__ import annotations

import time
import uuid

from scheduler.config import Config
from scheduler.distributed import bus


def own_topic_names(prefix: str = "t") -> dict[str, str]:
    """The `[kafka]` topic settings of a test of its own: a uuid in every name."""
    name = f"{prefix}-{uuid.uuid4().hex[:12]}"
    return {
        "inbound_topic": f"{name}.inbound",
        "decisions_topic": f"{name}.decisions",
        "dispatch_topic_prefix": f"{name}.dispatch.",
        "dead_letter_topic": f"{name}.dead-letter",
    }


def delete_topics(config: Config, prefix: str | None = None) -> None:
    """Those of the config's topics that exist (or, given a `prefix`, every topic whose name
    starts with it: a distributed region's), deleted (cleanup: never raises)."""
    from kafka.admin import KafkaAdminClient

    try:
        admin = KafkaAdminClient(**bus.client_options(config), request_timeout_ms=15000)
        try:
            existing = set(admin.list_topics())
            if prefix is None:
                mine = [t for t in bus.topic_partitions(config) if t in existing]
            else:
                mine = sorted(t for t in existing if t.startswith(prefix))
            if mine:
                admin.delete_topics(mine)
        finally:
            admin.close()
    except Exception:  # noqa: BLE001 - cleanup only
        pass


def read_topic(config: Config, topic: str, timeout_s: float = 30) -> list:
    """Every message of `topic`, from its beginning to its current end, on the partitions
    the broker has (not necessarily as many as the config asks for)."""
    from kafka import TopicPartition

    consumer = bus.consumer(config, group_id=None)
    try:
        partitions = [
            TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        messages: list = []
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < ends[tp] for tp in partitions):
            assert time.monotonic() < deadline, f"could not read {topic} to its end"
            for records in consumer.poll(timeout_ms=200).values():
                messages.extend(records)
        return messages
    finally:
        consumer.close(autocommit=False)
