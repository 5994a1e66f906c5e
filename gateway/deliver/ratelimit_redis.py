"""Token buckets shared by every replica: one per integration, kept in Redis.

With a Redis queue, N delivering replicas each holding their own `TokenBucket` would send N times
an integration's `rate_limit_rps`. `SharedBuckets` keeps one bucket per integration in Redis and
changes it only inside a Lua script, so a token is taken atomically by exactly one replica and
the cluster as a whole stays inside `rate_limit_rps` / `rate_limit_burst`.

The script follows `ratelimit.TokenBucket` step for step (refill, take, slow down with a hold,
recovery, reconfiguration), on Redis' own clock (`TIME`), the one clock all replicas share.
Tests may inject a clock instead, and check the two against each other.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway.core.errors import StoreError
from gateway.core.redisconn import connect, split_redis_url

# The same floor and recovery as the local bucket, so both behave alike.
from gateway.deliver.ratelimit import _MIN_RATE_SHARE, RECOVERY_S

T = TypeVar("T")
# A bucket nobody touched for a day is forgotten (a deleted integration's, typically).
_IDLE_EXPIRE_MS = 86_400_000

# KEYS[1]: the bucket. ARGV: op ('take' | 'slow' | 'rate'), rate, burst, recovery_s,
# now ('' = Redis' clock), factor, hold_s, min_share. Returns {wait_s, current_rate} as strings.
_SCRIPT = r"""
local k = KEYS[1]
local op, rate, burst, recovery = ARGV[1], tonumber(ARGV[2]), math.max(1, tonumber(ARGV[3])),
  tonumber(ARGV[4])
local now
if ARGV[5] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
else
  now = tonumber(ARGV[5])
end
local s = redis.call('HMGET', k, 'tokens', 'updated', 'current', 'last_slow', 'blocked',
  'rate', 'burst')
local tokens, updated, current, last_slow, blocked, old_rate, old_burst
if not s[1] then
  tokens, updated, current, last_slow, blocked = burst, now, rate, now, now
  old_rate, old_burst = rate, burst
else
  tokens, updated, current = tonumber(s[1]), tonumber(s[2]), tonumber(s[3])
  last_slow, blocked = tonumber(s[4]), tonumber(s[5])
  old_rate, old_burst = tonumber(s[6]), tonumber(s[7])
end
local function refill()
  -- Nothing accrues while held: the end of a Retry-After must not release a burst.
  local elapsed = now - math.max(updated, blocked)
  if now > updated then updated = now end
  if elapsed <= 0 then return end
  tokens = math.min(old_burst, tokens + elapsed * current)
  if current < old_rate and now - last_slow >= recovery then
    current = math.min(old_rate, current * 2)
    last_slow = now
  end
end
refill()
if old_rate ~= rate or old_burst ~= burst then
  -- The integration's configuration changed: keep the tokens already spent.
  current = math.min(current, rate)
  tokens = math.min(tokens, burst)
end
local wait = 0
if op == 'take' then
  if now >= blocked and tokens >= 1 then
    tokens = tokens - 1
  else
    wait = math.max(0, blocked - now)
    if tokens < 1 then wait = wait + (1 - tokens) / current end
  end
elseif op == 'slow' then
  local factor, hold, share = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
  current = math.max(rate * share, current * factor)
  tokens = math.min(tokens, 0)
  blocked = math.max(blocked, now + math.max(0, hold))
  last_slow = math.max(now, blocked)
end
local function num(x) return string.format('%.17g', x) end
redis.call('HSET', k, 'tokens', num(tokens), 'updated', num(updated), 'current', num(current),
  'last_slow', num(last_slow), 'blocked', num(blocked), 'rate', num(rate), 'burst', num(burst))
redis.call('PEXPIRE', k, ARGV[9])
return {num(wait), num(current)}
"""


class SharedBuckets:
    """Per-integration token buckets in Redis (the queue's URL and key prefix).

    `take` takes one token or says how long to wait for one; `slow_down` is TikTok's "too many
    requests" (with its Retry-After as `hold_s`); `rate` is the rate the bucket allows now.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str | None = None,
        recovery_s: float = RECOVERY_S,
        clock: Callable[[], float] | None = None,
    ) -> None:
        client_url, url_prefix = split_redis_url(url)
        self.prefix = prefix or url_prefix
        self._url = client_url
        self._recovery_s = recovery_s
        self._clock = clock
        self._redis: aioredis.Redis | None = None
        self._script: Any = None

    async def open(self) -> None:
        self._redis = connect(self._url)
        self._script = self._redis.register_script(_SCRIPT)
        await self._call(self._redis.ping())

    async def close(self) -> None:
        if self._redis is not None:
            client, self._redis = self._redis, None
            await client.aclose()

    async def take(self, integration_id: str, rate_per_s: float, burst: int) -> float:
        """Take one token: 0.0 when taken, else the seconds until one may be."""
        wait, _ = await self._run("take", integration_id, rate_per_s, burst)
        return wait

    async def slow_down(
        self,
        integration_id: str,
        rate_per_s: float,
        burst: int,
        *,
        hold_s: float = 0.0,
        factor: float = 0.5,
    ) -> None:
        """TikTok throttled this integration: every replica slows down (and holds for `hold_s`)."""
        await self._run("slow", integration_id, rate_per_s, burst, factor=factor, hold_s=hold_s)

    async def rate(self, integration_id: str, rate_per_s: float, burst: int) -> float:
        """Requests per second the shared bucket allows now."""
        _, current = await self._run("rate", integration_id, rate_per_s, burst)
        return current

    async def _run(
        self,
        op: str,
        integration_id: str,
        rate_per_s: float,
        burst: int,
        *,
        factor: float = 0.5,
        hold_s: float = 0.0,
    ) -> tuple[float, float]:
        if rate_per_s <= 0:
            raise ValueError("rate_per_s must be positive")
        if self._script is None:
            raise StoreError("the shared rate limit is not open")
        now = "" if self._clock is None else repr(self._clock())
        args = [
            op,
            repr(float(rate_per_s)),
            str(burst),
            repr(self._recovery_s),
            now,
            repr(factor),
            repr(hold_s),
            repr(_MIN_RATE_SHARE),
            str(_IDLE_EXPIRE_MS),
        ]
        key = f"{self.prefix}:bucket:{integration_id}"
        wait, current = await self._call(self._script(keys=[key], args=args))
        return float(wait), float(current)

    @staticmethod
    async def _call(pending: Awaitable[T]) -> T:
        try:
            return await pending
        except (RedisError, OSError) as exc:
            raise StoreError(f"redis (rate limit): {type(exc).__name__}: {exc}") from exc
