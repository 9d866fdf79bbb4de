"""Where each hospital of a distributed region lives: its topics, its database schema, its
partition of the region's hospitals topic.

Each hospital keeps the single hospital's distributed layout, under names of its own: topics
`<ns>.region.<id>.inbound`, `.decisions`, `.dispatch.<role>`, `.dead-letter` (`<ns>`: the
deployment's inbound topic's first part, `hospital` by default), and a PostgreSQL
schema `region_<id>` in the run's database (the same tables, migrations and tools as a
hospital's own database: `hospital export --db` on the schema's URL exports it). The
hospitals topic has one partition per hospital, in the region's order; which scheduler
process owns a hospital is which member of the schedulers' consumer group Kafka assigns
that partition to.
"""

from __future__ import annotations

import dataclasses
import re

from scheduler.config import Config
from scheduler.region.config import RegionConfig

SCHEMA_PREFIX = "region_"
COORDINATOR_SCHEMA = "region_coordinator"


def topic_prefix(base: Config) -> str:
    """The region's topics' namespace: beside the deployment's own topics (a test's topics
    of its own give it a region of its own)."""
    namespace = base.kafka.inbound_topic.rsplit(".", 1)[0]
    return f"{namespace}.region."


def hospitals_topic(base: Config, region: RegionConfig) -> str:
    """The topic whose partitions are the hospitals (named by their count: a topic's
    partitions cannot be fewer later)."""
    return f"{topic_prefix(base)}hospitals.{len(region.hospitals)}"


def coordinator_topic(base: Config) -> str:
    """The coordinator's own decisions (offers and referrals out), for whoever follows."""
    return f"{topic_prefix(base)}coordinator.decisions"


def schedulers_group(base: Config, run_id: str) -> str:
    return f"{topic_prefix(base)}{run_id}.schedulers"


def schema_of(hospital_id: str) -> str:
    return SCHEMA_PREFIX + re.sub(r"[^a-z0-9_]", "_", hospital_id.lower())


def schema_url(url: str, schema: str) -> str:
    """The database URL whose connections use `schema` (PostgreSQL's search_path)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise ValueError("a distributed region keeps its hospitals in PostgreSQL schemas")
    return parsed.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
        hide_password=False
    )


def member_config(region: RegionConfig, hospital_id: str, base: Config) -> Config:
    """Hospital `hospital_id`'s config, with the broker and database of `base` and the
    topics and schema of its own."""
    config = region.member(hospital_id).config
    name = f"{topic_prefix(base)}{hospital_id}."
    kafka = dataclasses.replace(
        base.kafka,
        enabled=True,
        inbound_topic=f"{name}inbound",
        decisions_topic=f"{name}decisions",
        dispatch_topic_prefix=f"{name}dispatch.",
        dead_letter_topic=f"{name}dead-letter",
        partitions=1,  # one hospital's events, in one order
    )
    database = dataclasses.replace(
        base.database, url=schema_url(base.database.url, schema_of(hospital_id))
    )
    return dataclasses.replace(config, kafka=kafka, database=database)


def ensure_schema(url: str, schema: str) -> None:
    from sqlalchemy import text

    from scheduler.db.store import connect

    engine = connect(url)
    try:
        with engine.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    finally:
        engine.dispose()


def assign_all(consumer, topics) -> list:
    """Every partition of `topics`, assigned to `consumer` (no group: a region's process
    that reads all its hospitals' topics of one kind); the partitions."""
    from kafka import TopicPartition

    partitions = [
        TopicPartition(topic, p)
        for topic in sorted(topics)
        for p in sorted(consumer.partitions_for_topic(topic) or ())
    ]
    consumer.assign(partitions)
    return partitions
