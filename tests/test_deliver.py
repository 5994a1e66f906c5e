"""The delivery worker against the real SQLite hit log and config store and the TikTok double.

Assertions are on what came out: the double's recorded requests and accepted events, the
integrations' counters and dead letters (`LogConsumers`), the worker's counters. Waiting is
`worker.drain()` or polling the double, never a fixed sleep (except to show that nothing happens
while paused).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from gateway.deliver.backoff import backoff_delay, retry_at
from gateway.deliver.ratelimit import Pacing, TokenBucket
from tests.delivery_rig import INTEGRATION, PIXEL, TOKEN, DeliveryRig, open_rig
from tests.tiktok_double import Answer, TikTokDouble

# --- Pure pacing: backoff and the token bucket -------------------------------------------------


@pytest.mark.parametrize(
    ("attempt", "draw", "expected"),
    [
        pytest.param(1, 1.0, 1.0, id="first-retry-full-draw"),
        pytest.param(1, 0.5, 0.5, id="first-retry-half-draw"),
        pytest.param(3, 1.0, 4.0, id="third-retry-doubles-twice"),
        pytest.param(20, 1.0, 300.0, id="capped"),
        pytest.param(10_000, 1.0, 300.0, id="huge-attempt-no-overflow"),
        pytest.param(0, 1.0, 1.0, id="attempt-zero-is-first"),
        pytest.param(5, 0.0, 0.0, id="jitter-can-be-zero"),
    ],
)
def test_backoff_delay(attempt: int, draw: float, expected: float) -> None:
    assert backoff_delay(attempt, 1.0, 300.0, lambda: draw) == expected


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [
        pytest.param(None, 100.5, id="no-retry-after"),
        pytest.param(0.2, 100.5, id="shorter-than-backoff"),
        pytest.param(30.0, 130.0, id="longer-than-backoff-wins"),
        pytest.param(10**9, 100.0 + 3600.0, id="absurd-retry-after-capped"),
    ],
)
def test_retry_at_honours_retry_after(retry_after: float | None, expected: float) -> None:
    when = retry_at(100.0, 1, base_s=1.0, cap_s=300.0, rng=lambda: 0.5, retry_after_s=retry_after)
    assert when == expected


def test_token_bucket_burst_then_rate() -> None:
    bucket = TokenBucket(rate_per_s=10.0, burst=3, now=0.0)
    assert [bucket.try_take(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.wait_time(0.0) == pytest.approx(0.1)
    assert bucket.try_take(0.1)
    assert not bucket.try_take(0.1)
    # Idle time refills only up to the burst.
    assert sum(bucket.try_take(100.0) for _ in range(10)) == 3


def test_token_bucket_slows_down_and_recovers() -> None:
    bucket = TokenBucket(rate_per_s=10.0, burst=5, now=0.0)
    bucket.slow_down(0.0, factor=0.5)
    assert not bucket.try_take(0.0)  # the saved burst is gone
    assert bucket.wait_time(0.0) == pytest.approx(0.2)  # 5/s now
    bucket.try_take(11.0)
    assert bucket.current_rate == 10.0  # quiet for 10 s: back to the configured rate


def test_token_bucket_retry_after_holds_every_token_and_saves_no_burst() -> None:
    bucket = TokenBucket(rate_per_s=10.0, burst=5, now=0.0)
    bucket.slow_down(0.0, hold_s=2.0)
    assert not bucket.try_take(1.9)
    assert bucket.wait_time(1.0) == pytest.approx(1.0 + 0.2)  # the hold, then a token at 5/s
    assert not bucket.try_take(2.1)  # half a token since the hold ended: nothing accrued in it
    assert bucket.try_take(2.2)
    assert not bucket.try_take(2.2)
    assert bucket.current_rate == 5.0
    bucket.try_take(12.0)  # quiet for 10 s after the hold: the configured rate is back
    assert bucket.current_rate == 10.0


def test_pacing_probes_after_failures_in_a_row_for_that_integration_only() -> None:
    now = [1000.0]
    pacing = Pacing(
        clock=lambda: now[0],
        monotonic=lambda: 0.0,
        rng=lambda: 1.0,
        backoff_base_s=1.0,
        backoff_cap_s=4.0,
    )
    pacing.bucket("a", 100.0, 10)
    pacing.bucket("b", 100.0, 10)
    assert [pacing.answered("a", failed=True) for _ in range(3)] == [False, False, True]
    waits = [pacing.wait_s("a")]
    for _ in range(3):
        pacing.answered("a", failed=True)
        waits.append(pacing.wait_s("a"))
    assert waits == [1.0, 2.0, 4.0, 4.0]  # one probe per growing, capped backoff
    assert pacing.wait_s("b") == 0.0  # the other integration is not held back
    now[0] += 4.0
    assert pacing.wait_s("a") == 0.0  # the probe may leave
    pacing.answered("a", failed=False)
    pacing.answered("a", failed=True)
    assert pacing.wait_s("a") == 0.0  # a success ends the streak

    pacing.throttled("a", retry_after_s=3.0)
    assert pacing.wait_s("a") == pytest.approx(3.0 + 1 / 50)
    assert (pacing.rate("a"), pacing.rate("b")) == (50.0, 100.0)
    pacing.throttled("a", retry_after_s=10**9)  # an absurd Retry-After is capped at an hour
    assert pacing.wait_s("a") <= 3600.0 + 1


# --- Harness -------------------------------------------------------------------------------------


Harness = DeliveryRig


@pytest.fixture
async def harness(tmp_path: Path, tiktok: TikTokDouble) -> AsyncIterator[Harness]:
    async with open_rig(tmp_path, tiktok, max_events=1_000_000, batch_max_wait_ms=50) as rig:
        yield rig


def assert_clean(tiktok: TikTokDouble) -> None:
    """Every request had TikTok's v1.3 shape and a raw token."""
    assert tiktok.problems == []
    assert all(r.headers["Access-Token"] == TOKEN for r in tiktok.requests)


