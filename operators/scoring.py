"""purchasePropensity: an online River model learned from delayed labels (SPEC §6).

A feature snapshot taken at time t is labelled positive as soon as the customer buys
within the horizon, negative once the horizon passes without a purchase, and only then
learned: the model never sees the future of the snapshot it learns from. Before
learning, every labelled example is first scored (progressive validation).
"""

from __future__ import annotations

import math
import struct
from array import array
from collections.abc import Callable
from dataclasses import dataclass

from river import linear_model, metrics, optim, preprocessing

from state.customer import CustomerState

__all__ = ["BinnedRocAuc", "Example", "LabelTracker", "PropensityModel", "model_features", "FEATURE_NAMES"]

DAY_MS = 86_400_000
RECENCY_CAP_DAYS = 365.0

FEATURE_NAMES = (
    "log_orders", "log_ltv", "log_aov", "days_since_purchase", "days_since_seen",
    "views_7d", "carts_7d", "purchases_7d", "purchases_30d", "email_opens_30d",
    "email_clicks_30d", "sessions_7d", "cart_items", "log_cart_value",
)


@dataclass(frozen=True, slots=True)
class Example:
    """A labelled snapshot, ready to learn from."""

    features: dict[str, float]
    label: bool
    taken_ms: int
    resolved_ms: int


def _days_since(ts: int | None, now_ms: int) -> float:
    if ts is None:
        return RECENCY_CAP_DAYS
    return min(RECENCY_CAP_DAYS, max(0.0, (now_ms - ts) / DAY_MS))


def model_features(
    state: CustomerState, now_ms: int, counts_7d: dict[str, int], counts_30d: dict[str, int]
) -> dict[str, float]:
    """The model's input: bounded, mostly log-scaled numbers from the customer's aggregates."""
    aov = state.aov
    return {
        "log_orders": math.log1p(state.orders),
        "log_ltv": math.log1p(max(0.0, state.ltv)),
        "log_aov": math.log1p(aov) if aov else 0.0,
        "days_since_purchase": _days_since(state.last_purchase_ms, now_ms),
        "days_since_seen": _days_since(state.last_seen_ms, now_ms),
        "views_7d": float(counts_7d.get("product_view", 0) + counts_7d.get("page_view", 0)),
        "carts_7d": float(counts_7d.get("add_to_cart", 0)),
        "purchases_7d": float(counts_7d.get("purchase", 0)),
        "purchases_30d": float(counts_30d.get("purchase", 0)),
        "email_opens_30d": float(counts_30d.get("email_open", 0)),
        "email_clicks_30d": float(counts_30d.get("email_click", 0)),
        "sessions_7d": float(counts_7d.get("session_start", 0) + counts_7d.get("app_open", 0)),
        "cart_items": float(state.cart_items),
        "log_cart_value": math.log1p(state.cart_value),
    }


_STRIDE = 1 + len(FEATURE_NAMES)  # pending row: taken_ms, then the features in FEATURE_NAMES order


class LabelTracker:
    """Keeps each customer's pending snapshots and turns them into labelled examples.

    Snapshots are taken as the clock advances, so ``state.pending`` is ordered by the
    time taken. Expired snapshots are always removed before a later event is applied,
    so both labelling rules only ever take a prefix of it.
    """

    def __init__(self, horizon_days: float, snapshot_interval_hours: float, lateness_ms: int = 0) -> None:
        self.horizon_ms = int(horizon_days * DAY_MS)
        self.interval_ms = int(snapshot_interval_hours * 3_600_000)
        self.lateness_ms = lateness_ms

    def expire(self, state: CustomerState, now_ms: int) -> list[Example]:
        """Negative examples for snapshots whose horizon closed without a purchase.

        A horizon is final only once the allowed lateness has passed too: until then a
        late purchase inside the horizon may still arrive and make the label positive.
        """
        horizon, wait = self.horizon_ms, self.horizon_ms + self.lateness_ms
        return [Example(x, False, t, t + horizon) for t, x in _pop_while(state, lambda t: t + wait <= now_ms)]

    def purchase(self, state: CustomerState, ts_ms: int) -> list[Example]:
        """Positive examples: every open snapshot taken before this purchase (all within horizon)."""
        return [Example(x, True, t, ts_ms) for t, x in _pop_while(state, lambda t: t < ts_ms)]

    def snapshot_due(self, state: CustomerState, ts_ms: int) -> bool:
        return state.last_snapshot_ms is None or ts_ms - state.last_snapshot_ms >= self.interval_ms

    def take(self, state: CustomerState, ts_ms: int, features: dict[str, float]) -> None:
        row = array("d", [float(ts_ms)])
        row.extend(features[name] for name in FEATURE_NAMES)
        state.pending += row.tobytes()
        state.last_snapshot_ms = ts_ms

    def next_expiry_ms(self, state: CustomerState) -> int | None:
        if not state.pending:
            return None
        return int(_FIRST_TAKEN.unpack_from(state.pending)[0]) + self.horizon_ms + self.lateness_ms


