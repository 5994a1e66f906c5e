"""The integrations as consumers of the hit log (`LogConsumers`), on both log backends.

Real collection records are appended (hits rendered by `gateway.collect.rawhit.render`) and
claimed per integration, as the delivery worker does; time is injected (`now`) wherever the
interface takes it, so leases and retries are tested without sleeping.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis.asyncio as aioredis

from gateway.collect.rawhit import RawRequest, render
from gateway.config.sqlite import SQLiteConfigStore
from gateway.core.hit import Context, Hit, Properties
from gateway.core.metrics import Metrics
from gateway.core.models import (
    ClaimedEvent,
    ConsentDefault,
    Integration,
    IntegrationStats,
    NewEvent,
    ReadyInfo,
    Source,
)
from gateway.core.settings import Secret
from gateway.deliver.consumers import LogConsumers
from gateway.destinations.base import HitContext
from gateway.destinations.tiktok.config import TikTokConfig
from gateway.destinations.tiktok.rules import MISSING_VALUE_OR_CURRENCY
from gateway.ledger.base import CLAIM
from gateway.ledger.sqlite import SQLiteLedger
from gateway.log import HitLog, LogRecord
from gateway.log.redis import RedisHitLog
from tests.backends import REDIS_URL, OpenLog, backend_of, token_box

S, S2 = "src_shop", "src_other"
A, B = "int_a", "int_b"  # both on S
C = "int_c"  # on S2
ADS = "int_ads"  # on S, needs consent for advertising (made by the test of consent)
# What collection's routing says of each source: its enabled integrations read its records.
ENABLED = {S: [A, B, ADS], S2: [C]}
EVENT_TIME = 1_760_000_000


# --- Records as collection appends them ---------------------------------------------------------


def purchase(
    eid: str, *, total: float | None = 12.5, consent: dict[str, bool] | None = None
) -> Hit:
    """An "Order Completed" hit: TikTok's CompletePayment, which needs a value."""
    return Hit(
        type="track",
        event="Order Completed",
        message_id=eid,
        properties=Properties(total=total, currency="USD"),
        context=Context(consent=consent) if consent is not None else None,
    )


def record(
    hit: Hit, source: str = S, at: float | None = None, enabled: list[str] | None = None
) -> LogRecord:
    """The log record collection appends for `hit` (its message id as the event id), routed to
    the source's `ENABLED` integrations unless `enabled` says otherwise."""
    received = time.time() if at is None else at
    assert hit.message_id is not None
    routed = ENABLED[source] if enabled is None else enabled
    request = RawRequest(
        received, "203.0.113.7", "Mozilla/5.0", None, True, source, {}, False, routed
    )
    context = HitContext(event_id=hit.message_id, event_time=EVENT_TIME, ip="203.0.113.7")
    data = render(msgspec.structs.replace(hit, source_id=source), request, None, context)
    return LogRecord(source, received, data, hit.message_id)


def purchases(*eids: str, source: str = S, at: float | None = None) -> list[LogRecord]:
    return [record(purchase(eid), source, at) for eid in eids]


def event_ids(claimed: list[ClaimedEvent]) -> list[str]:
    return [c.event_id for c in claimed]


def ids(claimed: list[ClaimedEvent]) -> list[int | str]:
    return [c.id for c in claimed]


def tiktok_event(payload: bytes) -> dict[str, Any]:
    """The TikTok event a stored payload holds."""
    event: dict[str, Any] = msgspec.json.decode(payload)
    return event


# --- Fixtures: processes on one log and one configuration store --------------------------------


@dataclass
class Process:
    """One gateway process: its handle on the hit log and its integrations' consumers."""

    log: HitLog
    consumers: LogConsumers
    ledger: SQLiteLedger  # the debugger's store: what delivery told it


OpenProcess = Callable[..., Awaitable[Process]]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteConfigStore]:
    """Sources S (consent denied by default) and S2; A and B on S, C on S2."""
    store = SQLiteConfigStore(tmp_path / "config.db", token_box())
    await store.open()
    await store.create_source(Source(id=S, name="Shop", consent_default=ConsentDefault.DENY))
    await store.create_source(Source(id=S2, name="Other shop"))
    for integration_id, source_id in ((A, S), (B, S), (C, S2)):
        await add_integration(store, integration_id, source_id)
    yield store
    await store.close()


