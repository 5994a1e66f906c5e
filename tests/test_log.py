"""The hit log, on both backends (SQLite always; Redis when it answers, see tests/backends.py)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import stat
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.core.errors import QueueFull, StoreError
from gateway.core.metrics import Metrics
from gateway.log import HitLog, LogRecord, open_log
from gateway.log.base import Counts, FailedItem, RetryInfo, entry_order, record_bytes
from gateway.log.redis import RedisHitLog
from gateway.log.sqlite import SQLiteHitLog
from tests.backends import REDIS_URL, WINDOW_S, OpenLog, backend_of

S = "src_shop"
REPO = Path(__file__).resolve().parent.parent


def record(
    n: int, source: str = S, at: float | None = None, event_id: str | None = None
) -> LogRecord:
    received = time.time() if at is None else at
    return LogRecord(source, received, b'{"hit": %d}' % n, event_id or f"msg_{n}")


def numbers(entries: Any) -> list[int]:
    return [int(e.data.split(b" ")[1].rstrip(b"}")) for e in entries]


async def append_each(log: HitLog, ns: range, source: str = S) -> list[str]:
    ids: list[str] = []
    for n in ns:
        ids += await log.append([record(n, source)])
    return ids


# --- Appending and reading ---------------------------------------------------------------------


async def test_append_returns_ids_in_log_order_and_read_hands_out_the_records(
    hitlog: HitLog,
) -> None:
    assert await hitlog.add_consumer("int_a", S, "tail")
    at = time.time()
    ids = await hitlog.append([record(1, at=at), record(2, at=at + 1, event_id=None)])
    ids += await hitlog.append([LogRecord(S, at + 2, b"\x00\xffraw")])
    assert ids == sorted(ids, key=entry_order) and len(set(ids)) == 3

    entries = await hitlog.read("int_a", 10)
    assert [e.id for e in entries] == ids
    assert [e.data for e in entries] == [b'{"hit": 1}', b'{"hit": 2}', b"\x00\xffraw"]
    assert [e.received_at for e in entries] == [at, at + 1, at + 2]
    assert [e.event_id for e in entries] == ["msg_1", "msg_2", None]
    assert {e.source_id for e in entries} == {S}
    assert await hitlog.read("int_a", 10) == []  # handed out already
    assert await hitlog.append([]) == []


async def test_concurrent_appends_share_commits(hitlog: HitLog) -> None:
    assert isinstance(hitlog, SQLiteHitLog | RedisHitLog)
    ids = await asyncio.gather(*(hitlog.append([record(n)]) for n in range(50)))
    assert len({i for one in ids for i in one}) == 50
    assert hitlog.enqueued == 50
    assert hitlog.commits < 50  # callers arriving during a commit waited for the next one
    assert await hitlog.depth() == 50


async def test_a_large_append_keeps_every_record_its_id_and_its_event_id(hitlog: HitLog) -> None:
    """A commit of a few hundred records (stored many rows per statement by SQLite) hands them
    out in order, each under its id, each found by its event id."""
    assert await hitlog.add_consumer("int_a", S, "tail")
    first = await hitlog.append([record(0)])
    # Every seventh without an event id: the ids of the others still match their records.
    batch = [
        LogRecord(S, time.time(), b'{"hit": %d}' % n, None) if n % 7 == 0 else record(n)
        for n in range(1, 204)
    ]
    ids = await hitlog.append(batch)
    assert len(set(ids)) == 203 and ids == sorted(ids, key=entry_order)
    entries = await hitlog.read("int_a", 500)
    assert [e.id for e in entries] == first + ids
    assert numbers(entries) == list(range(204))
    for n in (1, 64, 65, 127, 200, 202):
        assert [e.id for e in await hitlog.find(S, f"msg_{n}")] == [ids[n - 1]]
    assert await hitlog.find(S, "msg_7") == []


async def test_reading_an_unknown_consumer_is_a_store_error(hitlog: HitLog) -> None:
    with pytest.raises(StoreError):
        await hitlog.read("int_nobody", 10)
    with pytest.raises(StoreError):
        await hitlog.lag("int_nobody")


# --- Consumers and cursors ---------------------------------------------------------------------


async def test_two_consumers_have_independent_cursors(hitlog: HitLog) -> None:
    await hitlog.add_consumer("int_a", S, "head")
    await hitlog.add_consumer("int_b", S, "head")
    await append_each(hitlog, range(5))

    a1 = await hitlog.read("int_a", 3)
    await hitlog.commit("int_a", a1)
    b1 = await hitlog.read("int_b", 1)
    await hitlog.commit("int_b", b1)

    assert numbers(a1) == [0, 1, 2] and numbers(b1) == [0]
    assert (await hitlog.lag("int_a")).entries == 2
    assert (await hitlog.lag("int_b")).entries == 4
    assert numbers(await hitlog.read("int_a", 10)) == [3, 4]
    assert numbers(await hitlog.read("int_b", 10)) == [1, 2, 3, 4]


async def test_consumers_of_other_sources_see_nothing_of_this_one(hitlog: HitLog) -> None:
    await hitlog.add_consumer("int_a", S, "head")
    await hitlog.add_consumer("int_other", "src_other", "head")
    await append_each(hitlog, range(3))
    await append_each(hitlog, range(10, 12), source="src_other")
    assert numbers(await hitlog.read("int_a", 10)) == [0, 1, 2]
    assert numbers(await hitlog.read("int_other", 10)) == [10, 11]


async def test_commit_per_batch_moves_the_cursor_a_new_handle_starts_from(
    log_factory: OpenLog,
) -> None:
    first = await log_factory(name="r1")
    await first.add_consumer("int_a", S, "head")
    await append_each(first, range(6))
    batch = await first.read("int_a", 4)
    await first.commit("int_a", batch)
    await first.close()

    again = await log_factory(name="r1")
    assert (await again.lag("int_a")).entries == 2
    assert numbers(await again.read("int_a", 10)) == [4, 5]


async def test_what_was_read_and_not_committed_is_read_again_after_a_restart(
    log_factory: OpenLog,
) -> None:
    first = await log_factory(name="r1")
    await first.add_consumer("int_a", S, "head")
    await append_each(first, range(5))
    done = await first.read("int_a", 2)
    await first.commit("int_a", done)
    in_flight = await first.read("int_a", 2)  # the process dies before it commits these
    assert numbers(in_flight) == [2, 3]
    await first.close()

    again = await log_factory(name="r1")  # the same replica, restarted
    assert (await again.lag("int_a")).entries == 3
    reread: list[int] = []
    while batch := await again.read("int_a", 10):
        reread += numbers(batch)
    assert reread == [2, 3, 4]  # what it held first (Redis: its pending entries), then the rest


async def test_add_consumer_at_head_tail_or_since(hitlog: HitLog) -> None:
    await append_each(hitlog, range(3))
    await asyncio.sleep(0.01)  # the Redis backend starts `since` by its ids' millisecond
    since = time.time()
    await asyncio.sleep(0.01)
    await append_each(hitlog, range(3, 5))
    assert await hitlog.add_consumer("int_head", S, "head")
    assert await hitlog.add_consumer("int_tail", S, "tail")
    assert await hitlog.add_consumer("int_since", S, since)
    await append_each(hitlog, range(5, 6))

    assert numbers(await hitlog.read("int_head", 10)) == [0, 1, 2, 3, 4, 5]
    assert numbers(await hitlog.read("int_tail", 10)) == [5]
    assert numbers(await hitlog.read("int_since", 10)) == [3, 4, 5]
    assert (await hitlog.lag("int_since")).entries == 3


async def test_adding_a_consumer_twice_keeps_its_cursor(hitlog: HitLog) -> None:
    assert await hitlog.add_consumer("int_a", S, "head")
    await append_each(hitlog, range(3))
    await hitlog.commit("int_a", await hitlog.read("int_a", 2))
    assert not await hitlog.add_consumer("int_a", S, "tail")
    assert (await hitlog.lag("int_a")).entries == 1


async def test_lag_counts_entries_past_the_cursor_and_the_oldest_one(hitlog: HitLog) -> None:
    await hitlog.add_consumer("int_a", S, "tail")
    lag = await hitlog.lag("int_a")
    assert (lag.entries, lag.oldest_received_at) == (0, None)
    t0 = time.time()
    await hitlog.append([record(n, at=t0 + n) for n in range(4)])
    lag = await hitlog.lag("int_a")
    assert (lag.entries, lag.oldest_received_at) == (4, t0)

    read = await hitlog.read("int_a", 3)  # read, not committed: still behind
    lag = await hitlog.lag("int_a")
    assert lag.entries == 4
    if lag.unread is not None:  # a shared log tells what no handle has read yet
        assert (lag.unread, lag.oldest_unread_at) == (1, t0 + 3)
    await hitlog.commit("int_a", read)
    lag = await hitlog.lag("int_a")
    assert (lag.entries, lag.oldest_received_at) == (1, t0 + 3)


async def test_drop_consumer_forgets_its_cursor_retries_and_dead_letters(hitlog: HitLog) -> None:
    await hitlog.add_consumer("int_a", S, "head")
    await append_each(hitlog, range(2))
    await hitlog.retry_later("int_a", [FailedItem(b"e")], time.time(), "503")
    await hitlog.dead_letter("int_a", [FailedItem(b"e")], "rejected", None, time.time())
    await hitlog.drop_consumer("int_a")
    with pytest.raises(StoreError):
        await hitlog.read("int_a", 10)
    assert await hitlog.due_retries("int_a", time.time() + 1, 10) == []
    assert await hitlog.list_dead_letters("int_a") == []
    # Added again later, it starts afresh.
    assert await hitlog.add_consumer("int_a", S, "head")
    assert numbers(await hitlog.read("int_a", 10)) == [0, 1]


# --- Replicas (Redis) --------------------------------------------------------------------------


async def test_two_replicas_in_one_group_never_get_the_same_entry(log_factory: OpenLog) -> None:
    if backend_of(log_factory) != "redis":
        pytest.skip("the embedded log has one delivering process per data dir")
    r1, r2 = await log_factory(name="r1"), await log_factory(name="r2")
    await r1.add_consumer("int_a", S, "head")
    await append_each(r1, range(20))
    got1: list[int] = []
    got2: list[int] = []
    for _ in range(5):
        got1 += numbers(await r1.read("int_a", 3))
        got2 += numbers(await r2.read("int_a", 2))
    assert not set(got1) & set(got2)
    assert sorted(got1 + got2) == list(range(20))


async def test_a_replica_gone_silent_has_its_entries_taken_over_at_once(
    log_factory: OpenLog,
) -> None:
    """Its heartbeat lapsed (killed, or closed without settling): what it read goes to the
    survivors at their next take over, not after the lease's idle time."""
    if backend_of(log_factory) != "redis":
        pytest.skip("the embedded log has one delivering process per data dir")
    gone, survivor = await log_factory(name="r1"), await log_factory(name="r2")
    await gone.add_consumer("int_a", S, "head")
    await append_each(gone, range(4))
    held = await gone.read("int_a", 3)
    assert await survivor.take_over("int_a", idle_s=3600) == []  # alive: its own still
    await gone.close()  # its heartbeat key goes with it (a killed one's lapses in 10 s)
    taken = await survivor.take_over("int_a", idle_s=3600)
    assert [e.id for e in taken] == [e.id for e in held]
    assert numbers(await survivor.read("int_a", 10)) == [3]


