"""Sliding event-time counts per event type, kept as tiles instead of raw events.

Each window is served by one tier of fixed tiles (1h from 5-minute tiles, 24h from
hourly tiles, 7d and 30d from daily tiles). A window of ``n`` tiles of size ``g`` read
at time ``now`` counts the events whose tile ``ts // g`` lies in
``[now // g - n + 1, now // g]``: it slides tile by tile and never needs the events.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["WINDOWS", "TiledCounts"]

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS

# window name -> (tile size ms, number of tiles)
WINDOWS: dict[str, tuple[int, int]] = {
    "1h": (5 * MINUTE_MS, 12),
    "24h": (HOUR_MS, 24),
    "7d": (DAY_MS, 7),
    "30d": (DAY_MS, 30),
}
# Tiers: tile size -> tiles retained (the longest window served by that size).
_TIERS: tuple[tuple[int, int], ...] = tuple(
    sorted({size: max(n for s, n in WINDOWS.values() if s == size) for size, _ in WINDOWS.values()}.items())
)
# Tier index -> the windows it serves, as (name, number of tiles).
_TIER_WINDOWS: tuple[tuple[int, tuple[tuple[str, int], ...]], ...] = tuple(
    (i, tuple((name, n) for name, (s, n) in WINDOWS.items() if s == size)) for i, (size, _) in enumerate(_TIERS)
)
_TYPE_BITS = 6  # a tile's key is tile << 6 | type code
_TYPE_MASK = (1 << _TYPE_BITS) - 1


@dataclass(slots=True)
class TiledCounts:
    """Per-tier maps ``tile << 6 | type_code -> count`` plus each tier's newest tile."""

    tiers: list[dict[int, int]] = field(default_factory=lambda: [{} for _ in _TIERS])
    newest: list[int] = field(default_factory=lambda: [-(2**62)] * len(_TIERS))

    def add(self, ts_ms: int, type_code: int) -> None:
        """Count one event; tiles that fell out of every window are pruned as time moves on."""
        for i, (size, keep) in enumerate(_TIERS):
            tile = ts_ms // size
            newest = self.newest[i]
            if tile > newest:
                self.newest[i] = newest = tile
                self._prune(i, newest - keep + 1)
            elif tile <= newest - keep:
                continue  # late beyond this tier's retention: no window can see it
            key = tile << _TYPE_BITS | type_code
            counts = self.tiers[i]
            counts[key] = counts.get(key, 0) + 1

    def _prune(self, tier: int, first_kept_tile: int) -> None:
        counts = self.tiers[tier]
        floor = first_kept_tile << _TYPE_BITS
        stale = [k for k in counts if k < floor]
        for k in stale:
            del counts[k]

    def read_all(self, now_ms: int) -> dict[str, dict[int, int]]:
        """Counts by type code of every window as of ``now_ms``, one pass per tier."""
        out: dict[str, dict[int, int]] = {}
        for tier, windows in _TIER_WINDOWS:
            last = now_ms // _TIERS[tier][0]
            firsts = [last - n + 1 for _, n in windows]
            results: list[dict[int, int]] = [{} for _ in windows]
            for key, count in self.tiers[tier].items():
                tile = key >> _TYPE_BITS
                if tile > last:
                    continue
                code = key & _TYPE_MASK
                for first, result in zip(firsts, results):
                    if tile >= first:
                        result[code] = result.get(code, 0) + count
            for (name, _), result in zip(windows, results):
                out[name] = result
        return out
