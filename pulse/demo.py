"""`pulse demo`: the whole job on the real datasets, end to end, then a summary.

Starts a private tansu broker and redis-server (unless KAFKA_BOOTSTRAP_SERVERS /
REDIS_URL point at real ones), creates the topics, replays every dataset plus a few
malformed messages, runs the flow until every event is consumed, prints what happened
and stops what it started.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import orjson
import redis

from config.settings import Settings
from flows.datasets import DATASETS, load_dataset
from flows.personalize import RunOptions
from flows.replay import ensure_topics, make_producer, replay
from pulse.kafka_check import wait_for_kafka
from pulse.runner import WorkerOptions, run_summary, run_workers
from pulse.services import start_redis, start_tansu
from state.client import ProfileClient

__all__ = ["run_demo", "MALFORMED_SAMPLES"]

logger = logging.getLogger(__name__)

# What a real feed also carries; each must land in the dead-letter topic with its reason.
MALFORMED_SAMPLES: list[tuple[bytes | None, bytes]] = [
    (b"demo-bad-1", b"this is not json"),
    (b"demo-bad-2", b'["an", "array"]'),
    (b"demo-bad-3", b'{"event_id": "x1", "type": "page_view", "ts": "2011-01-01T00:00:00Z", "url": "/"}'),
    (b"demo-bad-4", b'{"event_id": "x2", "type": "teleport", "user_id": "demo-bad-4", "ts": 1300000000000}'),
    (b"demo-bad-5", b'{"event_id": "x3", "type": "page_view", "user_id": "demo-bad-5", "ts": "2099-01-01T00:00:00Z", "url": "/"}'),
    (b"demo-bad-6", b'{"event_id": "x4", "type": "add_to_cart", "user_id": "demo-bad-6", "ts": "2011-01-01T00:00:00Z", "product_id": "p", "quantity": -3, "price": 1.0}'),
]


def _consumed() -> int:
    summary = run_summary()
    return summary["events_in"] + sum(summary["dead_lettered_by_reason"].values())


def run_demo(settings: Settings, data_dir: Path, datasets: list[str], workers: int = 1) -> dict[str, Any]:
    """Run the demo; returns the summary it prints."""
    started = time.monotonic()
    with ExitStack() as stack:
        kafka_external = bool(os.environ.get("KAFKA_BOOTSTRAP_SERVERS"))
        redis_external = bool(os.environ.get("REDIS_URL"))
        run_tag = f"demo-{int(time.time())}"
        if kafka_external:
            # A shared cluster may hold earlier runs: use topics of our own.
            settings = settings.replace(kafka={"events_topic": f"pulse.{run_tag}.events",
                                               "dead_letter_topic": f"pulse.{run_tag}.dead-letters"})
        else:
            broker = start_tansu()
            stack.callback(broker.stop)
            settings = settings.replace(kafka={"bootstrap_servers": broker.address})
        if redis_external:
            settings = settings.replace(redis={"key_prefix": f"pulse-{run_tag}"})
        else:
            server = start_redis()
            stack.callback(server.stop)
            settings = settings.replace(redis={"url": server.address})
        print(f"kafka  {settings.kafka.bootstrap_servers} ({'external' if kafka_external else 'private tansu'})")
        print(f"redis  {settings.redis.url} prefix={settings.redis.key_prefix}"
              f" ({'external' if redis_external else 'private redis-server'})")

        k = settings.kafka
        wait_for_kafka(k.bootstrap_servers, timeout=k.connect_timeout_seconds)
        ensure_topics(k.bootstrap_servers, {k.events_topic: k.partitions, k.dead_letter_topic: 1})
        loaded = [load_dataset(name, data_dir) for name in datasets]
        producer = make_producer(k.bootstrap_servers)
        report = replay(loaded, producer, k.events_topic)
        for key, value in MALFORMED_SAMPLES:
            producer.produce(k.events_topic, key=key, value=value)
        producer.flush(30)
        del producer  # closes its connections before the broker stops
        expected = report.total + len(MALFORMED_SAMPLES)
        print(f"replayed {report.total} events from {', '.join(datasets)} + {len(MALFORMED_SAMPLES)} malformed "
              f"in {report.seconds:.1f}s")

        recovery = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pulse-recovery-")))
        run = RunOptions(tail=False, end_of_input=dict(report.last_ts_ms))
        flow_started = time.monotonic()
        # A bounded run stops at each partition's end; with recovery, running again
        # continues from the stored offsets, so a short first pass loses nothing.
        for _attempt in range(5):
            run_workers(settings, run, WorkerOptions(workers=workers, recovery_dir=recovery, snapshot_seconds=5))
            if _consumed() >= expected:
                break
            logger.warning("consumed %d of %d events; resuming", _consumed(), expected)
        flow_seconds = time.monotonic() - flow_started
        summary = _summary(settings, expected, report, flow_seconds)
        summary["total_seconds"] = round(time.monotonic() - started, 1)
        _print_summary(summary)
        if redis_external:
            print(f"\nprofiles stay in {settings.redis.url} under prefix {settings.redis.key_prefix!r} "
                  f"(TTL {settings.redis.profile_ttl_seconds}s); read one with "
                  f"PULSE__REDIS__KEY_PREFIX={settings.redis.key_prefix} pulse profile USER_ID")
        return summary


def _summary(settings: Settings, expected: int, report: Any, flow_seconds: float) -> dict[str, Any]:
    client = redis.Redis.from_url(settings.redis.url)
    profiles = ProfileClient(client, settings.redis.key_prefix)
    user_ids = profiles.scan_user_ids()
    segment_sizes: Counter[str] = Counter()
    by_dataset: Counter[str] = Counter()
    docs = profiles.get_many(user_ids)
    for user_id, doc in docs.items():
        by_dataset[user_id.split("-", 1)[0]] += 1
        segment_sizes.update(doc["segments"] if doc else [])
    # Samples: the customers with the most orders, one per dataset that has buyers.
    samples = []
    for dataset in DATASETS:
        buyers = [d for u, d in docs.items() if d and u.startswith(dataset + "-") and d["orders"]]
        if buyers and len(samples) < 3:
            samples.append(max(buyers, key=lambda d: (d["orders"], d["ltv"], d["userId"])))
    client.close()
    flow = run_summary()
    return {
        "produced": expected,
        "events_in": flow["events_in"],
        "events_in_by_type": dict(sorted(flow["events_in_by_type"].items())),
        "dead_lettered_by_reason": dict(sorted(flow["dead_lettered_by_reason"].items())),
        "duplicates": flow["duplicates"],
        "late": flow["late"],
        "skipped_source_rows": {k: dict(v) for k, v in report.skipped.items() if v},
        "customers_profiled": len(user_ids),
        "customers_by_dataset": dict(sorted(by_dataset.items())),
        "segment_sizes": dict(sorted(segment_sizes.items())),
        "model": {
            "examples_learned": flow["model_examples_learned"],
            "roc_auc": flow["model_roc_auc"],
            "log_loss": flow["model_log_loss"],
        },
        "profiles_written": flow["profiles_written"],
        "flow_seconds": round(flow_seconds, 1),
        "sample_profiles": samples,
    }


def _print_summary(summary: dict[str, Any]) -> None:
    samples = summary["sample_profiles"]
    head = {k: v for k, v in summary.items() if k != "sample_profiles"}
    print("\n=== Pulse demo summary ===")
    print(orjson.dumps(head, option=orjson.OPT_INDENT_2).decode())
    for doc in samples:
        print(f"\n--- sample profile {doc['userId']} ---")
        print(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())