async def add_integration(
    store: SQLiteConfigStore, integration_id: str, source_id: str, **fields: Any
) -> None:
    config = TikTokConfig(pixel_code="CPIXEL0000000001", access_token=Secret("tok_0123456789"))
    await store.create_integration(
        Integration(id=integration_id, source_id=source_id, name="TikTok", config=config, **fields)
    )


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[SQLiteLedger]:
    ledger = SQLiteLedger(tmp_path / "ledger.db", retention_s=3600, max_records=10_000)
    await ledger.open()
    yield ledger
    await ledger.close()


@pytest.fixture
def process_factory(
    log_factory: OpenLog, store: SQLiteConfigStore, ledger: SQLiteLedger
) -> OpenProcess:
    """`await process_factory(name="r1", monotonic=...)`: one more process on the same log
    (`name`: its Redis consumer name; a process restarted keeps its name)."""

    async def start(
        name: str = "r1", monotonic: Callable[[], float] = time.monotonic, **bounds: Any
    ) -> Process:
        log = await log_factory(name=name, **bounds)
        consumers = LogConsumers(log, store, Metrics(), ledger=ledger, monotonic=monotonic)
        return Process(log, consumers, ledger)

    start.backend = backend_of(log_factory)  # type: ignore[attr-defined]
    return start


@pytest.fixture
async def gw(process_factory: OpenProcess) -> Process:
    return await process_factory()


# --- Claim, ack, and what each integration gets ------------------------------------------------


async def test_claim_hands_out_the_transformed_records_and_ack_counts_them(gw: Process) -> None:
    t0 = time.time()
    await gw.log.append(purchases("e1", "e2", "e3", at=t0))
    now = time.time()
    assert await gw.consumers.depth() == 3
    assert A in await gw.consumers.integrations_with_events()

    claimed = await gw.consumers.claim(A, 2, now, lease_s=30)
    assert event_ids(claimed) == ["e1", "e2"]
    first = claimed[0]
    assert (first.event_name, first.event_time, first.attempts, first.enqueued_at) == (
        "CompletePayment",
        EVENT_TIME,
        1,
        t0,
    )
    event = tiktok_event(first.payload)  # what the real transform made of the hit
    assert (event["event_id"], event["event"]) == ("e1", "CompletePayment")
    assert (event["properties"]["value"], event["properties"]["currency"]) == (12.5, "USD")

    await gw.consumers.ack(A, ids(claimed), now)
    assert await gw.consumers.stats(A) == IntegrationStats(
        queued=1, delivered=2, last_success_at=now
    )
    # The log keeps its records for the debugger's window, delivered or not.
    assert await gw.consumers.depth() == 3


async def test_nothing_for_an_integration_without_records_or_unknown(gw: Process) -> None:
    now = time.time()
    assert await gw.consumers.integrations_with_events() == []
    assert await gw.consumers.claim(A, 10, now, lease_s=30) == []
    assert await gw.consumers.ready_info(A, now) == ReadyInfo(0, None, None)
    assert await gw.consumers.stats(A) == IntegrationStats()
    assert await gw.consumers.claim("int_nobody", 10, now, lease_s=30) == []
    assert await gw.consumers.ready_info("int_nobody", now) == ReadyInfo(0, None, None)
    assert await gw.consumers.stats("int_nobody") == IntegrationStats()


async def test_two_integrations_of_one_source_each_get_every_record(gw: Process) -> None:
    await gw.log.append(purchases("e1", "e2", "e3"))
    await gw.log.append(purchases("o1", source=S2))
    now = time.time()

    for_a = await gw.consumers.claim(A, 10, now, lease_s=30)
    for_b = await gw.consumers.claim(B, 10, now, lease_s=30)
    assert event_ids(for_a) == event_ids(for_b) == ["e1", "e2", "e3"]
    assert event_ids(await gw.consumers.claim(C, 10, now, lease_s=30)) == ["o1"]

    await gw.consumers.ack(A, ids(for_a), now)
    assert ((await gw.consumers.stats(A)).queued, (await gw.consumers.stats(B)).queued) == (0, 3)
    assert sorted(await gw.consumers.integrations_with_events()) == [B, C]


