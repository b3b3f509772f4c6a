"""The Redis key layout (documented in README, "Redis key layout").

Every key of one customer carries the customer id as a Redis Cluster hash tag
(``{user_id}``), so all of them live in one slot and one Lua script may touch them.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["KeyLayout", "PROFILE_FIELD", "VERSION_FIELD"]

PROFILE_FIELD = "profile"
"""Hash field holding the render-ready profile JSON."""
VERSION_FIELD = "version"
"""Hash field holding the profile version (the write guard)."""


@dataclass(frozen=True, slots=True)
class KeyLayout:
    prefix: str

    def profile(self, user_id: str) -> str:
        """``<prefix>:{<user_id>}:profile`` - a hash with fields ``profile`` and ``version``."""
        return f"{self.prefix}:{{{user_id}}}:profile"

    def profile_pattern(self) -> str:
        """SCAN pattern matching every profile key under this prefix."""
        return f"{self.prefix}:{{*}}:profile"

    def user_of(self, key: str | bytes) -> str:
        text = key.decode() if isinstance(key, bytes) else key
        return text[len(self.prefix) + 2 : text.rindex("}")]