async def test_take_over_hands_a_dead_replicas_entries_to_another(log_factory: OpenLog) -> None:
    if backend_of(log_factory) != "redis":
        pytest.skip("the embedded log has one delivering process per data dir")
    dying, survivor = await log_factory(name="r1"), await log_factory(name="r2")
    await dying.add_consumer("int_a", S, "head")
    await append_each(dying, range(4))
    held = await dying.read("int_a", 3)  # then r1 dies holding them
    assert await survivor.take_over("int_a", idle_s=3600) == []  # not idle that long yet
    taken = await survivor.take_over("int_a", idle_s=0)
    assert [e.id for e in taken] == [e.id for e in held]
    assert numbers(await survivor.read("int_a", 10)) == [3]  # taken ones are not handed twice
    await survivor.commit("int_a", taken)
    assert (await survivor.lag("int_a")).entries == 1
    # r1 comes back under its name: what it held belongs to r2 now.
    back = await log_factory(name="r1")
    assert await back.read("int_a", 10) == []


async def test_the_embedded_log_has_nothing_to_take_over(log_factory: OpenLog) -> None:
    if backend_of(log_factory) != "sqlite":
        pytest.skip("Redis replicas take over, see above")
    log = await log_factory()
    await log.add_consumer("int_a", S, "head")
    await append_each(log, range(2))
    await log.read("int_a", 2)
    assert await log.take_over("int_a", idle_s=0) == []


