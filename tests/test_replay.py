"""Dataset mapping and replay ordering (pure parts; the broker is exercised in test_flow)."""

from datetime import datetime, timezone
from pathlib import Path

import pytest

from flows.datasets import DatasetEvents, load_dataset
from flows.replay import merge_in_time_order

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
    assert all(start <= ts < end for ts, e in zip(data.ts_ms, data.events) if e["type"] != "profile_update")


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
