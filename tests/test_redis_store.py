"""The guarded profile writer and the lookup client, against a real Redis."""

import pickle
import uuid

import orjson
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from config.settings import load_settings
from operators.customer import CustomerProcessor
from operators.events import Event
from operators.profile import ProfileWrite, iso_utc, render_profile
from operators.segments import SegmentRules
from state.customer import CustomerState
from state.client import ProfileClient
from state.keys import KeyLayout
from state.redis_writer import ProfileWriter, RedisUnavailable, coalesce


@pytest.fixture
def prefix(redis_client: redis.Redis):
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    yield prefix
    keys = list(redis_client.scan_iter(match=f"{prefix}:*"))
    if keys:
        redis_client.delete(*keys)


def write(user: str, version: int, **body: object) -> ProfileWrite:
    return ProfileWrite(user, version, orjson.dumps({"userId": user, "version": version, **body}), ())


def test_key_layout_uses_hash_tags() -> None:
    layout = KeyLayout("pulse")
    assert layout.profile("uci-12621") == "pulse:{uci-12621}:profile"
    assert layout.user_of(b"pulse:{uci-12621}:profile") == "uci-12621"


def test_coalesce_keeps_newest_version_per_customer() -> None:
    kept = coalesce([write("a", 1), write("b", 4), write("a", 3), write("a", 2)])
    assert sorted((w.user_id, w.version) for w in kept) == [("a", 3), ("b", 4)]


def test_older_version_never_overwrites_newer(redis_client: redis.Redis, prefix: str) -> None:
    writer = ProfileWriter(redis_client, KeyLayout(prefix), ttl_seconds=3600)
    first = writer.write([write("u-1", 5, ltv=50), write("u-2", 1)])
    replayed = writer.write([write("u-1", 4, ltv=40), write("u-1", 5, ltv=999)])
    newer = writer.write([write("u-1", 6, ltv=60)])
    assert (first.applied, replayed.applied, replayed.stale, newer.applied) == (2, 0, 1, 1)
    client = ProfileClient(redis_client, prefix)
    assert client.get("u-1") == {"userId": "u-1", "version": 6, "ltv": 60}
    key = KeyLayout(prefix).profile("u-1")
    assert redis_client.hget(key, "version") == b"6"
    assert 3500 < redis_client.ttl(key) <= 3600


def test_client_defaults_and_batch_lookup(redis_client: redis.Redis, prefix: str) -> None:
    ProfileWriter(redis_client, KeyLayout(prefix), ttl_seconds=0).write([write("u-1", 1)])
    client = ProfileClient(redis_client, prefix)
    assert client.get("nobody") is None
    default = client.get_or_default("nobody")
    assert default["known"] is False and default["segments"] == [] and default["sendable"] is True
    assert client.get_or_default("u-1")["known"] is True
    assert client.get_many(["u-1", "nobody"]) == {"u-1": {"userId": "u-1", "version": 1}, "nobody": None}
    assert client.scan_user_ids() == ["u-1"]
    assert redis_client.ttl(KeyLayout(prefix).profile("u-1")) == -1


def test_writer_retries_while_redis_is_unreachable() -> None:
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    failures: list[Exception] = []
    writer = ProfileWriter(dead, KeyLayout("x"), 0, retry_attempts=3, on_retry=failures.append,
                           sleep=lambda _s: None)
    with pytest.raises(RedisUnavailable, match="Redis unreachable after 3 retries"):
        writer.write([write("u-1", 1)])
    assert len(failures) == 3


def test_updates_replayed_after_a_recovery_are_not_stale_forever(redis_client: redis.Redis, prefix: str) -> None:
    """Regression: versions once counted updates, so a resume that re-read three events as one
    batch fell behind Redis and every later profile of the customer was rejected as stale."""
    settings = load_settings(env={})
    processor = CustomerProcessor(settings, SegmentRules.load(settings.rules_path))
    writer = ProfileWriter(redis_client, KeyLayout(prefix), 0)
    t0 = 1_300_000_000_000
    events = [Event(f"e{i}", "page_view", "u-1", t0 + i * 60_000, {"url": "/"}) for i in range(5)]

    def publish(update) -> int:  # noqa: ANN001
        return writer.write([render_profile(update, SegmentRules.load(settings.rules_path))]).applied

    before_crash = CustomerState("u-1")
    snapshot = pickle.dumps(before_crash)
    assert [publish(processor.on_events(before_crash, [e]).update) for e in events[:3]] == [1, 1, 1]
    resumed = pickle.loads(snapshot)
    assert publish(processor.on_events(resumed, events[:3]).update) == 0  # same version: already there
    assert publish(processor.on_events(resumed, [events[3]]).update) == 1
    assert publish(processor.on_events(resumed, [events[4]]).update) == 1
    assert ProfileClient(redis_client, prefix).get("u-1")["lastSeenAt"] == iso_utc(events[4].ts_ms)
