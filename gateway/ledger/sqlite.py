"""The embedded ledger (SQLite).

The embedded ledger is its own SQLite file (`ledger.db`, WAL) beside the queue, so its writes
never take the queue's lock. Every write gives the record a new `seq` from one counter, inside
SQLite's write lock, so `seq` grows across `--workers` processes and a reader can tail changes
with `seq > last`. Retention is bounded by age and by count.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import logging
import operator
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import msgspec
from prometheus_client.registry import Collector

from gateway.core.metrics import CountedElsewhere
from gateway.core.sqlite import ThreadConnection, immediate
from gateway.ledger.base import (
    DEAD_LETTERED,
    DELIVERED,
    EXTERNAL_ID_ANONYMOUS,
    EXTERNAL_ID_USER,
    NOT_SENT,
    OUTCOME_DEAD_LETTERED,
    OUTCOME_DELIVERED,
    OUTCOME_DENIED,
    OUTCOME_FAILED,
    OUTCOMES,
    PAUSED,
    REJECTED,
    RETRYING,
    SIGNALS,
    USER_ID_BIT,
    Filters,
    Ledger,
    MatchQuality,
    Observation,
    Outcome,
    RawHit,
    StoredHit,
    TikTokReply,
    TimelineBucket,
)

log = logging.getLogger(__name__)

# Past this many bytes of buffered records the oldest are dropped (and counted): about 12,000
# records of a typical hit. The writer keeps up with thousands of hits a second; the bound is for
# floods (a million events collected in minutes), where it keeps the ledger's memory flat.
MAX_BUFFERED_BYTES = 16 * 2**20
# What one transaction writes at most, so a backlog is written in steps (each a commit) and a
# batch being written adds little to the buffer's memory (about a second of records at full load,
# so that most outcomes meet their observations in the same batch).
WRITE_BATCH = 5000
# Memory an observation holds besides its payload (the object, the hit summary, strings; about
# 770 bytes measured with tracemalloc), and an outcome (TikTok's answer is shared by the batch).
_OBSERVATION_BYTES = 800
# What a hit's raw hit adds: the hit object it keeps until the writer renders it (shared by
# the records of one hit, and counted once for them: see `_raw_bytes`).
_RAW_BYTES = 600
_OUTCOME_BYTES = 250
MAX_PAGE = 1000
# How long the writer gathers records before a batch goes: long enough that an event's outcome
# (its batch reaches TikTok within about a second under load) is usually written with its
# observation, short enough for the debugger's live view.
LINGER_S = 1.0
# The writer's thread yields the CPU to the event loop: a second of records is tens of
# milliseconds of work, which at normal priority lands in the latency of the hits meanwhile.
# Not lower: at 10 the writer fell behind a saturated loop and dropped records (the benchmark
# counts them); at 5 it still gets a quarter of a contended core, three times what it needs.
LEDGER_WRITER_NICENESS = 5


# ------------------------------------------------------------------------------------ SQLite

# Event ids per `IN (...)`: well under SQLite's limit on bound parameters.
_IN_CHUNK = 500

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', 1);
INSERT OR IGNORE INTO meta (key, value) VALUES ('seq', 0);
CREATE TABLE IF NOT EXISTS records (
    event_id TEXT NOT NULL,
    integration_id TEXT NOT NULL,  -- '' for a hit whose source had no integration
    seq INTEGER NOT NULL,
    source_id TEXT,
    hit_event TEXT,
    tiktok_event TEXT,
    hit TEXT,
    decision TEXT,
    decision_reason TEXT,
    payload TEXT,
    signals INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL,
    reason TEXT,
    answer TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    received_at REAL,  -- NULL while only the delivery worker has written the record
    updated_at REAL NOT NULL,
    raw TEXT,  -- a file from before `raw_hits`: the record's own copy of its raw hit
    PRIMARY KEY (event_id, integration_id)
);
-- The whole hit (traits hashed) and its request's facts, as JSON: once per hit, shared by the
-- records of all its integrations (they join on event_id).
CREATE TABLE IF NOT EXISTS raw_hits (
    event_id TEXT PRIMARY KEY,
    raw TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS records_seq ON records (seq);
CREATE INDEX IF NOT EXISTS records_integration ON records (integration_id, seq);
CREATE INDEX IF NOT EXISTS records_source ON records (source_id, seq);
-- The retention sweep walks `seq` (records are written in time order); an index on updated_at
-- cost every write more than it saved the sweep once a minute.
DROP INDEX IF EXISTS records_updated;
"""

