"""The queue contract, run against every backend in `tests/backends.py`.

Time is injected (`now`) wherever the interface takes it, so leases and retries are tested
without sleeping. Enqueue stamps events with the wall clock, so `now` is read after enqueueing.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from gateway.core.errors import QueueFull
from gateway.core.models import ClaimedEvent, IntegrationStats, NewEvent, ReadyInfo
from gateway.queue.base import Queue
from gateway.queue.group import GroupCommitting
from gateway.queue.sqlite import SQLiteQueue
from tests.backends import OpenQueue

A = "int_a"
B = "int_b"


def event(n: int, integration_id: str = A, consent: dict[str, bool] | None = None) -> NewEvent:
    return NewEvent(
        integration_id=integration_id,
        event_id=f"evt-{integration_id}-{n}",
        event_name="CompletePayment",
        event_time=1_760_000_000 + n,
        payload=b'{"event":"CompletePayment","n":%d}' % n,
        consent=consent,
    )


def event_ids(claimed: list[ClaimedEvent]) -> list[str]:
    return [c.event_id for c in claimed]


async def test_enqueue_claim_ack(queue: Queue) -> None:
    await queue.enqueue([event(1), event(2), event(3)])
    now = time.time()
    assert await queue.depth() == 3
    assert await queue.integrations_with_events() == [A]

    claimed = await queue.claim(A, 2, now, lease_s=30)
    assert event_ids(claimed) == ["evt-int_a-1", "evt-int_a-2"]
    first = claimed[0]
    assert (first.event_name, first.event_time, first.attempts) == (
        "CompletePayment",
        1_760_000_001,
        1,
    )
    assert first.payload == event(1).payload
    assert first.enqueued_at <= now

    await queue.ack(A, [c.id for c in claimed], now)
    assert await queue.stats(A) == IntegrationStats(queued=1, delivered=2, last_success_at=now)
    assert await queue.depth() == 1


async def test_empty_enqueue_and_unknown_integration(queue: Queue) -> None:
    await queue.enqueue([])
    now = time.time()
    assert await queue.depth() == 0
    assert await queue.integrations_with_events() == []
    assert await queue.claim(A, 10, now, lease_s=30) == []
    assert await queue.ready_info(A, now) == ReadyInfo(0, None, None)
    assert await queue.stats(A) == IntegrationStats()


async def test_concurrent_enqueues_share_commits(queue: Queue) -> None:
    assert isinstance(queue, GroupCommitting)  # every backend groups its commits
    await asyncio.gather(*(queue.enqueue([event(n)]) for n in range(200)))

    assert await queue.depth() == 200
    assert queue.enqueued == 200
    assert queue.commits < 200
    claimed = await queue.claim(A, 500, time.time(), lease_s=30)
    assert sorted(event_ids(claimed)) == sorted(f"evt-int_a-{n}" for n in range(200))


async def test_expired_lease_makes_events_claimable_again(queue: Queue) -> None:
    await queue.enqueue([event(1), event(2)])
    now = time.time()
    claimed = await queue.claim(A, 10, now, lease_s=30)
    assert len(claimed) == 2

    assert await queue.claim(A, 10, now + 10, lease_s=30) == []
    info = await queue.ready_info(A, now + 10)
    assert (info.ready, info.next_retry_at) == (0, now + 30)

    # The worker holding them "crashed": once the lease runs out another one takes them.
    again = await queue.claim(A, 10, now + 31, lease_s=30)
    assert [c.id for c in again] == [c.id for c in claimed]
    assert [c.attempts for c in again] == [2, 2]


async def test_sqlite_tells_listeners_what_each_commit_stored(tmp_path: Path) -> None:
    queue = SQLiteQueue(tmp_path / "q.db", 4)
    await queue.open()
    told: list[tuple[str, int, float]] = []
    registry = CollectorRegistry()
    registry.register(queue.commit_metrics())
    try:
        assert queue.add_enqueue_listener(lambda *args: told.append(args))
        before = time.time()
        await asyncio.gather(queue.enqueue([event(1), event(2, B)]), queue.enqueue([event(3)]))
        with pytest.raises(QueueFull):  # refused: nobody is told
            await queue.enqueue([event(4), event(5)])

        counts: dict[str, int] = {}
        for integration_id, count, enqueued_at in told:
            counts[integration_id] = counts.get(integration_id, 0) + count
            assert before <= enqueued_at <= time.time()
        assert counts == {A: 2, B: 1}
        assert registry.get_sample_value("gateway_queue_committed_events_total") == 3
        assert registry.get_sample_value("gateway_queue_commits_total") == queue.commits
        assert queue.events_per_commit == 3 / queue.commits
    finally:
        await queue.close()


async def test_sqlite_commit_lingers_under_load_for_more_callers(tmp_path: Path) -> None:
    # Any rate counts as load here, and the linger is long: callers that come one after the
    # other, none while a commit runs, still share commits.
    queue = SQLiteQueue(tmp_path / "q.db", 1000, linger_s=0.3, linger_min_rate=0.01)
    await queue.open()
    try:

        async def later(n: int) -> None:
            await asyncio.sleep(n * 0.002)
            await queue.enqueue([event(n)])

        await asyncio.gather(*(later(n) for n in range(20)))
        assert queue.enqueued == 20
        assert queue.commits <= 3
        assert await queue.depth() == 20
    finally:
        await queue.close()


async def test_sqlite_commit_stops_lingering_for_a_caller_that_waits_for_each_commit(
    tmp_path: Path,
) -> None:
    # One caller, one call after the other: nobody else can arrive during a linger, so after a
    # trial that gathered nothing the commits go at once (a trial a tenth of a second at most).
    queue = SQLiteQueue(tmp_path / "q.db", 1000, linger_s=0.01, linger_min_rate=0.01)
    await queue.open()
    try:
        for n in range(40):
            await queue.enqueue([event(n)])
        assert queue.commits == 40
        assert queue.lingers <= 5
    finally:
        await queue.close()


async def test_sqlite_ready_info_counts_up_to_a_cap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Counting a backlog of millions for every batch would cost more than the batch."""
    monkeypatch.setattr("gateway.queue.sqlite._READY_COUNT_CAP", 10)
    queue = SQLiteQueue(tmp_path / "q.db", 1000)
    await queue.open()
    try:
        await queue.enqueue([event(n) for n in range(25)])
        now = time.time()
        info = await queue.ready_info(A, now)
        assert info.ready == 10
        assert info.oldest_enqueued_at is not None
        await queue.claim(A, 3, now, lease_s=60)
        assert (await queue.ready_info(A, now)).ready == 7  # the cap, less what is leased
    finally:
        await queue.close()


