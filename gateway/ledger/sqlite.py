"""The embedded debugger store (SQLite): claims, batches and failures in one table.

Its own file (`ledger.db`, WAL) beside the log, so its writes never take the log's lock. Every
row gets a new `seq` inside SQLite's write lock, so `seq` grows across `--workers` processes and
a reader tails rows with `seq > last`. Retention is bounded by age and by count of rows.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import sqlite3
import time
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import msgspec
from prometheus_client.registry import Collector

from gateway.core.metrics import CountedElsewhere
from gateway.core.sqlite import ThreadConnection, immediate
from gateway.ledger.base import (
    BATCH,
    CLAIM,
    DEAD_LETTERED,
    DELIVERED,
    EXTERNAL_ID_ANONYMOUS,
    EXTERNAL_ID_USER,
    FAILURE,
    OUTCOMES,
    PAUSED,
    REJECTED,
    RETRYING,
    SIGNALS,
    TEST,
    Change,
    Claim,
    Failure,
    Ledger,
    MatchQuality,
    SentBatch,
    TestSend,
    TikTokReply,
    TimelineBucket,
)

log = logging.getLogger(__name__)

# Past this many bytes of buffered rows the oldest are dropped (and counted). A batch holds its
# payloads until the writer renders its body; the bound is for floods during an outage.
MAX_BUFFERED_BYTES = 16 * 2**20
# Rows one transaction writes at most, so a backlog is written in steps (each a commit).
WRITE_BATCH = 500
# Memory a buffered row holds besides its payloads or ids (the object, strings, the answer).
_ROW_BYTES = 300
MAX_PAGE = 1000
# How long the writer gathers rows before they go: a burst shares one commit, and the live
# view is at most this late.
LINGER_S = 0.25
# The writer's thread yields the CPU to the event loop (see the log's group commit): rendering
# and compressing bodies is work nobody waits for.
LEDGER_WRITER_NICENESS = 5
# zlib's fastest level: JSON bodies shrink about tenfold at it, and it costs a fraction of the
# default level's CPU in the delivering process.
_ZLIB_LEVEL = 1

# ------------------------------------------------------------------------------------ SQLite

_IN_CHUNK = 500  # event ids per `IN (...)`: well under SQLite's bound-parameter limit

# One column per counted signal: a batch's events that carried it at their first send.
_QUALITY_NAMES = (*SIGNALS, EXTERNAL_ID_USER)
_QUALITY_COLUMNS = [f"q_{name}" for name in _QUALITY_NAMES]

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', 2);
-- Per-event rows of schema 1 (records, raw_hits): the hit log keeps the hits now.
DROP TABLE IF EXISTS records;
DROP TABLE IF EXISTS raw_hits;
UPDATE meta SET value = 2 WHERE key = 'schema_version';
CREATE TABLE IF NOT EXISTS changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,              -- claim, batch, failure, test
    integration_id TEXT NOT NULL,    -- '' for hits of a source without integrations
    source_id TEXT,
    at REAL NOT NULL,
    received_from REAL,              -- the range of its events' receive times
    received_until REAL,
    status TEXT,
    reason TEXT,
    answer TEXT,                     -- the destination's answer, JSON
    attempts INTEGER NOT NULL DEFAULT 0,
    events INTEGER NOT NULL DEFAULT 0,
    denied INTEGER NOT NULL DEFAULT 0,
    event_id TEXT,                   -- a failure's or a test send's event
    ids BLOB,                        -- a claim's event ids (zlib, JSON)
    body BLOB,                       -- a batch's request body (zlib)
    hit TEXT,                        -- a test send's summary
    q_events INTEGER NOT NULL DEFAULT 0,
    {", ".join(f"{c} INTEGER NOT NULL DEFAULT 0" for c in _QUALITY_COLUMNS)}
);
CREATE INDEX IF NOT EXISTS changes_by_integration
    ON changes (integration_id, kind, received_until);
CREATE INDEX IF NOT EXISTS changes_by_event
    ON changes (integration_id, event_id) WHERE event_id IS NOT NULL;
"""

Row = Claim | SentBatch | Failure | TestSend


def _row_bytes(row: Row) -> int:
    """About the memory a buffered row holds (for `MAX_BUFFERED_BYTES`)."""
    if type(row) is SentBatch:
        return _ROW_BYTES + sum(len(e.payload) for e in row.events)
    if type(row) is Claim:
        return _ROW_BYTES + 40 * len(row.event_ids)
    return _ROW_BYTES