_FIRST_TAKEN = struct.Struct("d")


def _pop_while(state: CustomerState, take: Callable[[int], bool]) -> list[tuple[int, dict[str, float]]]:
    """Remove and return (taken_ms, features) of the leading snapshots that satisfy ``take``."""
    if not state.pending:
        return []
    pending = array("d")
    pending.frombytes(state.pending)
    rows, end = [], 0
    while end < len(pending) and take(int(pending[end])):
        rows.append((int(pending[end]), dict(zip(FEATURE_NAMES, pending[end + 1 : end + _STRIDE], strict=True))))
        end += _STRIDE
    if end:
        state.pending = pending[end:].tobytes()
    return rows


class BinnedRocAuc:
    """ROC AUC from per-class score histograms: O(1) per update, exact up to 1/bins ties.

    (River's `ROCAUC` updates every threshold's confusion matrix per example, which
    dominated learning time here.)
    """

    def __init__(self, bins: int = 1000) -> None:
        self.bins = bins
        self.positives = [0] * bins
        self.negatives = [0] * bins

    def update(self, label: bool, score: float) -> None:
        index = min(self.bins - 1, max(0, int(score * self.bins)))
        (self.positives if label else self.negatives)[index] += 1

    def get(self) -> float:
        """P(score of a positive > score of a negative), ties in a bin counting half."""
        pos_total, neg_total = sum(self.positives), sum(self.negatives)
        if not pos_total or not neg_total:
            return 0.5
        wins, negatives_below = 0.0, 0
        for pos, neg in zip(self.positives, self.negatives, strict=True):
            wins += pos * (negatives_below + neg / 2)
            negatives_below += neg
        return wins / (pos_total * neg_total)


class PropensityModel:
    """StandardScaler | LogisticRegression, its version and its progressive-validation quality."""

    def __init__(self, learning_rate: float) -> None:
        self.pipeline = preprocessing.StandardScaler() | linear_model.LogisticRegression(
            optimizer=optim.SGD(learning_rate)
        )
        self.version = 0
        """Number of examples learned; scores carry it."""
        self.roc_auc = BinnedRocAuc()
        self.log_loss = metrics.LogLoss()
        self.positives = 0

    def learn(self, example: Example) -> float:
        """Score (for validation), then learn; returns the pre-learning score."""
        p = self.score(example.features)
        self.roc_auc.update(example.label, p)
        self.log_loss.update(example.label, p)
        self.pipeline.learn_one(example.features, example.label)
        self.version += 1
        self.positives += example.label
        return p

    def score(self, features: dict[str, float]) -> float:
        return float(self.pipeline.predict_proba_one(features).get(True, 0.5))

    def score_and_explain(self, features: dict[str, float], n: int = 3) -> tuple[float, list[str]]:
        """The score and the names of the features pushing it up most (weight x scaled value)."""
        scaled = self.pipeline["StandardScaler"].transform_one(features)
        regression = self.pipeline["LogisticRegression"]
        p = float(regression.predict_proba_one(scaled).get(True, 0.5))
        weights = regression.weights
        pushing = [(-weights.get(k, 0.0) * v, k) for k, v in scaled.items()]
        pushing.sort()  # most positive contribution first; ties by name
        return p, [name for minus_value, name in pushing[:n] if minus_value < 0]
