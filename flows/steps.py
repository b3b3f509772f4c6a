"""Bytewax adapters for the main flow: thin wrappers that call `operators/` and count metrics.

Nothing here decides anything about customers; it moves items between the pure logic
and Bytewax's stateful/sink interfaces, and turns Pulse outputs into Kafka messages.
"""

from __future__ import annotations

import copy
import logging
import pickle
import time
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from typing import Any, Union

import redis
from bytewax.connectors.kafka import KafkaSinkMessage, KafkaSourceMessage
from bytewax.operators import StatefulBatchLogic
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from redis.backoff import NoBackoff
from redis.retry import Retry
from typing_extensions import override

from config.settings import RedisSettings
from operators.customer import CustomerOutput, CustomerProcessor, CustomerUpdate
from operators.events import Event, EventParser, Rejection
from operators.profile import ProfileWrite
from operators.scoring import Example, PropensityModel
from pulse import metrics
from state.customer import CustomerState
from state.keys import KeyLayout
from state.redis_writer import ProfileWriter

__all__ = [
    "DeadLetter", "parse_batch", "to_dead_letter_message", "CustomerLogic", "ModelLogic",
    "RedisProfileSink", "ModelItem",
]

logger = logging.getLogger(__name__)

ModelItem = Union[Example, CustomerUpdate]
"""What the customer step sends to the (single) model step."""


class DeadLetter:
    """An input message that failed validation, with where it came from."""

    __slots__ = ("message", "rejection")

    def __init__(self, message: KafkaSourceMessage, rejection: Rejection) -> None:
        self.message = message
        self.rejection = rejection


def parse_batch(parser: EventParser) -> Callable[[list[KafkaSourceMessage]], list[Any]]:
    """Mapper for `flat_map_batch`: messages -> ``(user_id, Event)`` pairs or `DeadLetter`s."""

    def parse(messages: list[KafkaSourceMessage]) -> list[Any]:
        now_ms = int(time.time() * 1000)
        out: list[Any] = []
        by_type: Counter[str] = Counter()
        newest = 0
        for message in messages:
            result = parser.parse(message.value, message.key, now_ms)
            if isinstance(result, Event):
                out.append((result.user_id, result))
                by_type[result.type] += 1
                newest = max(newest, result.ts_ms)
            else:
                metrics.DEAD_LETTERS.labels(result.reason).inc()
                out.append(DeadLetter(message, result))
        for kind, n in by_type.items():
            metrics.EVENTS_IN.labels(kind).inc(n)
        if newest:
            metrics.EVENT_TIME_LAG.set(max(0.0, (now_ms - newest) / 1000))
        return out

    return parse


def to_dead_letter_message(topic: str) -> Callable[[DeadLetter], KafkaSinkMessage]:
    """The original bytes as the value; reason and source position as headers."""

    def convert(dead: DeadLetter) -> KafkaSinkMessage:
        msg = dead.message
        headers = [
            ("pulse-dlq-reason", dead.rejection.reason.encode()),
            ("pulse-dlq-detail", dead.rejection.detail[:500].encode()),
            ("pulse-source-topic", str(msg.topic).encode()),
            ("pulse-source-partition", str(msg.partition).encode()),
            ("pulse-source-offset", str(msg.offset).encode()),
        ]
        return KafkaSinkMessage(key=msg.key, value=msg.value, topic=topic, headers=headers)

    return convert


def _emit(out: CustomerOutput) -> list[ModelItem]:
    if out.duplicates:
        metrics.DUPLICATES.inc(out.duplicates)
    if out.late:
        metrics.LATE_EVENTS.inc(out.late)
    items: list[ModelItem] = list(out.examples)
    if out.update is not None:
        items.append(out.update)
    return items