# --- Batching ------------------------------------------------------------------------------------


async def test_burst_of_2000_each_event_once_in_batches_of_at_most_max(h: Harness) -> None:
    await h.add_integration()
    worker = await h.start_worker(batch_max_events=100)
    ids = await h.enqueue(2000, worker, chunk=50)

    await worker.drain(timeout_s=30)

    assert sorted(h.tiktok.accepted_ids()) == sorted(ids)  # each exactly once
    assert max(len(r.events) for r in h.tiktok.requests) <= 100
    assert worker.events_delivered == 2000
    assert worker.requests_sent == len(h.tiktok.requests)
    assert (await h.queue.stats(INTEGRATION)).queued == 0
    assert h.sample("gateway_events_delivered_total", integration=INTEGRATION) == 2000
    assert_clean(h.tiktok)


async def test_partial_batch_leaves_after_max_wait(h: Harness) -> None:
    await h.add_integration()
    worker = await h.start_worker(batch_max_events=500, batch_max_wait_ms=50)
    ids = await h.enqueue(3, worker)

    await h.tiktok.wait_for(lambda: len(h.tiktok.accepted) == 3, timeout=10)

    assert len(h.tiktok.requests) == 1
    assert h.tiktok.requests[0].event_ids == ids
    assert_clean(h.tiktok)


async def test_sweep_finds_events_without_notify(h: Harness) -> None:
    await h.add_integration()
    worker = await h.start_worker()
    async with h.other_process() as other:  # another process's collection: nobody is told
        ids = await h.enqueue(5, queue=other)

    await worker.drain(timeout_s=10)

    assert sorted(h.tiktok.accepted_ids()) == ids