async def test_recover_leases_returns_a_dead_workers_events_at_once(queue: Queue) -> None:
    if not isinstance(queue, SQLiteQueue):
        pytest.skip(
            "SQLite only: one delivering process per data directory, so every lease is an orphan;"
            " a shared queue takes back only leases of replicas that stopped (test_queue_redis.py)"
        )
    await queue.enqueue([event(1), event(2), event(3, B)])
    now = time.time()
    await queue.claim(A, 10, now, lease_s=60)
    await queue.claim(B, 10, now, lease_s=60)
    assert await queue.recover_leases(now + 1) == 3
    again = await queue.claim(A, 10, now + 1, lease_s=60)
    assert event_ids(again) == ["evt-int_a-1", "evt-int_a-2"]
    assert await queue.recover_leases(now + 2) == 2  # the new leases are taken back too
    assert await queue.recover_leases(now + 2) == 0


async def test_two_handles_never_claim_the_same_event(queue_factory: OpenQueue) -> None:
    first, second = await queue_factory(), await queue_factory()
    await first.enqueue([event(n) for n in range(300)])
    now = time.time()

    async def drain(queue: Queue) -> list[int | str]:
        got: list[int | str] = []
        while claimed := await queue.claim(A, 7, now, lease_s=60):
            got += [c.id for c in claimed]
        return got

    # Each handle has its own connection and thread, so these claims really race in SQLite.
    results = await asyncio.gather(drain(first), drain(second), drain(first), drain(second))
    all_ids = [ident for got in results for ident in got]
    assert len(all_ids) == 300
    assert len(set(all_ids)) == 300


async def test_release_with_and_without_error(queue: Queue) -> None:
    await queue.enqueue([event(1), event(2)])
    now = time.time()
    failed, paused = await queue.claim(A, 2, now, lease_s=30)

    await queue.release(A, [failed.id], retry_at=now + 60, error="HTTP 503", now=now)
    await queue.release(A, [paused.id], retry_at=now, error=None, now=now)

    stats = await queue.stats(A)
    assert (stats.queued, stats.failed, stats.last_error) == (2, 1, "HTTP 503")
    assert await queue.ready_info(A, now) == ReadyInfo(1, paused.enqueued_at, now + 60)

    # Released without an error, the attempt is not held against the event.
    (again,) = await queue.claim(A, 10, now, lease_s=600)
    assert (again.id, again.attempts) == (paused.id, 1)
    (retried,) = await queue.claim(A, 10, now + 60, lease_s=30)
    assert (retried.id, retried.attempts) == (failed.id, 2)


