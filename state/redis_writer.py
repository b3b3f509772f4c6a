"""Guarded, pipelined, coalesced profile writes (SPEC §8, §12.5).

One Lua call per customer replaces profile and version together (no half-written
profile) and only if the incoming version is newer, so at-least-once replays after a
resume, or two workers racing, can never put an older profile back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import redis

from operators.profile import ProfileWrite
from state.keys import PROFILE_FIELD, VERSION_FIELD, KeyLayout

__all__ = ["ProfileWriter", "RedisUnavailable", "WriteResult", "coalesce"]

logger = logging.getLogger(__name__)

_GUARDED_WRITE = f"""
local current = tonumber(redis.call('HGET', KEYS[1], '{VERSION_FIELD}') or '0')
if current >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], '{VERSION_FIELD}', ARGV[1], '{PROFILE_FIELD}', ARGV[2])
local ttl = tonumber(ARGV[3])
if ttl > 0 then redis.call('EXPIRE', KEYS[1], ttl) end
return 1
"""
RETRYABLE = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError)


class RedisUnavailable(RuntimeError):
    """Writes kept failing through every retry; the worker stops and recovery resumes later."""


@dataclass(frozen=True, slots=True)
class WriteResult:
    applied: int
    stale: int
    """Writes skipped because Redis already held this or a newer version."""
    seconds: float


def coalesce(writes: Iterable[ProfileWrite]) -> list[ProfileWrite]:
    """Keep only the newest write per customer."""
    newest: dict[str, ProfileWrite] = {}
    for write in writes:
        kept = newest.get(write.user_id)
        if kept is None or write.version > kept.version:
            newest[write.user_id] = write
    return list(newest.values())


class ProfileWriter:
    """Writes batches of profiles; retries with capped exponential backoff while Redis is down."""

    def __init__(
        self,
        client: redis.Redis,
        layout: KeyLayout,
        ttl_seconds: int,
        retry_attempts: int = 20,
        backoff_max_seconds: float = 10.0,
        on_retry: Callable[[Exception], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = client
        self._layout = layout
        self._ttl = ttl_seconds
        self._script = client.register_script(_GUARDED_WRITE)
        self._attempts = retry_attempts
        self._backoff_max = backoff_max_seconds
        self._on_retry = on_retry
        self._sleep = sleep

    def write(self, writes: Iterable[ProfileWrite]) -> WriteResult:
        batch = coalesce(writes)
        delay = 0.1
        for attempt in range(self._attempts + 1):
            try:
                return self._write_once(batch)
            except RETRYABLE as exc:
                if attempt == self._attempts:
                    msg = f"Redis unreachable after {self._attempts} retries ({type(exc).__name__}: {exc})"
                    raise RedisUnavailable(msg) from exc
                if self._on_retry is not None:
                    self._on_retry(exc)
                logger.warning("redis write failed (%s); retry %d/%d in %.1fs",
                               type(exc).__name__, attempt + 1, self._attempts, delay)
                self._sleep(delay)
                delay = min(self._backoff_max, delay * 2)
        raise AssertionError  # unreachable: the last attempt returns or raises

    def _write_once(self, batch: list[ProfileWrite]) -> WriteResult:
        start = time.perf_counter()
        with self._client.pipeline(transaction=False) as pipe:
            for write in batch:
                self._script(
                    keys=[self._layout.profile(write.user_id)],
                    args=[write.version, write.payload, self._ttl],
                    client=pipe,
                )
            results = pipe.execute()
        applied = sum(1 for r in results if r == 1)
        return WriteResult(applied, len(results) - applied, time.perf_counter() - start)
