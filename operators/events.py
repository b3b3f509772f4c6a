"""Bytes in, validated events out (SPEC §3); anything else becomes a dead letter.

`parse_event` never raises on bad input: it returns a `Rejection` naming one reason
from `REJECT_REASONS`, which the flow sends to the dead-letter topic with the
original bytes. Validation is table-driven so each event type's fields are read once.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import orjson

from config.settings import ValidationSettings

__all__ = [
    "Event",
    "Rejection",
    "EventParser",
    "REJECT_REASONS",
    "EVENT_TYPES",
    "ts_from_ms",
]

REJECT_REASONS = (
    "empty",
    "oversized",
    "not_json",
    "not_object",
    "missing_field",
    "bad_type",
    "bad_value",
    "unknown_type",
    "bad_timestamp",
    "future_timestamp",
    "key_mismatch",
)

MAX_ID_LENGTH = 256
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$")


def ts_from_ms(ms: int) -> datetime:
    """Aware-UTC datetime of an epoch-milliseconds instant."""
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


@dataclass(slots=True)
class Event:
    """One validated tracking event. ``data`` holds the type-specific fields, normalised."""

    event_id: str
    type: str
    user_id: str
    ts_ms: int
    data: dict[str, Any]

    @property
    def ts(self) -> datetime:
        return ts_from_ms(self.ts_ms)


@dataclass(slots=True, frozen=True)
class Rejection:
    """Why an input could not become an `Event` (reason is one of `REJECT_REASONS`)."""

    reason: str
    detail: str


class _Invalid(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


# -- field checkers: (value, limits) -> normalised value, raising _Invalid ---------------

Checker = Callable[[Any, ValidationSettings], Any]


def _ident(value: Any, _: ValidationSettings) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise _Invalid("bad_type", f"expected a string id, got {type(value).__name__}")
    if not value or len(value) > MAX_ID_LENGTH:
        raise _Invalid("bad_value", f"id must be 1..{MAX_ID_LENGTH} characters")
    return value


def _text(value: Any, _: ValidationSettings) -> str:
    if not isinstance(value, str):
        raise _Invalid("bad_type", f"expected a string, got {type(value).__name__}")
    return value


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Invalid("bad_type", f"expected a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise _Invalid("bad_value", "number must be finite")
    return float(value)


def _amount(value: Any, limits: ValidationSettings) -> float | None:
    """A price or total; null means unknown (datasets without prices)."""
    if value is None:
        return None
    amount = _number(value)
    if not 0 <= amount <= limits.max_amount:
        raise _Invalid("bad_value", f"amount {amount} outside 0..{limits.max_amount}")
    return amount


def _quantity(value: Any, limits: ValidationSettings) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Invalid("bad_type", f"quantity must be an integer, got {type(value).__name__}")
    if not 1 <= value <= limits.max_quantity:
        raise _Invalid("bad_value", f"quantity {value} outside 1..{limits.max_quantity}")
    return value


def _one_of(*allowed: str) -> Checker:
    def check(value: Any, limits: ValidationSettings) -> str:
        if _text(value, limits) not in allowed:
            raise _Invalid("bad_value", f"must be one of {', '.join(allowed)}")
        return value

    return check


def _items(value: Any, limits: ValidationSettings) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise _Invalid("bad_type", f"items must be a list, got {type(value).__name__}")
    if not value:
        raise _Invalid("bad_value", "items must not be empty")
    return [_check_fields("item", item, _ITEM_FIELDS, limits) for item in value]


MAX_ATTRIBUTES = 64
MAX_ATTRIBUTE_KEY = 64
MAX_ATTRIBUTE_TEXT = 1024


def _flat_object(value: Any, _: ValidationSettings) -> dict[str, Any]:
    """A flat map of scalars, bounded so one customer's stored attributes stay small."""
    if not isinstance(value, dict):
        raise _Invalid("bad_type", f"expected an object, got {type(value).__name__}")
    if len(value) > MAX_ATTRIBUTES:
        raise _Invalid("bad_value", f"more than {MAX_ATTRIBUTES} keys")
    for key, item in value.items():
        if not key or len(key) > MAX_ATTRIBUTE_KEY:
            raise _Invalid("bad_value", f"keys must be 1..{MAX_ATTRIBUTE_KEY} characters")
        if item is not None and not isinstance(item, (str, int, float, bool)):
            raise _Invalid("bad_type", f"attribute {key[:64]!r} must be a scalar")
        if isinstance(item, str) and len(item) > MAX_ATTRIBUTE_TEXT:
            raise _Invalid("bad_value", f"attribute {key!r} longer than {MAX_ATTRIBUTE_TEXT} characters")
        if isinstance(item, float) and not math.isfinite(item):
            raise _Invalid("bad_value", f"attribute {key!r} must be finite")
    return value


_CONSENT_VALUES = ("granted", "denied")
CONSENT_PURPOSES = ("analytics", "personalization", "email_marketing")


def _purposes(value: Any, limits: ValidationSettings) -> dict[str, str]:
    purposes = _flat_object(value, limits)
    if not purposes:
        raise _Invalid("bad_value", "purposes must not be empty")
    for key, state in purposes.items():
        if key not in CONSENT_PURPOSES or state not in _CONSENT_VALUES:
            raise _Invalid("bad_value", f"purpose {key!r}={state!r} is not a known purpose/state")
    return purposes


