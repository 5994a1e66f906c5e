"""The shared token bucket: the same answers as the local one, and one limit for all replicas."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from gateway.deliver.ratelimit import TokenBucket
from gateway.deliver.ratelimit_redis import SharedBuckets
from tests.backends import REDIS_URL, drop_redis_prefix, require_service, unique_name

Open = Callable[..., Awaitable[SharedBuckets]]


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def shared() -> AsyncIterator[Open]:
    """`await shared(clock=...)`: one more replica's view of the same buckets."""
    require_service("Redis", REDIS_URL)
    prefix = unique_name("rl")
    opened: list[SharedBuckets] = []

    async def start(**options: object) -> SharedBuckets:
        buckets = SharedBuckets(REDIS_URL, prefix=prefix, **options)  # type: ignore[arg-type]
        await buckets.open()
        opened.append(buckets)
        return buckets

    yield start
    for buckets in opened:
        await buckets.close()
    await drop_redis_prefix(prefix)


# (seconds to advance, operation) — operations: take, slow (hold 0), hold (slow with 2 s hold),
# reconfigure to (rate 4, burst 3).
SCRIPTS = {
    "burst-then-rate": [(0, "take")] * 5 + [(0.25, "take"), (0.1, "take"), (0.2, "take")],
    "slow-down-and-recover": [
        (0, "take"),
        (0, "slow"),
        (0.1, "take"),
        (0.5, "take"),
        (10.5, "take"),
        (0.2, "take"),
        (11, "take"),
    ],
    "retry-after-hold": [(0, "take"), (0, "hold"), (1.0, "take"), (1.5, "take"), (0.3, "take")],
    "reconfigured": [(0, "take"), (0, "take"), (0, "reconf"), (0, "take"), (0.3, "take")],
}


@pytest.mark.parametrize("script", list(SCRIPTS.values()), ids=list(SCRIPTS))
async def test_shared_bucket_answers_like_the_local_one(
    shared: Open, script: list[tuple[float, str]]
) -> None:
    clock = Clock()
    buckets = await shared(clock=clock, recovery_s=10.0)
    local = TokenBucket(2.0, 5, clock.now, recovery_s=10.0)
    rate, burst = 2.0, 5
    for advance, op in script:
        clock.now += advance
        if op == "reconf":
            rate, burst = 4.0, 3
            local.reconfigure(rate, burst, clock.now)  # the shared one sees it on its next call
            continue
        if op in ("slow", "hold"):
            hold = 2.0 if op == "hold" else 0.0
            local.slow_down(clock.now, hold_s=hold)
            await buckets.slow_down("int", rate, burst, hold_s=hold)
            continue
        expected = 0.0 if local.try_take(clock.now) else local.wait_time(clock.now)
        got = await buckets.take("int", rate, burst)
        assert got == pytest.approx(expected, abs=1e-6), (advance, op)
        assert await buckets.rate("int", rate, burst) == pytest.approx(local.current_rate)


async def test_replicas_together_stay_inside_one_bucket(shared: Open) -> None:
    # Three replicas on Redis' own clock race for tokens of one integration for 0.6 s.
    replicas = [await shared() for _ in range(3)]
    rate, burst = 20.0, 5
    taken: list[float] = []
    loop = asyncio.get_running_loop()
    started = loop.time()

    async def send(buckets: SharedBuckets) -> None:
        while loop.time() - started < 0.6:
            wait = await buckets.take("int_a", rate, burst)
            if wait == 0:
                taken.append(loop.time() - started)
            else:
                await asyncio.sleep(min(wait, 0.05))

    await asyncio.gather(*(send(r) for r in replicas for _ in range(2)))
    elapsed = loop.time() - started
    # Never more than the burst plus what the rate refilled, whatever the number of replicas.
    assert len(taken) <= burst + rate * elapsed + 1
    assert len(taken) >= burst + rate * 0.6 * 0.5  # and the replicas did not starve either
    # Another integration has its own bucket.
    assert await replicas[0].take("int_b", rate, burst) == 0.0
