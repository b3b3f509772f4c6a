"""The main flow end to end: real Kafka-protocol broker, real Redis, Bytewax recovery on.

Expected values are computed here from the raw CSV rows, not by Pulse's own code.
"""

from __future__ import annotations

import csv
import re
import urllib.request
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from prometheus_client import REGISTRY

from config.settings import Settings
from flows.datasets import load_dataset
from flows.personalize import RunOptions
from flows.replay import ensure_topics, make_producer, replay
from pulse.kafka_check import KafkaUnavailable, wait_for_kafka
from pulse.metrics import serve_metrics
from pulse.runner import WorkerOptions, run_summary, run_workers
from pulse.services import free_port
from state.client import ProfileClient

pytestmark = pytest.mark.integration

DATA = Path(__file__).parent / "data"
UTC = timezone.utc
DAY = timedelta(days=1)
SPLIT_MS = int(datetime(2011, 6, 1, tzinfo=UTC).timestamp() * 1000)


def create_topics(settings: Settings) -> None:
    k = settings.kafka
    ensure_topics(k.bootstrap_servers, {k.events_topic: k.partitions, k.dead_letter_topic: 1})


def run_bounded(settings: Settings, end_of_input: dict[str, int], recovery: Path) -> None:
    run_workers(settings, RunOptions(tail=False, end_of_input=end_of_input),
                WorkerOptions(recovery_dir=recovery, snapshot_seconds=1))


def consumed_so_far() -> float:
    """Valid events this process has consumed (a process-wide counter: use deltas)."""
    return sum(s.value for f in REGISTRY.collect() for s in f.samples if s.name == "pulse_events_in_total")