async def test_an_integration_reads_only_the_hits_that_came_while_it_was_enabled(
    gw: Process,
) -> None:
    await gw.log.append([record(purchase("before-b"), enabled=[A])])  # B was disabled then
    await gw.log.append(purchases("both"))
    now = time.time()
    assert event_ids(await gw.consumers.claim(A, 10, now, lease_s=30)) == ["before-b", "both"]
    for_b = await gw.consumers.claim(B, 10, now, lease_s=30)
    assert event_ids(for_b) == ["both"]
    await gw.consumers.ack(B, ids(for_b), now)
    assert (await gw.consumers.stats(B)).queued == 0  # the other record held nothing back


async def test_status_counts_what_waits_for_an_integration_nobody_claimed_for(
    gw: Process,
) -> None:
    """The cursor starts at the integration's creation: what came since is queued for it
    before any worker claimed (a status page asks first)."""
    await gw.log.append(purchases("e1", "e2"))
    assert (await gw.consumers.stats(A)).queued == 2
    assert (await gw.consumers.ready_info(B, time.time())).ready == 2


async def test_consent_keeps_a_hit_from_the_integration_that_needs_it(
    store: SQLiteConfigStore, gw: Process
) -> None:
    await add_integration(store, ADS, S, consent_categories=("advertising",))
    hits = [
        purchase("granted", consent={"advertising": True}),
        purchase("refused", consent={"advertising": False}),
        purchase("silent"),  # no consent: the source's default (deny) decides
    ]
    await gw.log.append([record(h) for h in hits])
    now = time.time()

    ads = await gw.consumers.claim(ADS, 10, now, lease_s=30)
    assert event_ids(ads) == ["granted"]
    # An integration that needs no consent gets them all.
    assert event_ids(await gw.consumers.claim(A, 10, now, lease_s=30)) == [
        "granted",
        "refused",
        "silent",
    ]
    # The debugger is told once per read, not per event: what was read, how many were denied.
    await gw.ledger.flush()
    (claim,) = await gw.ledger.changes(0, 10, ADS)
    assert claim.kind == CLAIM
    assert claim.event_ids == ["granted", "refused", "silent"]
    (bucket,) = await gw.ledger.timeline(ADS, now - 60, 120, 1)
    assert bucket.outcomes["denied"] == 2
    # What consent kept back does not hold the cursor: settled, nothing is left.
    await gw.consumers.ack(ADS, ids(ads), now)
    assert (await gw.consumers.stats(ADS)).queued == 0


async def test_a_record_the_destination_refuses_is_dead_lettered_at_once(gw: Process) -> None:
    await gw.log.append([record(purchase("no-value", total=None)), record(purchase("ok"))])
    now = time.time()

    claimed = await gw.consumers.claim(A, 10, now, lease_s=30)
    assert event_ids(claimed) == ["ok"]
    [dead] = await gw.consumers.list_dead_letters(A)
    assert (dead.event_id, dead.event_name, dead.reason, dead.attempts) == (
        "no-value",
        "CompletePayment",
        MISSING_VALUE_OR_CURRENCY,
        0,
    )
    assert dead.payload is not None and tiktok_event(dead.payload)["event_id"] == "no-value"
    stats = await gw.consumers.stats(A)
    assert (stats.queued, stats.dead_lettered) == (2, 1)  # "ok" is in hand, not yet settled
    await gw.consumers.ack(A, ids(claimed), now)
    assert (await gw.consumers.stats(A)).queued == 0


# --- Cursors, crashes and replicas ---------------------------------------------------------------


async def test_the_cursor_moves_only_when_the_whole_claim_is_settled(
    process_factory: OpenProcess,
) -> None:
    first = await process_factory(name="r1")
    await first.log.append(purchases("e1", "e2", "e3", "e4"))
    now = time.time()
    claimed = await first.consumers.claim(A, 3, now, lease_s=30)
    await first.consumers.ack(A, ids(claimed[:2]), now)
    assert (await first.consumers.stats(A)).queued == 4  # e3 is open: the cursor stays
    # The process dies with e3 in hand.
    await first.consumers.close()
    await first.log.close()

    again = await process_factory(name="r1")  # the same process (replica name) restarted
    assert await again.consumers.recover_leases(now) == 0  # nothing to hand back: it re-reads
    reread = await again.consumers.claim(A, 10, now, lease_s=30)
    # At least once: the whole unsettled claim again (TikTok drops the twice-sent by event id).
    assert event_ids(reread) == ["e1", "e2", "e3", "e4"]
    assert [c.attempts for c in reread] == [1, 1, 1, 1]
    await again.consumers.ack(A, ids(reread), now)
    assert (await again.consumers.stats(A)).queued == 0
    assert await again.consumers.claim(A, 10, now, lease_s=30) == []