# field name -> (checker, required)
_ITEM_FIELDS = {
    "product_id": (_ident, True),
    "quantity": (_quantity, True),
    "price": (_amount, True),
    "category": (_text, False),
    "name": (_text, False),
}
_PRODUCT = {"product_id": (_ident, True), "category": (_text, False), "price": (_amount, False), "name": (_text, False)}
_CART = {**_PRODUCT, "quantity": (_quantity, True), "price": (_amount, True)}
_ORDER = {"order_id": (_ident, True), "items": (_items, True), "total": (_amount, True), "currency": (_text, True)}
_EMAIL = {"campaign_id": (_ident, True), "variant": (_text, False), "link": (_text, False)}
_DEVICE = {"device": (_one_of("mobile", "desktop", "tablet"), True), "platform": (_text, False)}

SCHEMAS: dict[str, dict[str, tuple[Checker, bool]]] = {
    "page_view": {"url": (_text, True), "category": (_text, False)},
    "product_view": _PRODUCT,
    "add_to_cart": _CART,
    "remove_from_cart": _CART,
    "purchase": _ORDER,
    # Extension to SPEC §3: an order cancellation/return (UCI "C" invoices); reduces LTV.
    "refund": _ORDER,
    "email_sent": _EMAIL,
    "email_open": _EMAIL,
    "email_click": _EMAIL,
    "email_bounce": _EMAIL,
    "email_unsubscribe": _EMAIL,
    "app_open": _DEVICE,
    "session_start": _DEVICE,
    "profile_update": {"attributes": (_flat_object, True)},
    "consent_update": {"purposes": (_purposes, True)},
    "erasure_request": {},
}
EVENT_TYPES = tuple(SCHEMAS)


def _check_fields(
    where: str, obj: Any, schema: dict[str, tuple[Checker, bool]], limits: ValidationSettings
) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise _Invalid("bad_type", f"{where} must be an object")
    out: dict[str, Any] = {}
    for name, (check, required) in schema.items():
        if name not in obj:
            if required:
                raise _Invalid("missing_field", f"{where} needs {name!r}")
            continue
        try:
            out[name] = check(obj[name], limits)
        except _Invalid as exc:
            raise _Invalid(exc.reason, f"{where}.{name}: {exc.detail}") from None
    return out


_ENVELOPE = frozenset({"event_id", "type", "user_id", "ts", "attributes"})


def _gather_attributes(obj: dict[str, Any]) -> dict[str, Any]:
    """CRM attributes may come as top-level fields (SPEC §3) or in an ``attributes`` object."""
    top_level = {k: v for k, v in obj.items() if k not in _ENVELOPE}
    if not top_level:
        return obj
    nested = obj.get("attributes", {})
    if not isinstance(nested, dict):
        raise _Invalid("bad_type", "profile_update.attributes must be an object")
    return {**obj, "attributes": {**nested, **top_level}}


class EventParser:
    """Turns raw Kafka values into `Event`s; configured once, called per message."""

    def __init__(self, limits: ValidationSettings) -> None:
        self._limits = limits
        self._min_ms = limits.min_event_ms
        self._max_future_ms = limits.max_future_seconds * 1000

    def parse(self, raw: bytes | None, key: bytes | None, now_ms: int) -> Event | Rejection:
        """Validate one message; ``now_ms`` is the wall clock used to reject future stamps."""
        try:
            return self._parse(raw, key, now_ms)
        except _Invalid as exc:
            return Rejection(exc.reason, exc.detail)

    def _parse(self, raw: bytes | None, key: bytes | None, now_ms: int) -> Event:
        if not raw:
            raise _Invalid("empty", "message has no value")
        if len(raw) > self._limits.max_payload_bytes:
            raise _Invalid("oversized", f"{len(raw)} bytes > {self._limits.max_payload_bytes}")
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise _Invalid("not_json", str(exc)) from None
        if not isinstance(obj, dict):
            raise _Invalid("not_object", f"top level is a {type(obj).__name__}")
        for name in ("event_id", "type", "user_id", "ts"):
            if name not in obj:
                raise _Invalid("missing_field", f"event needs {name!r}")
        kind = obj["type"]
        schema = SCHEMAS.get(kind) if isinstance(kind, str) else None
        if schema is None:
            raise _Invalid("unknown_type", f"type {str(kind)[:64]!r} is not one of the known event types")
        event_id = _ident(obj["event_id"], self._limits)
        user_id = _ident(obj["user_id"], self._limits)
        if "{" in user_id or "}" in user_id:
            raise _Invalid("bad_value", "user_id must not contain braces (Redis hash tags)")
        if key is not None and key != user_id.encode():
            raise _Invalid("key_mismatch", "Kafka key differs from user_id (customer would span partitions)")
        ts_ms = self._timestamp(obj["ts"], now_ms)
        if kind == "profile_update":
            obj = _gather_attributes(obj)
        return Event(event_id, kind, user_id, ts_ms, _check_fields(kind, obj, schema, self._limits))

    def _timestamp(self, value: Any, now_ms: int) -> int:
        if isinstance(value, bool):
            raise _Invalid("bad_timestamp", "ts must be RFC 3339 or epoch milliseconds")
        if isinstance(value, (int, float)):
            if not math.isfinite(value):
                raise _Invalid("bad_timestamp", "ts must be finite")
            ms = int(value)
        elif isinstance(value, str):
            if not _RFC3339.match(value):
                raise _Invalid("bad_timestamp", "ts is not RFC 3339 (with Z or a UTC offset)")
            try:
                parsed = datetime.fromisoformat(value.upper())
            except ValueError:
                raise _Invalid("bad_timestamp", "ts is not a valid date and time") from None
            ms = int(parsed.timestamp() * 1000)
        else:
            raise _Invalid("bad_timestamp", f"ts must be a string or number, got {type(value).__name__}")
        if ms < self._min_ms:
            raise _Invalid("bad_timestamp", "ts is before validation.min_event_time")
        if ms > now_ms + self._max_future_ms:
            raise _Invalid("future_timestamp", "ts is too far in the future")
        return ms
