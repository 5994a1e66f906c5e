"""Delivery that loses nothing: every fault injected for real, against the TikTok double.

Each proof prints the figures it measured (run with `pytest -s` to see them). Assertions are on
what came out (the double's records, the integrations' counters and dead letters, the worker's
counters, the Management API), and waiting is bounded (`drain`, `wait_for`), never a bare sleep
except to show that nothing happens.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import logging
import math
import os
import socket
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Gateway, MakeGateway
from tests.delivery_rig import INTEGRATION, TOKEN, DeliveryRig, open_rig
from tests.tiktok_double import Answer, RecordedRequest, TikTokDouble

OTHER_TOKEN = "tok_faults_other_0123456789"

# --- Harness: the delivery worker on a real hit log and store, time injectable -----------------

Rig = DeliveryRig


@pytest.fixture
async def rig(tmp_path: Path, tiktok: TikTokDouble) -> AsyncIterator[Rig]:
    async with open_rig(tmp_path, tiktok, max_events=10_000_000, batch_max_wait_ms=20) as r:
        yield r


async def failed_requests(rig: Rig, batch: int, expected: int) -> None:
    """Wait until the queue counts `expected` failed requests of `batch` events each."""

    async def done() -> bool:
        stats = await rig.queue.stats(INTEGRATION)
        return stats.failed == expected * batch

    await eventually(done)


async def eventually(
    check: Callable[[], Awaitable[bool]],
    timeout: float = 10.0,  # noqa: ASYNC109  (a plain keyword reads better in the tests)
) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.01)


def within_bucket(times: list[float], rate: float, burst: int) -> int:
    """The most requests seen in excess of what the bucket allows, over every window (<= 1
    means inside it: one request of slack for when each arrival was stamped)."""
    excess = 0
    for i, j in itertools.combinations(range(len(times)), 2):
        excess = max(excess, (j - i + 1) - (burst + rate * (times[j] - times[i])))
    return math.ceil(excess)


def per_second(records: list[RecordedRequest]) -> float:
    if len(records) < 2:
        return 0.0
    return (len(records) - 1) / max(1e-9, records[-1].at - records[0].at)


def sustained(records: list[RecordedRequest], burst: int) -> float:
    """Requests per second beyond the initial burst: what the bucket's rate bounds."""
    if len(records) <= burst:
        return 0.0
    return (len(records) - burst) / max(1e-9, records[-1].at - records[0].at)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def rss_bytes() -> int:
    with open(f"/proc/{os.getpid()}/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# --- Helpers --------------------------------------------------------------------------------------


def hit(message_id: str) -> dict[str, Any]:
    """A browser hit that consent routes to the test integration."""
    return {
        "source_id": "src_test",
        "event": "Product Added",
        "message_id": message_id,
        "properties": {"product_id": "SKU-1", "price": 9.5, "quantity": 1, "currency": "USD"},
        "context": {"consent": {"advertising": True}},
    }


async def metric(gw: Gateway, name: str, **labels: str) -> float | None:
    """One sample of the admin port's /metrics, as Prometheus reads it."""
    resp = await gw.admin.get("/metrics")
    assert resp.status == 200
    for family in text_string_to_metric_families(await resp.text()):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return None


async def status(gw: Gateway, integration_id: str) -> dict[str, Any]:
    resp = await gw.admin.get(f"/v1/admin/integrations/{integration_id}")
    assert resp.status == 200
    body: dict[str, Any] = await resp.json()
    return dict(body["status"])


# --- Backpressure ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bound", "setting"),
    [
        pytest.param("events", {"GATEWAY_QUEUE_MAX_EVENTS": "40"}, id="events"),
        pytest.param("bytes", {"GATEWAY_QUEUE_MAX_BYTES": str(96 * 1024)}, id="bytes-on-disk"),
    ],
)
async def test_full_queue_answers_503_and_drops_nothing_accepted(
    make_gateway: MakeGateway, tiktok: TikTokDouble, bound: str, setting: dict[str, str]
) -> None:
    async with make_gateway(**setting) as gw:
        await gw.create_source()
        iid = (await gw.create_integration())["id"]
        # Paused, so delivery cannot make room: the queue only fills.
        assert (await gw.admin.post(f"/v1/admin/integrations/{iid}/pause")).status == 200

        accepted: list[str] = []
        refusals: list[tuple[int, str, str]] = []
        for n in range(5000):
            resp = await gw.collect.post("/v1/t", json=hit(f"m-{bound}-{n}"))
            if resp.status == 200:
                assert not refusals, "a hit was accepted again while the queue was still full"
                accepted.append(f"m-{bound}-{n}")
                continue
            body = await resp.json()
            refusals.append((resp.status, body["error"]["code"], resp.headers.get("Retry-After")))
            if len(refusals) == 3:
                break

        assert refusals == [(503, "queue_full", "5")] * 3
        assert await metric(gw, "gateway_hits_rejected_total", reason="queue_full") == 3
        seen = await status(gw, iid)
        assert seen["queued"] == seen["queue_depth"] == len(accepted)
        assert await metric(gw, "gateway_queue_depth") == len(accepted)
        assert await metric(gw, "gateway_queue_bound") == seen["queue_bound"]
        assert await metric(gw, "gateway_queue_bytes_bound") == seen["queue_bytes_bound"]
        assert await metric(gw, "gateway_queue_bytes") == seen["queue_bytes"]
        if bound == "events":
            assert len(accepted) == seen["queue_bound"] == 40
        else:
            assert seen["queue_bytes_bound"] == 96 * 1024
            assert seen["queue_bytes"] <= seen["queue_bytes_bound"]
            assert len(accepted) > 10

        # Nothing accepted was dropped: resumed, all of it is delivered, each event_id once.
        assert (await gw.admin.post(f"/v1/admin/integrations/{iid}/resume")).status == 200
        await tiktok.wait_for(lambda: len(tiktok.accepted) >= len(accepted), timeout=20)
        assert sorted(tiktok.accepted_ids()) == sorted(accepted)
        assert gw.wired.worker is not None
        await gw.wired.worker.drain(timeout_s=10)
        # Delivered, the hits leave the log at its next sweep (past half of its bound, even
        # inside the debugger's window): with room again, collection accepts again.
        await gw.wired.log.sweep(time.time())
        assert await gw.wired.log.depth() == 0
        assert (await gw.collect.post("/v1/t", json=hit(f"m-{bound}-after"))).status == 200
        print(
            f"backpressure ({bound}): {len(accepted)} hits stored up to the bound "
            f"(queue {seen['queue_depth']} of {seen['queue_bound']} events, "
            f"{seen['queue_bytes']} of {seen['queue_bytes_bound']} bytes), then 503 with "
            f"Retry-After {refusals[0][2]} s x{len(refusals)}; after resume "
            f"{len(tiktok.accepted_ids())} of {len(accepted)} delivered, "
            f"{len(tiktok.accepted_ids()) - len(set(tiktok.accepted_ids()))} duplicates"
        )


