"""Shared fixtures: a real Kafka-protocol broker and a real Redis for the integration tests.

By default each test session starts a private tansu broker and a private redis-server
on free ports. With KAFKA_BOOTSTRAP_SERVERS / REDIS_URL set, the same tests run against
those instead, using topics and a key prefix of their own (nothing else is touched).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from config.settings import Settings, load_settings
from pulse.services import LocalService, start_redis, start_tansu

def _external_or_private(env_var: str, start: Callable[[], LocalService]) -> Iterator[str]:
    """The address in ``env_var`` if set, else a private service for the session."""
    external = os.environ.get(env_var)
    if external:
        yield external
        return
    service = start()
    try:
        yield service.address
    finally:
        service.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    yield from _external_or_private("KAFKA_BOOTSTRAP_SERVERS", start_tansu)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    yield from _external_or_private("REDIS_URL", start_redis)


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def isolated_settings(kafka_bootstrap: str, redis_url: str, redis_client: redis.Redis) -> Iterator[Settings]:
    """Settings with this test's own topics and key prefix; its keys are removed afterwards."""
    tag = uuid.uuid4().hex[:10]
    settings = load_settings(env={}).replace(
        kafka={"bootstrap_servers": kafka_bootstrap, "events_topic": f"test-{tag}.events",
               "dead_letter_topic": f"test-{tag}.dlq", "partitions": 3},
        redis={"url": redis_url, "key_prefix": f"test-{tag}"},
        metrics={"port": 0},
    )
    yield settings
    keys = list(redis_client.scan_iter(match=f"test-{tag}:*", count=1000))
    if keys:
        redis_client.delete(*keys)


@pytest.fixture
def recovery_dir(tmp_path: Path) -> Path:
    return tmp_path / "recovery"
