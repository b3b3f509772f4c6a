"""Render-ready profile JSON (SPEC §8): what a dispatch system reads at send time.

Field names are camelCase for templates; times are RFC 3339 UTC; anything unknown is
null (never missing), so templates can rely on every key being present.
"""

from __future__ import annotations

from dataclasses import dataclass
import time

import orjson

from operators.customer import CustomerUpdate
from operators.segments import SegmentRules, rule_context

__all__ = ["ProfileWrite", "iso_utc", "render_profile"]


@dataclass(frozen=True, slots=True)
class ProfileWrite:
    """One guarded Redis write: ``payload`` replaces the stored profile if ``version`` is newer."""

    user_id: str
    version: int
    payload: bytes
    segments: tuple[str, ...]


def iso_utc(ms: int | None) -> str | None:
    """RFC 3339 UTC with second precision (``2011-12-09T12:50:00Z``)."""
    if ms is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms // 1000))


def render_profile(update: CustomerUpdate, rules: SegmentRules) -> ProfileWrite:
    """Evaluate segments on the scored update and serialise the profile."""
    facts = update.facts
    context = rule_context(facts, update.as_of_ms, purchase_propensity=update.propensity, churn_risk=None)
    segments = rules.evaluate(context)
    attributes = facts["attributes"]
    profile = {
        "userId": update.user_id,
        "firstName": attributes.get("first_name"),
        "ltv": facts["ltv"],
        "orders": facts["orders"],
        "aov": facts["aov"],
        "currency": facts["currency"],
        "lastPurchaseAt": iso_utc(facts["last_purchase"]),
        "lastSeenAt": iso_utc(facts["last_seen"]),
        "preferredCategory": facts["preferred_category"],
        "cart": facts["cart"],
        "cartValue": facts["cart_value"],
        "cartUpdatedAt": iso_utc(facts["cart_updated"]),
        "recentlyViewed": facts["recent_views"],
        "purchaseHistory": facts["purchase_history"],
        "counts": facts["counts"],
        "segments": segments,
        "isVIP": "vip" in segments,
        "sendable": facts["sendable"],
        "purchasePropensity": None if update.propensity is None else round(update.propensity, 4),
        "propensityModelVersion": update.model_version,
        "propensityTopFeatures": update.top_features,
        "churnRiskScore": None,
        "attributes": attributes,
        "updatedAt": iso_utc(update.as_of_ms),
        "version": update.version,
    }
    return ProfileWrite(update.user_id, update.version, orjson.dumps(profile), tuple(segments))