class SQLiteLedger(Ledger):
    """The embedded store. `retention_s` and `max_records` (rows) bound it; `linger_s` is how
    long the writer waits for more rows before they go (so a burst shares one commit).

    `dropped` counts rows lost to a full buffer; `written` those that reached the file;
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
        self._buffer: collections.deque[Row] = collections.deque()
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

    def note(self, rows: Sequence[Row]) -> None:
        if not rows:
            return
        self._buffer.extend(rows)
        self.buffered_bytes += sum(map(_row_bytes, rows))
        if self.buffered_bytes > self.max_buffered_bytes:
            self._drop_oldest()
        self._wake.set()

    def _drop_oldest(self) -> None:
        if self.dropped == 0:
            log.warning("ledger buffer full: dropping the oldest rows (debugger only)")
        buffer = self._buffer
        while self.buffered_bytes > self.max_buffered_bytes and buffer:
            self.buffered_bytes -= _row_bytes(buffer.popleft())
            self.dropped += 1

    def _take(self, limit: int) -> list[Row]:
        buffer = self._buffer
        batch = [buffer.popleft() for _ in range(min(limit, len(buffer)))]
        self.buffered_bytes -= sum(map(_row_bytes, batch))
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
                await self._writer.run(_write, batch)
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
                log.warning("ledger write failed; rows dropped", exc_info=True)

    async def changes(
        self, after: int, limit: int, integration_id: str | None = None
    ) -> list[Change]:
        where: str = "seq > ?"
        args: list[Any] = [after]
        if integration_id is not None:
            where += " AND integration_id = ?"
            args.append(integration_id)
        rows = await self._reader.run(
            _fetch, f"{_SELECT} WHERE {where} ORDER BY seq LIMIT ?", [*args, min(limit, MAX_PAGE)]
        )
        return [_change(row) for row in rows]

    async def last_seq(self) -> int:
        rows = await self._reader.run(_fetch, "SELECT max(seq) FROM changes", ())
        return int(rows[0][0] or 0)

    async def batches(
        self, integration_id: str, received_from: float, received_until: float
    ) -> list[Change]:
        rows = await self._overlapping(BATCH, integration_id, received_from, received_until)
        return [_change(row) for row in reversed(rows)]

    async def failures(self, integration_id: str, event_ids: Sequence[str]) -> dict[str, Change]:
        found: dict[str, Change] = {}
        ids = list(dict.fromkeys(event_ids))
        for start in range(0, len(ids), _IN_CHUNK):
            chunk = ids[start : start + _IN_CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = await self._reader.run(
                _fetch,
                f"{_SELECT} WHERE integration_id = ? AND event_id IN ({marks})"
                f" AND kind = '{FAILURE}' ORDER BY seq",
                (integration_id, *chunk),
            )
            found.update((change.event_ids[0], change) for change in map(_change, rows))
        return found

    async def claimed(
        self, integration_id: str, received_from: float, received_until: float
    ) -> set[str]:
        rows = await self._overlapping(CLAIM, integration_id, received_from, received_until)
        return {event_id for row in rows for event_id in _change(row).event_ids}

    async def _overlapping(
        self, kind: str, integration_id: str, received_from: float, received_until: float
    ) -> list[Any]:
        """The integration's rows of this kind whose events were received in the range, oldest
        first."""
        return await self._reader.run(
            _fetch,
            f"{_SELECT} WHERE integration_id = ? AND kind = ? AND received_until >= ?"
            " AND received_from <= ? ORDER BY seq",
            (integration_id, kind, received_from, received_until),
        )

    async def tests(self, event_id: str | None, limit: int) -> list[Change]:
        where = f"kind = '{TEST}'"
        args: list[Any] = []
        if event_id is not None:
            where += " AND event_id = ?"
            args.append(event_id)
        rows = await self._reader.run(
            _fetch, f"{_SELECT} WHERE {where} ORDER BY seq DESC LIMIT ?", [*args, limit]
        )
        return [_change(row) for row in rows]

    async def paused_batches(self, integration_id: str) -> int:
        rows = await self._reader.run(
            _fetch,
            f"SELECT count(*) FROM changes WHERE integration_id = ? AND kind = '{BATCH}'"
            f" AND status = '{PAUSED}'",
            (integration_id,),
        )
        return int(rows[0][0])

    async def match_quality(self, integration_id: str, since: float) -> MatchQuality:
        return await self._reader.run(_match_quality, integration_id, since)

    async def timeline(
        self, integration_id: str, since: float, bucket_s: int, count: int
    ) -> list[TimelineBucket]:
        return await self._reader.run(_timeline, integration_id, since, bucket_s, count)

    def metrics(self) -> Collector:
        """Prometheus counters read at scrape time: `gateway_ledger_records_written_total` and
        `gateway_ledger_records_dropped_total` (rows lost to a full buffer: the writer fell
        behind). The names are kept from the per-event ledger so dashboards keep working."""
        return CountedElsewhere(
            [
                (
                    "gateway_ledger_records_written",
                    "Event debugger rows (claims, batches, failures) written to ledger.db",
                    lambda: self.written,
                ),
                (
                    "gateway_ledger_records_dropped",
                    "Event debugger rows dropped because the ledger's writer fell behind",
                    lambda: self.dropped,
                ),
            ]
        )


# --- on the connection's thread ------------------------------------------------------------

_COLUMNS = (
    "seq, kind, integration_id, source_id, at, status, reason, answer, attempts, event_id,"
    " ids, body, hit, received_from, received_until"
)
_SELECT = f"SELECT {_COLUMNS} FROM changes"
_INSERT = f"""
INSERT INTO changes (kind, integration_id, source_id, at, received_from, received_until, status,
    reason, answer, attempts, events, denied, event_id, ids, body, hit, q_events,
    {", ".join(_QUALITY_COLUMNS)})