# --- Retention and the bound -------------------------------------------------------------------


async def test_retention_keeps_what_a_cursor_has_not_passed_and_the_window(
    hitlog: HitLog,
) -> None:
    await hitlog.add_consumer("int_a", S, "head")
    await hitlog.add_consumer("int_b", S, "head")
    t0 = time.time()
    await hitlog.append([record(n, at=t0 + n) for n in range(6)])
    full = await hitlog.size_bytes()
    await hitlog.commit("int_a", await hitlog.read("int_a", 5))
    await hitlog.commit("int_b", await hitlog.read("int_b", 2))

    # Inside the window nothing goes, passed by every cursor or not.
    assert await hitlog.sweep(t0 + 10) == 0
    # Past the window only what both cursors passed goes.
    later = t0 + 10 + WINDOW_S
    assert await hitlog.sweep(later) == 2
    assert (await hitlog.depth(), await hitlog.size_bytes()) == (4, full * 4 // 6)
    assert numbers(await hitlog.read_range(S, 0, later)) == [2, 3, 4, 5]
    rest = await hitlog.read("int_b", 10)
    assert numbers(rest) == [2, 3, 4, 5]

    # The window counts from each record's own time.
    await hitlog.commit("int_b", rest[:2])  # int_b passed 0..3, int_a 0..4
    assert await hitlog.sweep(t0 + 2.5 + WINDOW_S) == 1  # only record 2 is older
    assert await hitlog.sweep(later) == 1  # record 3; 4 and 5 wait for the cursors
    assert numbers(await hitlog.read_range(S, 0, later)) == [4, 5]
    assert (await hitlog.lag("int_a")).entries == 1


async def test_past_half_its_bound_the_log_lets_passed_records_go_inside_the_window(
    log_factory: OpenLog,
) -> None:
    """Delivered hits must never fill the bound and make collection answer 503: past half of
    it, what every cursor passed goes even inside the debugger's window; what a cursor still
    needs never does."""
    hitlog = await log_factory(max_records=10)
    await hitlog.add_consumer("int_a", S, "head")
    await hitlog.add_consumer("int_b", S, "head")
    t0 = time.time()
    await hitlog.append([record(n, at=t0) for n in range(8)])
    await hitlog.commit("int_a", await hitlog.read("int_a", 8))
    await hitlog.commit("int_b", await hitlog.read("int_b", 6))

    assert await hitlog.sweep(t0 + 1) == 6
    assert numbers(await hitlog.read_range(S, 0, t0 + 1)) == [6, 7]
    # Under half of the bound again: the window holds what is left, passed or not.
    await hitlog.commit("int_b", await hitlog.read("int_b", 2))
    assert await hitlog.sweep(t0 + 1) == 0
    assert await hitlog.depth() == 2
    assert await hitlog.append([record(n, at=t0) for n in range(8, 16)])  # room again


async def test_a_source_without_consumers_keeps_only_the_window(hitlog: HitLog) -> None:
    t0 = time.time()
    await hitlog.append([record(n, at=t0 + n) for n in range(3)])
    assert await hitlog.sweep(t0) == 0
    assert await hitlog.sweep(t0 + 1.5 + WINDOW_S) == 2
    assert await hitlog.sweep(t0 + 3 + WINDOW_S) == 1
    assert (await hitlog.depth(), await hitlog.size_bytes()) == (0, 0)
    assert await hitlog.append([record(9)])  # appending again after the stream emptied


async def test_the_record_bound_answers_queue_full_and_stores_nothing_of_that_call(
    log_factory: OpenLog,
) -> None:
    log = await log_factory(max_records=3)
    await log.add_consumer("int_a", S, "head")
    await log.append([record(1), record(2)])
    with pytest.raises(QueueFull):
        await log.append([record(3), record(4)])  # two would make four: none is stored
    assert await log.depth() == 2
    await log.append([record(5)])  # one still fits
    with pytest.raises(QueueFull):
        await log.append([record(6)])
    assert numbers(await log.read("int_a", 10)) == [1, 2, 5]


async def test_the_byte_bound_answers_queue_full_and_stores_nothing_of_that_call(
    log_factory: OpenLog,
) -> None:
    one = record_bytes(record(1))
    log = await log_factory(max_bytes=one * 3 + one // 2)
    await log.add_consumer("int_a", S, "head")
    await log.append([record(1), record(2)])
    assert await log.size_bytes() == 2 * one
    with pytest.raises(QueueFull):
        await log.append([record(3), record(4)])
    assert (await log.depth(), await log.size_bytes()) == (2, 2 * one)
    # Retention frees room: what was swept counts no more.
    await log.commit("int_a", await log.read("int_a", 10))
    assert await log.sweep(time.time() + 2 * WINDOW_S) == 2
    await log.append([record(3), record(4), record(5)])
    assert numbers(await log.read("int_a", 10)) == [3, 4, 5]


async def test_concurrent_callers_over_the_bound_each_get_their_own_answer(
    log_factory: OpenLog,
) -> None:
    log = await log_factory(max_records=10)
    results = await asyncio.gather(
        *(log.append([record(n)]) for n in range(25)), return_exceptions=True
    )
    stored = [r for r in results if isinstance(r, list)]
    assert len(stored) == 10
    assert all(isinstance(r, QueueFull) for r in results if not isinstance(r, list))
    assert await log.depth() == 10


async def test_replicas_together_never_exceed_the_bound(log_factory: OpenLog) -> None:
    a, b = await log_factory(max_records=7), await log_factory(max_records=7)
    results = await asyncio.gather(
        *(h.append([record(n)]) for n in range(20) for h in (a, b)), return_exceptions=True
    )
    assert sum(isinstance(r, list) for r in results) == 7
    assert await a.depth() == 7


# --- Replay and the debugger -------------------------------------------------------------------


async def test_read_range_by_time_in_pages(hitlog: HitLog) -> None:
    t0 = time.time()
    await hitlog.append([record(n, at=t0 + n) for n in range(8)])
    await hitlog.append([record(50, source="src_other", at=t0 + 3)])
    page = await hitlog.read_range(S, t0 + 2, t0 + 7, limit=3)
    assert numbers(page) == [2, 3, 4]
    rest = await hitlog.read_range(S, t0 + 2, t0 + 7, limit=3, after=page[-1].id)
    assert numbers(rest) == [5, 6]
    assert await hitlog.read_range(S, t0 + 2, t0 + 7, after=rest[-1].id) == []
    assert await hitlog.read_range("src_none", t0, t0 + 9) == []


async def test_read_range_finds_records_appended_out_of_time_order(hitlog: HitLog) -> None:
    # Concurrent requests: a hit received earlier can be appended after a later one.
    t0 = time.time()
    await hitlog.append([record(1, at=t0 + 5)])
    await hitlog.append([record(2, at=t0 + 1)])
    await hitlog.append([record(3, at=t0 + 6)])
    assert numbers(await hitlog.read_range(S, t0, t0 + 2)) == [2]
    assert numbers(await hitlog.read_range(S, t0 + 5, t0 + 7)) == [1, 3]


async def test_get_and_find_for_the_debugger(hitlog: HitLog) -> None:
    ids = await hitlog.append([record(1, event_id="m-1"), record(2, event_id="m-2")])
    again = await hitlog.append([record(3, event_id="m-1")])  # the same hit sent twice
    got = await hitlog.get(S, ids[1])
    assert got is not None and numbers([got]) == [2]
    assert await hitlog.get(S, "not-an-id") is None
    assert await hitlog.get("src_other", ids[1]) is None
    assert [e.id for e in await hitlog.find(S, "m-1")] == [ids[0], again[0]]
    assert await hitlog.find(S, "m-9") == []

    # Retention takes the index entries with the records.
    assert await hitlog.sweep(time.time() + 2 * WINDOW_S) == 3
    assert await hitlog.find(S, "m-1") == []
    assert await hitlog.get(S, ids[1]) is None


async def test_find_many_and_newest_for_the_debugger(hitlog: HitLog) -> None:
    ids = await append_each(hitlog, range(1, 6))
    await hitlog.append([record(9, "src_other", event_id="msg_2")])  # another source's msg_2
    again = await hitlog.append([record(7, event_id="msg_2")])  # msg_2 sent twice
    found = await hitlog.find_many(S, ["msg_4", "msg_2", "msg_missing", "msg_2"])
    assert [e.id for e in found] == [ids[1], ids[3], again[0]]  # log order, this source only
    assert await hitlog.find_many(S, []) == []

    newest = await hitlog.newest(S, 3)
    assert [e.id for e in newest] == [again[0], ids[4], ids[3]]
    older = await hitlog.newest(S, 10, before=newest[-1].id)
    assert [e.id for e in older] == [ids[2], ids[1], ids[0]]
    assert await hitlog.newest("src_none", 10) == []


async def test_find_many_within_a_ledger_rows_receive_range(hitlog: HitLog) -> None:
    """The debugger passes a ledger row's first and last receive time: the row's records are
    found though appends commit a little out of receive order, and the rest of the log may be
    left unread."""
    t0 = time.time()
    await hitlog.append([record(1, at=t0 - 3600, event_id="old")])
    late = await hitlog.append([record(2, at=t0 + 2, event_id="later")])
    # Received before `late` but committed after it, as concurrent requests may.
    early = await hitlog.append([record(3, at=t0, event_id="early")])
    await hitlog.append([record(4, at=t0 + 3600, event_id="newer")])

    found = await hitlog.find_many(S, ["early", "later"], received=(t0, t0 + 2))
    assert [e.id for e in found] == [late[0], early[0]]
    assert await hitlog.find_many(S, ["early"], received=(t0, t0)) == [
        e for e in found if e.event_id == "early"
    ]


# --- Failures: the retry set and dead letters --------------------------------------------------


async def test_retries_come_due_at_their_time_and_stay_until_retried(hitlog: HitLog) -> None:
    await hitlog.add_consumer("int_a", S, "head")
    now = time.time()
    await hitlog.retry_later(
        "int_a", [FailedItem(b"ev1", "e1", "7", attempts=1)], now + 60, "HTTP 503"
    )
    await hitlog.retry_later(
        "int_a", [FailedItem(b"ev2", "e2"), FailedItem(b"ev3")], now + 10, None
    )
    assert await hitlog.due_retries("int_a", now, 10) == []
    due = await hitlog.due_retries("int_a", now + 30, 10)
    assert [(r.data, r.event_id, r.retry_at, r.error) for r in due] == [
        (b"ev2", "e2", now + 10, None),
        (b"ev3", None, now + 10, None),
    ]
    assert len(await hitlog.due_retries("int_a", now + 30, 1)) == 1
    assert await hitlog.due_retries("int_b", now + 99, 10) == []

    assert await hitlog.retried("int_a", [due[0].id, "nonsense"]) == 1
    everything = await hitlog.due_retries("int_a", now + 90, 10)
    assert [r.data for r in everything] == [b"ev3", b"ev1"]
    first = everything[1]
    assert (first.entry_id, first.attempts, first.error) == ("7", 1, "HTTP 503")


async def test_dead_letters_round_trip(hitlog: HitLog) -> None:
    await hitlog.add_consumer("int_a", S, "head")
    now = time.time()
    items = [FailedItem(b"d%d" % n, f"e{n}", None, attempts=n) for n in range(4)]
    await hitlog.dead_letter("int_a", items[:3], "rejected", '{"code": 40002}', now)
    await hitlog.dead_letter("int_a", items[3:], "too_old", None, now + 1)

    listed = await hitlog.list_dead_letters("int_a")
    assert [(d.data, d.reason, d.answer, d.attempts) for d in listed] == [
        (b"d0", "rejected", '{"code": 40002}', 0),
        (b"d1", "rejected", '{"code": 40002}', 1),
        (b"d2", "rejected", '{"code": 40002}', 2),
        (b"d3", "too_old", None, 3),
    ]
    assert [d.data for d in await hitlog.list_dead_letters("int_a", limit=2, offset=1)] == [
        b"d1",
        b"d2",
    ]
    taken = await hitlog.take_dead_letters("int_a", [listed[2].id, listed[0].id, "junk"])
    assert [d.data for d in taken] == [b"d0", b"d2"]
    assert await hitlog.take_dead_letters("int_a", [listed[0].id]) == []  # gone already
    assert await hitlog.purge_dead_letters("int_a", [listed[1].id]) == 1
    assert [d.event_id for d in await hitlog.list_dead_letters("int_a")] == ["e3"]
    assert [d.data for d in await hitlog.take_dead_letters("int_a", None)] == [b"d3"]
    await hitlog.dead_letter("int_a", items, "rejected", None, now)
    assert await hitlog.purge_dead_letters("int_a", None) == 4
    assert await hitlog.list_dead_letters("int_a") == []


# --- Delivery on the log: leased retries, replay, counters ------------------------------------


def failed(n: int, attempts: int = 1) -> FailedItem:
    return FailedItem(b"ev%d" % n, f"e{n}", str(n), attempts=attempts)


def datas(retries: Any) -> list[bytes]:
    return [r.data for r in retries]


async def test_claimed_retries_are_leased_until_the_lease_runs_out(log_factory: OpenLog) -> None:
    log, other = await log_factory(name="r1"), await log_factory(name="r2")
    await log.add_consumer("int_a", S, "head")
    now = time.time()
    await log.retry_later("int_a", [failed(1, attempts=2)], now - 5, "HTTP 503")
    await log.retry_later("int_a", [failed(2), failed(3)], now - 1, None)
    await log.retry_later("int_a", [failed(4)], now + 60, None)

    claimed = await log.claim_retries("int_a", now, 2, lease_s=30)
    assert datas(claimed) == [b"ev1", b"ev2"]  # earliest first, no more than asked
    first = claimed[0]
    assert (first.event_id, first.entry_id, first.attempts, first.error) == (
        "e1",
        "1",
        2,
        "HTTP 503",
    )
    assert [r.retry_at for r in claimed] == [now - 5, now - 1]  # when they were due

    # Leased: neither this handle nor another gets them again before the lease ends.
    assert datas(await other.claim_retries("int_a", now + 1, 10, lease_s=30)) == [b"ev3"]
    assert await log.claim_retries("int_a", now + 2, 10, lease_s=30) == []
    assert await log.due_retries("int_a", now + 2, 10) == []

    # The claimer "crashed": once the lease has run out they are due again, at the lease's end.
    again = await other.claim_retries("int_a", now + 30, 10, lease_s=30)
    assert [r.id for r in again] == [r.id for r in claimed]
    assert [r.retry_at for r in again] == [now + 30, now + 30]
    assert [r.attempts for r in again] == [2, 1]  # a claim is not an attempt


async def test_retried_removes_claimed_retries(hitlog: HitLog) -> None:
    await hitlog.add_consumer("int_a", S, "head")
    now = time.time()
    await hitlog.retry_later("int_a", [failed(1), failed(2)], now, None)
    claimed = await hitlog.claim_retries("int_a", now, 10, lease_s=30)
    assert await hitlog.retried("int_a", [claimed[0].id]) == 1
    later = await hitlog.claim_retries("int_a", now + 3600, 10, lease_s=30)
    assert datas(later) == [b"ev2"]
    assert (await hitlog.retry_info("int_a", now + 3600)).total == 1


async def test_reschedule_with_and_without_counting_an_attempt(hitlog: HitLog) -> None:
    await hitlog.add_consumer("int_a", S, "head")
    now = time.time()
    await hitlog.retry_later("int_a", [failed(1), failed(2, attempts=3)], now, "HTTP 500")
    one, two = await hitlog.claim_retries("int_a", now, 10, lease_s=30)

    # Tried and failed again: one attempt more, the new error (or none), a new time.
    await hitlog.reschedule("int_a", [one.id], now + 100, "HTTP 503", count_attempt=True)
    # Not tried (paused, rate-limited): only the time moves.
    await hitlog.reschedule("int_a", [two.id], now + 50, "ignored", count_attempt=False)
    assert await hitlog.claim_retries("int_a", now + 49, 10, lease_s=30) == []
    got = await hitlog.claim_retries("int_a", now + 100, 10, lease_s=30)
    assert [(r.data, r.retry_at, r.attempts, r.error) for r in got] == [
        (b"ev2", now + 50, 3, "HTTP 500"),
        (b"ev1", now + 100, 2, "HTTP 503"),
    ]

    await hitlog.reschedule("int_a", [got[0].id], now + 1000, None, count_attempt=False)
    await hitlog.reschedule("int_a", [got[1].id], now + 200, None, count_attempt=True)
    await hitlog.reschedule("int_a", [got[1].id], now + 300, "HTTP 429", count_attempt=True)
    await hitlog.reschedule("int_a", [got[1].id], now + 400, None, count_attempt=True)
    (last,) = await hitlog.claim_retries("int_a", now + 450, 10, lease_s=30)
    assert (last.data, last.attempts, last.error) == (b"ev1", 5, None)

    # Ids that are not the consumer's retries (gone, another's, nonsense) are left alone.
    await hitlog.retried("int_a", [last.id])
    await hitlog.reschedule("int_a", [last.id, "junk"], now, "x", count_attempt=True)
    await hitlog.reschedule("int_b", [got[0].id], now, "x", count_attempt=True)
    assert datas(await hitlog.due_retries("int_a", now + 9999, 10)) == [b"ev2"]
    assert (await hitlog.retry_info("int_a", now)).total == 1
    assert (await hitlog.retry_info("int_b", now)).total == 0


async def test_two_handles_claiming_at_once_never_get_the_same_retry(
    log_factory: OpenLog,
) -> None:
    r1, r2 = await log_factory(name="r1"), await log_factory(name="r2")
    await r1.add_consumer("int_a", S, "head")
    now = time.time()
    await r1.retry_later("int_a", [failed(n) for n in range(60)], now, None)
    claims = await asyncio.gather(
        *(h.claim_retries("int_a", now, 7, lease_s=30) for _ in range(6) for h in (r1, r2))
    )
    ids = [r.id for claim in claims for r in claim]
    assert len(ids) == len(set(ids)) == 60


async def test_retry_info_counts_due_next_and_total(hitlog: HitLog) -> None:
    await hitlog.add_consumer("int_a", S, "head")
    now = time.time()
    assert await hitlog.retry_info("int_a", now) == RetryInfo(0, None, None, 0)
    await hitlog.retry_later("int_a", [failed(1)], now - 9, None)
    await hitlog.retry_later("int_a", [failed(2)], now - 5, None)
    await hitlog.retry_later("int_a", [failed(3)], now - 1, None)
    await hitlog.retry_later("int_a", [failed(4)], now + 20, None)
    await hitlog.retry_later("int_b", [failed(5)], now - 50, None)  # another consumer's
    assert await hitlog.retry_info("int_a", now) == RetryInfo(3, now - 9, now + 20, 4)

    await hitlog.claim_retries("int_a", now, 1, lease_s=10)  # the one due at now - 9
    assert await hitlog.retry_info("int_a", now) == RetryInfo(2, now - 5, now + 10, 4)
    await hitlog.claim_retries("int_a", now, 10, lease_s=10)
    assert await hitlog.retry_info("int_a", now) == RetryInfo(0, None, now + 10, 4)
    # Past every lease and time: everything is due again, nothing waits.
    assert await hitlog.retry_info("int_a", now + 60) == RetryInfo(4, now + 10, None, 4)


async def test_replay_dead_letters_moves_exactly_the_named_ones_into_the_retry_set(
    hitlog: HitLog,
) -> None:
    await hitlog.add_consumer("int_a", S, "head")
    now = time.time()
    items = [failed(n, attempts=n) for n in range(1, 5)]
    await hitlog.dead_letter("int_a", items, "rejected", '{"code": 40002}', now - 100)
    listed = await hitlog.list_dead_letters("int_a")

    moved = await hitlog.replay_dead_letters("int_a", [listed[2].id, listed[0].id, "junk"], now)
    assert [(d.data, d.attempts, d.reason) for d in moved] == [
        (b"ev1", 1, "rejected"),
        (b"ev3", 3, "rejected"),
    ]
    assert [d.data for d in await hitlog.list_dead_letters("int_a")] == [b"ev2", b"ev4"]
    assert await hitlog.replay_dead_letters("int_a", [listed[0].id], now) == []  # moved already

    # Claimable at once, as they were stored: attempts kept, the reason as their error.
    claimed = await hitlog.claim_retries("int_a", now, 10, lease_s=30)
    assert [(r.data, r.event_id, r.entry_id, r.attempts, r.retry_at, r.error) for r in claimed] == [
        (b"ev1", "e1", "1", 1, now, "rejected"),
        (b"ev3", "e3", "3", 3, now, "rejected"),
    ]

    rest = await hitlog.replay_dead_letters("int_a", None, now + 1)
    assert [d.data for d in rest] == [b"ev2", b"ev4"]
    assert await hitlog.list_dead_letters("int_a") == []
    assert await hitlog.retry_info("int_a", now + 1) == RetryInfo(2, now + 1, now + 30, 4)
    assert await hitlog.replay_dead_letters("int_a", None, now) == []


async def test_counts_accumulate_and_survive_reopening(log_factory: OpenLog) -> None:
    first = await log_factory(name="r1")
    await first.add_consumer("int_a", S, "head")
    assert await first.counts("int_a") == Counts()
    now = time.time()
    await first.add_counts("int_a", delivered=5, success_at=now)
    await first.add_counts("int_a", failed=2, last_error="HTTP 503: upstream busy")
    other = await log_factory(name="r2")  # another replica counts into the same numbers
    await other.add_counts("int_a", delivered=3, dead_lettered=1, success_at=now - 60)
    await other.add_counts("int_a", failed=1, last_error=None)  # keeps the stored error
    await first.add_counts("int_b", delivered=1)
    expected = Counts(8, 3, 1, "HTTP 503: upstream busy", now)  # an earlier success not taken
    assert await other.counts("int_a") == expected
    await first.close()
    await other.close()

    reopened = await log_factory(name="r1")
    assert await reopened.counts("int_a") == expected
    await reopened.add_counts("int_a", delivered=1, last_error="timeout", success_at=now + 1)
    assert await reopened.counts("int_a") == Counts(9, 3, 1, "timeout", now + 1)
    assert await reopened.counts("int_b") == Counts(delivered=1)


async def test_consumers_lists_every_cursor_and_drop_consumer_clears_its_counts(
    hitlog: HitLog,
) -> None:
    assert await hitlog.consumers() == {}
    await hitlog.add_consumer("int_a", S, "head")
    await hitlog.add_consumer("int_b", "src_other", "tail")
    await hitlog.add_consumer("int_c", S, "tail")
    assert await hitlog.consumers() == {"int_a": S, "int_b": "src_other", "int_c": S}
    await hitlog.add_counts("int_a", delivered=4, last_error="HTTP 500", success_at=time.time())
    await hitlog.add_counts("int_c", delivered=1)
    await hitlog.retry_later("int_a", [failed(1)], time.time(), None)

    await hitlog.drop_consumer("int_a")
    assert await hitlog.consumers() == {"int_b": "src_other", "int_c": S}
    assert await hitlog.counts("int_a") == Counts()
    assert await hitlog.retry_info("int_a", time.time()) == RetryInfo(0, None, None, 0)
    assert await hitlog.counts("int_c") == Counts(delivered=1)


async def test_an_embedded_log_file_of_schema_1_opens_and_gains_the_counts(
    tmp_path: Path,
) -> None:
    path = tmp_path / "hitlog.db"
    log = SQLiteHitLog(path, max_records=10)
    await log.open()
    await log.add_consumer("int_a", S, "head")
    await log.close()
    with contextlib.closing(sqlite3.connect(path)) as conn:  # as the first release left it
        conn.execute("DROP TABLE log_counts")
        conn.commit()

    reopened = SQLiteHitLog(path, max_records=10)
    await reopened.open()
    try:
        await reopened.add_counts("int_a", delivered=2)
        assert await reopened.counts("int_a") == Counts(delivered=2)
        assert await reopened.consumers() == {"int_a": S}
    finally:
        await reopened.close()


async def test_an_embedded_log_file_with_schema_1s_event_index_is_found_by_event_id(
    tmp_path: Path,
) -> None:
    """Schema 1 indexed (source_id, event_id) in `hits`; schema 2 keeps the ids in a table
    appended in log order. A file of schema 1 moves its records' ids there on open."""
    path = tmp_path / "hitlog.db"
    log = SQLiteHitLog(path, max_records=10)
    await log.open()
    ids = await log.append([record(1), record(2, event_id="m-2")])
    await log.close()
    with contextlib.closing(sqlite3.connect(path)) as conn:  # as schema 1 left it
        conn.execute("DROP TABLE hit_ids")
        conn.execute(
            "CREATE INDEX hits_by_event ON hits (source_id, event_id) WHERE event_id IS NOT NULL"
        )
        conn.execute("UPDATE log_meta SET value = 1 WHERE key = 'schema_version'")
        conn.commit()

    reopened = SQLiteHitLog(path, max_records=10)
    await reopened.open()
    try:
        assert [e.id for e in await reopened.find(S, "m-2")] == [ids[1]]
        more = await reopened.append([record(3, event_id="m-2")])
        found = await reopened.find_many(S, ["msg_1", "m-2"])
        assert [e.id for e in found] == [ids[0], ids[1], more[0]]
    finally:
        await reopened.close()
    with contextlib.closing(sqlite3.connect(path)) as conn:
        names = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
        (version,) = conn.execute(
            "SELECT value FROM log_meta WHERE key = 'schema_version'"
        ).fetchone()
    assert "hits_by_event" not in names and version == 2


async def test_the_log_exports_its_commit_metrics_in_the_gateways_registry(
    tmp_path: Path,
) -> None:
    log = SQLiteHitLog(tmp_path / "hitlog.db", max_records=10)
    await log.open()
    try:
        registry = Metrics().registry  # the gateway's own: it refuses a name registered twice
        registry.register(log.commit_metrics())
        await log.append([record(1), record(2)])
        assert registry.get_sample_value("gateway_log_commits_total") == 1
        assert registry.get_sample_value("gateway_log_committed_records_total") == 2
    finally:
        await log.close()


# --- Durability ------------------------------------------------------------------------------


async def test_the_wal_file_stays_bounded_while_appends_never_pause(tmp_path: Path) -> None:
    """Checkpoints run beside the commits, so appends landing during each one must not keep
    the WAL from starting over: without that it holds all ~100 MB written here. It may pass
    its 1 MB restart mark by what the appends write during a round (a few MB when busy)."""
    path = tmp_path / "hitlog.db"
    log = SQLiteHitLog(
        path, max_records=10**9, checkpoint_every_s=0.01, wal_restart_pages=256
    )  # restarts past 256 pages: 1 MB
    await log.open()
    wal = path.with_name(path.name + "-wal")
    data = os.urandom(3000)
    largest = appended = 0
    try:
        for _ in range(2500):
            calls = [log.append([LogRecord(S, time.time(), data + b"%d" % i)]) for i in range(4)]
            appended += len(await asyncio.gather(*calls))
            largest = max(largest, wal.stat().st_size)
        assert await log.depth() == appended
    finally:
        await log.close()
    assert largest < 16 * 2**20, f"the WAL grew to {largest} bytes"


_CHILD = textwrap.dedent(
    """
    import asyncio, sys, time
    from pathlib import Path
    from gateway.log.base import LogRecord
    from gateway.log.redis import RedisHitLog
    from gateway.log.sqlite import SQLiteHitLog

    async def main(backend, where, prefix):
        if backend == "sqlite":
            log = SQLiteHitLog(Path(where), max_records=10**9)
        else:
            log = RedisHitLog(where, max_records=10**9, prefix=prefix)
        await log.open()
        n = 0
        while True:  # until killed: several appenders at once, as concurrent requests
            calls = [log.append([LogRecord("src_shop", time.time(), b"hit-%d" % (n + i))])
                     for i in range(8)]
            for i, ids in enumerate(await asyncio.gather(*calls)):
                print(ids[0], n + i, flush=True)  # acknowledged: the parent may rely on it
            n += 8

    asyncio.run(main(*sys.argv[1:]))
    """
)


async def test_every_acknowledged_append_survives_sigkill(
    log_factory: OpenLog, tmp_path: Path
) -> None:
    backend = backend_of(log_factory)
    probe = await log_factory()  # creates the file or checks Redis, and names the prefix
    where = str(tmp_path / "hitlog.db") if backend == "sqlite" else REDIS_URL
    prefix = probe.prefix if isinstance(probe, RedisHitLog) else ""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _CHILD,
        backend,
        where,
        prefix,
        stdout=asyncio.subprocess.PIPE,
        cwd=REPO,
    )
    assert child.stdout is not None
    acknowledged: dict[str, int] = {}
    try:
        while len(acknowledged) < 400:
            line = await asyncio.wait_for(child.stdout.readline(), 60)
            assert line, "the appending child stopped"
            entry_id, n = line.split()
            acknowledged[entry_id.decode()] = int(n)
    finally:
        child.send_signal(signal.SIGKILL)  # right after an append returned, mid-commit likely
        await child.wait()
    assert child.returncode == -signal.SIGKILL

    reopened = await log_factory()
    for entry_id, n in acknowledged.items():
        entry = await reopened.get(S, entry_id)
        assert entry is not None, f"acknowledged entry {entry_id} lost"
        assert entry.data == b"hit-%d" % n
    assert await reopened.depth() >= len(acknowledged)


_CLOSE_CHILD = textwrap.dedent(
    """
    import asyncio, sys, time
    from pathlib import Path
    import uvloop
    from gateway.log.base import LogRecord
    from gateway.log.redis import RedisHitLog
    from gateway.log.sqlite import SQLiteHitLog

    async def main(backend, where, prefix):
        data = b"x" * 1000  # a record's usual size: each group is a large command
        for round_ in range(4):
            if backend == "sqlite":
                log = SQLiteHitLog(Path(where), max_records=10**9)
            else:
                log = RedisHitLog(where, max_records=10**9, prefix=prefix)
            await log.open()
            deadline = time.monotonic() + 1.0 + 0.3 * round_

            async def appender():
                while time.monotonic() < deadline:
                    await log.append([LogRecord("src_shop", time.time(), data)])

            await asyncio.gather(*(appender() for _ in range(64)))
            await log.close()
            print("closed", round_, flush=True)

    uvloop.run(main(*sys.argv[1:]))
    """
)


async def test_closing_after_a_flood_of_appends_finishes(
    log_factory: OpenLog, tmp_path: Path
) -> None:
    """Shutdown must not hang on the log. Under uvloop, after 64 appenders flooded the Redis
    log, its heartbeat was often mid-command when `close` cancelled it; redis-py swallowed the
    cancellation and `close`, waiting for the heartbeat, never returned."""
    backend = backend_of(log_factory)
    probe = await log_factory()
    where = str(tmp_path / "hitlog.db") if backend == "sqlite" else REDIS_URL
    prefix = probe.prefix if isinstance(probe, RedisHitLog) else ""
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _CLOSE_CHILD, backend, where, prefix,
        stdout=asyncio.subprocess.PIPE, cwd=REPO,
    )  # fmt: skip
    try:
        out, _ = await asyncio.wait_for(child.communicate(), timeout=60)
    except TimeoutError:
        child.kill()
        await child.wait()
        raise AssertionError("closing the log hung") from None
    assert out.decode().split()[1::2] == ["0", "1", "2", "3"]