async def test_other_processes_events_fill_a_waiting_batch(h: Harness) -> None:
    """A lane waiting for a batch looks at the store every sweep interval, not only when the
    batch wait is over: a batch filled by another process leaves full, long before that."""
    await h.add_integration()
    worker = await h.start_worker(batch_max_events=100, batch_max_wait_ms=600_000)
    first = await h.enqueue(1, worker)  # a lane now waits (ten minutes) for more
    async with h.other_process() as other:
        ids = first + await h.enqueue(99, queue=other)

    await h.tiktok.wait_for(lambda: len(h.tiktok.accepted) == 100, timeout=10)

    assert [len(r.events) for r in h.tiktok.requests] == [100]
    assert sorted(h.tiktok.accepted_ids()) == sorted(ids)


async def test_a_lane_does_not_ask_the_store_after_every_enqueue(h: Harness) -> None:
    """Collection tells the worker what this process appended; the lane asks the store when
    that makes a batch due (here: full), not once per append."""
    await h.add_integration()
    worker = await h.start_worker(batch_max_events=100, batch_max_wait_ms=600_000)
    asked = 0
    ready_info = h.queue.ready_info

    async def counting(integration_id: str, now: float) -> Any:
        nonlocal asked
        asked += 1
        return await ready_info(integration_id, now)

    h.queue.ready_info = counting  # type: ignore[method-assign]
    ids = await h.enqueue(200, worker, chunk=1)  # one event per call, as one hit per request

    await h.tiktok.wait_for(lambda: len(h.tiktok.accepted) == 200, timeout=10)

    assert [len(r.events) for r in h.tiktok.requests] == [100, 100]
    assert sorted(h.tiktok.accepted_ids()) == sorted(ids)
    assert asked < 50  # one per batch and per sweep interval, not 200


async def test_test_event_code_is_sent(h: Harness) -> None:
    await h.add_integration(test_event_code="TEST777")
    worker = await h.start_worker()
    await h.enqueue(2, worker)
    await worker.drain(timeout_s=10)
    assert {a.test_event_code for a in h.tiktok.accepted} == {"TEST777"}
    assert {a.pixel_code for a in h.tiktok.accepted} == {PIXEL}


# --- Retries --------------------------------------------------------------------------------------


async def test_503_then_success_delivers_once_with_same_event_id(h: Harness) -> None:
    await h.add_integration()
    h.tiktok.play(Answer(status=503))
    worker = await h.start_worker()
    [event_id] = await h.enqueue(1, worker)

    await worker.drain(timeout_s=10)

    assert [r.event_ids for r in h.tiktok.requests] == [[event_id], [event_id]]
    assert h.tiktok.accepted_ids() == [event_id]
    stats = await h.queue.stats(INTEGRATION)
    assert (stats.queued, stats.delivered, stats.failed) == (0, 1, 1)
    assert worker.events_retried == 1
    assert h.sample("gateway_events_failed_total", integration=INTEGRATION) == 1


async def test_transport_faults_are_retried(h: Harness) -> None:
    await h.add_integration()
    h.tiktok.play(Answer(not_json=True, status=502), Answer(status=500))
    worker = await h.start_worker()
    ids = await h.enqueue(10, worker)

    await worker.drain(timeout_s=10)

    assert sorted(h.tiktok.accepted_ids()) == ids
    assert len(h.tiktok.requests) == 3


async def test_throttled_is_retried_after_retry_after(h: Harness) -> None:
    await h.add_integration()
    h.tiktok.play(
        Answer(code=40100, message="Too many requests"),
        Answer(status=429, retry_after=0.3),
    )
    worker = await h.start_worker()
    ids = await h.enqueue(4, worker)

    await worker.drain(timeout_s=10)

    assert sorted(h.tiktok.accepted_ids()) == ids
    first, second, third = h.tiktok.requests
    assert first.event_ids == second.event_ids == third.event_ids
    # Retry-After is a floor for the next attempt.
    assert third.at - second.at >= 0.29
    outcome = {"integration": INTEGRATION, "outcome": "throttled"}
    assert h.sample("gateway_tiktok_requests_total", **outcome) == 2