async def test_a_replica_takes_over_what_a_dead_one_held_once_it_was_idle(
    process_factory: OpenProcess,
) -> None:
    if process_factory.backend != "redis":  # type: ignore[attr-defined]
        pytest.skip("the embedded log has one delivering process per data dir")
    dying = await process_factory(name="r1")
    await dying.log.append(purchases("e1", "e2", "e3"))
    now = time.time()
    held = await dying.consumers.claim(A, 10, now, lease_s=60)
    assert event_ids(held) == ["e1", "e2", "e3"]  # then r1 dies holding them

    clock = [0.0]
    survivor = await process_factory(name="r2", monotonic=lambda: clock[0])
    # r1's entries are younger than the lease: not yet r2's to take.
    assert await survivor.consumers.claim(A, 10, now, lease_s=60) == []
    clock[0] += 60.0  # a while later, its next claim looks again, with r1 idle long enough
    taken = await survivor.consumers.claim(A, 10, now + 60, lease_s=0)
    assert event_ids(taken) == ["e1", "e2", "e3"]
    await survivor.consumers.ack(A, ids(taken), now + 60)
    assert (await survivor.consumers.stats(A)) == IntegrationStats(
        delivered=3, last_success_at=now + 60
    )


async def test_two_replicas_never_get_the_same_entry_or_retry(
    process_factory: OpenProcess,
) -> None:
    if process_factory.backend != "redis":  # type: ignore[attr-defined]
        pytest.skip("the embedded log has one delivering process per data dir")
    r1, r2 = await process_factory(name="r1"), await process_factory(name="r2")
    all_ids = [f"e{n}" for n in range(300)]
    await r1.log.append(purchases(*all_ids))
    now = time.time()
    failing = [f"f{n}" for n in range(40)]

    async def deliver(process: Process) -> list[str]:
        got: list[str] = []
        while claimed := await process.consumers.claim(A, 7, now, lease_s=60):
            got += event_ids(claimed)
            await process.consumers.ack(A, ids(claimed), now)
        return got

    got1, got2 = await asyncio.gather(deliver(r1), deliver(r2))
    assert sorted(got1 + got2) == sorted(all_ids)  # every entry once, by one replica or the other

    # Failed events, due again at once: each retried by one replica only.
    await r1.log.append(purchases(*failing))
    failed = await r1.consumers.claim(A, 100, now, lease_s=60)
    await r1.consumers.release(A, ids(failed), now, "HTTP 503", now)
    got1, got2 = await asyncio.gather(deliver(r1), deliver(r2))
    assert sorted(got1 + got2) == sorted(failing)


# --- Retries ------------------------------------------------------------------------------------


async def test_retries_come_before_new_records(gw: Process) -> None:
    await gw.log.append(purchases("e1", "e2"))
    now = time.time()
    first, second = await gw.consumers.claim(A, 2, now, lease_s=30)
    await gw.consumers.release(A, [first.id], now + 10, "HTTP 503", now)
    await gw.consumers.ack(A, [second.id], now)
    await gw.log.append(purchases("e3", "e4"))

    assert event_ids(await gw.consumers.claim(A, 1, now, lease_s=30)) == ["e3"]  # not due yet
    retried, new = await gw.consumers.claim(A, 2, now + 10, lease_s=30)
    assert (retried.event_id, retried.attempts, retried.payload) == ("e1", 2, first.payload)
    assert (new.event_id, new.attempts) == ("e4", 1)


async def test_release_with_and_without_error(gw: Process) -> None:
    await gw.log.append(purchases("e1", "e2"))
    now = time.time()
    failed, paused = await gw.consumers.claim(A, 2, now, lease_s=30)

    await gw.consumers.release(A, [failed.id], retry_at=now + 60, error="HTTP 503", now=now)
    await gw.consumers.release(A, [paused.id], retry_at=now, error=None, now=now)

    stats = await gw.consumers.stats(A)
    assert (stats.queued, stats.failed, stats.last_error) == (2, 1, "HTTP 503")
    # The released ones wait in the retry set: one due now, the other at its time.
    assert await gw.consumers.ready_info(A, now) == ReadyInfo(1, now, now + 60)

    # Released without an error, the attempt is not held against the event.
    (again,) = await gw.consumers.claim(A, 10, now, lease_s=600)
    assert (again.event_id, again.attempts, again.payload) == ("e2", 1, paused.payload)
    (retried,) = await gw.consumers.claim(A, 10, now + 60, lease_s=30)
    assert (retried.event_id, retried.attempts) == ("e1", 2)


