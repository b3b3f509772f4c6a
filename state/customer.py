"""The per-customer state held by the keyed Bytewax step and snapshotted for recovery.

Plain slotted dataclasses of builtins: they pickle and deep-copy (Bytewax snapshots),
and hold aggregates only (tiles, capped lists, decayed scores), never raw event lists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from state.records import PositionalPickle
from state.windows import TiledCounts

__all__ = ["CartLine", "CustomerState"]


@dataclass(slots=True)
class CartLine(PositionalPickle):
    quantity: int
    price: float | None
    name: str | None
    category: str | None


@dataclass(slots=True)
class CustomerState(PositionalPickle):
    user_id: str
    applied: int = 0
    """Events applied (not duplicates, not late): with the evaluation time, the profile version."""
    clock_ms: int = 0
    """The customer's event-time clock: newest event time seen, or the end of input it was moved to."""
    evaluated_ms: int = 0
    """Time the last update was computed as of (the wall clock, live, may be ahead of the clock)."""
    first_seen_ms: int | None = None
    last_seen_ms: int | None = None
    last_purchase_ms: int | None = None
    last_email_open_ms: int | None = None
    last_email_click_ms: int | None = None
    orders: int = 0
    priced_orders: int = 0
    """Orders whose total is known (some datasets carry no prices)."""
    revenue: float = 0.0
    """Gross revenue of priced orders."""
    refunded: float = 0.0
    currency: str | None = None
    cart: dict[str, CartLine] = field(default_factory=dict)
    cart_updated_ms: int | None = None
    category_scores: dict[str, float] = field(default_factory=dict)
    """Recency-decayed category interest, valued as of ``category_ref_ms``."""
    category_ref_ms: int = 0
    recent_views: list[str] = field(default_factory=list)
    """Most recently viewed product ids, newest first."""
    purchase_history: list[tuple[str, str | None]] = field(default_factory=list)
    """(product id, name) of recent purchases, newest first."""
    counts: TiledCounts = field(default_factory=TiledCounts)
    attributes: dict[str, Any] = field(default_factory=dict)
    attribute_times: dict[str, int] = field(default_factory=dict)
    """Event time of each attribute's last change (last write wins by event time)."""
    consent: dict[str, tuple[str, int]] = field(default_factory=dict)
    """purpose -> (granted|denied, event time of that decision)."""
    seen_event_ids: dict[str, None] = field(default_factory=dict)
    """Recent event ids (insertion-ordered, capped) to drop at-least-once duplicates."""
    pending: bytes = b""
    """Snapshots waiting for their label (purchase within the horizon), oldest first: packed
    doubles, rows of ``taken_ms`` then the model features (see `operators.scoring.LabelTracker`).
    Immutable bytes pickle at almost no cost."""
    last_snapshot_ms: int | None = None

    @property
    def sendable(self) -> bool:
        """Email may be sent unless the customer denied email marketing (or unsubscribed)."""
        decision = self.consent.get("email_marketing")
        return decision is None or decision[0] != "denied"

    @property
    def ltv(self) -> float:
        return self.revenue - self.refunded

    @property
    def aov(self) -> float | None:
        return self.revenue / self.priced_orders if self.priced_orders else None

    @property
    def cart_items(self) -> int:
        return sum(line.quantity for line in self.cart.values())

    @property
    def cart_value(self) -> float:
        return sum(line.quantity * line.price for line in self.cart.values() if line.price is not None)

    @property
    def preferred_category(self) -> str | None:
        if not self.category_scores:
            return None
        # Ties break on the name so replays are deterministic.
        return max(self.category_scores.items(), key=lambda kv: (kv[1], kv[0]))[0]