# A record written by the delivery worker of another process before collection's (its buffer
# was flushed first) keeps its outcome; a repeated event_id (a re-sent hit) starts afresh.
_OBSERVE = """
INSERT INTO records (event_id, integration_id, seq, source_id, hit_event, tiktok_event, hit,
                     decision, decision_reason, payload, signals, status, reason, received_at,
                     updated_at, answer, attempts)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (event_id, integration_id) DO UPDATE SET
    seq = excluded.seq, source_id = excluded.source_id, hit_event = excluded.hit_event,
    tiktok_event = excluded.tiktok_event, hit = excluded.hit, decision = excluded.decision,
    decision_reason = excluded.decision_reason, payload = excluded.payload,
    signals = excluded.signals,
    status = CASE WHEN records.received_at IS NULL THEN records.status ELSE excluded.status END,
    reason = CASE WHEN records.received_at IS NULL THEN records.reason ELSE excluded.reason END,
    answer = CASE WHEN records.received_at IS NULL THEN records.answer ELSE excluded.answer END,
    attempts = CASE WHEN records.received_at IS NULL THEN records.attempts
                    ELSE excluded.attempts END,
    received_at = excluded.received_at, updated_at = excluded.updated_at, raw = NULL
"""
_RAW_HIT = """
INSERT INTO raw_hits (event_id, raw) VALUES (?, ?)
ON CONFLICT (event_id) DO UPDATE SET raw = excluded.raw
"""
_SETTLE = """
INSERT INTO records (event_id, integration_id, seq, status, reason, answer, attempts, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (event_id, integration_id) DO UPDATE SET
    seq = excluded.seq, status = excluded.status, reason = excluded.reason,
    answer = coalesce(excluded.answer, records.answer), attempts = excluded.attempts,
    updated_at = excluded.updated_at
"""
# A record's raw hit: its own copy in a file from before `raw_hits`, else its hit's shared one.
_RAW = "COALESCE(records.raw, raw_hits.raw)"
_WITH_RAW = "records LEFT JOIN raw_hits USING (event_id)"
_COLUMNS = f"""seq, event_id, integration_id, source_id, hit_event, tiktok_event, hit, decision,
    decision_reason, payload, status, reason, answer, attempts, received_at, updated_at, {_RAW}"""

Entry = Observation | Outcome


def _entry_bytes(entry: Entry, following: Entry | None) -> int:
    """About the memory one buffered record holds (for `MAX_BUFFERED_BYTES`); `following` is
    the entry after it in the buffer (None: the last)."""
    if type(entry) is Observation:
        payload = entry.payload
        return (
            _OBSERVATION_BYTES
            + _raw_bytes(entry, following)
            + (len(payload) if payload is not None else 0)
        )
    return _OUTCOME_BYTES


def _raw_bytes(entry: Observation, following: Entry | None) -> int:
    """A raw hit's memory, counted with the last of its hit's records. They are appended
    together, so they sit side by side: the one followed by another of the same hit holds none.
    The same entry counts the same when it is appended, dropped or taken (what follows it then
    is what followed it when appended, or something of another hit)."""
    raw = entry.raw
    if raw is None or (type(following) is Observation and following.raw is raw):
        return 0
    return _RAW_BYTES


def _entries_bytes(entries: Sequence[Entry], following: Entry | None) -> int:
    after = [*entries[1:], following]
    return sum(map(_entry_bytes, entries, after))


