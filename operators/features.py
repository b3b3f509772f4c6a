"""Per-event feature aggregation (SPEC §5): cheap, in-place updates of `CustomerState`.

Called once per event on the hot path, so every update is O(1) amortised; anything
derived (windows read, preferred category, model features) is computed once per
batch in `operators.customer`.
"""

from __future__ import annotations

from config.settings import FeatureSettings
from operators.events import EVENT_TYPES, Event
from state.customer import CartLine, CustomerState

__all__ = ["TYPE_CODES", "SEEN_TYPES", "CATEGORY_WEIGHTS", "FeatureAggregator", "window_counts"]

TYPE_CODES = {name: code for code, name in enumerate(EVENT_TYPES)}
# Events that show the customer themselves was active (not what we did to them).
SEEN_TYPES = frozenset({
    "page_view", "product_view", "add_to_cart", "remove_from_cart", "purchase",
    "email_open", "email_click", "app_open", "session_start",
})
# How much one event says about interest in its category.
CATEGORY_WEIGHTS = {"page_view": 1.0, "product_view": 1.0, "add_to_cart": 2.0, "purchase": 3.0}


def window_counts(state: CustomerState, now_ms: int) -> dict[str, dict[str, int]]:
    """Event counts per window per type as of ``now_ms`` (zero counts omitted)."""
    return {
        window: {EVENT_TYPES[code]: n for code, n in by_code.items()}
        for window, by_code in state.counts.read_all(now_ms).items()
    }


