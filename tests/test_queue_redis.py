"""What only the shared Redis queue does: replicas that die, the consumer group, the key prefix.

The common contract runs in test_queue.py; here several `RedisQueue` handles with their own
consumer names play replicas of one cluster on one key prefix.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import redis.asyncio as aioredis

from gateway.core.models import NewEvent
from gateway.queue.redis import RedisQueue, split_queue_url
from tests.backends import REDIS_URL, drop_redis_prefix, require_service, unique_name

A = "int_a"
Replica = Callable[..., Awaitable[RedisQueue]]


def event(n: int) -> NewEvent:
    return NewEvent(A, f"evt-{n}", "PageView", 1_760_000_000 + n, b'{"n":%d}' % n)


@pytest.fixture
async def replica() -> AsyncIterator[Replica]:
    """`await replica(name, **options)`: one more process of the cluster, on a shared prefix."""
    require_service("Redis", REDIS_URL)
    prefix = unique_name("q")
    opened: list[RedisQueue] = []

    async def start(consumer: str, **options: float) -> RedisQueue:
        queue = RedisQueue(REDIS_URL, 1000, prefix=prefix, consumer=consumer, **options)
        await queue.open()
        opened.append(queue)
        return queue

    try:
        yield start
    finally:
        for queue in reversed(opened):
            await queue.close()
        await drop_redis_prefix(prefix)


async def test_recover_leases_leaves_live_replicas_alone(replica: Replica) -> None:
    first, second = await replica("r1"), await replica("r2")
    await first.enqueue([event(n) for n in range(4)])
    now = time.time()
    await first.claim(A, 2, now, lease_s=60)
    await first.claim(A, 1, now, lease_s=5)

    # r1 is alive: only its lease that ran out comes back.
    assert await second.recover_leases(now + 10) == 1
    again = await second.claim(A, 10, now + 10, lease_s=60)
    assert [c.event_id for c in again] == ["evt-2", "evt-3"]
    assert [c.attempts for c in again] == [2, 1]


async def test_a_replica_that_died_gives_its_leases_back(replica: Replica) -> None:
    # r1 beats once and then never again, as if SIGKILLed; its heartbeat lapses after 0.2 s.
    dying = await replica("r1", heartbeat_s=3600, dead_after_s=0.2)
    await dying.enqueue([event(n) for n in range(3)])
    now = time.time()
    held = await dying.claim(A, 3, now, lease_s=600)
    assert len(held) == 3

    survivor = await replica("r2")
    assert await survivor.recover_leases(now) == 0  # r1 still looks alive
    await asyncio.sleep(0.3)
    assert await survivor.recover_leases(now + 1) == 3  # long before the 600 s lease ends
    again = await survivor.claim(A, 10, now + 1, lease_s=60)
    assert [c.id for c in again] == [c.id for c in held]
    assert [c.attempts for c in again] == [2, 2, 2]


async def test_live_replicas_sweep_for_dead_ones_by_themselves(replica: Replica) -> None:
    dying = await replica("r1", heartbeat_s=3600, dead_after_s=0.2)
    await dying.enqueue([event(1)])
    now = time.time()
    await dying.claim(A, 1, now, lease_s=600)
    survivor = await replica("r2", heartbeat_s=0.05)
    await survivor.recover_leases(now)  # a delivering replica joins the group

    for _ in range(100):
        if (await survivor.ready_info(A, time.time())).ready == 1:
            break
        await asyncio.sleep(0.02)
    (again,) = await survivor.claim(A, 1, time.time(), lease_s=60)
    assert (again.event_id, again.attempts) == ("evt-1", 2)


async def test_leases_of_another_replica_are_looked_at_again_soon(replica: Replica) -> None:
    # A worker sleeps until ready_info's next_retry_at: for another replica's leases that must
    # come within a heartbeat, or a sweep giving them back would go unnoticed until they end.
    first, second = await replica("r1"), await replica("r2", heartbeat_s=2.0)
    await first.enqueue([event(1)])
    now = time.time()
    await first.claim(A, 1, now, lease_s=600)
    assert (await first.ready_info(A, now)).next_retry_at == now + 600
    assert (await second.ready_info(A, now)).next_retry_at == now + 2.0


async def test_closing_gives_back_what_a_replica_holds(replica: Replica) -> None:
    first, second = await replica("r1"), await replica("r2")
    await first.enqueue([event(1), event(2)])
    now = time.time()
    await first.claim(A, 2, now, lease_s=600)
    await first.close()

    again = await second.claim(A, 10, now, lease_s=60)
    assert [c.event_id for c in again] == ["evt-1", "evt-2"]


async def test_pending_entries_name_the_replica_holding_them(replica: Replica) -> None:
    first, second = await replica("r1"), await replica("r2")
    await first.enqueue([event(n) for n in range(3)])
    now = time.time()
    await first.claim(A, 3, now, lease_s=1)
    await second.claim(A, 2, now + 2, lease_s=60)  # r1's leases ran out: r2 takes two

    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        pending = await client.xpending(f"{first.prefix}:s:{A}", "gateway")
    finally:
        await client.aclose()
    owners = {c["name"].decode(): int(c["pending"]) for c in pending["consumers"]}
    assert owners == {"r1": 1, "r2": 2}


async def test_every_key_lives_under_the_prefix(replica: Replica) -> None:
    queue = await replica("r1")
    await queue.enqueue([event(1)])
    now = time.time()
    (claimed,) = await queue.claim(A, 1, now, lease_s=60)
    await queue.dead_letter(A, [claimed.id], "rejected", "code 40002", now)

    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        keys = [k.decode() async for k in client.scan_iter(match=f"{queue.prefix}:*")]
        assert keys and all(k.startswith(f"{queue.prefix}:") for k in keys)
        await queue.drop_integration(A)
        left = [k.decode() async for k in client.scan_iter(match=f"{queue.prefix}:*:{A}")]
    finally:
        await client.aclose()
    assert left == []
    assert await queue.depth() == 0


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://127.0.0.1:6379/0", ("redis://127.0.0.1:6379/0", "gateway")),
        ("redis://h/1?prefix=shop", ("redis://h/1", "shop")),
        ("rediss://u:p@h/0?prefix=a&socket_timeout=3", ("rediss://u:p@h/0?socket_timeout=3", "a")),
    ],
    ids=["default", "prefix", "prefix-and-client-options"],
)
def test_queue_url_prefix(url: str, expected: tuple[str, str]) -> None:
    assert split_queue_url(url) == expected