class SQLiteLedger(Ledger):
    """The embedded ledger. `retention_s` and `max_records` bound it; `linger_s` is how long the
    writer waits for more records before a batch goes (so a burst shares one commit).

    `dropped` counts records lost to a full buffer; `written` those that reached the file;
    `buffered_bytes` is the buffer's estimated size (bounded by `max_buffered_bytes`).
    """

    def __init__(
        self,
        path: Path,
        *,
        retention_s: float,
        max_records: int,
        linger_s: float = LINGER_S,
        sweep_interval_s: float = 60.0,
        clock: Callable[[], float] = time.time,
        max_buffered_bytes: int = MAX_BUFFERED_BYTES,
    ) -> None:
        self.path = path
        self.retention_s = retention_s
        self.max_records = max_records
        self.max_buffered_bytes = max_buffered_bytes
        self.dropped = 0
        self.written = 0
        self.buffered_bytes = 0
        self._linger_s = linger_s
        self._sweep_interval_s = sweep_interval_s
        self._clock = clock
        self._writer = ThreadConnection(path, "ledger-writer", niceness=LEDGER_WRITER_NICENESS)
        self._reader = ThreadConnection(path, "ledger-reader")
        self._buffer: collections.deque[Entry] = collections.deque()
        self._wake = asyncio.Event()
        self._flushing = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._swept_at = float("-inf")

    async def open(self) -> None:
        await self._writer.open()
        await self._writer.run(_create_schema)
        await self._reader.open(query_only=True)
        self._task = asyncio.create_task(self._run(), name="ledger-writer")

    async def close(self) -> None:
        if self._task is not None:
            # Asked to stop rather than cancelled: a cancellation landing while `wait_for`
            # completes can be swallowed (Python 3.11), and the writer would sleep on.
            self._stopping.set()
            self._wake.set()
            await self._task
            self._task = None
        with contextlib.suppress(Exception):
            await self.flush()
        await self._reader.close()
        await self._writer.close()

    def observe(self, observations: Sequence[Observation]) -> None:
        self._append(observations, _entries_bytes(observations, None))

    def settle(self, outcomes: Sequence[Outcome]) -> None:
        self._append(outcomes, _OUTCOME_BYTES * len(outcomes))

    def _append(self, entries: Sequence[Entry], size: int) -> None:
        if not entries:
            return
        buffer = self._buffer
        buffer.extend(entries)
        self.buffered_bytes += size
        if self.buffered_bytes > self.max_buffered_bytes:
            self._drop_oldest()
        self._wake.set()

    def _drop_oldest(self) -> None:
        if self.dropped == 0:
            log.warning("ledger buffer full: dropping the oldest records (debugger only)")
        buffer = self._buffer
        while self.buffered_bytes > self.max_buffered_bytes and buffer:
            entry = buffer.popleft()
            self.buffered_bytes -= _entry_bytes(entry, buffer[0] if buffer else None)
            self.dropped += 1

    def _take(self, limit: int) -> list[Entry]:
        buffer = self._buffer
        batch = [buffer.popleft() for _ in range(min(limit, len(buffer)))]
        self.buffered_bytes -= _entries_bytes(batch, buffer[0] if buffer else None)
        return batch

    async def flush(self) -> None:
        # The lock makes "flush returned" mean "what was buffered before is in the file", even
        # while the background writer is half-way through an earlier batch. What arrives during
        # the flush waits for the next one, so a steady stream cannot keep a flush going.
        async with self._flushing:
            left = len(self._buffer)
            while left > 0 and self._buffer:
                batch = self._take(min(left, WRITE_BATCH))
                left -= len(batch)
                await self._writer.run(_write, batch, self._clock())
                self.written += len(batch)

    async def _run(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._sweep_interval_s)
            if self._stopping.is_set():
                return
            if self._wake.is_set():
                # Let a burst gather into one commit; a stop cuts the wait short.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self._linger_s)
                self._wake.clear()
            try:
                await self.flush()
                now = self._clock()
                if now - self._swept_at >= self._sweep_interval_s:
                    self._swept_at = now
                    await self._writer.run(_sweep, now - self.retention_s, self.max_records)
            except Exception:  # a lost batch costs the debugger some lines, nothing more
                log.warning("ledger write failed; records dropped", exc_info=True)

    async def records(
        self, filters: Filters, limit: int, after: int | None = None
    ) -> list[dict[str, Any]]:
        rows = await self._reader.run(_select, filters, min(limit, MAX_PAGE), after)
        return [_record_json(row) for row in rows]

    async def last_seq(self) -> int:
        return await self._reader.run(_last_seq)

    async def match_quality(self, integration_id: str, since: float) -> MatchQuality:
        return await self._reader.run(_match_quality, integration_id, since)

    async def timeline(
        self, integration_id: str, since: float, bucket_s: int, count: int
    ) -> list[TimelineBucket]:
        return await self._reader.run(_timeline, integration_id, since, bucket_s, count)

    async def raw_hits(
        self, integration_id: str, since: float, until: float, limit: int
    ) -> list[StoredHit]:
        rows = await self._reader.run(_raw_hits, integration_id, since, until, limit)
        return [StoredHit(*row) for row in rows]

    async def statuses(
        self, integration_id: str, event_ids: Sequence[str]
    ) -> dict[str, tuple[str, str | None]]:
        found: dict[str, tuple[str, str | None]] = {}
        ids = list(dict.fromkeys(event_ids))
        for start in range(0, len(ids), _IN_CHUNK):
            chunk = ids[start : start + _IN_CHUNK]
            rows = await self._reader.run(_statuses, integration_id, chunk)
            found.update((row[0], (row[1], row[2])) for row in rows)
        return found

    def metrics(self) -> Collector:
        """Prometheus counters read at scrape time: `gateway_ledger_records_written_total` and
        `gateway_ledger_records_dropped_total` (lost to a full buffer: the writer fell behind)."""
        return CountedElsewhere(
            [
                (
                    "gateway_ledger_records_written",
                    "Event debugger records written to ledger.db by this process",
                    lambda: self.written,
                ),
                (
                    "gateway_ledger_records_dropped",
                    "Event debugger records dropped because the ledger's writer fell behind",
                    lambda: self.dropped,
                ),
            ]
        )