# --- Classification: every kind of fault, injected for real ---------------------------------------

ANSWER_FAULTS = [
    pytest.param(
        Answer(code=50000, message="Internal service error"),
        "retry",
        "50000: Internal service error",
        id="http-200-code-50000",
    ),
    pytest.param(
        Answer(code=40100, message="Too many requests"),
        "throttled",
        "40100: Too many requests",
        id="http-200-code-40100",
    ),
    pytest.param(Answer(status=429), "throttled", "HTTP 429", id="http-429-without-retry-after"),
    pytest.param(
        Answer(status=429, retry_after=0.3), "throttled", "HTTP 429", id="http-429-retry-after"
    ),
    pytest.param(Answer(status=503), "retry", "HTTP 503", id="http-503"),
    pytest.param(
        Answer(not_json=True), "retry", "HTTP 200: <html>bad gateway</html>", id="http-200-not-json"
    ),
    pytest.param(
        Answer(status=502, not_json=True),
        "retry",
        "HTTP 502: <html>bad gateway</html>",
        id="http-502-not-json",
    ),
    pytest.param(
        Answer(status=503, delay_s=1.0), "retry", "transport error: timeout", id="timeout"
    ),
]


@pytest.mark.parametrize(("answer", "outcome", "last_error"), ANSWER_FAULTS)
async def test_each_faulty_answer_is_retried_then_delivered_once(
    rig: Rig, answer: Answer, outcome: str, last_error: str
) -> None:
    await rig.add_integration()
    rig.tiktok.play(answer, answer)  # the same fault twice in a row
    worker = await rig.start_worker(timeout_s=0.2)
    ids = await rig.enqueue(10, worker)

    await worker.drain(timeout_s=10)

    assert sorted(rig.tiktok.accepted_ids()) == ids  # each exactly once
    requests = rig.tiktok.requests
    assert [r.event_ids for r in requests] == [ids, ids, ids]  # event_id stable across retries
    stats = await rig.queue.stats(INTEGRATION)
    assert (stats.queued, stats.delivered, stats.failed, stats.dead_lettered) == (0, 10, 20, 0)
    assert stats.last_error == last_error
    assert (
        rig.sample("gateway_tiktok_requests_total", integration=INTEGRATION, outcome=outcome) == 2
    )
    integration = await rig.store.get_integration(INTEGRATION)
    assert integration is not None and integration.paused_reason is None
    gaps = [b.at - a.at for a, b in itertools.pairwise(requests)]
    if answer.retry_after is not None:
        assert min(gaps) >= 0.29  # Retry-After is a floor for the next request
    print(
        f"faults: {outcome:9} {last_error!r} twice -> retried, then delivered "
        f"{len(rig.tiktok.accepted)} events in {len(requests)} requests, each event_id once; "
        f"gaps {', '.join(f'{g:.2f}' for g in gaps)} s"
    )