async def test_stop_keeps_everything_and_blames_nothing(h: Harness) -> None:
    await h.add_integration()
    h.tiktok.play(Answer(delay_s=2.0))
    worker = await h.start_worker()
    ids = await h.enqueue(7, worker)
    await h.tiktok.wait_for(lambda: len(h.tiktok.requests) == 1)

    await worker.stop(timeout_s=0.1)  # the request in flight is cut off

    stats = await h.queue.stats(INTEGRATION)
    assert (stats.queued, stats.failed) == (7, 0)
    info = await h.queue.ready_info(INTEGRATION, time.time())
    assert info.ready == 7  # released, not left leased
    # A new worker delivers them (TikTok de-duplicates by event_id if the first one landed).
    second = await h.start_worker()
    await second.drain(timeout_s=10)
    assert set(h.tiktok.accepted_ids()) == set(ids)


async def test_stop_lets_the_request_in_flight_finish(h: Harness) -> None:
    await h.add_integration()
    h.tiktok.play(Answer(delay_s=0.3))
    worker = await h.start_worker()
    ids = await h.enqueue(5, worker)
    await h.tiktok.wait_for(lambda: len(h.tiktok.requests) == 1)

    await worker.stop(timeout_s=5)

    assert sorted(h.tiktok.accepted_ids()) == ids
    assert (await h.queue.stats(INTEGRATION)).queued == 0


# --- Pause ----------------------------------------------------------------------------------------


async def test_permission_error_pauses_and_keeps_events_until_resumed(h: Harness) -> None:
    await h.add_integration()
    h.tiktok.valid_tokens = {"some-other-token"}
    worker = await h.start_worker()
    ids = await h.enqueue(20, worker)

    await h.tiktok.wait_for(lambda: len(h.tiktok.requests) >= 1)
    await worker.drain(timeout_s=10)  # paused integrations do not count

    integration = await h.store.get_integration(INTEGRATION)
    assert integration is not None
    assert integration.paused_reason == "40001: No permission to operate pixel code"
    stats = await h.queue.stats(INTEGRATION)
    assert (stats.queued, stats.failed, stats.dead_lettered) == (20, 0, 0)
    assert h.sample("gateway_integration_paused", integration=INTEGRATION) == 1

    # Nothing is sent while paused, even when more events arrive.
    sent = len(h.tiktok.requests)
    ids += await h.enqueue(3, worker)
    await asyncio.sleep(0.5)
    assert len(h.tiktok.requests) == sent == 1

    h.tiktok.valid_tokens = None
    await h.store.set_paused(INTEGRATION, None)
    await worker.drain(timeout_s=10)

    assert sorted(h.tiktok.accepted_ids()) == ids
    assert h.sample("gateway_integration_paused", integration=INTEGRATION) == 0
    assert_clean(h.tiktok)


async def test_disabled_integration_sends_nothing(h: Harness) -> None:
    await h.add_integration()
    integration = await h.store.get_integration(INTEGRATION)
    assert integration is not None
    await h.store.update_integration(replace(integration, enabled=False))
    worker = await h.start_worker()
    await h.enqueue(3, worker)
    await worker.drain(timeout_s=5)
    await asyncio.sleep(0.3)
    assert h.tiktok.requests == []


# --- Content rejections: isolation ------------------------------------------------------------


@pytest.mark.parametrize("bad_index", [0, 137, 250, 499])
async def test_one_bad_event_among_500_is_isolated(h: Harness, bad_index: int) -> None:
    await h.add_integration()
    worker = await h.start_worker(batch_max_events=500, batch_max_wait_ms=1000)
    ids = await h.enqueue(500, worker)
    bad = ids[bad_index]
    h.tiktok.reject_event_ids = {bad}

    await worker.drain(timeout_s=30)

    assert sorted(h.tiktok.accepted_ids()) == sorted(set(ids) - {bad})
    [dead] = await h.queue.list_dead_letters(INTEGRATION)
    assert (dead.event_id, dead.reason) == (bad, "rejected")
    assert dead.answer is not None and f"Invalid event: {bad}" in dead.answer
    assert worker.isolation_requests <= 2 * math.ceil(math.log2(500)) + 2
    assert len(h.tiktok.requests) == 1 + worker.isolation_requests
    integration = await h.store.get_integration(INTEGRATION)
    assert integration is not None and integration.paused_reason is None
    assert (
        h.sample("gateway_events_dead_lettered_total", integration=INTEGRATION, reason="rejected")
        == 1
    )
    assert_clean(h.tiktok)


