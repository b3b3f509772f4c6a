"""Dispatch-time lookup: one HGET per recipient, with defaults for unknown customers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
import redis

from state.keys import PROFILE_FIELD, KeyLayout

__all__ = ["ProfileClient", "default_profile"]


def default_profile(user_id: str) -> dict[str, Any]:
    """What a template gets for a customer Pulse knows nothing about."""
    return {
        "userId": user_id, "firstName": None, "ltv": 0.0, "orders": 0, "aov": None, "currency": None,
        "lastPurchaseAt": None, "lastSeenAt": None, "preferredCategory": None, "cart": [],
        "cartValue": 0.0, "cartUpdatedAt": None, "recentlyViewed": [], "purchaseHistory": [],
        "counts": {}, "segments": [], "isVIP": False, "sendable": True, "purchasePropensity": None,
        "propensityModelVersion": None, "propensityTopFeatures": [], "churnRiskScore": None,
        "attributes": {}, "updatedAt": None, "version": 0, "known": False,
    }


class ProfileClient:
    """Reads profiles written by the Pulse workers."""

    def __init__(self, client: redis.Redis, prefix: str = "pulse") -> None:
        self._client = client
        self._layout = KeyLayout(prefix)

    @classmethod
    def from_url(cls, url: str, prefix: str = "pulse") -> ProfileClient:
        return cls(redis.Redis.from_url(url, socket_timeout=1.0), prefix)

    def get(self, user_id: str) -> dict[str, Any] | None:
        """The stored profile, or None if Pulse has none for ``user_id``."""
        raw = self._client.hget(self._layout.profile(user_id), PROFILE_FIELD)
        return None if raw is None else orjson.loads(raw)

    def get_or_default(self, user_id: str) -> dict[str, Any]:
        profile = self.get(user_id)
        return default_profile(user_id) if profile is None else {**profile, "known": True}

    def get_many(self, user_ids: Sequence[str]) -> dict[str, dict[str, Any] | None]:
        """Pipelined lookup of several recipients (one round trip)."""
        with self._client.pipeline(transaction=False) as pipe:
            for user_id in user_ids:
                pipe.hget(self._layout.profile(user_id), PROFILE_FIELD)
            raws = pipe.execute()
        return {u: None if r is None else orjson.loads(r) for u, r in zip(user_ids, raws, strict=True)}

    def scan_user_ids(self, count: int = 1000) -> list[str]:
        """Every customer with a profile under this prefix (operations/demo use, not dispatch)."""
        keys = self._client.scan_iter(match=self._layout.profile_pattern(), count=count)
        return sorted(self._layout.user_of(k) for k in keys)
