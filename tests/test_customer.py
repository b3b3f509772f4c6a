"""Per-customer logic without Bytewax: features, dedup, lateness, labels, timers."""

import pickle
from array import array
from datetime import datetime, timezone
from pathlib import Path

import pytest

from config.settings import load_settings
from operators.customer import CustomerProcessor, profile_version
from operators.events import Event
from operators.features import FeatureAggregator
from operators.scoring import FEATURE_NAMES
from operators.segments import SegmentRules
from operators.profile import render_profile
from state.customer import CustomerState

HOUR = 3_600_000
DAY = 24 * HOUR
T0 = int(datetime(2024, 1, 1, tzinfo=timezone.utc).timestamp() * 1000)
SETTINGS = load_settings(env={})
RULES = SegmentRules.load(SETTINGS.rules_path)


def ev(n: int, kind: str, ts: int, **data: object) -> Event:
    return Event(f"e{n}", kind, "u-1", ts, data)


def item(pid: str, qty: int, price: float | None, **extra: object) -> dict:
    return {"product_id": pid, "quantity": qty, "price": price, **extra}


@pytest.fixture
def processor() -> CustomerProcessor:
    return CustomerProcessor(SETTINGS, RULES)


def test_lifetime_values_cart_and_history(processor: CustomerProcessor) -> None:
    state = CustomerState("u-1")
    out = processor.on_events(state, [
        ev(1, "product_view", T0, product_id="p1", category="shoes", price=10.0),
        ev(2, "add_to_cart", T0 + 1, product_id="p1", quantity=2, price=10.0, name="Shoe"),
        ev(3, "add_to_cart", T0 + 2, product_id="p2", quantity=1, price=5.0),
        ev(4, "remove_from_cart", T0 + 3, product_id="p2", quantity=1, price=5.0),
        ev(5, "purchase", T0 + 4, order_id="o1", total=20.0, currency="EUR",
           items=[item("p1", 2, 10.0, name="Shoe", category="shoes")]),
        ev(6, "purchase", T0 + DAY, order_id="o2", total=None, currency="XXX", items=[item("p9", 1, None)]),
        ev(7, "refund", T0 + DAY + 1, order_id="o1", total=5.0, currency="EUR", items=[item("p1", 1, 5.0)]),
        ev(8, "add_to_cart", T0 + DAY + 2, product_id="p3", quantity=3, price=2.5),
    ])
    assert out.update is not None and out.update.version == profile_version(T0 + DAY + 2, 8)
    assert state.orders == 2 and state.priced_orders == 1
    assert state.ltv == 15.0 and state.aov == 20.0
    assert state.cart_items == 3 and state.cart_value == 7.5
    assert state.purchase_history[:2] == [("p9", None), ("p1", "Shoe")]
    assert state.recent_views == ["p1"]
    assert state.preferred_category == "shoes"
    assert state.last_purchase_ms == T0 + DAY
    assert out.update.facts["counts"]["24h"] == {"add_to_cart": 1, "purchase": 1, "refund": 1}


def test_duplicates_count_once_and_late_events_are_dropped(processor: CustomerProcessor) -> None:
    state = CustomerState("u-1")
    buy = ev(1, "purchase", T0 + 10 * HOUR, order_id="o", total=9.0, currency="EUR", items=[item("p", 1, 9.0)])
    out = processor.on_events(state, [buy, buy])
    out2 = processor.on_events(state, [buy, ev(2, "page_view", T0, url="/")])  # 10h late > 1h allowed
    assert (out.duplicates, out2.duplicates, out2.late) == (1, 1, 1)
    assert state.orders == 1 and state.ltv == 9.0
    assert out2.update is None  # nothing applied: no new profile version


def test_preferred_category_is_recency_weighted(processor: CustomerProcessor) -> None:
    state = CustomerState("u-1")
    views = [ev(i, "product_view", T0 + i, product_id=f"a{i}", category="old") for i in range(3)]
    processor.on_events(state, views)
    processor.on_events(state, [ev(10, "product_view", T0 + 90 * DAY, product_id="b", category="new"),
                                ev(11, "product_view", T0 + 90 * DAY + 1, product_id="c", category="new")])
    # 3 views 90 days (3 half-lives) ago weigh 3/8 < 2 fresh views.
    assert state.preferred_category == "new"


def test_purchase_labels_open_snapshots_positive_without_leaking(processor: CustomerProcessor) -> None:
    state = CustomerState("u-1")
    first = processor.on_events(state, [ev(1, "page_view", T0, url="/")])
    pending = array("d", state.pending)
    assert first.examples == [] and len(pending) == 1 + len(FEATURE_NAMES)
    snapshot_features = dict(zip(FEATURE_NAMES, pending[1:], strict=True))
    out = processor.on_events(state, [ev(2, "purchase", T0 + 3 * DAY, order_id="o", total=50.0, currency="EUR",
                                          items=[item("p", 1, 50.0)])])
    assert [(x.label, x.taken_ms, x.resolved_ms) for x in out.examples] == [(True, T0, T0 + 3 * DAY)]
    assert out.examples[0].features == snapshot_features
    assert out.examples[0].features["log_orders"] == 0.0  # the snapshot knew nothing of the purchase


