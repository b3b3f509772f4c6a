"""`make bench`: throughput and memory of the full flow on amplified real data (SPEC §11).

Amplification re-keys the real customer sequences of the UCI, CDNOW, REES46 and
Retailrocket datasets (``uci-12621`` -> ``uci-12621~3``) and shifts each copy by a few
minutes, so volumes grow while every sequence stays a real one. The flow runs as
``pulse run --until-eof`` in a child process (so its peak RSS is its own) against a
private tansu broker and redis-server. The same events then go through a plain
hand-written consumer loop calling the same operators, for comparison.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import orjson
import redis
from confluent_kafka import Consumer, TopicPartition

from config.settings import Settings, load_settings
from flows.datasets import load_dataset
from flows.replay import ensure_topics, make_producer
from operators.customer import CustomerProcessor
from operators.events import Event, EventParser
from operators.profile import render_profile
from operators.scoring import PropensityModel
from operators.segments import SegmentRules
from pulse.runner import tune_gc
from pulse.services import start_redis, start_tansu
from state.client import ProfileClient
from state.customer import CustomerState
from state.keys import KeyLayout
from state.redis_writer import ProfileWriter

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("PULSE_DATA_DIR", REPO.parent / "shared" / "data"))
SOURCES = ("uci", "cdnow", "rees46", "retailrocket")


def amplified_events(target: int) -> list[tuple[bytes, bytes]]:
    """(key, value) messages: real sequences re-keyed and time-shifted until ``target``."""
    base = []
    for name in SOURCES:
        data = load_dataset(name, DATA)
        base.extend(zip(data.ts_ms, data.events, strict=True))
    base.sort(key=lambda pair: pair[0])
    out: list[tuple[int, bytes, bytes]] = []
    copy = 0
    while len(out) < target:
        shift = copy * 60_000
        for ts, event in base:
            user = f"{event['user_id']}~{copy}"
            moved = {**event, "user_id": user, "event_id": f"{event['event_id']}~{copy}", "ts": ts + shift}
            out.append((ts + shift, user.encode(), orjson.dumps(moved)))
            if len(out) == target:
                break
        copy += 1
    out.sort(key=lambda item: item[0])
    return [(key, value) for _, key, value in out]


def produce(settings: Settings, messages: list[tuple[bytes, bytes]]) -> float:
    producer = make_producer(settings.kafka.bootstrap_servers)
    started = time.perf_counter()
    for key, value in messages:
        while True:
            try:
                producer.produce(settings.kafka.events_topic, key=key, value=value)
                break
            except BufferError:
                producer.poll(0.05)
    producer.flush(120)
    return time.perf_counter() - started


def run_worker(settings: Settings, topic: str, prefix: str) -> tuple[float, int]:
    """Seconds and peak RSS (bytes, VmHWM) of ``pulse run --until-eof`` as a child process."""
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
           "REDIS_URL": settings.redis.url, "PULSE__KAFKA__EVENTS_TOPIC": topic,
           "PULSE__REDIS__KEY_PREFIX": prefix, "PULSE__METRICS__PORT": "0", "PULSE_LOG_LEVEL": "WARNING"}
    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "pulse.cli", "run", "--until-eof"], env=env, cwd=REPO,
                             stdout=subprocess.DEVNULL)
    peak = 0
    while child.poll() is None:
        peak = max(peak, _peak_rss(child.pid))
        time.sleep(0.1)
    if child.returncode != 0:
        msg = f"worker exited with {child.returncode}"
        raise RuntimeError(msg)
    return time.perf_counter() - started, peak


def _peak_rss(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    line = next((x for x in status.splitlines() if x.startswith("VmHWM:")), "VmHWM: 0 kB")
    return int(line.split()[1]) * 1024


def plain_loop(settings: Settings, total: int, prefix: str) -> float:
    """The same work without Bytewax: consume, parse, per-customer logic, score, write."""
    rules = SegmentRules.load(settings.rules_path)
    parser, processor = EventParser(settings.validation), CustomerProcessor(settings, rules)
    model = PropensityModel(settings.model.learning_rate)
    client = redis.Redis.from_url(settings.redis.url)
    writer = ProfileWriter(client, KeyLayout(prefix), settings.redis.profile_ttl_seconds)
    consumer = Consumer({"bootstrap.servers": settings.kafka.bootstrap_servers, "group.id": "bench",
                         "enable.auto.commit": False})
    topic = settings.kafka.events_topic
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    states: dict[str, CustomerState] = {}
    tune_gc()  # as the worker does
    seen = 0
    started = time.perf_counter()
    while seen < total:
        messages = consumer.consume(1000, timeout=1.0)
        now_ms = int(time.time() * 1000)
        by_user: dict[str, list[Event]] = {}
        for message in messages:
            if message.error():
                continue
            seen += 1
            event = parser.parse(message.value(), message.key(), now_ms)
            if isinstance(event, Event):
                by_user.setdefault(event.user_id, []).append(event)
        writes = []
        for user, events in by_user.items():
            out = processor.on_events(states.setdefault(user, CustomerState(user)), events)
            for example in out.examples:
                model.learn(example)
            if out.update is not None:
                out.update.propensity, out.update.top_features = model.score_and_explain(out.update.features)
                writes.append(render_profile(out.update, rules))
        if writes:
            writer.write(writes)
    consumer.close()
    return time.perf_counter() - started


def lookup_latency(settings: Settings, prefix: str, samples: int = 20_000) -> list[float]:
    client = ProfileClient.from_url(settings.redis.url, prefix)
    users = client.scan_user_ids()
    rng = random.Random(1)
    latencies = []
    for _ in range(samples):
        user = rng.choice(users)
        started = time.perf_counter()
        client.get(user)
        latencies.append(time.perf_counter() - started)
    return latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300_000, help="amplified events to process")
    args = parser.parse_args()
    broker, server = start_tansu(), start_redis()
    try:
        settings = load_settings(env={}).replace(
            kafka={"bootstrap_servers": broker.address}, redis={"url": server.address}, metrics={"port": 0})
        k = settings.kafka
        ensure_topics(k.bootstrap_servers, {k.events_topic: k.partitions, k.dead_letter_topic: 1,
                                            "bench.empty": k.partitions})
        print(f"building {args.events:,} amplified real events from {', '.join(SOURCES)} ...", flush=True)
        messages = amplified_events(args.events)
        customers = len({key for key, _ in messages})
        produce_s = produce(settings, messages)
        print(f"produced in {produce_s:.1f}s ({len(messages) / produce_s:,.0f} msg/s); {customers:,} customers")

        idle_s, idle_rss = run_worker(settings, "bench.empty", "bench-empty")
        flow_s, flow_rss = run_worker(settings, k.events_topic, "bench-flow")
        busy_s = max(1e-9, flow_s - idle_s)
        plain_s = plain_loop(settings, len(messages), "bench-plain")
        lookups = sorted(lookup_latency(settings, "bench-flow"))
        p = lambda q: lookups[int(q * (len(lookups) - 1))] * 1000  # noqa: E731

        print("\n=== Pulse bench (1 worker process, 1 worker thread) ===")
        print(f"events                       {len(messages):,} (amplified real sequences)")
        print(f"customers                    {customers:,}")
        print(f"flow wall time               {flow_s:.1f}s (incl. {idle_s:.1f}s start-up/shutdown of an idle run)")
        print(f"flow throughput              {len(messages) / busy_s:,.0f} events/s (excluding start-up)")
        print(f"plain consumer loop          {len(messages) / plain_s:,.0f} events/s (same operators, no Bytewax)")
        print(f"worker peak RSS              {flow_rss / 2**20:,.0f} MiB (idle worker {idle_rss / 2**20:,.0f} MiB)")
        print(f"memory per customer          {(flow_rss - idle_rss) / customers:,.0f} bytes (peak RSS growth / customers)")
        print(f"redis lookup latency         p50 {p(0.5):.3f} ms  p99 {p(0.99):.3f} ms  (n={len(lookups):,})")
    finally:
        broker.stop()
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