class FeatureAggregator:
    """Applies one event to a customer's aggregates."""

    def __init__(self, settings: FeatureSettings) -> None:
        self._recent = settings.recent_products
        self._half_life_ms = settings.category_half_life_days * 86_400_000
        self._max_categories = settings.max_categories

    def apply(self, state: CustomerState, event: Event) -> None:
        ts, data, kind = event.ts_ms, event.data, event.type
        state.counts.add(ts, TYPE_CODES[kind])
        if state.first_seen_ms is None or ts < state.first_seen_ms:
            state.first_seen_ms = ts
        if kind in SEEN_TYPES:
            state.last_seen_ms = _later(state.last_seen_ms, ts)
        handler = _HANDLERS.get(kind)
        if handler is not None:
            handler(self, state, event)
        weight = CATEGORY_WEIGHTS.get(kind)
        if weight is not None:
            for category in _categories(kind, data):
                self._bump_category(state, category, weight, ts)

    # -- per-type handlers ---------------------------------------------------------------

    def _product_view(self, state: CustomerState, event: Event) -> None:
        product = event.data["product_id"]
        views = state.recent_views
        if product in views:
            views.remove(product)
        views.insert(0, product)
        del views[self._recent:]

    def _add_to_cart(self, state: CustomerState, event: Event) -> None:
        if _before_checkout(state, event):
            return
        data = event.data
        line = state.cart.get(data["product_id"])
        if line is None:
            state.cart[data["product_id"]] = CartLine(
                data["quantity"], data["price"], data.get("name"), data.get("category")
            )
        else:
            line.quantity += data["quantity"]
            line.price = data["price"] if data["price"] is not None else line.price
        state.cart_updated_ms = _later(state.cart_updated_ms, event.ts_ms)

    def _remove_from_cart(self, state: CustomerState, event: Event) -> None:
        if _before_checkout(state, event):
            return
        product = event.data["product_id"]
        line = state.cart.get(product)
        if line is not None:
            line.quantity -= event.data["quantity"]
            if line.quantity <= 0:
                del state.cart[product]
        state.cart_updated_ms = _later(state.cart_updated_ms, event.ts_ms)

    def _purchase(self, state: CustomerState, event: Event) -> None:
        data = event.data
        state.orders += 1
        if data["total"] is not None:
            state.priced_orders += 1
            state.revenue += data["total"]
        newest = state.last_purchase_ms is None or event.ts_ms >= state.last_purchase_ms
        if newest:
            state.currency = data["currency"]
        state.last_purchase_ms = _later(state.last_purchase_ms, event.ts_ms)
        history = state.purchase_history
        for item in data["items"]:
            history.insert(0, (item["product_id"], item.get("name")))
        del history[self._recent:]
        # Checking out converts the cart: nothing is left to abandon - unless this
        # purchase arrived late and the cart has changed since it happened.
        if state.cart_updated_ms is None or event.ts_ms >= state.cart_updated_ms:
            state.cart.clear()
            state.cart_updated_ms = event.ts_ms

    def _refund(self, state: CustomerState, event: Event) -> None:
        if event.data["total"] is not None:
            state.refunded += event.data["total"]

    def _email_open(self, state: CustomerState, event: Event) -> None:
        state.last_email_open_ms = _later(state.last_email_open_ms, event.ts_ms)

    def _email_click(self, state: CustomerState, event: Event) -> None:
        state.last_email_click_ms = _later(state.last_email_click_ms, event.ts_ms)

    def _profile_update(self, state: CustomerState, event: Event) -> None:
        """Last write wins by event time, per attribute (a late, older update loses)."""
        times, ts = state.attribute_times, event.ts_ms
        for key, value in event.data["attributes"].items():
            if ts < times.get(key, ts):
                continue
            times[key] = ts
            if value is None:
                state.attributes.pop(key, None)
            else:
                state.attributes[key] = value

    def _consent_update(self, state: CustomerState, event: Event) -> None:
        for purpose, decision in event.data["purposes"].items():
            _set_consent(state, purpose, decision, event.ts_ms)

    def _email_unsubscribe(self, state: CustomerState, event: Event) -> None:
        _set_consent(state, "email_marketing", "denied", event.ts_ms)

    def _bump_category(self, state: CustomerState, category: str, weight: float, ts: int) -> None:
        """Add ``weight`` to an exponentially decayed score (half-life from settings)."""
        scores = state.category_scores
        if ts >= state.category_ref_ms:
            if scores and ts > state.category_ref_ms:
                decay = 0.5 ** ((ts - state.category_ref_ms) / self._half_life_ms)
                for key in scores:
                    scores[key] *= decay
            state.category_ref_ms = ts
        else:
            weight *= 0.5 ** ((state.category_ref_ms - ts) / self._half_life_ms)
        if category in scores or len(scores) < self._max_categories:
            scores[category] = scores.get(category, 0.0) + weight
            return
        # Full: Space-Saving - the newcomer takes the weakest slot and inherits its score,
        # so a category of rising interest can displace decayed ones instead of being
        # evicted on arrival every time (its score over-estimates by at most that floor).
        weakest = min(scores, key=lambda k: (scores[k], k))
        floor = scores.pop(weakest)
        scores[category] = floor + weight


_HANDLERS = {
    "product_view": FeatureAggregator._product_view,
    "add_to_cart": FeatureAggregator._add_to_cart,
    "remove_from_cart": FeatureAggregator._remove_from_cart,
    "purchase": FeatureAggregator._purchase,
    "refund": FeatureAggregator._refund,
    "email_open": FeatureAggregator._email_open,
    "email_click": FeatureAggregator._email_click,
    "profile_update": FeatureAggregator._profile_update,
    "consent_update": FeatureAggregator._consent_update,
    "email_unsubscribe": FeatureAggregator._email_unsubscribe,
}


def _set_consent(state: CustomerState, purpose: str, decision: str, ts: int) -> None:
    """Last decision by event time wins: a late, older grant cannot undo a newer denial."""
    current = state.consent.get(purpose)
    if current is None or ts >= current[1]:
        state.consent[purpose] = (decision, ts)


def _before_checkout(state: CustomerState, event: Event) -> bool:
    """A cart change older than the last purchase arrived late: that cart was checked out."""
    return state.last_purchase_ms is not None and event.ts_ms < state.last_purchase_ms


def _later(current: int | None, ts: int) -> int:
    return ts if current is None or ts > current else current


def _categories(kind: str, data: dict) -> list[str]:
    if kind == "purchase":
        return [item["category"] for item in data["items"] if item.get("category")]
    category = data.get("category")
    return [category] if category else []