VALUES ({", ".join("?" * (17 + len(_QUALITY_COLUMNS)))})
"""


def _create_schema(conn: sqlite3.Connection) -> None:
    conn.executescript(_SCHEMA)


def _fetch(conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> list[Any]:
    return conn.execute(sql, params).fetchall()


# The one part of a destination's event the store reads: which of `SIGNALS` its `user` has.
# A struct of exactly those fields: the rest of the event is skipped, not decoded.
_User = msgspec.defstruct("_User", [(name, Any, None) for name in SIGNALS])


class _Payload(msgspec.Struct):
    user: _User | None = None  # type: ignore[valid-type]


_payload_decoder = msgspec.json.Decoder(_Payload)
_json = msgspec.json.Encoder()


def _user_of(payload: bytes) -> Any:
    """The payload's `user` (None: it has none, or the payload is not an event)."""
    try:
        return _payload_decoder.decode(payload).user
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def _quality(events: Sequence[tuple[bytes, bool]]) -> list[int]:
    """`q_events` and the `_QUALITY_COLUMNS` of these (payload, user_id_known) events.

    Counted column by column over the decoded `user` tuples, in C: a signal is carried where
    its value is neither absent nor empty.
    """
    users = [(_user_of(payload), user_id_known) for payload, user_id_known in events]
    rows = [msgspec.structs.astuple(user) for user, _ in users if user is not None]
    carried = [sum(map(bool, column)) for column in zip(*rows, strict=True)]
    from_user_id = sum(
        1 for user, known in users if known and user is not None and user.external_id
    )
    return [len(events), *(carried or [0] * len(SIGNALS)), from_user_id]


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


def _packed(data: bytes) -> bytes:
    return zlib.compress(data, _ZLIB_LEVEL)


def _row(item: Row) -> list[Any] | None:
    """The INSERT's values for one buffered row (None: a body that cannot be rendered)."""
    zero = [0] * (1 + len(_QUALITY_COLUMNS))
    if type(item) is Claim:
        ids = _packed(_json.encode(list(item.event_ids)))
        return [
            CLAIM, item.integration_id, item.source_id, item.at, item.received_from,
            item.received_until, None, None, None, 0, len(item.event_ids), item.denied, None,
            ids, None, None, *zero,
        ]  # fmt: skip
    if type(item) is SentBatch:
        try:
            body = _packed(item.render())
        except Exception:
            log.warning("a request body could not be rendered; its batch is not shown")
            return None
        received = [e.enqueued_at for e in item.events]
        first = [(e.payload, _user_id_known(e)) for e in item.events if _first_send(e)]
        return [
            BATCH, item.integration_id, None, item.at, min(received), max(received),
            item.status, item.reason, _answer_text(item.answer),
            max(e.attempts for e in item.events), len(item.events), 0, None, None, body, None,
            *_quality(first),
        ]  # fmt: skip
    if type(item) is Failure:
        quality = _quality([(item.payload, False)]) if item.payload is not None else zero
        return [
            FAILURE, item.integration_id, None, item.at, item.received_at, item.received_at,
            item.status, item.reason, _answer_text(item.answer), item.attempts, 1, 0,
            item.event_id, None, None, None, *quality,
        ]  # fmt: skip
    assert isinstance(item, TestSend)
    return [
        TEST, item.integration_id, item.source_id, item.at, item.at, item.at, item.status,
        item.reason, _answer_text(item.answer), 1, 1, 0, item.event_id, None, None,
        _json.encode(item.hit).decode(), *zero,
    ]  # fmt: skip


def _user_id_known(event: object) -> bool:
    return bool(getattr(event, "user_id_known", False))


def _first_send(event: object) -> bool:
    """Whether match quality counts the event in this request: its first send, as the log's
    consumers say (an event of another queue: its first attempt)."""
    first = getattr(event, "first_send", None)
    return bool(first) if first is not None else getattr(event, "attempts", 1) <= 1