# --- on the connection's thread ------------------------------------------------------------


def _create_schema(conn: sqlite3.Connection) -> None:
    conn.executescript(_SCHEMA)
    columns = {row[1] for row in conn.execute("PRAGMA table_info(records)")}
    if "raw" not in columns:  # a ledger.db written before records kept the raw hit
        conn.execute("ALTER TABLE records ADD COLUMN raw TEXT")


class _Payload(msgspec.Struct):
    """The one part of a TikTok event the ledger reads: who it is about."""

    user: dict[str, Any] | None = None


_payload_decoder = msgspec.json.Decoder(_Payload)
_json = msgspec.json.Encoder()


def _signals(payload: bytes | None) -> tuple[str | None, int]:
    """The payload as text, and a bitmask of which `SIGNALS` its `user` carries."""
    if payload is None:
        return None, 0
    try:
        user = _payload_decoder.decode(payload).user or {}
    except msgspec.DecodeError:
        user = {}
    mask = 0
    for i, name in enumerate(SIGNALS):
        if user.get(name):
            mask |= 1 << i
    return payload.decode("utf-8"), mask


def _answer_text(answer: TikTokReply | None) -> str | None:
    if answer is None:
        return None
    return json.dumps(
        {
            "http_status": answer.http_status,
            "code": answer.code,
            "message": answer.message,
            "request_id": answer.request_id,
        }
    )


def _observe_row(item: Observation, seq: int) -> list[Any]:
    payload, signals = _signals(item.payload)
    if item.user_id_known and signals & (1 << SIGNALS.index("external_id")):
        signals |= USER_ID_BIT
    return [
        item.event_id,
        item.integration_id or "",
        seq,
        item.source_id,
        item.hit.get("event"),
        item.tiktok_event,
        _json.encode(item.hit).decode(),
        item.decision,
        item.decision_reason,
        payload,
        signals,
        item.status,
        item.reason,
        item.received_at,
        item.received_at,
        None,  # TikTok's answer and the attempts, once an outcome is folded in
        0,
    ]


# Columns of an observation row (`_OBSERVE`'s parameters) that an outcome may fold into.
_ROW_SEQ, _ROW_STATUS, _ROW_REASON = 2, 11, 12
_ROW_UPDATED_AT, _ROW_ANSWER, _ROW_ATTEMPTS = 14, 15, 16


def _write(conn: sqlite3.Connection, batch: list[Entry], now: float) -> None:
    """Write a batch in one transaction.

    An event's outcome usually follows its observation within a second, so both are often in
    the same batch: the outcome is folded into the observation's row, and the record is written
    once instead of inserted and then updated (the ledger's largest cost under load).
    """
    with immediate(conn):
        (seq,) = conn.execute("SELECT value FROM meta WHERE key = 'seq'").fetchone()
        observed: dict[tuple[str, str], list[Any]] = {}
        steps: list[tuple[bool, list[Any]]] = []  # (is an observation, its row), in order
        raws: dict[str, RawHit] = {}  # by event_id: one row per hit, whatever its records
        answer: TikTokReply | None = None
        text: str | None = None
        for entry in batch:
            seq += 1
            if type(entry) is Observation:
                row = _observe_row(entry, seq)
                observed[(row[0], row[1])] = row
                steps.append((True, row))
                if entry.raw is not None:
                    raws[entry.event_id] = entry.raw
                continue
            assert isinstance(entry, Outcome)
            # The outcomes of one request share TikTok's answer: its text is made once.
            if entry.answer is not answer:
                answer, text = entry.answer, _answer_text(entry.answer)
            folded = observed.get((entry.event_id, entry.integration_id))
            if folded is not None:
                folded[_ROW_SEQ], folded[_ROW_STATUS] = seq, entry.status
                folded[_ROW_REASON], folded[_ROW_UPDATED_AT] = entry.reason, entry.at
                folded[_ROW_ATTEMPTS] = entry.attempts
                if text is not None:  # as `_SETTLE` does: an outcome without one keeps the last
                    folded[_ROW_ANSWER] = text
                continue
            settled = [entry.event_id, entry.integration_id, seq, entry.status, entry.reason]
            steps.append((False, [*settled, text, entry.attempts, entry.at]))
        for is_observation, rows in _runs(steps):
            conn.executemany(_OBSERVE if is_observation else _SETTLE, rows)
        conn.executemany(_RAW_HIT, _raw_rows(raws))
        conn.execute("UPDATE meta SET value = ? WHERE key = 'seq'", (seq,))


