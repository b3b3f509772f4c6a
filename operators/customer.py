"""One customer's batch of events in, at most one profile update (plus training examples) out.

This is the whole per-key logic of the main flow, free of Bytewax: dedup, lateness,
the event-time clock and its timers, feature updates, label bookkeeping, and the
coalesced `CustomerUpdate` (SPEC §12.1, §12.3).

Time: the customer's clock is the newest event time it has seen. Due timers (label
horizons, `since()` rule flips) fire lazily when the clock moves - before an event is
applied, at end of input (to the replay's end time) and, live, on the wall clock.
Replays therefore fire at the right historical moment and are deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from config.settings import Settings
from operators.events import Event
from operators.features import FeatureAggregator, window_counts
from operators.scoring import Example, LabelTracker, model_features
from operators.segments import SegmentRules
from state.customer import CustomerState

__all__ = ["CustomerUpdate", "CustomerOutput", "CustomerProcessor", "profile_version"]


@dataclass(slots=True)
class CustomerUpdate:
    """A customer's facts as of ``as_of_ms``; scored downstream, then rendered to a profile."""

    user_id: str
    version: int
    as_of_ms: int
    facts: dict[str, Any]
    features: dict[str, float]
    propensity: float | None = None
    model_version: int | None = None
    top_features: list[str] = field(default_factory=list)


@dataclass(slots=True)
class CustomerOutput:
    examples: list[Example] = field(default_factory=list)
    update: CustomerUpdate | None = None
    duplicates: int = 0
    late: int = 0


def profile_version(as_of_ms: int, applied: int) -> int:
    """A profile's version, determined by the input alone: ``as_of_ms * 1000 + applied % 1000``.

    Every update moves the evaluation time forward or applies at least one more event,
    so versions grow with every update of a customer; and they do not depend on how
    events were batched, so an update replayed after a recovery gets the same version
    as before the crash and the Redis guard treats it as already written. (It stays an
    exact integer in a double - Lua, JavaScript - until the year 2255.)
    """
    return as_of_ms * 1000 + applied % 1000


class CustomerProcessor:
    """Stateless service object: all state lives in the `CustomerState` passed in."""

    def __init__(self, settings: Settings, rules: SegmentRules) -> None:
        self._features = FeatureAggregator(settings.features)
        self._lateness_ms = settings.features.allowed_lateness_seconds * 1000
        self._labels = LabelTracker(settings.model.horizon_days, settings.model.snapshot_interval_hours,
                                    self._lateness_ms)
        self._rules = rules
        self._dedup_capacity = settings.features.dedup_capacity

    def on_events(self, state: CustomerState, events: list[Event]) -> CustomerOutput:
        out = CustomerOutput()
        changed = False
        for event in events:
            seen = state.seen_event_ids
            if event.event_id in seen:
                out.duplicates += 1
                continue
            seen[event.event_id] = None
            if len(seen) > self._dedup_capacity:
                del seen[next(iter(seen))]
            ts = event.ts_ms
            if ts < state.clock_ms - self._lateness_ms:
                out.late += 1
                continue
            if ts > state.clock_ms:
                out.examples += self._advance(state, ts)
            if event.type == "purchase":
                out.examples += self._labels.purchase(state, ts)
            self._features.apply(state, event)
            state.applied += 1
            changed = True
        if changed:
            out.update = self._update(state, self._as_of(state))
            # One training snapshot per interval, stamped with the time its features are
            # computed as of (the update's), so they are computed once.
            if self._labels.snapshot_due(state, out.update.as_of_ms):
                self._labels.take(state, out.update.as_of_ms, out.update.features)
        return out

    def on_time(self, state: CustomerState, now_ms: int, *, advance_clock: bool = True) -> CustomerOutput:
        """Evaluate the customer at ``now_ms`` with no new event.

        At end of input the event-time clock moves to ``now_ms``. On the wall clock
        (``advance_clock=False``) it does not: lateness stays measured in event time.
        """
        out = CustomerOutput()
        if now_ms > self._as_of(state):
            out.examples = self._advance(state, now_ms) if advance_clock else self._labels.expire(state, now_ms)
            out.update = self._update(state, now_ms)
        return out

    def next_due_ms(self, state: CustomerState) -> int | None:
        """When this customer's profile next changes with no new event: a ``since()`` rule
        flip, a count a rule reads sliding out of its window, or a label becoming final."""
        as_of = self._as_of(state)
        flip = self._rules.next_flip_ms(self._timestamps(state), as_of)
        slide = state.counts.next_change_ms(self._rules.count_windows, as_of) if self._rules.count_windows else None
        expiry = self._labels.next_expiry_ms(state)
        return min((t for t in (flip, slide, expiry) if t is not None), default=None)

    def _advance(self, state: CustomerState, now_ms: int) -> list[Example]:
        examples = self._labels.expire(state, now_ms)
        state.clock_ms = now_ms
        return examples

    @staticmethod
    def _as_of(state: CustomerState) -> int:
        """The latest time this customer has been evaluated at (profiles never go back in time)."""
        return max(state.clock_ms, state.evaluated_ms)

    @staticmethod
    def _timestamps(state: CustomerState) -> dict[str, int | None]:
        return {
            "first_seen": state.first_seen_ms,
            "last_seen": state.last_seen_ms,
            "last_purchase": state.last_purchase_ms,
            "last_email_open": state.last_email_open_ms,
            "last_email_click": state.last_email_click_ms,
            "cart_updated": state.cart_updated_ms if state.cart else None,
        }

    def _update(self, state: CustomerState, now: int) -> CustomerUpdate:
        state.evaluated_ms = now
        counts = window_counts(state, now)
        facts: dict[str, Any] = {
            **self._timestamps(state),
            "ltv": round(state.ltv, 2),
            "orders": state.orders,
            "aov": None if state.aov is None else round(state.aov, 2),
            "revenue": round(state.revenue, 2),
            "refunded": round(state.refunded, 2),
            "currency": state.currency,
            "cart_items": state.cart_items,
            "cart_value": round(state.cart_value, 2),
            "cart": [
                {"productId": pid, "name": line.name, "quantity": line.quantity, "price": line.price,
                 "category": line.category}
                for pid, line in state.cart.items()
            ],
            "preferred_category": state.preferred_category,
            "recent_views": list(state.recent_views),
            "purchase_history": [{"productId": pid, "name": name} for pid, name in state.purchase_history],
            "counts": counts,
            "attributes": dict(state.attributes),
            "sendable": state.sendable,
        }
        features = model_features(state, now, counts["7d"], counts["30d"])
        return CustomerUpdate(state.user_id, profile_version(now, state.applied), now, facts, features)
