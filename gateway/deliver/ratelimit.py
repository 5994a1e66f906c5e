"""The pace of each integration's requests to TikTok: its token bucket, throttling, probing.

Pure: time comes in as an argument (`now`, any monotonic seconds) or as injected clocks, so
tests drive it by hand.
One token is one request. When TikTok says "too many requests" the bucket slows down
(`slow_down`), gives no token at all for as long as TikTok's Retry-After asks, and creeps back to
its configured rate while TikTok stays quiet. Each integration has its own bucket, so one that is
throttled never slows another.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.deliver.backoff import MAX_RETRY_AFTER_S, backoff_delay

# Never slow below this share of the configured rate: a long throttling spell must not
# starve an integration entirely once TikTok recovers.
_MIN_RATE_SHARE = 0.05
# After this many quiet seconds the rate doubles back towards the configured one.
RECOVERY_S = 10.0
# Requests in a row failed on TikTok's side (down, throttling) before an integration only probes.
PROBE_AFTER_FAILURES = 3


@dataclass(slots=True)
class TokenBucket:
    rate_per_s: float
    burst: int
    now: float
    recovery_s: float = RECOVERY_S
    tokens: float = field(init=False)
    current_rate: float = field(init=False)
    _updated: float = field(init=False)
    _last_slowdown: float = field(init=False)
    _blocked_until: float = field(init=False)

    def __post_init__(self) -> None:
        if self.rate_per_s <= 0:
            raise ValueError("rate_per_s must be positive")
        self.burst = max(1, self.burst)
        self.tokens = float(self.burst)
        self.current_rate = self.rate_per_s
        self._updated = self.now
        self._last_slowdown = self.now
        self._blocked_until = self.now

    def try_take(self, now: float) -> bool:
        """Take one token if there is one."""
        self._refill(now)
        if now >= self._blocked_until and self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def wait_time(self, now: float) -> float:
        """Seconds until a token will be available (0 when one is)."""
        self._refill(now)
        blocked = max(0.0, self._blocked_until - now)
        if self.tokens >= 1.0:
            return blocked
        return blocked + (1.0 - self.tokens) / self.current_rate

    def slow_down(self, now: float, factor: float = 0.5, hold_s: float = 0.0) -> None:
        """TikTok throttled us: multiply the rate by `factor` and drop the saved-up burst.

        `hold_s` (TikTok's Retry-After) gives no token at all for that long: the integration as a
        whole waits, not only the events of the request that was refused.
        """
        self._refill(now)
        floor = self.rate_per_s * _MIN_RATE_SHARE
        self.current_rate = max(floor, self.current_rate * factor)
        # A full bucket would fire a burst straight into the limit TikTok just reported.
        self.tokens = min(self.tokens, 0.0)
        self._blocked_until = max(self._blocked_until, now + max(0.0, hold_s))
        # The quiet time that earns the rate back starts when the hold ends.
        self._last_slowdown = max(now, self._blocked_until)

    def reconfigure(self, rate_per_s: float, burst: int, now: float) -> None:
        """Apply a changed integration config, keeping the tokens already spent."""
        if rate_per_s <= 0:
            raise ValueError("rate_per_s must be positive")
        self._refill(now)
        self.rate_per_s = rate_per_s
        self.burst = max(1, burst)
        self.current_rate = min(self.current_rate, rate_per_s)
        self.tokens = min(self.tokens, float(self.burst))

    def _refill(self, now: float) -> None:
        # Nothing accrues while held: the end of a Retry-After must not release a burst.
        elapsed = now - max(self._updated, self._blocked_until)
        if now > self._updated:
            self._updated = now
        if elapsed <= 0:
            return
        self.tokens = min(float(self.burst), self.tokens + elapsed * self.current_rate)
        if self.current_rate < self.rate_per_s and now - self._last_slowdown >= self.recovery_s:
            self.current_rate = min(self.rate_per_s, self.current_rate * 2.0)
            self._last_slowdown = now


class Pacing:
    """Per integration: its token bucket, and its streak of requests failed on TikTok's side.

    Buckets run on `monotonic`. Once `probe_after` requests in a row failed (TikTok down or
    throttling), the integration sends one request per jittered, growing backoff period (a
    probe) until one gets through: that time is on `clock`, the queue's time, so a test that
    compresses an outage through the clock compresses the probes with it. Both outlive the
    worker's lanes: a lane that ends when its queue empties must not hand its successor a fresh
    burst or a forgotten outage.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float],
        monotonic: Callable[[], float],
        rng: Callable[[], float],
        backoff_base_s: float,
        backoff_cap_s: float,
        recovery_s: float = RECOVERY_S,
        probe_after: int = PROBE_AFTER_FAILURES,
    ) -> None:
        self._clock = clock
        self._monotonic = monotonic
        self._rng = rng
        self._backoff_base_s = backoff_base_s
        self._backoff_cap_s = backoff_cap_s
        self._recovery_s = recovery_s
        self._probe_after = probe_after
        self._buckets: dict[str, TokenBucket] = {}
        self._failures: dict[str, int] = {}
        self._probe_at: dict[str, float] = {}

    def bucket(self, integration_id: str, rate_per_s: float, burst: int) -> TokenBucket:
        """The integration's bucket, created or brought in line with its configuration."""
        now = self._monotonic()
        bucket = self._buckets.get(integration_id)
        if bucket is None:
            bucket = TokenBucket(rate_per_s, burst, now, self._recovery_s)
            self._buckets[integration_id] = bucket
        elif (bucket.rate_per_s, bucket.burst) != (rate_per_s, burst):
            bucket.reconfigure(rate_per_s, burst, now)
        return bucket

    def wait_s(self, integration_id: str) -> float:
        """Seconds until the integration may send: a token, and while probing the next probe."""
        bucket = self._buckets.get(integration_id)
        token = bucket.wait_time(self._monotonic()) if bucket is not None else 0.0
        return max(token, self._probe_at.get(integration_id, 0.0) - self._clock())

    def throttled(self, integration_id: str, retry_after_s: float | None) -> None:
        """TikTok said "too many requests": slow this integration's bucket (only this one's)."""
        bucket = self._buckets.get(integration_id)
        if bucket is not None:
            hold = min(retry_after_s or 0.0, MAX_RETRY_AFTER_S)
            bucket.slow_down(self._monotonic(), hold_s=hold)

    def answered(self, integration_id: str, *, failed: bool) -> bool:
        """Note a request's outcome (`failed`: on TikTok's side). True when probing starts."""
        if not failed:
            self._failures.pop(integration_id, None)
            self._probe_at.pop(integration_id, None)
            return False
        streak = self._failures.get(integration_id, 0) + 1
        self._failures[integration_id] = streak
        if streak < self._probe_after:
            return False
        attempt = streak - self._probe_after + 1
        delay = backoff_delay(attempt, self._backoff_base_s, self._backoff_cap_s, self._rng)
        self._probe_at[integration_id] = self._clock() + delay
        return streak == self._probe_after

    def rate(self, integration_id: str) -> float | None:
        """Requests per second the integration's bucket allows now (None before its first)."""
        bucket = self._buckets.get(integration_id)
        return bucket.current_rate if bucket is not None else None
