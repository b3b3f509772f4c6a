"""Sliding event-time counts per event type, kept as tiles instead of raw events.

Each window is served by one tier of fixed tiles (1h from 5-minute tiles, 24h from
hourly tiles, 7d and 30d from daily tiles). A window of ``n`` tiles of size ``g`` read
at time ``now`` counts the events whose tile ``ts // g`` lies in
``[now // g - n + 1, now // g]``: it slides tile by tile and never needs the events.

All tiers share one dict keyed ``tile << 8 | tier << 6 | type code`` (one small dict per
customer instead of one per tier), and the newest event time says where every tier's
retention ends, so pruning needs no per-tier bookkeeping.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from state.records import PositionalPickle

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
# Tiers: (tile size, tiles retained = the longest window served by that size).
_TIERS: tuple[tuple[int, int], ...] = tuple(
    sorted({size: max(n for s, n in WINDOWS.values() if s == size) for size, _ in WINDOWS.values()}.items())
)
# Tier index -> the windows it serves, as (name, number of tiles).
_TIER_WINDOWS: tuple[tuple[tuple[str, int], ...], ...] = tuple(
    tuple((name, n) for name, (s, n) in WINDOWS.items() if s == size) for size, _ in _TIERS
)
_CODE_BITS, _TIER_BITS = 6, 2
_CODE_MASK = (1 << _CODE_BITS) - 1
_TIER_MASK = (1 << _TIER_BITS) - 1
_TILE_SHIFT = _CODE_BITS + _TIER_BITS
if len(_TIERS) > 1 << _TIER_BITS:
    msg = "more tile sizes than the key's tier bits can hold"
    raise ValueError(msg)


def _key(tile: int, tier: int, code: int) -> int:
    return tile << _TILE_SHIFT | tier << _CODE_BITS | code


@dataclass(slots=True)
class TiledCounts(PositionalPickle):
    """Counts per (tile, tier, event type code), pruned as the newest event time advances."""

    counts: dict[int, int] = field(default_factory=dict)
    newest_ms: int = 0

    def add(self, ts_ms: int, type_code: int) -> None:
        """Count one event in every tier that can still see it."""
        if ts_ms > self.newest_ms:
            previous, self.newest_ms = self.newest_ms, ts_ms
            if any(previous // size != ts_ms // size for size, _ in _TIERS):
                self._prune()
        counts = self.counts
        for tier, (size, keep) in enumerate(_TIERS):
            tile = ts_ms // size
            if tile > self.newest_ms // size - keep:  # else: older than this tier's longest window
                key = _key(tile, tier, type_code)
                counts[key] = counts.get(key, 0) + 1

    def _prune(self) -> None:
        firsts = [self.newest_ms // size - keep + 1 for size, keep in _TIERS]
        stale = [k for k in self.counts if k >> _TILE_SHIFT < firsts[(k >> _CODE_BITS) & _TIER_MASK]]
        for key in stale:
            del self.counts[key]

    def read_all(self, now_ms: int) -> dict[str, dict[int, int]]:
        """Counts by type code of every window as of ``now_ms``, in one pass."""
        spans = [
            [(now_ms // size - n + 1, now_ms // size, {}) for _, n in _TIER_WINDOWS[tier]]
            for tier, (size, _) in enumerate(_TIERS)
        ]
        for key, count in self.counts.items():
            tile = key >> _TILE_SHIFT
            code = key & _CODE_MASK
            for first, last, result in spans[(key >> _CODE_BITS) & _TIER_MASK]:
                if first <= tile <= last:
                    result[code] = result.get(code, 0) + count
        return {
            name: result
            for tier, windows in enumerate(_TIER_WINDOWS)
            for (name, _), (_, _, result) in zip(windows, spans[tier], strict=True)
        }

    def next_change_ms(self, windows: tuple[str, ...], now_ms: int) -> int | None:
        """Earliest time after ``now_ms`` at which a counted tile slides out of one of ``windows``."""
        due = None
        for name in windows:
            size, n = WINDOWS[name]
            tier = next(i for i, (s, _) in enumerate(_TIERS) if s == size)
            last = now_ms // size
            tiles = [k >> _TILE_SHIFT for k in self.counts if (k >> _CODE_BITS) & _TIER_MASK == tier]
            inside = [t for t in tiles if last - n + 1 <= t <= last]
            if inside:
                leaves = (min(inside) + n) * size
                due = leaves if due is None else min(due, leaves)
        return due
