"""The per-integration token bucket that keeps requests to TikTok inside its rate limit.

Pure: time comes in as an argument (`now`, any monotonic seconds), so tests drive it by hand.
One token is one request. When TikTok says "too many requests" the bucket slows down
(`slow_down`) and creeps back to its configured rate while TikTok stays quiet.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Never slow below this share of the configured rate: a long throttling spell must not
# starve an integration entirely once TikTok recovers.
_MIN_RATE_SHARE = 0.05
# After this many quiet seconds the rate doubles back towards the configured one.
_RECOVERY_S = 10.0


@dataclass(slots=True)
class TokenBucket:
    rate_per_s: float
    burst: int
    now: float
    tokens: float = field(init=False)
    current_rate: float = field(init=False)
    _updated: float = field(init=False)
    _last_slowdown: float = field(init=False)

    def __post_init__(self) -> None:
        if self.rate_per_s <= 0:
            raise ValueError("rate_per_s must be positive")
        self.burst = max(1, self.burst)
        self.tokens = float(self.burst)
        self.current_rate = self.rate_per_s
        self._updated = self.now
        self._last_slowdown = self.now

    def try_take(self, now: float) -> bool:
        """Take one token if there is one."""
        self._refill(now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def wait_time(self, now: float) -> float:
        """Seconds until a token will be available (0 when one is)."""
        self._refill(now)
        if self.tokens >= 1.0:
            return 0.0
        return (1.0 - self.tokens) / self.current_rate

    def slow_down(self, now: float, factor: float = 0.5) -> None:
        """TikTok throttled us: multiply the rate by `factor` and drop the saved-up burst."""
        self._refill(now)
        floor = self.rate_per_s * _MIN_RATE_SHARE
        self.current_rate = max(floor, self.current_rate * factor)
        # A full bucket would fire a burst straight into the limit TikTok just reported.
        self.tokens = min(self.tokens, 0.0)
        self._last_slowdown = now

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
        elapsed = now - self._updated
        if elapsed <= 0:
            return
        self.tokens = min(float(self.burst), self.tokens + elapsed * self.current_rate)
        self._updated = now
        if self.current_rate < self.rate_per_s and now - self._last_slowdown >= _RECOVERY_S:
            self.current_rate = min(self.rate_per_s, self.current_rate * 2.0)
            self._last_slowdown = now