def _write(conn: sqlite3.Connection, batch: list[Row]) -> None:
    """Render (bodies, ids, signals) and write a batch of rows in one transaction."""
    rows = [row for row in map(_row, batch) if row is not None]
    with immediate(conn):
        conn.executemany(_INSERT, rows)


def _sweep(conn: sqlite3.Connection, cutoff: float, max_records: int) -> None:
    with immediate(conn):
        # Rows are written in time order, so the old ones come first in `seq` order.
        row = conn.execute(
            "SELECT seq FROM changes WHERE at >= ? ORDER BY seq LIMIT 1", (cutoff,)
        ).fetchone()
        if row is None:
            conn.execute("DELETE FROM changes")
        else:
            conn.execute("DELETE FROM changes WHERE seq < ?", (row[0],))
        row = conn.execute(
            "SELECT seq FROM changes ORDER BY seq DESC LIMIT 1 OFFSET ?", (max_records,)
        ).fetchone()
        if row is not None:
            conn.execute("DELETE FROM changes WHERE seq <= ?", (row[0],))


def _change(row: Sequence[Any]) -> Change:
    seq, kind, integration_id, source_id, at, status, reason, answer, attempts = row[:9]
    event_id, ids, body, hit, received_from, received_until = row[9:]
    if kind == CLAIM:
        event_ids = list(json.loads(zlib.decompress(ids)))
    elif event_id is not None:
        event_ids = [event_id]
    else:
        event_ids = []
    return Change(
        seq=seq,
        kind=kind,
        integration_id=integration_id,
        source_id=source_id,
        at=at,
        status=status,
        reason=reason,
        answer=json.loads(answer) if answer else None,
        attempts=attempts,
        event_ids=event_ids,
        body=zlib.decompress(body) if body is not None else None,
        hit=json.loads(hit) if hit else None,
        received=None
        if None in (received_from, received_until)
        else (received_from, received_until),
    )


_QUALITY_SUMS = ", ".join(f"sum({c})" for c in ["q_events", *_QUALITY_COLUMNS])


def _match_quality(conn: sqlite3.Connection, integration_id: str, since: float) -> MatchQuality:
    row = conn.execute(
        f"SELECT {_QUALITY_SUMS} FROM changes WHERE integration_id = ?"
        f" AND kind IN ('{BATCH}', '{FAILURE}') AND at >= ?",
        (integration_id, since),
    ).fetchone()
    return _quality_of(row)


# What each outcome of a timeline sums, by when it was reached: the events of accepted requests,
# the failures (one per failed attempt), the dead letters, and what claims found denied.
_OUTCOME_SQL = {
    "delivered": f"CASE WHEN kind = '{BATCH}' AND status = '{DELIVERED}' THEN events END",
    "failed": f"kind = '{FAILURE}' AND status IN ('{RETRYING}', '{REJECTED}', '{PAUSED}')",
    "dead_lettered": f"kind = '{FAILURE}' AND status = '{DEAD_LETTERED}'",
    "denied": f"CASE WHEN kind = '{CLAIM}' THEN denied END",
}


def _timeline(
    conn: sqlite3.Connection, integration_id: str, since: float, bucket_s: int, count: int
) -> list[TimelineBucket]:
    until = since + bucket_s * count
    sums = ", ".join(f"sum({_OUTCOME_SQL[name]})" for name in OUTCOMES)
    rows = conn.execute(
        f"SELECT CAST((at - ?) / ? AS INTEGER) AS bucket, {sums}, {_QUALITY_SUMS} FROM changes"
        " WHERE integration_id = ? AND at >= ? AND at < ? GROUP BY bucket",
        (since, bucket_s, integration_id, since, until),
    ).fetchall()
    by_bucket = {int(r[0]): r[1:] for r in rows}
    buckets = []
    for i in range(count):
        values = by_bucket.get(i)
        if values is None:
            buckets.append(
                TimelineBucket(dict.fromkeys(OUTCOMES, 0), MatchQuality(events=0, counts={}))
            )
            continue
        outcomes = [int(v or 0) for v in values[: len(OUTCOMES)]]
        buckets.append(
            TimelineBucket(
                dict(zip(OUTCOMES, outcomes, strict=True)),
                _quality_of(values[len(OUTCOMES) :]),
            )
        )
    return buckets


def _quality_of(row: Sequence[Any]) -> MatchQuality:
    total, *rest = (int(value or 0) for value in row)
    *per_signal, with_user_id = rest
    counts = dict(zip(SIGNALS, per_signal, strict=True))
    counts[EXTERNAL_ID_USER] = with_user_id
    counts[EXTERNAL_ID_ANONYMOUS] = counts["external_id"] - with_user_id
    return MatchQuality(events=total, counts=counts)