class CustomerLogic(StatefulBatchLogic[Event, ModelItem, bytes]):
    """One customer's keyed state: events in, coalesced update per batch out.

    Snapshots are the pickled state: immutable, and several times cheaper than
    ``copy.deepcopy`` of the nested state (recovery pickles them anyway).
    """

    def __init__(
        self,
        processor: CustomerProcessor,
        state: CustomerState,
        wall_clock: bool,
        end_of_input: Callable[[str], int | None],
    ) -> None:
        self.processor = processor
        self.state = state
        self.wall_clock = wall_clock
        self.end_of_input = end_of_input

    @override
    def on_batch(self, values: list[Event]) -> tuple[Iterable[ModelItem], bool]:
        if not self.state.user_id:
            self.state.user_id = values[0].user_id
        return _emit(self.processor.on_events(self.state, values)), StatefulBatchLogic.RETAIN

    @override
    def on_notify(self) -> tuple[Iterable[ModelItem], bool]:
        now_ms = int(time.time() * 1000)
        return _emit(self.processor.on_time(self.state, now_ms, advance_clock=False)), StatefulBatchLogic.RETAIN

    @override
    def on_eof(self) -> tuple[Iterable[ModelItem], bool]:
        end_ms = self.end_of_input(self.state.user_id)
        if end_ms is None:
            return [], StatefulBatchLogic.RETAIN
        return _emit(self.processor.on_time(self.state, end_ms)), StatefulBatchLogic.RETAIN

    @override
    def notify_at(self) -> datetime | None:
        if not self.wall_clock:
            return None
        due = self.processor.next_due_ms(self.state)
        return None if due is None else datetime.fromtimestamp(due / 1000, tz=timezone.utc)

    @override
    def snapshot(self) -> bytes:
        return pickle.dumps(self.state, protocol=pickle.HIGHEST_PROTOCOL)

    @staticmethod
    def restore(snapshot: bytes | None) -> CustomerState:
        # Bytewax passes no key: a new customer's state learns its id from its first event.
        return CustomerState(user_id="") if snapshot is None else pickle.loads(snapshot)  # noqa: S301 - our own snapshot


class ModelLogic(StatefulBatchLogic[ModelItem, CustomerUpdate, PropensityModel]):
    """The single shared model: learns from examples, scores updates, in arrival order."""

    def __init__(self, model: PropensityModel) -> None:
        self.model = model

    @override
    def on_batch(self, values: list[ModelItem]) -> tuple[Iterable[CustomerUpdate], bool]:
        model = self.model
        scored: list[CustomerUpdate] = []
        learned = Counter[bool]()
        for item in values:
            if isinstance(item, Example):
                model.learn(item)
                learned[item.label] += 1
            else:
                item.propensity, item.top_features = model.score_and_explain(item.features)
                item.model_version = model.version
                scored.append(item)
        if learned:
            for label, n in learned.items():
                metrics.MODEL_EXAMPLES.labels("positive" if label else "negative").inc(n)
            metrics.MODEL_VERSION.set(model.version)
            metrics.MODEL_ROC_AUC.set(model.roc_auc.get())
            metrics.MODEL_LOG_LOSS.set(model.log_loss.get())
        return scored, StatefulBatchLogic.RETAIN

    @override
    def snapshot(self) -> PropensityModel:
        return copy.deepcopy(self.model)


class _RedisPartition(StatelessSinkPartition[ProfileWrite]):
    def __init__(self, writer: ProfileWriter, client: redis.Redis) -> None:
        self._writer = writer
        self._client = client

    @override
    def write_batch(self, items: list[ProfileWrite]) -> None:
        result = self._writer.write(items)
        metrics.REDIS_WRITE_SECONDS.observe(result.seconds)
        metrics.REDIS_BATCH_SIZE.observe(result.applied + result.stale)
        metrics.PROFILES_WRITTEN.inc(result.applied)
        metrics.PROFILES_STALE.inc(result.stale)

    @override
    def close(self) -> None:
        self._client.close()


class RedisProfileSink(DynamicSink[ProfileWrite]):
    """Each worker writes its own share of profiles through a `ProfileWriter`."""

    def __init__(self, settings: RedisSettings) -> None:
        self._settings = settings

    @override
    def build(self, step_id: str, worker_index: int, worker_count: int) -> _RedisPartition:
        s = self._settings
        # One retry policy (the writer's, with metrics and logs), not redis-py's as well.
        client = redis.Redis.from_url(s.url, socket_timeout=10, socket_connect_timeout=5, retry=Retry(NoBackoff(), 0))
        writer = ProfileWriter(
            client, KeyLayout(s.key_prefix), s.profile_ttl_seconds, s.retry_attempts,
            s.retry_backoff_max_seconds, on_retry=lambda exc: metrics.REDIS_ERRORS.inc(),
        )
        return _RedisPartition(writer, client)
