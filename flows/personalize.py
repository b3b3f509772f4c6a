"""The main personalization dataflow.

    Kafka events ──parse──┬─► dead letters ──► Kafka DLQ topic
                          └─► (user_id, Event)
                               └─► customer   (keyed by user_id: features, labels, timers;
                                   one coalesced update per customer per batch)
                                    └─► model (one key: learn delayed labels, score updates)
                                         └─► redistribute ─► render (segments, JSON)
                                              └─► Redis (guarded, pipelined writes)

Step ids are part of the recovery schema: renaming one orphans its snapshots.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaSink
from bytewax.connectors.kafka import operators as kop
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.outputs import Sink

from config.settings import Settings, load_settings
from flows.steps import (
    CustomerLogic, DeadLetter, ModelLogic, RedisProfileSink, parse_batch, to_dead_letter_message,
)
from operators.customer import CustomerProcessor
from operators.events import EventParser
from operators.profile import render_profile
from operators.scoring import PropensityModel
from operators.segments import SegmentRules
from pulse import metrics
from pulse.kafka_check import QUIET_CLIENT_CONFIG

__all__ = ["FLOW_ID", "RunOptions", "build_flow", "get_flow"]

logger = logging.getLogger(__name__)

FLOW_ID = "pulse"
MODEL_KEY = "propensity"


@dataclass(frozen=True)
class RunOptions:
    """How this run meets its input."""

    tail: bool = True
    """Keep reading new events (production). False stops at the end of every partition."""
    end_of_input: Mapping[str, int] = field(default_factory=dict)
    """Event time (epoch ms) the clock moves to at end of input, by customer-id prefix
    (the text before the first ``-``; ``*`` for all others). Empty: the clock stays put."""

    def end_of_input_for(self, user_id: str) -> int | None:
        prefix = user_id.split("-", 1)[0]
        return self.end_of_input.get(prefix, self.end_of_input.get("*"))


def _log_kafka_error(step_id: str, error: object) -> None:
    metrics.KAFKA_ERRORS.inc()
    logger.warning("kafka consumer error: %s", error)


def build_flow(
    settings: Settings,
    options: RunOptions | None = None,
    source: Source | None = None,
    dead_letter_sink: Sink | None = None,
    profile_sink: Sink | None = None,
) -> Dataflow:
    """The main flow; tests inject sources/sinks, production uses Kafka and Redis."""
    options = options or RunOptions()
    rules = SegmentRules.load(settings.rules_path)
    parser = EventParser(settings.validation)
    processor = CustomerProcessor(settings, rules)
    # Bounded runs replay history: their timers follow event time only.
    wall_clock = settings.clock.mode == "wall" and options.tail

    flow = Dataflow(FLOW_ID)
    if source is None:
        kin = kop.input(
            "kafka_in", flow, brokers=settings.kafka.brokers, topics=[settings.kafka.events_topic],
            tail=options.tail, batch_size=settings.kafka.consumer_batch_size, add_config=dict(QUIET_CLIENT_CONFIG),
        )
        op.inspect("kafka_errors", kin.errs, _log_kafka_error)
        messages = kin.oks
    else:
        messages = op.input("in", flow, source)

    parsed = op.flat_map_batch("parse", messages, parse_batch(parser))
    split = op.branch("valid", parsed, lambda item: not isinstance(item, DeadLetter))
    dead = op.map("dead_letter", split.falses, to_dead_letter_message(settings.kafka.dead_letter_topic))
    op.output("dlq", dead, dead_letter_sink or KafkaSink(
        settings.kafka.brokers, settings.kafka.dead_letter_topic, add_config=dict(QUIET_CLIENT_CONFIG)))

    def build_customer(resume: bytes | None) -> CustomerLogic:
        metrics.CUSTOMERS_IN_STATE.inc()
        return CustomerLogic(processor, CustomerLogic.restore(resume), wall_clock, options.end_of_input_for)

    model_items = op.stateful_batch("customer", split.trues, build_customer)
    # Batch-wise glue below: one Python call per batch, not per item.
    to_model = op.flat_map_batch("to_model", model_items, lambda batch: [(MODEL_KEY, item) for _, item in batch])
    scored = op.stateful_batch(
        "model", to_model,
        lambda resume: ModelLogic(resume if resume is not None else PropensityModel(settings.model.learning_rate)),
    )
    spread = op.redistribute("spread", scored)
    profiles = op.flat_map_batch("render", spread, lambda batch: [render_profile(u, rules) for _, u in batch])
    op.output("redis", profiles, profile_sink or RedisProfileSink(settings.redis))
    return flow


def get_flow(config: str | None = None) -> Dataflow:
    """Entry point for ``python -m bytewax.run "flows.personalize:get_flow()"``."""
    return build_flow(load_settings(config))