async def test_ready_info(queue: Queue) -> None:
    await queue.enqueue([event(1), event(2), event(3)])
    now = time.time()
    info = await queue.ready_info(A, now)
    assert info.ready == 3
    assert info.next_retry_at is None
    assert info.oldest_enqueued_at is not None
    assert now - 60 < info.oldest_enqueued_at <= now

    (held,) = await queue.claim(A, 1, now, lease_s=30)
    assert held.enqueued_at == info.oldest_enqueued_at
    assert await queue.ready_info(A, now) == ReadyInfo(2, info.oldest_enqueued_at, now + 30)
    assert (await queue.ready_info(B, now)).ready == 0


async def test_dead_letter_list_replay_purge(queue: Queue) -> None:
    consent = {"advertising": True, "analytics": False}
    await queue.enqueue([event(n, consent=consent) for n in (1, 2, 3)])
    now = time.time()
    claimed = await queue.claim(A, 3, now, lease_s=30)
    await queue.dead_letter(A, [c.id for c in claimed[:2]], "invalid_event", "code 40002", now + 1)
    await queue.ack(A, [claimed[2].id], now + 1)

    letters = await queue.list_dead_letters(A)
    assert [d.event_id for d in letters] == ["evt-int_a-1", "evt-int_a-2"]
    first = letters[0]
    assert (first.integration_id, first.event_name, first.event_time) == (
        A,
        "CompletePayment",
        1_760_000_001,
    )
    assert (first.reason, first.answer, first.attempts) == ("invalid_event", "code 40002", 1)
    assert (first.first_attempt_at, first.last_attempt_at, first.dead_lettered_at) == (
        now,
        now,
        now + 1,
    )
    assert first.consent == consent
    assert first.payload == event(1).payload  # what replay checks again before sending
    assert [d.event_id for d in await queue.list_dead_letters(A, limit=1, offset=1)] == [
        "evt-int_a-2"
    ]
    stats = await queue.stats(A)
    assert (stats.queued, stats.dead_lettered, stats.delivered) == (0, 2, 1)

    replayed = await queue.replay_dead_letters(A, [first.id], now + 2)
    assert [d.event_id for d in replayed] == ["evt-int_a-1"]
    (back,) = await queue.claim(A, 10, now + 2, lease_s=30)
    assert (back.event_id, back.payload, back.attempts) == ("evt-int_a-1", event(1).payload, 1)

    assert await queue.purge_dead_letters(A, None) == 1
    assert await queue.list_dead_letters(A) == []
    assert (await queue.stats(A)).dead_lettered == 0


async def test_replay_all_and_purge_some(queue: Queue) -> None:
    await queue.enqueue([event(n) for n in range(4)])
    now = time.time()
    claimed = await queue.claim(A, 4, now, lease_s=30)
    await queue.dead_letter(A, [c.id for c in claimed], "rejected", None, now)
    letters = await queue.list_dead_letters(A)

    assert await queue.purge_dead_letters(A, [letters[0].id]) == 1
    assert await queue.purge_dead_letters(B, [letters[1].id]) == 0  # another integration's
    replayed = await queue.replay_dead_letters(A, None, now)
    assert [d.event_id for d in replayed] == [f"evt-int_a-{n}" for n in (1, 2, 3)]
    assert await queue.list_dead_letters(A) == []
    assert (await queue.ready_info(A, now)).ready == 3


async def test_dead_letter_new(queue: Queue) -> None:
    now = time.time()
    await queue.dead_letter_new(
        [event(1, consent={"advertising": True})], "missing_value", None, now
    )

    (letter,) = await queue.list_dead_letters(A)
    assert (letter.event_id, letter.reason, letter.answer) == ("evt-int_a-1", "missing_value", None)
    assert (letter.attempts, letter.first_attempt_at, letter.last_attempt_at) == (0, None, None)
    assert letter.consent == {"advertising": True}
    assert await queue.depth() == 0
    assert (await queue.stats(A)).dead_lettered == 1


async def test_queue_full_stores_nothing(queue_factory: OpenQueue) -> None:
    queue = await queue_factory(max_events=5)
    await queue.enqueue([event(n) for n in range(3)])

    with pytest.raises(QueueFull):
        await queue.enqueue([event(n) for n in range(3, 6)])
    assert await queue.depth() == 3

    # Callers sharing one commit are judged one by one: the first fits, the second does not.
    outcomes = await asyncio.gather(
        queue.enqueue([event(6), event(7)]),
        queue.enqueue([event(8), event(9)]),
        return_exceptions=True,
    )
    assert outcomes[0] is None
    assert isinstance(outcomes[1], QueueFull)
    assert await queue.depth() == 5
    claimed = await queue.claim(A, 10, time.time(), lease_s=30)
    assert "evt-int_a-3" not in event_ids(claimed)
    assert "evt-int_a-8" not in event_ids(claimed)