@pytest.mark.parametrize(
    ("fault", "url"),
    [
        pytest.param("refused", "http://127.0.0.1:{port}/open_api/v1.3/event/track/", id="refused"),
        pytest.param("tls", "https://{double}", id="tls-handshake"),
        pytest.param("dns", "http://gateway-test.invalid/open_api/v1.3/event/track/", id="dns"),
    ],
)
async def test_network_faults_are_retried_then_delivered_once(
    rig: Rig, fault: str, url: str
) -> None:
    await rig.add_integration()
    bad_url = url.format(port=closed_port(), double=rig.tiktok.url.removeprefix("http://"))
    broken = await rig.start_worker(url=bad_url)
    ids = await rig.enqueue(10, broken)

    async def failed_twice() -> bool:
        return (await rig.queue.stats(INTEGRATION)).failed >= 20

    await eventually(failed_twice)
    await broken.stop()
    stats = await rig.queue.stats(INTEGRATION)
    assert stats.queued == 10 and stats.dead_lettered == 0
    assert stats.last_error is not None and stats.last_error.startswith("transport error: ")
    assert TOKEN not in stats.last_error
    attempts = rig.sample("gateway_tiktok_requests_total", integration=INTEGRATION, outcome="retry")
    assert attempts >= 2

    # TikTok reachable again (a worker pointed at it): everything arrives, each event_id once.
    healthy = await rig.start_worker()
    await healthy.drain(timeout_s=10)
    assert sorted(rig.tiktok.accepted_ids()) == ids
    print(
        f"faults: {fault}: {int(attempts)} attempts failed with {stats.last_error!r}, "
        f"nothing lost or paused; then {len(rig.tiktok.accepted)} delivered, each event_id once"
    )


# --- 40% of requests answered 503 -----------------------------------------------------------------


async def test_forty_percent_503_every_event_delivered_exactly_once(rig: Rig) -> None:
    await rig.add_integration()
    rig.tiktok.fail_ratio = 0.4
    worker = await rig.start_worker(batch_max_events=20)
    ids = await rig.enqueue(2000, worker, chunk=100)

    await worker.drain(timeout_s=30)

    accepted = rig.tiktok.accepted_ids()
    assert sorted(accepted) == sorted(ids)  # every event, each event_id once
    requests = rig.tiktok.requests
    failed = [r for r in requests if r.answer is not None and r.answer.status == 503]
    stats = await rig.queue.stats(INTEGRATION)
    assert (stats.queued, stats.delivered, stats.dead_lettered) == (0, 2000, 0)
    assert stats.failed == worker.events_retried == sum(len(r.events) for r in failed)
    assert worker.requests_sent == len(requests)
    print(
        f"faults: 40% 503 (seeded draw): {len(ids)} events in batches of 20, {len(requests)} "
        f"requests, {len(failed)} answered "
        f"503 ({len(failed) / len(requests):.0%}), {stats.failed} event retries; "
        f"{len(set(accepted))} distinct event_ids accepted, {len(accepted) - len(set(accepted))} "
        "duplicates"
    )