# --- Choosing the backend, files -------------------------------------------------------------


async def test_open_log_chooses_the_backend_by_url_scheme(tmp_path: Path) -> None:
    bounds: dict[str, Any] = {"max_records": 10, "max_bytes": None, "retention_s": 60.0}
    default = open_log(None, data_dir=tmp_path, **bounds)
    assert isinstance(default, SQLiteHitLog) and default.path == tmp_path / "hitlog.db"
    named = open_log(f"sqlite://{tmp_path}/elsewhere.db", data_dir=tmp_path, **bounds)
    assert isinstance(named, SQLiteHitLog) and named.path == tmp_path / "elsewhere.db"
    shared = open_log("redis://127.0.0.1:6379/0?prefix=shop", data_dir=tmp_path, **bounds)
    assert isinstance(shared, RedisHitLog) and shared.prefix == "shop"
    assert isinstance(open_log("rediss://cache:6380/0", data_dir=tmp_path, **bounds), RedisHitLog)
    with pytest.raises(ValueError, match="'postgresql'"):
        open_log("postgresql://db/test", data_dir=tmp_path, **bounds)


@pytest.mark.parametrize(
    ("url", "prefix"),
    [
        ("redis://127.0.0.1:6379/0", "gateway"),
        ("redis://h/1?prefix=shop", "shop"),
        ("rediss://u:p@h/0?prefix=a&socket_timeout=3", "a"),
    ],
    ids=["default", "prefix", "prefix-and-client-options"],
)
def test_the_shared_log_takes_its_key_prefix_from_the_url(url: str, prefix: str) -> None:
    bounds: dict[str, Any] = {"max_records": 10, "max_bytes": None, "retention_s": 60.0}
    shared = open_log(url, data_dir=Path("/nonexistent"), **bounds)
    assert isinstance(shared, RedisHitLog) and shared.prefix == prefix


def file_modes(directory: Path, prefix: str) -> dict[str, int]:
    return {
        p.name: stat.S_IMODE(os.stat(p).st_mode)
        for p in directory.iterdir()
        if p.name.startswith(prefix)
    }


async def test_the_embedded_log_files_are_private(tmp_path: Path) -> None:
    log = open_log(None, data_dir=tmp_path, max_records=10, max_bytes=None, retention_s=60.0)
    await log.open()
    try:
        await log.append([record(1)])
        modes = file_modes(tmp_path, "hitlog.db")
        assert modes and set(modes.values()) == {0o600}, modes
    finally:
        await log.close()