def read_topic(bootstrap: str, topic: str) -> list[Any]:
    """Every message of ``topic``, read by partition assignment up to partition EOF."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "pulse-tests", "enable.partition.eof": True,
                         "enable.auto.commit": False})
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    messages, at_eof = [], set()
    while len(at_eof) < len(partitions):
        msg = consumer.poll(5)
        assert msg is not None, "timed out reading the dead-letter topic"
        if msg.error():
            at_eof.add(msg.partition())
        else:
            messages.append(msg)
    consumer.close()
    return messages


# -- expectations straight from the raw UCI rows --------------------------------------

def uci_expectations(end: datetime) -> dict[str, dict[str, Any]]:
    invoices: dict[str, list[dict[str, str]]] = defaultdict(list)
    with (DATA / "uci_online_retail_slice.csv").open(newline="") as fh:
        for row in csv.DictReader(fh):
            if row["CustomerID"] != "NA":
                invoices[row["InvoiceNo"]].append(row)
    per_user: dict[str, list[tuple[datetime, str, list[dict[str, str]]]]] = defaultdict(list)
    for number, rows in invoices.items():
        when = datetime.strptime(rows[0]["InvoiceDate"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
        per_user[f"uci-{rows[0]['CustomerID']}"].append((when, number, rows))
    expected = {}
    for user, orders in per_user.items():
        orders.sort(key=lambda o: o[0])
        bought = [o for o in orders if not o[1].startswith("C")]
        revenue = sum(round(sum(int(r["Quantity"]) * float(r["UnitPrice"]) for r in o[2]), 2) for o in bought)
        refunds = sum(round(sum(-int(r["Quantity"]) * float(r["UnitPrice"]) for r in o[2]), 2)
                      for o in orders if o[1].startswith("C"))
        history: list[dict[str, str]] = []
        for _, _, rows in bought:
            for r in rows:
                history.insert(0, {"productId": r["StockCode"], "name": r["Description"].strip()})
        last = bought[-1][0]
        recent = [o for o in orders if (end.date() - o[0].date()).days < 30]
        ltv = round(revenue - refunds, 2)
        expected[user] = {
            "orders": len(bought), "ltv": ltv, "aov": round(revenue / len(bought), 2),
            "lastPurchaseAt": last.isoformat().replace("+00:00", "Z"),
            "purchaseHistory": history[:10],
            "counts30dPurchases": sum(not o[1].startswith("C") for o in recent),
            "isVIP": ltv >= 1000,
            "lapsed": end - last > 30 * DAY,
        }
    return expected


def test_real_slices_replayed_through_kafka_give_exact_profiles(
    isolated_settings: Settings, recovery_dir: Path
) -> None:
    settings = isolated_settings
    create_topics(settings)
    datasets = [
        load_dataset("uci", DATA, DATA / "uci_online_retail_slice.csv"),
        load_dataset("rees46", DATA, DATA / "rees46_slice.csv"),
        load_dataset("retailrocket", DATA, DATA / "retailrocket_slice.csv"),
    ]
    producer = make_producer(settings.kafka.bootstrap_servers)
    consumed_before = consumed_so_far()
    # Part one, run, then part two and a second run that resumes from the recovery store:
    # state must survive the restart (it pickles) and nothing may count twice.
    first = replay(datasets, producer, settings.kafka.events_topic, until_ms=SPLIT_MS)
    run_bounded(settings, dict(first.last_ts_ms), recovery_dir)
    second = replay(datasets, producer, settings.kafka.events_topic, since_ms=SPLIT_MS)
    assert first.delivery_errors == second.delivery_errors == 0
    end_of_input = {**first.last_ts_ms, **second.last_ts_ms}
    run_bounded(settings, end_of_input, recovery_dir)
    # The second run resumed from the stored offsets: every event was consumed exactly once.
    assert consumed_so_far() - consumed_before == first.total + second.total

    client = ProfileClient.from_url(settings.redis.url, settings.redis.key_prefix)
    uci_end = datetime.fromtimestamp(end_of_input["uci"] / 1000, tz=UTC)
    expected = uci_expectations(uci_end)
    assert set(expected) == {u for u in client.scan_user_ids() if u.startswith("uci-")}
    for user, want in expected.items():
        got = client.get(user)
        assert got is not None, user
        assert (got["orders"], got["ltv"], got["aov"]) == (want["orders"], want["ltv"], want["aov"]), user
        assert got["lastPurchaseAt"] == want["lastPurchaseAt"], user
        assert got["purchaseHistory"] == want["purchaseHistory"], user
        assert got["counts"]["30d"].get("purchase", 0) == want["counts30dPurchases"], user
        assert got["isVIP"] is want["isVIP"] and ("vip" in got["segments"]) is want["isVIP"], user
        assert ("lapsed_30d" in got["segments"]) is want["lapsed"], user
        assert got["updatedAt"] == uci_end.isoformat().replace("+00:00", "Z"), user
        assert 0.0 <= got["purchasePropensity"] <= 1.0 and got["churnRiskScore"] is None
        assert got["attributes"]["country"]

    # REES46 user 524325294: view, cart, purchase (checks the cart out), view.
    rows = [r for r in csv.DictReader((DATA / "rees46_slice.csv").open()) if r["user_id"] == "524325294"]
    bought = next(r for r in rows if r["event_type"] == "purchase")
    got = client.get("rees46-524325294")
    assert got["orders"] == 1 and got["ltv"] == float(bought["price"]) and got["cart"] == []
    assert got["purchaseHistory"] == [{"productId": bought["product_id"], "name": None}]
    views = [r for r in rows if r["event_type"] == "view"]
    assert got["counts"]["1h"]["product_view"] == len(views)
    assert got["lastSeenAt"] == max(r["event_time"] for r in rows).replace(" UTC", "Z").replace(" ", "T")
    # REES46 user 550121407: view, cart, view - a cart that is not yet an hour old at end of input.
    rows = [r for r in csv.DictReader((DATA / "rees46_slice.csv").open()) if r["user_id"] == "550121407"]
    carted = next(r for r in rows if r["event_type"] == "cart")
    got = client.get("rees46-550121407")
    assert [(c["productId"], c["quantity"], c["price"]) for c in got["cart"]] == [
        (carted["product_id"], 1, float(carted["price"]))]
    assert "cart_abandoner" not in got["segments"] and "active_7d" in got["segments"]

    # Retailrocket has no prices: orders count, value stays unknown.
    rows = list(csv.DictReader((DATA / "retailrocket_slice.csv").open()))
    by_visitor: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        if r["event"] == "transaction":
            by_visitor[r["visitorid"]].add(r["transactionid"])
    visitor, transactions = sorted(by_visitor.items())[0]
    got = client.get(f"retailrocket-{visitor}")
    assert got["orders"] == len(transactions) and got["ltv"] == 0.0 and got["aov"] is None
    # Cart abandonment fires at end of input (a timer, no later event): carts added and
    # not checked out by a transaction, an hour or more before the dataset's last event.
    abandoners = retailrocket_abandoners(rows, end_of_input["retailrocket"])
    assert abandoners  # the slice has some
    for visitor in {r["visitorid"] for r in rows}:
        segments = client.get(f"retailrocket-{visitor}")["segments"]
        assert ("cart_abandoner" in segments) is (visitor in abandoners), visitor


def retailrocket_abandoners(rows: list[dict[str, str]], end_ms: int) -> set[str]:
    events: dict[str, list[tuple[int, str]]] = defaultdict(list)
    first_row_of_transaction: dict[str, int] = {}
    for r in rows:
        if r["event"] == "transaction":
            ts = int(r["timestamp"])
            first_row_of_transaction[r["transactionid"]] = min(ts, first_row_of_transaction.get(r["transactionid"], ts))
    for r in rows:
        if r["event"] == "addtocart":
            events[r["visitorid"]].append((int(r["timestamp"]), "cart"))
        elif r["event"] == "transaction" and int(r["timestamp"]) == first_row_of_transaction[r["transactionid"]]:
            events[r["visitorid"]].append((int(r["timestamp"]), "buy"))
    abandoners = set()
    for visitor, seq in events.items():
        cart_since = None
        for ts, kind in sorted(seq):
            cart_since = ts if kind == "cart" else None
        if cart_since is not None and end_ms - cart_since >= 3_600_000:
            abandoners.add(visitor)
    return abandoners


BAD_MESSAGES = [
    (b"bad-1", b"\xff\xfe not json", "not_json"),
    (b"bad-2", b'{"event_id": "b2", "type": "page_view", "user_id": "bad-2", "url": "/"}', "missing_field"),
    (b"bad-3", b'{"event_id": "b3", "type": "warp", "user_id": "bad-3", "ts": 1300000000000}', "unknown_type"),
    (b"bad-4", b'{"event_id": "b4", "type": "page_view", "user_id": "bad-4", "ts": "2199-01-01T00:00:00Z", '
               b'"url": "/"}', "future_timestamp"),
    (b"bad-5", b'{"event_id": "b5", "type": "page_view", "user_id": "bad-5", "ts": 1300000000000, "url": "/", '
               b'"pad": "' + b"x" * 70_000 + b'"}', "oversized"),
    (b"someone", b'{"event_id": "b6", "type": "page_view", "user_id": "bad-6", "ts": 1300000000000, "url": "/"}',
     "key_mismatch"),
]


def good_event(n: int) -> bytes:
    return orjson.dumps({"event_id": f"g{n}", "type": "purchase", "user_id": "good-1", "ts": 1_300_000_000_000 + n,
                         "order_id": f"o{n}", "items": [{"product_id": "p", "quantity": 1, "price": 10.0}],
                         "total": 10.0, "currency": "EUR"})


def test_bad_input_is_dead_lettered_and_the_worker_keeps_going(
    isolated_settings: Settings, recovery_dir: Path
) -> None:
    settings = isolated_settings
    create_topics(settings)
    port = free_port()
    serve_metrics(port)
    producer = make_producer(settings.kafka.bootstrap_servers)
    topic = settings.kafka.events_topic
    producer.produce(topic, key=b"good-1", value=good_event(0))
    for key, value, _ in BAD_MESSAGES:
        producer.produce(topic, key=key, value=value)
    producer.produce(topic, key=b"good-1", value=good_event(1))
    producer.produce(topic, key=b"good-1", value=good_event(1))  # an at-least-once duplicate
    producer.flush(10)
    run_bounded(settings, {}, recovery_dir)

    dead = read_topic(settings.kafka.bootstrap_servers, settings.kafka.dead_letter_topic)
    by_key = {m.key(): m for m in dead}
    assert len(dead) == len(BAD_MESSAGES)
    for key, value, reason in BAD_MESSAGES:
        headers = dict(by_key[key].headers())
        assert by_key[key].value() == value  # the original bytes
        assert headers["pulse-dlq-reason"] == reason.encode()
        assert headers["pulse-source-topic"] == topic.encode()
        assert int(headers["pulse-source-partition"]) >= 0 and int(headers["pulse-source-offset"]) >= 0
    profile = ProfileClient.from_url(settings.redis.url, settings.redis.key_prefix).get("good-1")
    assert profile["orders"] == 2 and profile["ltv"] == 20.0  # the duplicate counted once

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        body = response.read().decode()
    for line in ('pulse_dead_letters_total{reason="oversized"}', 'pulse_events_in_total{type="purchase"}',
                 "pulse_duplicate_events_total", "pulse_redis_write_seconds_bucket", "pulse_redis_batch_size_count",
                 "pulse_event_time_lag_seconds", "pulse_customers_in_state"):
        assert line in body, line
    assert "good-1" not in body and "bad-" not in body  # no customer ids in metrics
    summary = run_summary()  # what `pulse run --until-eof` prints
    assert summary["dead_lettered_by_reason"]["key_mismatch"] >= 1 and summary["duplicates"] >= 1


def test_missing_events_topic_is_named_instead_of_hanging(isolated_settings: Settings) -> None:
    with pytest.raises(KafkaUnavailable, match=re.escape(isolated_settings.kafka.events_topic)):
        wait_for_kafka(isolated_settings.kafka.bootstrap_servers, [isolated_settings.kafka.events_topic], timeout=5)