# --- A long outage, time compressed through the clock ---------------------------------------------


async def test_long_outage_memory_flat_queue_keeps_all_then_drains_at_the_rate_limit(
    rig: Rig,
) -> None:
    events, batch, rate, burst, rounds, hours_per_round = 20_000, 500, 40.0, 5, 12, 2
    await rig.add_integration(rate_limit_rps=rate, rate_limit_burst=burst)
    rig.tiktok.fail_ratio = 1.0  # TikTok is down: every request is answered 503
    rig.clock.freeze()
    worker = await rig.start_worker(
        batch_max_events=batch,
        backoff_base_s=1.0,
        backoff_cap_s=300.0,
        rng=lambda: 0.5,  # the jitter, pinned
    )
    ids = await rig.enqueue(events, worker, chunk=2000)

    # Three requests fail in a row; from then on the lane only probes, once per backoff.
    await rig.tiktok.wait_for(lambda: len(rig.tiktok.requests) >= 3)
    await failed_requests(rig, batch, 3)
    sent = worker.requests_sent
    rig.tiktok.requests.clear()  # the double's records are the test's memory, not the gateway's

    tracemalloc.start()
    memory: list[int] = []
    rss: list[int] = []
    for _ in range(rounds):
        rig.clock.advance(hours_per_round * 3600.0)  # two hours of outage pass
        worker.refresh()
        await failed_requests(rig, batch, sent + 1)
        sent += 1
        rig.tiktok.requests.clear()
        gc.collect()
        memory.append(tracemalloc.get_traced_memory()[0])
        rss.append(rss_bytes())
    tracemalloc.stop()

    stats = await rig.queue.stats(INTEGRATION)
    assert (stats.queued, stats.delivered, stats.dead_lettered) == (events, 0, 0)
    assert worker.requests_sent == sent == 3 + rounds  # one probe a round, no storm
    # After a few warm-up rounds, what the worker holds does not grow with the outage.
    growth = max(memory[3:]) - memory[2]
    assert growth < 1_000_000, f"Python memory grew {growth} bytes during the outage"

    # TikTok comes back: the backlog drains, at the integration's rate limit.
    rig.tiktok.fail_ratio = 0.0
    rig.clock.advance(3600.0)
    rig.clock.flow()
    worker.refresh()
    await worker.drain(timeout_s=30)

    assert sorted(rig.tiktok.accepted_ids()) == sorted(ids)
    drained = rig.tiktok.requests
    times = [r.at for r in drained]
    assert len(drained) == events // batch
    assert within_bucket(times, rate, burst) <= 1
    print(
        f"faults: outage of {rounds * hours_per_round} h (clock compressed, {rounds} rounds): "
        f"{events} events kept "
        f"(queued {stats.queued}, dead-lettered 0), {sent} requests to TikTok in all "
        f"({stats.failed} event attempts failed); traced Python memory at rounds 3/6/{rounds}: "
        f"{memory[2] / 1e6:.2f}/{memory[5] / 1e6:.2f}/{memory[-1] / 1e6:.2f} MB (largest rise "
        f"{growth / 1e3:.0f} kB), RSS {rss[2] / 1e6:.1f} -> {rss[-1] / 1e6:.1f} MB; after "
        f"recovery {len(drained)} requests drained everything in {times[-1] - times[0]:.2f} s, "
        f"{sustained(drained, burst):.1f} req/s beyond the burst (limit {rate:.0f}/s, burst "
        f"{burst}), never above the bucket"
    )


async def test_probes_back_off_to_at_most_thirty_seconds(rig: Rig) -> None:
    """The events' own backoff grows to five minutes; the probes of an outage stop at 30 s, so
    TikTok's return is noticed within half a minute."""
    batch = 100
    await rig.add_integration()
    rig.tiktok.fail_ratio = 1.0
    rig.clock.freeze()
    worker = await rig.start_worker(
        batch_max_events=batch, backoff_base_s=1.0, backoff_cap_s=300.0, rng=lambda: 1.0
    )
    await rig.enqueue(2000, worker, chunk=500)

    await rig.tiktok.wait_for(lambda: len(rig.tiktok.requests) >= 3)
    await failed_requests(rig, batch, 3)
    sent = worker.requests_sent
    for _ in range(10):  # uncapped, the 6th probe would wait 32 s, the 10th 512 s
        rig.clock.advance(30.0)
        worker.refresh()
        await failed_requests(rig, batch, sent + 1)
        sent += 1
    assert worker.requests_sent == sent == 13


