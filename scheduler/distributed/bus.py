"""Kafka as the hospital's event bus: topics, keys, clients.

- inbound: from the generator and the workers to the scheduler; `patient.arrived` and the
  `*.completed` events, keyed by patient (by room for a cleaning).
- decisions: every decision, from the scheduler to anyone who follows; keyed by patient.
- dispatch.<role>: `task.dispatched`, from the scheduler to the role's workers (consumer
  group `<topic>.workers`), keyed by staff member.
- dead-letter: from the scheduler and the workers to operators: the message and the reason,
  under the offending message's key.

Keys keep the events of one patient (or room) in order on one partition. A dispatch goes to
the partition of its staff member, so that one worker process does all of one person's work.
Every message carries a `run` header: consumers ignore messages of another run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from functools import cache, partial
from typing import Any

from scheduler import events as ev
from scheduler.config import Config, staff_roster

ROLES = ("porter", "medical", "cleaner")
# How long a producer or consumer waits for one broker's answer, and how old its idea of the
# partitions' leaders may grow, before it asks the cluster again. kafka-python's defaults
# (30 s, 5 min) make a client wait out a leader SIGKILLed on a replicated cluster (the leader
# moves within 3-5 s) instead of following the new one.
FAILOVER_TIMEOUTS: dict[str, int] = {"request_timeout_ms": 5000, "metadata_max_age_ms": 5000}
ANSWER_S = FAILOVER_TIMEOUTS["request_timeout_ms"] / 1000
# kafka-python logs every failed connection attempt; our own errors say it in one line.
logging.getLogger("kafka").setLevel(logging.CRITICAL)


class BusError(RuntimeError):
    """The broker cannot be used; the message says which and why."""


def dispatch_topic(config: Config, role: str) -> str:
    return f"{config.kafka.dispatch_topic_prefix}{role}"


def worker_group(config: Config, role: str) -> str:
    """The consumer group of a role's workers: named after the topic, so that hospitals
    sharing a broker (with topics of their own) never share workers."""
    return f"{dispatch_topic(config, role)}.workers"


def staff_of_role(config: Config, role: str) -> list[str]:
    return [staff_id for staff_id, r in staff_roster(config) if r == role]


def topic_partitions(config: Config) -> dict[str, int]:
    kafka = config.kafka
    topics = {
        kafka.inbound_topic: kafka.partitions,
        kafka.decisions_topic: kafka.partitions,
        kafka.dead_letter_topic: 1,
    }
    for role in ROLES:
        topics[dispatch_topic(config, role)] = max(1, len(staff_of_role(config, role)))
    return topics


def client_options(config: Config) -> dict[str, Any]:
    kafka = config.kafka
    options: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_servers.split(","),
        "security_protocol": kafka.security_protocol,
        # Back soon after a broker outage (kafka-python waits up to 30 s). Each failed
        # attempt also refreshes the metadata: that is when a client learns that a lost
        # leader's partitions moved (3-5 s after a SIGKILL on a replicated cluster), so
        # attempts 2 s apart found the new leader up to 2 s late.
        "reconnect_backoff_max_ms": 500,
    }
    if kafka.sasl_mechanism:
        options.update(
            sasl_mechanism=kafka.sasl_mechanism,
            sasl_plain_username=kafka.sasl_username,
            sasl_plain_password=os.environ.get("KAFKA_SASL_PASSWORD", ""),
        )
    if kafka.ssl_cafile:
        options["ssl_cafile"] = kafka.ssl_cafile
    return options


def replication(brokers: int) -> tuple[int, dict[str, str]]:
    """The replication factor and topic settings of a new topic on a cluster of `brokers`:
    three replicas once there are three brokers, of which two must hold a write before it
    is acknowledged (producers send with acks=all), so that one broker lost loses no
    acknowledged write and stops no write; one replica on a single broker."""
    replicas = max(1, min(brokers, 3))
    if replicas == 1:
        return 1, {}
    return replicas, {"min.insync.replicas": str(replicas - 1)}


def _unreachable(config: Config, exc: Exception) -> BusError:
    detail = str(exc) if type(exc).__name__ in str(exc) else f"{type(exc).__name__}: {exc}"
    return BusError(f"Kafka broker unreachable at {config.kafka.bootstrap_servers}: {detail}")


def ensure_topics(config: Config) -> None:
    """Create the hospital's topics that do not exist yet (replicated as `replication` says
    for the brokers the cluster has), and grow a dispatch topic that has fewer partitions
    than its role has staff (made by an earlier run with fewer porters, or auto-created by
    the broker with one): a dispatch goes to its staff member's partition, which must
    exist."""
    from kafka.admin import KafkaAdminClient
    from kafka.errors import InvalidPartitionsError, KafkaError

    try:
        admin = KafkaAdminClient(
            **client_options(config),
            request_timeout_ms=15000,  # creating replicated topics takes a while
            metadata_max_age_ms=FAILOVER_TIMEOUTS["metadata_max_age_ms"],
            bootstrap_timeout_ms=10000,
        )
    except KafkaError as exc:
        raise _unreachable(config, exc) from None
    try:
        wanted = topic_partitions(config)
        create_missing_topics(admin, wanted)
        dispatch = {name: wanted[name] for name in map(partial(dispatch_topic, config), ROLES)}
        have = _partition_counts(admin, dispatch)
        short = {name: count for name, count in dispatch.items() if have[name] < count}
        if short:
            logging.getLogger(__name__).warning(
                "growing %s to one partition per staff member",
                ", ".join(f"{name} ({have[name]} -> {count})" for name, count in short.items()),
            )
            try:
                admin.create_partitions(short)
            except InvalidPartitionsError:
                pass  # another process grew it meanwhile
            _partition_counts(admin, short, grown=True)
    except KafkaError as exc:
        raise BusError(
            f"cannot set up the topics on {config.kafka.bootstrap_servers}: "
            f"{type(exc).__name__}: {exc}"
        ) from None
    finally:
        admin.close()


def create_missing_topics(admin, wanted: dict[str, int]) -> None:
    """Create those of the topics (name: partitions) that do not exist yet, replicated as
    `replication` says for the brokers the cluster has."""
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    existing = set(admin.list_topics())
    replicas, settings = replication(len(admin.describe_cluster()["brokers"]))
    missing = [
        NewTopic(name, partitions, replicas, topic_configs=settings)
        for name, partitions in wanted.items()
        if name not in existing
    ]
    if missing:
        try:
            admin.create_topics(missing)
        except TopicAlreadyExistsError:
            pass  # another process created it meanwhile


def _partition_counts(
    admin, wanted: dict[str, int], grown: bool = False, timeout_s: float = 15
) -> dict[str, int]:
    """The topics' partition counts, once the broker's metadata knows every topic (and, if
    `grown`, shows `wanted` partitions of each): a topic just created or grown takes a
    moment to appear, and a producer started next must see it."""
    deadline = time.monotonic() + timeout_s
    while True:
        have = {
            t["name"]: len(t["partitions"])
            for t in admin.describe_topics(list(wanted))
            if t["error_code"] == 0
        }
        if all(
            name in have and (not grown or have[name] >= count) for name, count in wanted.items()
        ):
            return have
        if time.monotonic() > deadline:
            raise BusError(
                f"the broker does not show {', '.join(sorted(wanted))} "
                f"{'grown ' if grown else ''}in time"
            )
        time.sleep(0.2)


def producer(config: Config, transactional_id: str | None = None, batched: bool = False):
    """A producer; `batched` for one that sends in batches, each followed by a flush (the
    scheduler's outbox relay): it holds records until the flush or a full batch of a
    partition (large batches: fewer requests, and the sender thread, which competes with
    the caller for the interpreter, woken up less often) instead of 5 ms."""
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    try:
        # Idempotent, acknowledged by all replicas: a retried send is not written twice.
        # A transactional id fences off an older producer of the same id (a scheduler
        # deposed while frozen): the broker refuses its writes.
        extra: dict[str, Any] = {"transactional_id": transactional_id} if transactional_id else {}
        if batched:
            extra.update(linger_ms=1000, batch_size=256 * 1024)
        else:
            extra.update(linger_ms=5)
        made = KafkaProducer(
            **client_options(config),
            **FAILOVER_TIMEOUTS,
            acks="all",
            max_block_ms=15000,
            partitioner=cached_partitioner()(),
            **extra,
        )
    except KafkaError as exc:
        raise _unreachable(config, exc) from None
    if transactional_id:
        requeue_when_coordinator_lost(made)
    return made


def requeue_when_coordinator_lost(producer: Any) -> None:
    """Work around kafka-python 3.0.12 losing a transactional request (AddPartitionsToTxn,
    EndTxn) when its transaction coordinator's broker is gone: the sender's `await_ready`
    raises instead of answering False, and the handler of that error looks the coordinator
    up again but never queues the request again (Sender._maybe_send_pending_request: its
    `target_node` is already set). The partitions are then never added to the transaction,
    so their batches are never sent: a flush waits out its timeout after every failover of
    that broker. Answered False, the sender takes the path meant for it: the coordinator
    looked up again, the request queued again."""
    from kafka.errors import KafkaError

    client = producer._sender._client
    ready = client.await_ready

    def await_ready(node_id: Any, timeout_ms: int = 30000) -> bool:
        try:
            return bool(ready(node_id, timeout_ms=timeout_ms))
        except KafkaError:
            return False

    client.await_ready = await_ready


@cache
def cached_partitioner() -> type:
    """The class of `CachedPartitioner`, made at the first producer (kafka is imported only
    by the commands that use it)."""
    from kafka.partitioner import DefaultPartitioner

    class CachedPartitioner(DefaultPartitioner):
        """kafka-python's default partitioner (a keyed message goes to murmur2(key) modulo
        the partitions), its choice remembered per topic, key and partition count: the hash
        is pure Python, a tenth of a send's cost, and the relay sends a patient's decisions
        by the dozen. Forgets all past `MAX_KEYS`: a week-long run's patients do not pile
        up."""

        MAX_KEYS = 20_000

        def __init__(self) -> None:
            self.chosen: dict[tuple[str, bytes], tuple[int, int]] = {}

        def partition(self, topic, key, serialized_key, value, serialized_value, cluster):
            partitions = cluster.partitions_for_topic(topic)
            args = (topic, key, serialized_key, value, serialized_value, cluster)
            if serialized_key is None or not partitions:  # at random, or an error
                return super().partition(*args)
            chosen = self.chosen.get((topic, serialized_key))
            if chosen is None or chosen[0] != len(partitions):
                if len(self.chosen) >= self.MAX_KEYS:
                    self.chosen.clear()
                chosen = (len(partitions), super().partition(*args))
                self.chosen[topic, serialized_key] = chosen
            return chosen[1]

    return CachedPartitioner


def close_producer(producer: Any, timeout_s: float = 10) -> None:
    """Close a producer, whatever it still holds. kafka-python 3.0's close() raises when what
    it holds cannot be sent in time (the broker stopped), and leaves the producer open, to
    raise again when collected: a service on its way out with SendFailed (exit 4) would die of
    a traceback instead. Then what is left is dropped. Nothing is lost by it: callers learn
    what was sent from `Outbox.flush`, which has already said what was not (and the service
    started again sends it again); a clean exit flushed everything first."""
    from kafka.errors import KafkaError

    try:
        producer.close(timeout=timeout_s)
    except KafkaError as exc:
        logging.getLogger(__name__).warning(
            "closing the producer: %g s were not enough (%s): dropping what is left",
            timeout_s,
            type(exc).__name__,
        )
        # No public way to drop it: the sender's forced close fails the batches left, so
        # that close() then has nothing to wait for.
        producer._sender.force_close()
        producer.close(timeout=timeout_s)


def drop_producer(producer: Any) -> None:
    """Close a producer at once, failing what it still holds (the caller knows it as not
    sent): a stuck transactional producer given up for a fresh one of the same id, which
    fences it off at the broker anyway."""
    producer._sender.force_close()  # no public way: see close_producer
    with contextlib.suppress(Exception):  # whatever a failing broker makes it raise
        producer.close(timeout=0)


def commit_transaction(producer: Any, timeout_s: float) -> bool:
    """Commit the producer's transaction, waiting `timeout_s` at most: False if it is not
    committed by then. kafka-python 3.0's commit_transaction() waits for the broker's
    answer with no time limit (`result.wait()`), and after the transaction coordinator's
    broker is lost it can wait for ever; these are its calls, with a timeout (`wait` of its
    TransactionalRequestResult says whether it is done, and raises the error it ended
    with)."""
    result = producer._transaction_manager.begin_commit()
    producer._sender.wakeup()
    return bool(result.wait(timeout_ms=round(timeout_s * 1000)))


def end_offsets(consumer: Any, partitions: list, timeout_s: float = 60) -> dict:
    """The partitions' end offsets, asked again until `timeout_s`: a leader lost on the way
    makes one request time out (kafka-python looks the leaders up again), not the read."""
    return _offsets(consumer.end_offsets, partitions, timeout_s)


def beginning_offsets(consumer: Any, partitions: list, timeout_s: float = 60) -> dict:
    return _offsets(consumer.beginning_offsets, partitions, timeout_s)


def _offsets(ask: Any, partitions: list, timeout_s: float) -> dict:
    from kafka.errors import KafkaError

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return ask(partitions, timeout_ms=round(1000 * ANSWER_S))
        except KafkaError as exc:
            if time.monotonic() + ANSWER_S > deadline:
                raise BusError(
                    f"the broker did not give the offsets of {len(partitions)} partitions "
                    f"within {timeout_s:.0f} s: {type(exc).__name__}: {exc}"
                ) from None
            time.sleep(0.2)


def learn_partitions(config: Config, producer) -> None:
    """Have the producer fetch the metadata of the topics the scheduler writes now, at
    start, not at the first send of each (a round trip to the broker each, mid-relay).
    A broker that does not answer is only noted: the sends will wait for it as usual."""
    from kafka.errors import KafkaError

    for topic in topic_partitions(config):
        if topic != config.kafka.inbound_topic:
            try:
                producer.partitions_for(topic)
            except KafkaError as exc:
                logging.getLogger(__name__).info("no metadata of %s yet: %s", topic, exc)
                return


def consumer(config: Config, **options: Any):
    from kafka import KafkaConsumer
    from kafka.errors import KafkaError

    try:
        return KafkaConsumer(
            **client_options(config),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **{**FAILOVER_TIMEOUTS, **options},
        )
    except KafkaError as exc:
        raise _unreachable(config, exc) from None


def key_of(event: ev.Event) -> bytes:
    return (getattr(event, "patient_id", "") or getattr(event, "room_id", "")).encode()


def encode(event: ev.Event) -> bytes:
    return event.to_json().encode()


def headers(run_id: str, producer_id: str) -> list[tuple[str, bytes]]:
    return [("run", run_id.encode()), ("producer", producer_id.encode())]


def header(message: Any, name: str) -> str | None:
    for key, value in message.headers or ():
        if key == name:
            return value.decode(errors="replace")
    return None


def dispatch_partition(config: Config, staff_id: str, role: str) -> int:
    return (
        staff_of_role(config, role).index(staff_id)
        % topic_partitions(config)[dispatch_topic(config, role)]
    )


def dispatch_routes(config: Config) -> dict[tuple[str, str], tuple[str, int]]:
    """(role, staff member) -> work topic and partition (`dispatch_partition`), computed
    once: the scheduler routes thousands of dispatches a second catching up a backlog."""
    return {
        (role, staff_id): (
            dispatch_topic(config, role),
            dispatch_partition(config, staff_id, role),
        )
        for role in ROLES
        for staff_id in staff_of_role(config, role)
    }


def dead_letter(message_value: bytes, reason: str, origin: str) -> bytes:
    return json.dumps(
        {"reason": reason, "origin": origin, "message": message_value.decode(errors="replace")},
        sort_keys=True,
    ).encode()


class SendFailed(BusError):
    """Some messages of a batch were not written; `sent` has the tags of those that were."""

    def __init__(self, message: str, sent: list[Any]):
        super().__init__(message)
        self.sent = sent


class Outbox:
    """Messages sent but not yet known to be written. `flush` waits for them and returns the
    tags given with those written, in order, so that a caller acts (commits, counts) only on
    what the broker has acknowledged; if some failed it raises `SendFailed` (with the tags
    of those written). Either way it forgets them: the next flush is about the next sends."""

    def __init__(self, producer, headers: list[tuple[str, bytes]], flush_timeout_s: float = 30):
        self.producer, self.headers = producer, headers
        self.flush_timeout_s = flush_timeout_s
        self.unflushed: list[tuple[Any, Any]] = []  # (future, tag)

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        tag: Any = None,
        partition: int | None = None,
    ) -> None:
        from kafka.errors import KafkaError

        try:
            future = self.producer.send(
                topic, key=key, value=value, headers=self.headers, partition=partition
            )
        except KafkaError as exc:
            raise BusError(f"could not send to {topic}: {exc}") from None
        except ValueError as exc:
            # kafka-python's word for a partition the topic does not have (`ensure_topics`
            # grows dispatch topics; a topic shrunk or recreated behind our back is not)
            raise BusError(
                f"could not send to {topic}, partition {partition}: {exc}; the "
                f"topic has fewer partitions than the hospital needs"
            ) from None
        self.unflushed.append((future, tag))

    def send_event(self, topic: str, event: ev.Event, tag: Any = None) -> None:
        self.send(topic, key_of(event), encode(event), tag)

    def flush(self) -> list[Any]:
        from kafka.errors import KafkaError

        if not self.unflushed:
            return []
        waiting, self.unflushed = self.unflushed, []
        try:
            self.producer.flush(timeout=self.flush_timeout_s)
        except KafkaError as exc:
            failure: Exception | None = exc
        else:
            failure = None
        sent = [tag for future, tag in waiting if future.is_done and future.succeeded()]
        if len(sent) < len(waiting):
            if failure is None:
                failure = next(
                    (
                        future.exception
                        for future, _ in waiting
                        if future.is_done and future.failed()
                    ),
                    None,
                )
            raise SendFailed(
                f"could not send {len(waiting) - len(sent)} of {len(waiting)} "
                f"messages to Kafka: {failure or 'no acknowledgement in time'}",
                sent,
            )
        return sent