def test_snapshots_expire_negative_when_the_horizon_closes(processor: CustomerProcessor) -> None:
    state = CustomerState("u-1")
    processor.on_events(state, [ev(1, "page_view", T0, url="/")])
    final = T0 + 7 * DAY + HOUR  # horizon plus the allowed lateness
    assert processor.on_time(state, final - 1).examples == []
    out = processor.on_time(state, final)
    assert [(x.label, x.resolved_ms) for x in out.examples] == [(False, T0 + 7 * DAY)]
    assert len(state.pending) == 0


def test_a_late_purchase_inside_the_horizon_still_labels_positive(processor: CustomerProcessor) -> None:
    """Regression: snapshots were labelled negative as soon as the horizon passed, so a
    purchase arriving within the allowed lateness could no longer make them positive."""
    state = CustomerState("u-1")
    processor.on_events(state, [ev(1, "page_view", T0, url="/")])
    moved_on = processor.on_events(state, [ev(2, "page_view", T0 + 7 * DAY + 10 * 60_000, url="/")])
    assert moved_on.examples == []
    late = processor.on_events(state, [ev(3, "purchase", T0 + 7 * DAY - 10 * 60_000, order_id="o", total=1.0,
                                          currency="EUR", items=[item("p", 1, 1.0)])])
    assert late.late == 0 and [(x.label, x.taken_ms) for x in late.examples] == [(True, T0)]


def test_cart_abandonment_fires_on_time_alone(processor: CustomerProcessor) -> None:
    state = CustomerState("u-1")
    out = processor.on_events(state, [ev(1, "add_to_cart", T0, product_id="p", quantity=1, price=3.0)])
    assert "cart_abandoner" not in render_profile(out.update, RULES).segments
    assert processor.next_due_ms(state) == T0 + HOUR
    later = processor.on_time(state, T0 + HOUR)
    assert later.update.version == profile_version(T0 + HOUR, 1) > out.update.version
    assert "cart_abandoner" in render_profile(later.update, RULES).segments


def test_state_pickles_for_recovery(processor: CustomerProcessor) -> None:
    state = CustomerState("u-1")
    processor.on_events(state, [ev(1, "add_to_cart", T0, product_id="p", quantity=1, price=3.0)])
    restored = pickle.loads(pickle.dumps(state))
    assert restored == state
    assert processor.on_time(restored, T0 + HOUR).update.version == profile_version(T0 + HOUR, 1)


def test_profile_has_the_documented_fields(processor: CustomerProcessor) -> None:
    state = CustomerState("u-1")
    out = processor.on_events(state, [
        ev(1, "profile_update", T0, attributes={"first_name": "Ada"}),
        ev(2, "purchase", T0 + 1, order_id="o", total=2000.0, currency="EUR", items=[item("p", 1, 2000.0)]),
    ])
    out.update.propensity, out.update.model_version = 0.25, 3
    import orjson

    profile = orjson.loads(render_profile(out.update, RULES).payload)
    for name in ("userId", "firstName", "ltv", "orders", "aov", "lastPurchaseAt", "lastSeenAt",
                 "preferredCategory", "cart", "purchaseHistory", "counts", "segments", "purchasePropensity",
                 "churnRiskScore", "updatedAt", "version"):
        assert name in profile, name
    assert profile["firstName"] == "Ada" and profile["isVIP"] is True and profile["churnRiskScore"] is None
    assert profile["lastPurchaseAt"] == "2024-01-01T00:00:00Z" and profile["purchasePropensity"] == 0.25


def test_feature_aggregator_caps_categories() -> None:
    settings = SETTINGS.features
    agg, state = FeatureAggregator(settings), CustomerState("u-1")
    for i in range(settings.max_categories + 5):
        agg.apply(state, ev(i, "page_view", T0 + i, url="/", category=f"c{i}"))
    assert len(state.category_scores) == settings.max_categories


def test_wall_clock_evaluation_keeps_lateness_in_event_time(processor: CustomerProcessor) -> None:
    state = CustomerState("u-1")
    processor.on_events(state, [ev(1, "add_to_cart", T0, product_id="p", quantity=1, price=3.0)])
    due = processor.next_due_ms(state)
    assert due == T0 + HOUR
    live = processor.on_time(state, due + 5, advance_clock=False)
    assert "cart_abandoner" in render_profile(live.update, RULES).segments
    assert state.clock_ms == T0
    assert processor.next_due_ms(state) == T0 + 7 * DAY + 1  # the cart flip fired: next, active_7d ends
    # An event stamped before the wall evaluation but within lateness still counts,
    # and the profile does not go back in time.
    later = processor.on_events(state, [ev(2, "page_view", T0 + 30 * 60_000, url="/")])
    assert later.late == 0 and later.update.as_of_ms == due + 5