# --- Token rejected -------------------------------------------------------------------------------


async def test_rejected_token_pauses_at_once_keeps_all_and_delivers_after_patch(
    gateway: Gateway, tiktok: TikTokDouble
) -> None:
    good = "tok_good_0123456789abcdef"
    tiktok.valid_tokens = {good}
    await gateway.create_source()
    created = await gateway.create_integration(
        config={"pixel_code": "CTESTPIXEL0000000001", "access_token": "tok_revoked_0123456789"}
    )
    iid = created["id"]
    first = [f"m-token-{n}" for n in range(60)]
    resp = await gateway.collect.post(
        "/v1/batch", json={"batch": [{"type": "track", **hit(m)} for m in first]}
    )
    assert resp.status == 200

    async def paused() -> bool:
        return (await status(gateway, iid))["state"] == "paused"

    await eventually(paused)
    assert len(tiktok.requests) == 1  # paused within one request
    seen = await status(gateway, iid)
    assert seen["paused_reason"] == "40001: No permission to operate pixel code"
    assert (seen["queued"], seen["failed"], seen["dead_lettered"]) == (60, 0, 0)

    # Paused, it sends nothing: not for new hits, not for an edit that is not its configuration.
    more = [f"m-token-{n}" for n in range(60, 80)]
    for message_id in more:
        assert (await gateway.collect.post("/v1/t", json=hit(message_id))).status == 200
    resp = await gateway.admin.patch(f"/v1/admin/integrations/{iid}", json={"name": "Renamed"})
    assert (await resp.json())["status"]["state"] == "paused"
    await asyncio.sleep(0.5)
    assert len(tiktok.requests) == 1
    assert (await status(gateway, iid))["queued"] == 80

    # The token is fixed: the integration resumes and everything kept is delivered, once.
    resp = await gateway.admin.patch(
        f"/v1/admin/integrations/{iid}", json={"config": {"access_token": good}}
    )
    assert (await resp.json())["status"]["state"] == "active"
    await tiktok.wait_for(lambda: len(tiktok.accepted) >= 80)
    assert sorted(tiktok.accepted_ids()) == sorted(first + more)
    assert all(r.headers["Access-Token"] == good for r in tiktok.requests[1:])
    print(
        f"faults: token rejected: paused after 1 request ({seen['paused_reason']!r}), "
        f"{seen['queued']} + {len(more)} events kept, 0 requests while paused; after the PATCH of "
        f"the token {len(tiktok.accepted)} delivered in {len(tiktok.requests) - 1} request(s), "
        "each event_id once"
    )


# --- One invalid event in a batch of 500 ----------------------------------------------------------


async def test_one_invalid_event_in_500_costs_about_log2_requests(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.deliver.worker")
    await rig.add_integration()
    worker = await rig.start_worker(batch_max_events=500, batch_max_wait_ms=1000)
    ids = await rig.enqueue(500, worker)
    bad = ids[313]
    rig.tiktok.reject_event_ids = {bad}

    await worker.drain(timeout_s=30)

    assert sorted(rig.tiktok.accepted_ids()) == sorted(set(ids) - {bad})
    [dead] = await rig.queue.list_dead_letters(INTEGRATION)
    assert (dead.event_id, dead.reason, dead.answer) == (
        bad,
        "rejected",
        f"40002: Invalid event: {bad}",
    )
    assert dead.attempts >= 1 and dead.first_attempt_at is not None
    extra = worker.isolation_requests
    assert len(rig.tiktok.requests) == 1 + extra
    assert extra <= 2 * math.ceil(math.log2(500)) + 2
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("isolation ")]
    assert f"extra_requests={extra} " in line and "dead_lettered=1 " in line
    print(
        f"faults: one invalid event in 500: {len(rig.tiktok.accepted)} delivered, 1 dead-lettered "
        f"({dead.reason}: {dead.answer!r}), {extra} extra requests (log2(500) = "
        f"{math.log2(500):.1f}); logged: {line!r}"
    )


# --- Throttled: 40100 and 429 ---------------------------------------------------------------------