async def test_data_survives_close_and_reopen(queue_factory: OpenQueue) -> None:
    queue = await queue_factory()
    await queue.enqueue([event(1), event(2), event(3, B)])
    now = time.time()
    (delivered,) = await queue.claim(A, 1, now, lease_s=30)
    await queue.ack(A, [delivered.id], now)
    (rejected,) = await queue.claim(B, 1, now, lease_s=30)
    await queue.dead_letter(B, [rejected.id], "rejected", None, now)
    await queue.close()

    reopened = await queue_factory()
    assert await reopened.depth() == 1
    assert await reopened.stats(A) == IntegrationStats(queued=1, delivered=1, last_success_at=now)
    assert [d.event_id for d in await reopened.list_dead_letters(B)] == ["evt-int_b-3"]
    assert event_ids(await reopened.claim(A, 10, now, lease_s=30)) == ["evt-int_a-2"]


async def test_drop_integration(queue: Queue) -> None:
    await queue.enqueue([event(1), event(2), event(3, B)])
    now = time.time()
    (first,) = await queue.claim(A, 1, now, lease_s=30)
    await queue.dead_letter(A, [first.id], "rejected", None, now)

    await queue.drop_integration(A)

    assert await queue.depth() == 1
    assert await queue.integrations_with_events() == [B]
    assert await queue.stats(A) == IntegrationStats()
    assert await queue.list_dead_letters(A) == []
    assert (await queue.stats(B)).queued == 1


async def test_queued_counts_follow_every_move(queue: Queue) -> None:
    await queue.enqueue([event(n) for n in range(5)] + [event(9, B)])
    now = time.time()
    claimed = await queue.claim(A, 10, now, lease_s=30)
    await queue.ack(A, [claimed[0].id], now)
    await queue.dead_letter(A, [c.id for c in claimed[1:3]], "rejected", None, now)
    assert ((await queue.stats(A)).queued, await queue.depth()) == (2, 3)
    assert (await queue.stats(A)).dead_lettered == 2

    await queue.replay_dead_letters(A, None, now)
    assert ((await queue.stats(A)).queued, await queue.depth()) == (4, 5)
    assert await queue.integrations_with_events() == [A, B]


async def test_a_file_from_the_trigger_era_keeps_exact_counts(tmp_path: Path) -> None:
    # Before `queued` moved into the statements, triggers kept it; they must not count twice.
    queue = SQLiteQueue(tmp_path / "q.db", 100)
    await queue.open()
    await queue.enqueue([event(1)])
    await queue.close()
    with sqlite3.connect(tmp_path / "q.db") as conn:
        conn.executescript(
            """CREATE TRIGGER events_count_in AFTER INSERT ON events BEGIN
                INSERT INTO stats (integration_id, queued) VALUES (NEW.integration_id, 1)
                ON CONFLICT (integration_id) DO UPDATE SET queued = queued + 1;
            END;
            CREATE TRIGGER events_count_out AFTER DELETE ON events BEGIN
                UPDATE stats SET queued = queued - 1 WHERE integration_id = OLD.integration_id;
            END;"""
        )
    conn.close()
    queue = SQLiteQueue(tmp_path / "q.db", 100)
    await queue.open()
    try:
        await queue.enqueue([event(2), event(3)])
        now = time.time()
        claimed = await queue.claim(A, 1, now, lease_s=30)
        await queue.ack(A, [claimed[0].id], now)
        assert await queue.depth() == 2
    finally:
        await queue.close()


async def test_a_claim_of_at_least_n_takes_all_or_nothing(queue_factory: OpenQueue) -> None:
    # Two delivering processes on one queue: the second must not get the first one's leftovers
    # as a small batch when it expected a full one.
    first, second = await queue_factory(), await queue_factory()
    await first.enqueue([event(n) for n in range(7)])
    now = time.time()
    assert len(await first.claim(A, 5, now, lease_s=30, at_least=5)) == 5
    assert await second.claim(A, 5, now, lease_s=30, at_least=5) == []
    # What it left is still there, for a claim that takes what is ready.
    rest = await second.claim(A, 5, now, lease_s=30)
    assert event_ids(rest) == ["evt-int_a-5", "evt-int_a-6"]
    assert [c.attempts for c in rest] == [1, 1]  # the claim that took nothing counted nothing
