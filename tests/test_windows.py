import random

from state.windows import WINDOWS, TiledCounts

HOUR = 3_600_000
DAY = 24 * HOUR


def expected(events: list[tuple[int, int]], window: str, now: int) -> dict[int, int]:
    """Brute force over raw events: tile index within [now//g - n + 1, now//g]."""
    size, n = WINDOWS[window]
    out: dict[int, int] = {}
    for ts, code in events:
        if now // size - n + 1 <= ts // size <= now // size:
            out[code] = out.get(code, 0) + 1
    return out


def test_tiles_match_brute_force_on_a_random_in_order_stream() -> None:
    rng = random.Random(7)
    counts, events, ts = TiledCounts(), [], 1_600_000_000_000
    for _ in range(3000):
        ts += rng.randint(0, 3 * HOUR)
        code = rng.randint(0, 5)
        counts.add(ts, code)
        events.append((ts, code))
        if rng.random() < 0.05:
            now = ts + rng.randint(0, 40 * DAY)
            read = counts.read_all(now)
            for window in WINDOWS:
                assert read[window] == expected(events, window, now), (window, now)


def test_windows_expire_with_time_not_only_new_events() -> None:
    counts = TiledCounts()
    t0 = 1_600_000_000_000
    counts.add(t0, 3)
    assert counts.read_all(t0)["1h"] == {3: 1}
    assert counts.read_all(t0 + 2 * HOUR)["1h"] == {}
    assert counts.read_all(t0 + 2 * HOUR)["24h"] == {3: 1}
    assert counts.read_all(t0 + 31 * DAY)["30d"] == {}


def test_out_of_order_event_within_retention_is_counted() -> None:
    counts = TiledCounts()
    t0 = 1_600_000_000_000
    counts.add(t0, 1)
    counts.add(t0 - 10 * DAY, 1)  # older but still inside 30d
    counts.add(t0 - 40 * DAY, 1)  # beyond every window: ignored
    assert counts.read_all(t0)["30d"] == {1: 2}
    assert counts.read_all(t0)["7d"] == {1: 1}


def test_state_stays_bounded() -> None:
    counts = TiledCounts()
    for i in range(5000):
        counts.add(1_600_000_000_000 + i * HOUR, i % 4)
    assert len(counts.counts) <= (12 + 24 + 30) * 4


def test_next_change_is_when_the_oldest_counted_tile_leaves_the_window() -> None:
    counts = TiledCounts()
    t0 = 1_600_000_000_000 // (5 * 60_000) * (5 * 60_000)  # a 5-minute tile boundary
    counts.add(t0 + 1000, 2)
    counts.add(t0 + 20 * 60_000, 2)
    assert counts.next_change_ms(("1h",), t0 + 30 * 60_000) == t0 + HOUR
    assert counts.next_change_ms(("1h",), t0 + HOUR) == t0 + HOUR + 20 * 60_000
    assert counts.next_change_ms(("1h",), t0 + 3 * HOUR) is None
