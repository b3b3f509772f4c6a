"""`pulse run` as an SRE runs it: a tailing worker process, SIGTERM, restart from recovery."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import orjson
import pytest

from config.settings import Settings
from flows.replay import ensure_topics, make_producer
from pulse.services import free_port
from state.client import ProfileClient

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[1]


def purchase(n: int) -> bytes:
    return orjson.dumps({"event_id": f"e{n}", "type": "purchase", "user_id": "sre-1", "ts": 1_300_000_000_000 + n,
                         "order_id": f"o{n}", "items": [{"product_id": "p", "quantity": 1, "price": 1.5}],
                         "total": 1.5, "currency": "EUR"})


def start_worker(settings: Settings, recovery: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
           "REDIS_URL": settings.redis.url, "PULSE__KAFKA__EVENTS_TOPIC": settings.kafka.events_topic,
           "PULSE__KAFKA__DEAD_LETTER_TOPIC": settings.kafka.dead_letter_topic,
           "PULSE__REDIS__KEY_PREFIX": settings.redis.key_prefix, "PULSE__METRICS__PORT": str(port)}
    return subprocess.Popen([sys.executable, "-m", "pulse.cli", "run", "-r", str(recovery), "-s", "1"],
                            env=env, cwd=REPO)


def wait_for_orders(client: ProfileClient, orders: int, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        profile = client.get("sre-1")
        if profile is not None and profile["orders"] >= orders:
            return profile
        time.sleep(0.2)
    pytest.fail(f"profile did not reach {orders} orders in {timeout}s (last: {profile})")


def test_sigterm_stops_cleanly_and_a_restart_counts_nothing_twice(
    isolated_settings: Settings, recovery_dir: Path
) -> None:
    settings = isolated_settings
    k = settings.kafka
    ensure_topics(k.bootstrap_servers, {k.events_topic: k.partitions, k.dead_letter_topic: 1})
    client = ProfileClient.from_url(settings.redis.url, settings.redis.key_prefix)
    producer = make_producer(k.bootstrap_servers)
    for n in range(3):
        producer.produce(k.events_topic, key=b"sre-1", value=purchase(n))
    producer.flush(10)

    port = free_port()
    worker = start_worker(settings, recovery_dir, port)
    try:
        assert wait_for_orders(client, 3)["ltv"] == 4.5
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            assert 'pulse_events_in_total{type="purchase"} 3.0' in response.read().decode()
        time.sleep(1.5)  # let a snapshot cover the consumed offsets
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
    finally:
        if worker.poll() is None:
            worker.kill()

    for n in range(3, 5):
        producer.produce(k.events_topic, key=b"sre-1", value=purchase(n))
    producer.flush(10)
    port = free_port()
    worker = start_worker(settings, recovery_dir, port)
    try:
        profile = wait_for_orders(client, 5)
        # The restart read only the two new events (resumed offsets) and still knows the
        # first three (restored state).
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            assert 'pulse_events_in_total{type="purchase"} 2.0' in response.read().decode()
        time.sleep(1.0)
        assert client.get("sre-1")["orders"] == 5 and profile["ltv"] == 7.5
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