def _raw_rows(raws: dict[str, RawHit]) -> Iterator[tuple[str, str]]:
    for event_id, raw in raws.items():
        text = raw.text()
        if text is not None:  # one that cannot be rendered is left out, as its records say
            yield event_id, text


def _runs(steps: list[tuple[bool, list[Any]]]) -> Iterator[tuple[bool, list[list[Any]]]]:
    """The steps cut into runs of observations and of outcomes, in order."""
    for is_observation, run in itertools.groupby(steps, key=operator.itemgetter(0)):
        yield is_observation, [row for _, row in run]


def _sweep(conn: sqlite3.Connection, cutoff: float, max_records: int) -> None:
    with immediate(conn):
        # Records are written in time order, so the old ones come first in `seq` order: walk
        # from the oldest to the first recent one (the sweep reads only what it deletes).
        row = conn.execute(
            "SELECT seq FROM records WHERE updated_at >= ? ORDER BY seq LIMIT 1", (cutoff,)
        ).fetchone()
        if row is None:
            conn.execute("DELETE FROM records")
        else:
            conn.execute("DELETE FROM records WHERE seq < ?", (row[0],))
        row = conn.execute(
            "SELECT seq FROM records ORDER BY seq DESC LIMIT 1 OFFSET ?", (max_records,)
        ).fetchone()
        if row is not None:
            conn.execute("DELETE FROM records WHERE seq <= ?", (row[0],))
        # A raw hit goes with the last of its hit's records (a lookup each: records' key starts
        # with event_id).
        conn.execute(
            "DELETE FROM raw_hits WHERE NOT EXISTS"
            " (SELECT 1 FROM records WHERE records.event_id = raw_hits.event_id)"
        )


def _select(
    conn: sqlite3.Connection, filters: Filters, limit: int, after: int | None
) -> list[tuple[Any, ...]]:
    where: list[str] = []
    args: list[Any] = []
    if filters.source_id:
        where.append("source_id = ?")
        args.append(filters.source_id)
    if filters.integration_id:
        where.append("integration_id = ?")
        args.append(filters.integration_id)
    if filters.event:
        where.append("(hit_event = ? OR tiktok_event = ?)")
        args += [filters.event, filters.event]
    if filters.event_id:
        where.append("event_id = ?")
        args.append(filters.event_id)
    if after is not None:
        where.append("seq > ?")
        args.append(after)
    order = "ASC" if after is not None else "DESC"
    sql = f"SELECT {_COLUMNS} FROM {_WITH_RAW}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += f" ORDER BY seq {order} LIMIT ?"
    return conn.execute(sql, [*args, limit]).fetchall()


def _raw_hits(
    conn: sqlite3.Connection, integration_id: str, since: float, until: float, limit: int
) -> list[tuple[Any, ...]]:
    return conn.execute(
        f"SELECT event_id, {_RAW}, tiktok_event, status, received_at FROM {_WITH_RAW}"
        f" WHERE integration_id = ? AND {_RAW} IS NOT NULL AND received_at >= ?"
        " AND received_at < ? ORDER BY seq LIMIT ?",
        (integration_id, since, until, limit),
    ).fetchall()


def _statuses(
    conn: sqlite3.Connection, integration_id: str, event_ids: list[str]
) -> list[tuple[Any, ...]]:
    marks = ", ".join("?" * len(event_ids))
    return conn.execute(
        "SELECT event_id, status, tiktok_event FROM records"
        f" WHERE integration_id = ? AND event_id IN ({marks})",
        (integration_id, *event_ids),
    ).fetchall()


