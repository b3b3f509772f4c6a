"""Replay datasets into Kafka in event-time order, keyed by customer id.

``speed`` scales event time to wall time (``speed=3600`` plays an hour per second);
``speed=None`` produces as fast as the broker takes it. ``since``/``until`` bound the
event time replayed. The report says what was produced per dataset, what was skipped
and each dataset's last event time, which a bounded run uses as its end of input.
"""

from __future__ import annotations

import heapq
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from flows.datasets import DatasetEvents
from pulse.kafka_check import QUIET_CLIENT_CONFIG

__all__ = ["ReplayReport", "merge_in_time_order", "replay", "ensure_topics", "make_producer"]

logger = logging.getLogger(__name__)


@dataclass
class ReplayReport:
    produced: Counter[str] = field(default_factory=Counter)
    """Events produced per dataset."""
    skipped: dict[str, Counter[str]] = field(default_factory=dict)
    """Source rows per dataset that could not become events, by reason."""
    first_ts_ms: dict[str, int] = field(default_factory=dict)
    last_ts_ms: dict[str, int] = field(default_factory=dict)
    acknowledged: int = 0
    """Messages the broker confirmed."""
    delivery_errors: int = 0
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.produced.values())


def merge_in_time_order(
    datasets: Iterable[DatasetEvents], since_ms: int | None = None, until_ms: int | None = None
) -> Iterator[tuple[int, str, dict[str, Any]]]:
    """(ts_ms, dataset, event) across datasets in event-time order; ``until`` is exclusive."""
    return heapq.merge(*(_bounded(d, since_ms, until_ms) for d in datasets), key=lambda item: item[0])


def _bounded(
    dataset: DatasetEvents, since_ms: int | None, until_ms: int | None
) -> Iterator[tuple[int, str, dict[str, Any]]]:
    # A function, not a nested generator expression: each stream must bind its own dataset.
    for ts, event in zip(dataset.ts_ms, dataset.events, strict=True):
        if (since_ms is None or ts >= since_ms) and (until_ms is None or ts < until_ms):
            yield ts, dataset.name, event


def make_producer(bootstrap_servers: str) -> Producer:
    return Producer({
        **QUIET_CLIENT_CONFIG,
        "bootstrap.servers": bootstrap_servers,
        "linger.ms": 20,
        "batch.num.messages": 10000,
        "enable.idempotence": False,
        "acks": "all",
        "queue.buffering.max.messages": 500000,
    })


def ensure_topics(bootstrap_servers: str, topics: dict[str, int], timeout: float = 30.0) -> None:
    """Create missing topics with the given partition counts (existing ones are left as they are)."""
    admin = AdminClient({"bootstrap.servers": bootstrap_servers, **QUIET_CLIENT_CONFIG})
    existing = set(admin.list_topics(timeout=timeout).topics)
    wanted = [NewTopic(name, partitions, 1) for name, partitions in topics.items() if name not in existing]
    if not wanted:
        return
    for name, future in admin.create_topics(wanted, request_timeout=timeout).items():
        try:
            future.result(timeout=timeout)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
        logger.info("created topic %s", name)


def replay(
    datasets: list[DatasetEvents],
    producer: Producer,
    topic: str,
    speed: float | None = None,
    since_ms: int | None = None,
    until_ms: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> ReplayReport:
    """Produce the datasets' events to ``topic``; returns once every message is acknowledged."""
    report = ReplayReport(skipped={d.name: d.skipped for d in datasets})
    errors: list[str] = []

    def delivered(err: Any, _msg: Any) -> None:
        if err is not None:
            errors.append(str(err))
        else:
            report.acknowledged += 1

    started = time.monotonic()
    first_event_ms: int | None = None
    for ts_ms, name, event in merge_in_time_order(datasets, since_ms, until_ms):
        if speed is not None:
            first_event_ms = ts_ms if first_event_ms is None else first_event_ms
            ahead = (ts_ms - first_event_ms) / 1000 / speed - (time.monotonic() - started)
            if ahead > 0:
                producer.poll(0)
                sleep(ahead)
        _produce(producer, topic, event["user_id"].encode(), orjson.dumps(event), delivered)
        report.produced[name] += 1
        report.first_ts_ms.setdefault(name, ts_ms)
        report.last_ts_ms[name] = ts_ms
    remaining = producer.flush(60)
    report.delivery_errors = len(errors) + remaining
    if report.delivery_errors:
        logger.error("%d messages were not delivered (first error: %s)", report.delivery_errors,
                     errors[0] if errors else "flush timed out")
    report.seconds = time.monotonic() - started
    return report


def _produce(producer: Producer, topic: str, key: bytes, value: bytes, callback: Callable[..., None]) -> None:
    while True:
        try:
            producer.produce(topic, key=key, value=value, on_delivery=callback)
            return
        except BufferError:
            producer.poll(0.05)  # local queue full: let deliveries drain, then retry