async def test_two_bad_events_next_to_each_other_are_both_dead_lettered(h: Harness) -> None:
    await h.add_integration()
    worker = await h.start_worker(batch_max_events=64, batch_max_wait_ms=1000)
    ids = await h.enqueue(64, worker)
    h.tiktok.reject_event_ids = {ids[0], ids[1]}

    await worker.drain(timeout_s=30)

    dead = await h.queue.list_dead_letters(INTEGRATION)
    assert sorted(d.event_id for d in dead) == ids[:2]
    assert sorted(h.tiktok.accepted_ids()) == ids[2:]


async def test_a_single_bad_event_alone_is_dead_lettered(h: Harness) -> None:
    await h.add_integration()
    worker = await h.start_worker()
    [event_id] = await h.enqueue(1, worker)
    h.tiktok.reject_event_ids = {event_id}

    await worker.drain(timeout_s=10)

    [dead] = await h.queue.list_dead_letters(INTEGRATION)
    assert dead.event_id == event_id
    assert worker.isolation_requests == 0


@pytest.mark.parametrize("count", [2, 3, 100, 500])
async def test_everything_rejected_alike_pauses_instead_of_dead_lettering(
    h: Harness, count: int
) -> None:
    await h.add_integration()
    worker = await h.start_worker(batch_max_events=500, batch_max_wait_ms=1000)
    ids = await h.enqueue(count, worker)
    h.tiktok.reject_event_ids = set(ids)  # as with a pixel TikTok does not know

    await h.tiktok.wait_for(lambda: worker.isolation_requests > 0)
    await worker.drain(timeout_s=30)

    integration = await h.store.get_integration(INTEGRATION)
    assert integration is not None and integration.paused_reason is not None
    assert integration.paused_reason.startswith("40002: ")
    assert await h.queue.list_dead_letters(INTEGRATION) == []
    stats = await h.queue.stats(INTEGRATION)
    assert (stats.queued, stats.failed) == (count, 0)
    assert worker.isolation_requests <= 2 * math.ceil(math.log2(count)) + 2
    assert h.tiktok.accepted == []


async def test_tiktok_down_during_isolation_retries_everything_unblamed_later(
    h: Harness,
) -> None:
    await h.add_integration()
    h.tiktok.play(Answer(code=40002, message="Invalid event"), Answer(status=503))
    worker = await h.start_worker(batch_max_events=32, batch_max_wait_ms=1000)
    ids = await h.enqueue(32, worker)

    await worker.drain(timeout_s=10)

    # The rejection was not reproducible once TikTok came back: nothing is dead-lettered.
    assert sorted(h.tiktok.accepted_ids()) == ids
    assert await h.queue.list_dead_letters(INTEGRATION) == []
    assert [len(r.events) for r in h.tiktok.requests] == [32, 16, 32]


async def test_permission_error_during_isolation_pauses(h: Harness) -> None:
    await h.add_integration()
    h.tiktok.play(
        Answer(code=40002, message="Invalid event"),
        Answer(code=40001, message="No permission to operate pixel code"),
    )
    worker = await h.start_worker(batch_max_events=32, batch_max_wait_ms=1000)
    await h.enqueue(32, worker)

    await h.tiktok.wait_for(lambda: len(h.tiktok.requests) == 2)
    await worker.drain(timeout_s=10)

    integration = await h.store.get_integration(INTEGRATION)
    assert integration is not None
    assert integration.paused_reason == "40001: No permission to operate pixel code"
    stats = await h.queue.stats(INTEGRATION)
    assert (stats.queued, stats.failed, stats.dead_lettered) == (32, 0, 0)