def _last_seq(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT value FROM meta WHERE key = 'seq'").fetchone()
    return int(row[0]) if row else 0


def _match_quality(conn: sqlite3.Connection, integration_id: str, since: float) -> MatchQuality:
    bits = [1 << i for i in range(len(SIGNALS))] + [USER_ID_BIT]
    sums = ", ".join(f"sum((signals & {bit}) != 0)" for bit in bits)
    row = conn.execute(
        f"SELECT count(*), {sums} FROM records"
        " WHERE integration_id = ? AND payload IS NOT NULL AND received_at >= ?",
        (integration_id, since),
    ).fetchone()
    return _quality_of(row)


# Which statuses make which outcome of a timeline. Only records with a payload are events stored
# to send (test sends and identify hits have none); `not_sent` ones were kept back by consent.
_OUTCOME_SQL = {
    OUTCOME_DELIVERED: f"status = '{DELIVERED}' AND payload IS NOT NULL",
    OUTCOME_FAILED: f"status IN ('{RETRYING}', '{REJECTED}', '{PAUSED}') AND payload IS NOT NULL",
    OUTCOME_DEAD_LETTERED: f"status = '{DEAD_LETTERED}' AND payload IS NOT NULL",
    OUTCOME_DENIED: f"status = '{NOT_SENT}' AND reason = 'consent'",
}


def _timeline(
    conn: sqlite3.Connection, integration_id: str, since: float, bucket_s: int, count: int
) -> list[TimelineBucket]:
    until = since + bucket_s * count
    sums = ", ".join(f"sum({_OUTCOME_SQL[name]})" for name in OUTCOMES)
    outcome_rows = conn.execute(
        f"SELECT CAST((updated_at - ?) / ? AS INTEGER) AS bucket, {sums} FROM records"
        " WHERE integration_id = ? AND updated_at >= ? AND updated_at < ? GROUP BY bucket",
        (since, bucket_s, integration_id, since, until),
    ).fetchall()
    bits = [1 << i for i in range(len(SIGNALS))] + [USER_ID_BIT]
    signal_sums = ", ".join(f"sum((signals & {bit}) != 0)" for bit in bits)
    quality_rows = conn.execute(
        f"SELECT CAST((received_at - ?) / ? AS INTEGER) AS bucket, count(*), {signal_sums}"
        " FROM records WHERE integration_id = ? AND payload IS NOT NULL"
        " AND received_at >= ? AND received_at < ? GROUP BY bucket",
        (since, bucket_s, integration_id, since, until),
    ).fetchall()
    outcomes = {int(r[0]): [int(v or 0) for v in r[1:]] for r in outcome_rows}
    quality = {int(r[0]): _quality_of(r[1:]) for r in quality_rows}
    return [
        TimelineBucket(
            outcomes=dict(zip(OUTCOMES, outcomes.get(i, [0] * len(OUTCOMES)), strict=True)),
            quality=quality.get(i, MatchQuality(events=0, counts={})),
        )
        for i in range(count)
    ]


def _quality_of(row: Sequence[Any]) -> MatchQuality:
    total, *rest = (int(value or 0) for value in row)
    *per_signal, with_user_id = rest
    counts = dict(zip(SIGNALS, per_signal, strict=True))
    counts[EXTERNAL_ID_USER] = with_user_id
    counts[EXTERNAL_ID_ANONYMOUS] = counts["external_id"] - with_user_id
    return MatchQuality(events=total, counts=counts)


def _iso(timestamp: float | None) -> str | None:
    # admin.schema.iso_utc would do, but the ledger must not import the admin's module.
    if timestamp is None:
        return None
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(timestamp))
    return f"{stamp}.{int(timestamp * 1000) % 1000:03d}Z"


def _record_json(row: Sequence[Any]) -> dict[str, Any]:
    (
        seq,
        event_id,
        integration_id,
        source_id,
        hit_event,
        tiktok_event,
        hit,
        decision,
        decision_reason,
        payload,
        status,
        reason,
        answer,
        attempts,
        received_at,
        updated_at,
        raw,
    ) = row
    return {
        "seq": seq,
        "event_id": event_id,
        "integration_id": integration_id or None,
        "source_id": source_id,
        "event": hit_event,
        "tiktok_event": tiktok_event,
        "received_at": _iso(received_at),
        "hit": json.loads(hit) if hit else None,
        "raw": json.loads(raw) if raw else None,
        "consent": (
            {"decision": decision, "reason": decision_reason} if decision is not None else None
        ),
        "payload": json.loads(payload) if payload else None,
        "delivery": {
            "status": status,
            "attempts": attempts,
            "reason": reason,
            "answer": json.loads(answer) if answer else None,
            "updated_at": _iso(updated_at),
        },
    }
