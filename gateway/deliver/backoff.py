"""Retry timing: capped exponential backoff with full jitter, and TikTok's Retry-After.

Pure: the random source is injected, so tests pin it; nothing here sleeps.
"""

from __future__ import annotations

from collections.abc import Callable

# A Retry-After longer than this is treated as this: a misconfigured proxy must not park an
# integration's events for days.
MAX_RETRY_AFTER_S = 3600.0


def backoff_delay(attempt: int, base_s: float, cap_s: float, rng: Callable[[], float]) -> float:
    """Seconds to wait before retry number `attempt` (1 for the first retry).

    Full jitter (a uniform draw in [0, min(cap, base * 2**(attempt-1))]) spreads the retries of
    many integrations that failed together, so they do not come back in lock-step.
    """
    if attempt < 1:
        attempt = 1
    # Bound the exponent before computing: 2**10000 would overflow a float.
    exponent = min(attempt - 1, 62)
    ceiling = min(cap_s, base_s * (2.0**exponent))
    return max(0.0, rng()) * ceiling


def retry_at(
    now: float,
    attempt: int,
    *,
    base_s: float,
    cap_s: float,
    rng: Callable[[], float],
    retry_after_s: float | None = None,
) -> float:
    """When a failed request may be retried: the jittered backoff, never before Retry-After."""
    delay = backoff_delay(attempt, base_s, cap_s, rng)
    if retry_after_s is not None and retry_after_s > 0:
        delay = max(delay, min(retry_after_s, MAX_RETRY_AFTER_S))
    return now + delay