def test_labels_take_only_snapshots_older_than_the_purchase(processor: CustomerProcessor) -> None:
    state = CustomerState("u-1")
    for day in range(3):
        processor.on_events(state, [ev(day, "page_view", T0 + day * DAY, url="/")])
    bought = processor.on_events(state, [ev(10, "purchase", T0 + 2 * DAY + HOUR, order_id="o1", total=5.0,
                                            currency="EUR", items=[item("p", 1, 5.0)])])
    assert [(x.label, x.taken_ms) for x in bought.examples] == [(True, T0), (True, T0 + DAY), (True, T0 + 2 * DAY)]
    processor.on_events(state, [ev(11, "page_view", T0 + 3 * DAY + 2 * HOUR, url="/")])
    processor.on_events(state, [ev(12, "page_view", T0 + 4 * DAY + 3 * HOUR, url="/")])
    # A purchase stamped 30 minutes before the clock (within lateness) labels only the
    # snapshots taken before it; the one taken after stays open.
    late_buy = processor.on_events(state, [ev(13, "purchase", T0 + 4 * DAY + 150 * 60_000, order_id="o2",
                                              total=5.0, currency="EUR", items=[item("p", 1, 5.0)])])
    assert late_buy.late == 0
    assert [(x.label, x.taken_ms) for x in late_buy.examples] == [(True, T0 + 3 * DAY + 2 * HOUR)]
    assert array("d", state.pending)[0] == T0 + 4 * DAY + 3 * HOUR


def test_out_of_order_events_within_lateness_resolve_by_event_time(processor: CustomerProcessor) -> None:
    """Regression: late events were applied in arrival order (an older grant undid a denial,
    an older cart add resurrected a checked-out cart)."""
    state = CustomerState("u-1")
    minute = 60_000
    processor.on_events(state, [
        ev(1, "consent_update", T0 + 10 * minute, purposes={"email_marketing": "denied"}),
        ev(2, "consent_update", T0, purposes={"email_marketing": "granted"}),
        ev(3, "profile_update", T0 + 10 * minute, attributes={"tier": "gold"}),
        ev(4, "profile_update", T0, attributes={"tier": "bronze", "city": "Oslo"}),
        ev(5, "purchase", T0 + 5 * minute, order_id="o", total=5.0, currency="EUR", items=[item("p", 1, 5.0)]),
        ev(6, "add_to_cart", T0, product_id="p", quantity=1, price=5.0),
        ev(7, "purchase", T0 + 4 * minute, order_id="o0", total=1.0, currency="SEK", items=[item("q", 1, 1.0)]),
    ])
    assert state.sendable is False
    assert state.attributes == {"tier": "gold", "city": "Oslo"}
    assert state.cart == {} and state.currency == "EUR"
    later = processor.on_time(state, T0 + 2 * HOUR)
    assert "cart_abandoner" not in render_profile(later.update, RULES).segments


def test_unsubscribe_makes_the_customer_not_sendable(processor: CustomerProcessor) -> None:
    state = CustomerState("u-1")
    processor.on_events(state, [ev(1, "email_unsubscribe", T0, campaign_id="c1")])
    assert state.sendable is False
    processor.on_events(state, [ev(2, "consent_update", T0 + 1, purposes={"email_marketing": "granted"})])
    assert state.sendable is True


def test_rules_reading_counts_wake_the_customer_when_the_window_slides(tmp_path: Path) -> None:
    (tmp_path / "rules.toml").write_text('[segments.hot]\nwhen = "count_1h_page_view > 0"\n')
    processor = CustomerProcessor(SETTINGS, SegmentRules.load(tmp_path / "rules.toml"))
    state = CustomerState("u-1")
    processor.on_events(state, [ev(1, "page_view", T0, url="/")])  # T0 is a tile boundary
    assert processor.next_due_ms(state) == T0 + HOUR
    later = processor.on_time(state, T0 + HOUR, advance_clock=False)
    assert later.update.facts["counts"]["1h"] == {}


def test_a_rising_category_can_displace_decayed_ones() -> None:
    """Regression: with every slot taken, a new category was evicted on arrival, forever."""
    settings = SETTINGS.features
    agg, state = FeatureAggregator(settings), CustomerState("u-1")
    n = 0
    for c in range(settings.max_categories):
        for _ in range(30):
            n += 1
            agg.apply(state, ev(n, "page_view", T0, url="/", category=f"old{c}"))
    for _ in range(20):
        n += 1
        agg.apply(state, ev(n, "page_view", T0 + 30 * DAY, url="/", category="new"))
    # Recency-weighted truth: each old category ~15 (one half-life ago), "new" 20.
    assert state.preferred_category == "new"
