"""Dataset mapping and replay ordering (pure parts; the broker is exercised in test_flow)."""

from datetime import datetime, timezone
from pathlib import Path

import pytest

from flows.datasets import DatasetEvents, load_dataset
from flows.replay import merge_in_time_order, replay

DATA = Path(__file__).parent / "data"


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp() * 1000)


def test_merge_keeps_each_events_dataset_name_and_time_order() -> None:
    """Regression: a nested generator expression once labelled every event with the last dataset."""
    a, b = DatasetEvents("a"), DatasetEvents("b")
    for ts in (1, 5, 9):
        a.ts_ms.append(ts)
        a.events.append({"from": "a"})
    for ts in (2, 3, 10):
        b.ts_ms.append(ts)
        b.events.append({"from": "b"})
    merged = list(merge_in_time_order([a, b]))
    assert [(ts, name) for ts, name, _ in merged] == [(1, "a"), (2, "b"), (3, "b"), (5, "a"), (9, "a"), (10, "b")]
    assert all(event["from"] == name for _, name, event in merged)
    assert [ts for ts, _, _ in merge_in_time_order([a, b], since_ms=3, until_ms=10)] == [3, 5, 9]


def test_uci_invoices_cancellations_and_missing_customers() -> None:
    data = load_dataset("uci", DATA, DATA / "uci_online_retail_slice.csv")
    assert data.skipped["no_customer_id"] == 5
    refunds = [e for e in data.events if e["type"] == "refund"]
    assert refunds and all(e["order_id"].startswith("C") for e in refunds)
    assert all(i["quantity"] > 0 for e in refunds for i in e["items"])
    users = {e["user_id"] for e in data.events}
    assert users == {"uci-13098", "uci-16422", "uci-13798", "uci-16938", "uci-12947"}
    assert data.ts_ms == sorted(data.ts_ms)
    profile = next(e for e in data.events if e["type"] == "profile_update" and e["user_id"] == "uci-12947")
    assert profile["attributes"]["country"]


def test_hillstrom_arms_and_campaign_window() -> None:
    data = load_dataset("hillstrom", DATA, DATA / "hillstrom_slice.csv")
    sends = [e for e in data.events if e["type"] == "email_sent"]
    assert {e["variant"] for e in sends} == {"mens", "womens"}
    assert all(e["campaign_id"] == "hillstrom-2008" for e in sends)
    profiles = [e for e in data.events if e["type"] == "profile_update"]
    assert len(profiles) == 300
    controls = {e["user_id"] for e in profiles if e["attributes"]["campaign_arm"] == "No E-Mail"}
    assert controls and not controls & {e["user_id"] for e in sends}
    start, end = ms("2008-03-03T09:00:00"), ms("2008-03-17T09:00:00")
    assert all(start <= ts < end for ts, e in zip(data.ts_ms, data.events, strict=True) if e["type"] != "profile_update")


def test_retailrocket_transactions_group_into_unpriced_orders() -> None:
    data = load_dataset("retailrocket", DATA, DATA / "retailrocket_slice.csv")
    orders = [e for e in data.events if e["type"] == "purchase"]
    assert orders and all(e["total"] is None and e["currency"] == "XXX" for e in orders)
    assert all(isinstance(e["ts"], int) for e in data.events)


def test_cdnow_namespaced_ids_and_same_day_ordering() -> None:
    data = load_dataset("cdnow", DATA, DATA / "cdnow_slice.txt")
    assert len(data.events) == 400
    assert all(e["user_id"].startswith("cdnow-") and e["type"] == "purchase" for e in data.events)


def test_unknown_dataset_and_missing_file() -> None:
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("nope", DATA)
    with pytest.raises(FileNotFoundError, match="PULSE_DATA_DIR"):
        load_dataset("cdnow", DATA / "missing")


class FakeProducer:
    """Records produce calls; stands in for confluent_kafka.Producer in pacing tests."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []

    def produce(self, topic: str, key: bytes, value: bytes, on_delivery: object = None) -> None:
        self.sent.append((topic, key, value))

    def poll(self, _timeout: float) -> int:
        return 0

    def flush(self, _timeout: float) -> int:
        return 0


def test_speed_factor_paces_event_time_and_keys_by_customer() -> None:
    data = DatasetEvents("d")
    for ts, user in ((0, "u-1"), (1000, "u-2"), (4000, "u-1")):
        data.ts_ms.append(ts)
        data.events.append({"user_id": user, "ts": ts})
    slept: list[float] = []
    producer = FakeProducer()
    report = replay([data], producer, "events", speed=2.0, sleep=slept.append)
    assert [key for _, key, _ in producer.sent] == [b"u-1", b"u-2", b"u-1"]
    # 1 s and 4 s of event time at speed 2 are due 0.5 s and 2 s after the start (the fake
    # sleep lets no time pass, so each wait is measured from the start).
    assert len(slept) == 2 and 0.4 < slept[0] <= 0.5 and 1.9 < slept[1] <= 2.0
    assert report.produced == {"d": 3} and report.last_ts_ms == {"d": 4000} and report.delivery_errors == 0