async def test_ready_info_counts_what_may_be_claimed_and_when_leases_end(gw: Process) -> None:
    t0 = time.time()
    await gw.log.append([record(purchase(f"e{n}"), at=t0 + n) for n in range(3)])
    now = t0 + 3
    assert await gw.consumers.ready_info(A, now) == ReadyInfo(3, t0, None)

    (held,) = await gw.consumers.claim(A, 1, now, lease_s=30)
    info = await gw.consumers.ready_info(A, now)
    assert (info.ready, info.next_retry_at) == (2, now + 30)
    rest = await gw.consumers.claim(A, 10, now, lease_s=30)
    # All in hand: nothing ready, but not nothing there (a drain must wait for them).
    assert await gw.consumers.ready_info(A, now) == ReadyInfo(0, None, now + 30)
    await gw.consumers.ack(A, ids([held, *rest]), now)
    assert await gw.consumers.ready_info(A, now) == ReadyInfo(0, None, None)


async def test_ready_counts_up_to_a_cap(gw: Process, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ten of TikTok's largest batches tell a worker enough."""
    monkeypatch.setattr("gateway.deliver.consumers._READY_CAP", 10)
    await gw.log.append(purchases(*(f"e{n}" for n in range(25))))
    assert (await gw.consumers.ready_info(A, time.time())).ready == 10


# --- Dead letters ---------------------------------------------------------------------------------


async def test_dead_letter_list_replay_purge(gw: Process) -> None:
    consent = {"advertising": True, "analytics": False}
    await gw.log.append([record(purchase(f"e{n}", consent=consent)) for n in (1, 2, 3)])
    now = time.time()
    claimed = await gw.consumers.claim(A, 3, now, lease_s=30)
    await gw.consumers.dead_letter(A, ids(claimed[:2]), "invalid_event", "code 40002", now + 1)
    await gw.consumers.ack(A, [claimed[2].id], now + 1)

    letters = await gw.consumers.list_dead_letters(A)
    assert [d.event_id for d in letters] == ["e1", "e2"]
    first = letters[0]
    assert (first.integration_id, first.event_name, first.event_time) == (
        A,
        "CompletePayment",
        EVENT_TIME,
    )
    assert (first.reason, first.answer, first.attempts) == ("invalid_event", "code 40002", 1)
    # The attempt is stamped when it was settled.
    assert (first.first_attempt_at, first.last_attempt_at, first.dead_lettered_at) == (
        now + 1,
        now + 1,
        now + 1,
    )
    assert first.consent == consent
    assert first.payload == claimed[0].payload  # what replay checks again before sending
    assert [d.event_id for d in await gw.consumers.list_dead_letters(A, limit=1, offset=1)] == [
        "e2"
    ]
    stats = await gw.consumers.stats(A)
    assert (stats.queued, stats.dead_lettered, stats.delivered) == (0, 2, 1)

    replayed = await gw.consumers.replay_dead_letters(A, [first.id], now + 2)
    assert [d.event_id for d in replayed] == ["e1"]
    (back,) = await gw.consumers.claim(A, 10, now + 2, lease_s=30)
    # Its attempts so far are kept: this is its second.
    assert (back.event_id, back.payload, back.attempts) == ("e1", claimed[0].payload, 2)

    assert await gw.consumers.purge_dead_letters(A, None) == 1
    assert await gw.consumers.list_dead_letters(A) == []


async def test_replay_all_and_purge_some(gw: Process) -> None:
    await gw.log.append(purchases(*(f"e{n}" for n in range(4))))
    now = time.time()
    claimed = await gw.consumers.claim(A, 4, now, lease_s=30)
    await gw.consumers.dead_letter(A, ids(claimed), "rejected", None, now)
    letters = await gw.consumers.list_dead_letters(A)

    assert await gw.consumers.purge_dead_letters(A, [letters[0].id]) == 1
    assert await gw.consumers.purge_dead_letters(B, [letters[1].id]) == 0  # another's
    replayed = await gw.consumers.replay_dead_letters(A, None, now)
    assert [d.event_id for d in replayed] == ["e1", "e2", "e3"]
    assert await gw.consumers.list_dead_letters(A) == []
    assert (await gw.consumers.ready_info(A, now)).ready == 3


async def test_dead_letter_new(gw: Process) -> None:
    now = time.time()
    event = NewEvent(A, "evt-1", "CompletePayment", EVENT_TIME, b'{"n":1}', {"advertising": True})
    await gw.consumers.dead_letter_new([event], "missing_value", None, now)

    (letter,) = await gw.consumers.list_dead_letters(A)
    assert (letter.event_id, letter.reason, letter.answer) == ("evt-1", "missing_value", None)
    assert (letter.attempts, letter.first_attempt_at, letter.last_attempt_at) == (0, None, None)
    assert (letter.consent, letter.payload) == ({"advertising": True}, b'{"n":1}')
    assert await gw.consumers.depth() == 0
    assert (await gw.consumers.stats(A)).dead_lettered == 1


async def test_events_made_outside_the_log_are_claimable_at_once(gw: Process) -> None:
    """A fixed dead letter or a re-processed range enters as events, not records."""
    told: list[tuple[str, int, float]] = []
    assert gw.consumers.add_enqueue_listener(lambda *args: told.append(args))
    fixed = NewEvent(A, "evt-fixed", "CompletePayment", EVENT_TIME, b'{"fixed":1}', None)
    await gw.consumers.enqueue([fixed])

    (claimed,) = await gw.consumers.claim(A, 10, time.time(), lease_s=30)
    assert (claimed.event_id, claimed.payload, claimed.attempts) == ("evt-fixed", b'{"fixed":1}', 1)
    assert [(i, n) for i, n, _ in told] == [(A, 1)]


# --- Counts, listeners, restarts, dropping -------------------------------------------------------


async def test_queued_counts_follow_every_move(gw: Process) -> None:
    await gw.log.append(purchases(*(f"e{n}" for n in range(5))))
    await gw.log.append(purchases("o1", source=S2))
    now = time.time()
    claimed = await gw.consumers.claim(A, 10, now, lease_s=30)
    await gw.consumers.ack(A, [claimed[0].id], now)
    await gw.consumers.dead_letter(A, ids(claimed[1:3]), "rejected", None, now)
    await gw.consumers.release(A, ids(claimed[3:]), now + 60, "HTTP 503", now)
    stats = await gw.consumers.stats(A)
    assert (stats.queued, stats.dead_lettered, stats.delivered, stats.failed) == (2, 2, 1, 2)
    assert await gw.consumers.depth() == 6  # the log's records, all of them retained

    letters = await gw.consumers.list_dead_letters(A)
    await gw.consumers.purge_dead_letters(A, [letters[0].id])
    await gw.consumers.replay_dead_letters(A, None, now)
    # dead_lettered counts the dead letters there are: a replay or a purge takes them off.
    stats = await gw.consumers.stats(A)
    assert (stats.queued, stats.dead_lettered) == (3, 0)
    assert sorted(await gw.consumers.integrations_with_events()) == [A, B, C]


async def test_collection_tells_the_listeners_what_it_appended(gw: Process) -> None:
    told: list[tuple[str, int, float]] = []

    def listener(integration_id: str, count: int, received_at: float) -> None:
        told.append((integration_id, count, received_at))

    assert gw.consumers.add_enqueue_listener(listener)
    gw.consumers.appended([A, B], 3, 1234.5)
    assert told == [(A, 3, 1234.5), (B, 3, 1234.5)]

    gw.consumers.remove_enqueue_listener(listener)
    gw.consumers.appended([A], 1, 1235.0)
    gw.consumers.remove_enqueue_listener(listener)  # removing twice is harmless
    assert len(told) == 2


async def test_data_survives_close_and_reopen(process_factory: OpenProcess) -> None:
    first = await process_factory(name="r1")
    await first.log.append(purchases("e1", "e2"))
    await first.log.append(purchases("o1", source=S2))
    now = time.time()
    (delivered,) = await first.consumers.claim(A, 1, now, lease_s=30)
    await first.consumers.ack(A, [delivered.id], now)
    (rejected,) = await first.consumers.claim(C, 1, now, lease_s=30)
    await first.consumers.dead_letter(C, [rejected.id], "rejected", None, now)
    await first.consumers.close()
    await first.log.close()

    reopened = await process_factory(name="r1")
    assert await reopened.consumers.depth() == 3
    assert await reopened.consumers.stats(A) == IntegrationStats(
        queued=1, delivered=1, last_success_at=now
    )
    assert [d.event_id for d in await reopened.consumers.list_dead_letters(C)] == ["o1"]
    assert event_ids(await reopened.consumers.claim(A, 10, now, lease_s=30)) == ["e2"]


async def test_drop_integration(store: SQLiteConfigStore, gw: Process) -> None:
    await gw.log.append(purchases("e1", "e2"))
    await gw.log.append(purchases("o1", source=S2))
    now = time.time()
    (first,) = await gw.consumers.claim(A, 1, now, lease_s=30)
    await gw.consumers.dead_letter(A, [first.id], "rejected", None, now)

    # As the Management API deletes it: from the store, then its consumer.
    await store.delete_integration(A)
    await gw.consumers.drop_integration(A)

    assert sorted(await gw.consumers.integrations_with_events()) == [B, C]
    assert await gw.consumers.stats(A) == IntegrationStats()
    assert await gw.consumers.list_dead_letters(A) == []
    assert await gw.consumers.claim(A, 10, now, lease_s=30) == []
    assert (await gw.consumers.stats(B)).queued == 2
    assert await gw.consumers.depth() == 3  # the records stay for the other integrations


async def test_every_redis_key_lives_under_the_prefix_and_goes_with_the_integration(
    store: SQLiteConfigStore, gw: Process
) -> None:
    if not isinstance(gw.log, RedisHitLog):
        pytest.skip("the keys of the shared log")
    await gw.log.append(purchases("e1", "e2", "e3"))
    now = time.time()
    claimed = await gw.consumers.claim(A, 10, now, lease_s=60)
    await gw.consumers.ack(A, [claimed[0].id], now)
    await gw.consumers.release(A, [claimed[1].id], now + 60, "HTTP 503", now)
    await gw.consumers.dead_letter(A, [claimed[2].id], "rejected", "code 40002", now)

    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        keys = [k.decode() async for k in client.scan_iter(match=f"{gw.log.prefix}:*")]
        # Its retries, dead letters and counts, each a key of its own under the prefix.
        assert len([k for k in keys if k.endswith(f":{A}")]) >= 3
        await store.delete_integration(A)
        await gw.consumers.drop_integration(A)
        left = [k.decode() async for k in client.scan_iter(match=f"{gw.log.prefix}:*:{A}")]
    finally:
        await client.aclose()
    assert left == []
    assert (await gw.consumers.stats(B)).queued == 3  # the source's records are still there


# --- Replicas sharing the log -----------------------------------------------------------------


async def test_what_another_replica_holds_is_not_ready_here(process_factory: OpenProcess) -> None:
    if process_factory.backend != "redis":  # type: ignore[attr-defined]
        pytest.skip("the embedded log has one delivering process per data dir")
    r1, r2 = await process_factory(name="r1"), await process_factory(name="r2")
    await r1.log.append(purchases("e1", "e2", "e3"))
    now = time.time()
    assert len(await r1.consumers.claim(A, 10, now, lease_s=60)) == 3

    info = await r2.consumers.ready_info(A, now)
    # Nothing for r2 to claim; it looks again by the time r1's entries could be taken over.
    assert info.ready == 0
    assert info.next_retry_at is not None and info.next_retry_at <= now + 60


async def test_a_claim_of_at_least_n_takes_all_or_nothing(process_factory: OpenProcess) -> None:
    if process_factory.backend != "redis":  # type: ignore[attr-defined]
        pytest.skip("at_least matters where several workers share the log (and the buckets)")
    first, second = await process_factory(name="r1"), await process_factory(name="r2")
    await first.log.append(purchases(*(f"e{n}" for n in range(7))))
    now = time.time()
    assert len(await first.consumers.claim(A, 5, now, lease_s=30, at_least=5)) == 5
    assert await second.consumers.claim(A, 5, now, lease_s=30, at_least=5) == []
    # What it left is still there, for a claim that takes what is ready.
    rest = await second.consumers.claim(A, 5, now, lease_s=30)
    assert event_ids(rest) == ["e5", "e6"]