async def test_batch_too_large_is_split_and_resent(h: Harness) -> None:
    await h.add_integration()
    h.tiktok.max_events = 10
    worker = await h.start_worker(batch_max_events=40, batch_max_wait_ms=1000)
    ids = await h.enqueue(40, worker)

    await worker.drain(timeout_s=10)

    assert sorted(h.tiktok.accepted_ids()) == ids
    assert [len(r.events) for r in h.tiktok.requests] == [40, 20, 10, 10, 20, 10, 10]


# --- Age, rate, secrets -----------------------------------------------------------------------


async def test_too_old_event_is_dead_lettered_not_sent(h: Harness) -> None:
    await h.add_integration()
    worker = await h.start_worker(event_max_age_days=7)
    [old] = await h.enqueue(1, event_time=int(time.time()) - 8 * 86_400)
    fresh = await h.enqueue(2, worker)

    await worker.drain(timeout_s=10)

    [dead] = await h.queue.list_dead_letters(INTEGRATION)
    assert (dead.event_id, dead.reason) == (old, "too_old")
    assert sorted(h.tiktok.accepted_ids()) == fresh
    assert old not in {eid for r in h.tiktok.requests for eid in r.event_ids}


async def test_requests_stay_inside_the_token_bucket(h: Harness) -> None:
    rate, burst = 20.0, 3
    await h.add_integration(rate_limit_rps=rate, rate_limit_burst=burst)
    started = time.monotonic()
    worker = await h.start_worker(batch_max_events=5)
    ids = await h.enqueue(60, worker, chunk=5)

    await worker.drain(timeout_s=30)

    assert sorted(h.tiktok.accepted_ids()) == ids
    times = [r.at for r in h.tiktok.requests]
    assert len(times) == 12
    for count, at in enumerate(times, start=1):
        assert count <= burst + rate * (at - started) + 1e-6
    # The same over every window (one request of slack for when each was stamped).
    for i, j in itertools.combinations(range(len(times)), 2):
        assert j - i + 1 <= burst + rate * (times[j] - times[i]) + 1


async def test_bucket_survives_a_lane_that_ran_out_of_events(h: Harness) -> None:
    rate, burst = 5.0, 2
    await h.add_integration(rate_limit_rps=rate, rate_limit_burst=burst)
    started = time.monotonic()
    worker = await h.start_worker(batch_max_events=1, batch_max_wait_ms=1)
    for _ in range(4):  # each wave leaves nothing to send, so its lane ends
        await h.enqueue(1, worker)
        await worker.drain(timeout_s=10)

    times = [r.at for r in h.tiktok.requests]
    assert len(times) == 4
    for count, at in enumerate(times, start=1):
        assert count <= burst + rate * (at - started) + 1e-6


async def test_integrations_are_served_independently(h: Harness) -> None:
    await h.add_integration("int_a")
    await h.add_integration("int_b", rate_limit_rps=1000.0)
    worker = await h.start_worker()
    a = await h.enqueue(30, worker, integration_id="int_a")
    b = await h.enqueue(30, worker, integration_id="int_b")

    await worker.drain(timeout_s=10)

    assert sorted(h.tiktok.accepted_ids()) == sorted(a + b)
    for request in h.tiktok.requests:
        prefix = {eid in a for eid in request.event_ids}
        assert len(prefix) == 1  # never two integrations in one request


async def test_token_never_logged(h: Harness, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    await h.add_integration()
    h.tiktok.play(Answer(status=503), Answer(code=40100, message="Too many requests"))
    worker = await h.start_worker()
    ids = await h.enqueue(3, worker)
    h.tiktok.reject_event_ids = {ids[1]}
    await worker.drain(timeout_s=10)
    assert caplog.records
    assert TOKEN not in caplog.text
    assert not any(b'"user"' in r.getMessage().encode() for r in caplog.records)


@pytest.fixture
def h(harness: Harness) -> Harness:
    return harness
