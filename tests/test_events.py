import orjson
import pytest

from config.settings import ValidationSettings
from operators.events import EventParser, Rejection

NOW_MS = 1_700_000_000_000
PARSER = EventParser(ValidationSettings())


def parse(obj: object, key: bytes | None = None) -> object:
    raw = obj if isinstance(obj, bytes) else orjson.dumps(obj)
    return PARSER.parse(raw, key, NOW_MS)


def base(**extra: object) -> dict:
    return {"event_id": "e1", "type": "page_view", "user_id": "u-1", "ts": "2023-01-02T03:04:05Z", "url": "/", **extra}


def test_valid_event_has_aware_utc_time_and_normalised_fields() -> None:
    event = parse({"event_id": "e1", "type": "add_to_cart", "user_id": "u-1", "ts": "2023-01-02T04:04:05+01:00",
                   "product_id": 42, "quantity": 2, "price": 3, "extra": "ignored"}, key=b"u-1")
    assert event.ts.isoformat() == "2023-01-02T03:04:05+00:00"
    assert event.ts.tzinfo is not None
    assert event.data == {"product_id": "42", "quantity": 2, "price": 3.0}


def test_epoch_milliseconds_accepted() -> None:
    assert parse(base(ts=1_600_000_000_123)).ts_ms == 1_600_000_000_123


@pytest.mark.parametrize(("raw", "reason"), [
    (b"", "empty"),
    (b"x" * 70_000, "oversized"),
    (b"{not json", "not_json"),
    (b"[1, 2]", "not_object"),
    ({"type": "page_view", "user_id": "u", "ts": 1_600_000_000_000, "url": "/"}, "missing_field"),
    (base(type="teleport"), "unknown_type"),
    (base(type=7), "unknown_type"),
    (base(url=5), "bad_type"),
    (base(user_id=""), "bad_value"),
    (base(user_id="a{b}"), "bad_value"),
    (base(ts="yesterday"), "bad_timestamp"),
    (base(ts="2023-01-02T03:04:05"), "bad_timestamp"),
    (base(ts="2011-01-01T00Z"), "bad_timestamp"),
    (base(ts="2011-01-01T00:00:00+0000"), "bad_timestamp"),
    (base(ts="2011-W01-1T00:00:00Z"), "bad_timestamp"),
    (base(ts="2011-02-30T00:00:00Z"), "bad_timestamp"),
    (base(ts=True), "bad_timestamp"),
    (base(ts="1970-01-01T00:00:00Z"), "bad_timestamp"),
    (base(ts="2031-01-01T00:00:00Z"), "future_timestamp"),
    ({**base(type="add_to_cart"), "product_id": "p", "quantity": 0, "price": 1}, "bad_value"),
    ({**base(type="add_to_cart"), "product_id": "p", "quantity": 1.5, "price": 1}, "bad_type"),
    ({**base(type="add_to_cart"), "product_id": "p", "quantity": 1, "price": -1}, "bad_value"),
    ({**base(type="purchase"), "order_id": "o", "items": [], "total": 1, "currency": "EUR"}, "bad_value"),
    ({**base(type="purchase"), "order_id": "o", "items": [{"product_id": "p", "quantity": 1}], "total": 1,
      "currency": "EUR"}, "missing_field"),
    ({**base(type="app_open"), "device": "fridge"}, "bad_value"),
    ({**base(type="consent_update"), "purposes": {"telepathy": "granted"}}, "bad_value"),
    ({**base(type="profile_update"), "attributes": {"nested": {"a": 1}}}, "bad_type"),
    ({**base(type="profile_update"), "attributes": {f"k{i}": i for i in range(65)}}, "bad_value"),
    ({**base(type="profile_update"), "attributes": {"bio": "x" * 1025}}, "bad_value"),
    ({**base(type="profile_update"), "attributes": {"": 1}}, "bad_value"),
])
def test_bad_input_is_rejected_with_a_reason(raw: object, reason: str) -> None:
    result = parse(raw)
    assert isinstance(result, Rejection), result
    assert result.reason == reason


def test_key_must_match_user_id() -> None:
    result = parse(base(), key=b"someone-else")
    assert isinstance(result, Rejection) and result.reason == "key_mismatch"


def test_null_prices_mean_unknown() -> None:
    event = parse({**base(type="purchase"), "order_id": "o", "total": None, "currency": "XXX",
                   "items": [{"product_id": "p", "quantity": 1, "price": None}]})
    assert event.data["total"] is None and event.data["items"][0]["price"] is None


def test_rfc3339_lowercase_separators_are_valid() -> None:
    assert parse(base(ts="2023-01-02t03:04:05.5z")).ts_ms == parse(base(ts="2023-01-02T03:04:05.500Z")).ts_ms


def test_profile_update_attributes_top_level_or_nested() -> None:
    envelope = {"event_id": "e1", "type": "profile_update", "user_id": "u-1", "ts": "2023-01-02T03:04:05Z"}
    event = parse({**envelope, "first_name": "Ann", "attributes": {"city": "Oslo"}})
    assert event.data["attributes"] == {"city": "Oslo", "first_name": "Ann"}
    assert parse({**envelope, "first_name": "Ann"}).data["attributes"] == {"first_name": "Ann"}
    bad = parse({**envelope, "address": {"street": "x"}})
    assert isinstance(bad, Rejection) and bad.reason == "bad_type"