async def test_throttled_integration_slows_its_own_bucket_and_recovers(rig: Rig) -> None:
    rate, burst, batch, count = 40.0, 5, 5, 300
    await rig.add_integration("int_a", TOKEN, rate_limit_rps=rate, rate_limit_burst=burst)
    await rig.add_integration("int_b", OTHER_TOKEN, rate_limit_rps=rate, rate_limit_burst=burst)
    throttles = [
        Answer(code=40100, message="Too many requests"),
        Answer(status=429),
        Answer(code=40100, message="Too many requests"),
        Answer(status=429, retry_after=0.3),
    ]
    rig.tiktok.play_for(TOKEN, *[Answer()] * 10, *throttles)
    worker = await rig.start_worker(batch_max_events=batch, throttle_recovery_s=0.25)

    rates: dict[str, list[float]] = {"int_a": [], "int_b": []}
    watching = True

    async def watch() -> None:
        while watching:
            for name, seen in rates.items():
                value = rig.metrics.registry.get_sample_value(
                    "gateway_integration_send_rate", {"integration": name}
                )
                if value is not None:
                    seen.append(value)
            await asyncio.sleep(0.002)

    watcher = asyncio.create_task(watch())
    a = await rig.enqueue(count, worker, integration_id="int_a", chunk=50)
    b = await rig.enqueue(count, worker, integration_id="int_b", chunk=50)
    await worker.drain(timeout_s=30)
    watching = False
    await watcher

    assert sorted(rig.tiktok.accepted_ids()) == sorted(a + b)
    by_token = {
        token: [r for r in rig.tiktok.requests if r.headers["Access-Token"] == token]
        for token in (TOKEN, OTHER_TOKEN)
    }
    mine, other = by_token[TOKEN], by_token[OTHER_TOKEN]
    # No retry storm: each throttled request costs exactly one more request, later.
    assert len(mine) == count // batch + len(throttles)
    assert len(other) == count // batch
    # The rate dropped, then came back; the other integration's bucket never moved.
    assert min(rates["int_a"]) <= rate / 8
    assert rates["int_a"][-1] == rate
    assert set(rates["int_b"]) == {rate}
    # Never above the bucket, for either integration.
    assert within_bucket([r.at for r in mine], rate, burst) <= 1
    assert within_bucket([r.at for r in other], rate, burst) <= 1
    # Retry-After held the whole integration, not only the refused batch.
    held = mine[14].at - mine[13].at
    assert held >= 0.29
    before, after, end = mine[burst:10], mine[14:24], mine[-10:]
    print(
        f"faults: throttled (40100 x2, 429 x2, the last with Retry-After 0.3 s): int_a's bucket "
        f"{rate:.0f} -> {min(rates['int_a']):.1f} -> {rates['int_a'][-1]:.0f} req/s; measured "
        f"{per_second(before):.1f} req/s before (after the burst), {per_second(after):.1f} right "
        "after "
        f"(first request {held:.2f} s after the Retry-After), {per_second(end):.1f} at the end; "
        f"{len(mine) - count // batch} extra requests; int_b's bucket stayed at "
        f"{min(rates['int_b']):.0f} req/s ({sustained(other, burst):.1f} measured beyond the "
        f"burst); neither above burst {burst} + {rate:.0f}/s"
    )


# --- Events older than the accepted window --------------------------------------------------------


async def test_events_older_than_the_configured_window_are_dead_lettered_not_sent(
    rig: Rig,
) -> None:
    await rig.add_integration()
    worker = await rig.start_worker(event_max_age_days=2)
    now = int(rig.clock())
    [old] = await rig.enqueue(1, event_time=now - 3 * 86_400)
    kept = await rig.enqueue(2, event_time=now - 1 * 86_400)
    await rig.enqueue(0, worker)

    await worker.drain(timeout_s=10)

    [dead] = await rig.queue.list_dead_letters(INTEGRATION)
    assert (dead.event_id, dead.reason) == (old, "too_old")
    assert dead.answer == "event_time is older than 2 days; TikTok refuses it"
    assert sorted(rig.tiktok.accepted_ids()) == kept
    assert old not in {eid for r in rig.tiktok.requests for eid in r.event_ids}
    print(f"faults: window of 2 days: 1 event 3 days old dead-lettered ({dead.answer!r}), 2 sent")
