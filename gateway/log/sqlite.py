"""The embedded hit log: an append-only SQLite table in WAL mode, with cursors beside it.

`hits` is keyed by an AUTOINCREMENT row number (`seq`): never reused, so a cursor or an entry id
always means the same record. `log_sources` counts each source's records ever appended
(`appended`), retained (`records`) and their bytes, moved in the same transaction as the rows
they count, so the bound check, `depth` and `lag` never scan the log. A cursor keeps the `seq`
it passed and how many of its source's records that was (`passed`): its lag is
`appended - passed`.

One delivering process per data dir reads and commits (the queue's rule), so a handle keeps the
position it handed out in memory and only `commit` writes the cursor; any process may append.

Retries are leased by moving their `retry_at` to the lease's end in the transaction that selects
them (`claim_retries`), so a lease needs no column of its own. `log_counts` holds each consumer's
counters.

Every call runs on a connection thread (`gateway.core.sqlite.ThreadConnection`): one writer, one
reader, so a debugger page never waits behind a commit. Appends use group commit. A third
connection checkpoints the WAL (`gateway.core.sqlite.Checkpointer`), so no commit does.
"""

from __future__ import annotations

import collections
import functools
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.core.errors import StoreError
from gateway.core.sqlite import (
    CHECKPOINT_EVERY_S,
    RESTART_WAL_PAGES,
    Checkpointer,
    ThreadConnection,
    immediate,
    snapshot,
    split_script,
)
from gateway.log.base import (
    COMMIT_METRIC_NAMES,
    RECORD_OVERHEAD_BYTES,
    RETRY_DUE_COUNT_CAP,
    TIME_SLACK_S,
    Counts,
    DeadLetterItem,
    FailedItem,
    HitLog,
    Lag,
    LogEntry,
    LogRecord,
    Retry,
    RetryInfo,
    Start,
    record_bytes,
)
from gateway.log.group import GroupCommit, GroupCommitting

SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS log_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO log_meta (key, value) VALUES ('schema_version', 1);
CREATE TABLE IF NOT EXISTS hits (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    source_id TEXT NOT NULL,
    received_at REAL NOT NULL,
    event_id TEXT,
    data BLOB NOT NULL
);
-- Reads walk a source's records in seq order (the index holds the rowid after the source).
-- Time lookups use it too (see `_first_seq_at`): an index on received_at cost a quarter of the
-- append rate in bench/micro.py.
CREATE INDEX IF NOT EXISTS hits_by_source ON hits (source_id);
-- The debugger's lookups by event id read this narrow table, appended in seq order with the hits
-- (schema 2). An index on (source_id, event_id), schema 1's, took random keys (the tag's UUIDs):
-- each group commit wrote back one index page per record, ~13 µs per hit in the writer thread.
CREATE TABLE IF NOT EXISTS hit_ids (seq INTEGER PRIMARY KEY, event_id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS log_sources (
    source_id TEXT PRIMARY KEY,
    appended INTEGER NOT NULL DEFAULT 0,
    records INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS log_cursors (
    consumer_id TEXT PRIMARY KEY,
    source_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    passed INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS log_retries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    consumer_id TEXT NOT NULL,
    data BLOB NOT NULL,
    event_id TEXT,
    entry_id TEXT,
    attempts INTEGER NOT NULL,
    retry_at REAL NOT NULL,
    error TEXT
);
CREATE INDEX IF NOT EXISTS log_retries_due ON log_retries (consumer_id, retry_at, id);
CREATE TABLE IF NOT EXISTS log_dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    consumer_id TEXT NOT NULL,
    data BLOB NOT NULL,
    event_id TEXT,
    entry_id TEXT,
    attempts INTEGER NOT NULL,
    reason TEXT NOT NULL,
    answer TEXT,
    dead_lettered_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS log_dead_letters_by_consumer ON log_dead_letters (consumer_id, id);
-- A table of its own rather than columns on log_cursors: a file of schema 1 gains it here.
CREATE TABLE IF NOT EXISTS log_counts (
    consumer_id TEXT PRIMARY KEY,
    delivered INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    dead_lettered INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    last_success_at REAL
);
"""

_TOTALS = "SELECT coalesce(sum(records), 0), coalesce(sum(bytes), 0) FROM log_sources"
_TOTALS_AND_LAST_SEQ = """
SELECT coalesce(sum(records), 0), coalesce(sum(bytes), 0),
    coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'hits'), 0)
FROM log_sources
"""
_INSERT_HITS = "INSERT INTO hits (source_id, received_at, event_id, data) VALUES "
_COUNT_APPENDED = """
INSERT INTO log_sources (source_id, appended, records, bytes) VALUES (?, ?, ?, ?)
ON CONFLICT (source_id) DO UPDATE SET appended = appended + excluded.appended,
    records = records + excluded.records, bytes = bytes + excluded.bytes
"""
_ADD_COUNTS = """
INSERT INTO log_counts (consumer_id, delivered, failed, dead_lettered, last_error, last_success_at)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (consumer_id) DO UPDATE SET delivered = delivered + excluded.delivered,
    failed = failed + excluded.failed, dead_lettered = dead_lettered + excluded.dead_lettered,
    last_error = coalesce(excluded.last_error, last_error),
    last_success_at = CASE WHEN last_success_at IS NULL
        OR excluded.last_success_at > last_success_at
        THEN coalesce(excluded.last_success_at, last_success_at) ELSE last_success_at END
"""
_HIT_COLUMNS = "seq, source_id, received_at, event_id, data"
_INSERT_IDS = "INSERT INTO hit_ids (seq, event_id) VALUES "
# Rows per INSERT statement, the largest first: a group of 30 goes in as 16 + 8 + 4 + 2. A
# statement of many rows is one step of SQLite; `executemany` steps once per row, handing the GIL
# to the event loop and waiting to get it back each time (on one core, ~10-25% of the writer's
# CPU per record). A few fixed sizes keep the statements in sqlite3's cache.
_ROWS_PER_INSERT = (64, 32, 16, 8, 4, 2, 1)
# Records of the same data dir commit in about the order they were received (one clock; an
# append waits ms for its commit): a ledger row's records lie within this of its receive range.
_FIND_SLACK_S = 10.0
_FAILED_COLUMNS = "id, consumer_id, data, event_id, entry_id, attempts"
_RANGE_PAGE = 1000
# Records per delete transaction; appends get the writer in between. 5000 held it ~40 ms (the
# p99 of the appends behind it); 500 are a few ms.
_SWEEP_CHUNK = 500
_IN_CHUNK = 500  # ids per `IN (...)`: well under SQLite's bound-parameter limit

HitRow = tuple[str, float, str | None, bytes]
# One append call as the writer thread sees it: its rows, and its rows and bytes per source.
Group = tuple[list[HitRow], dict[str, tuple[int, int]]]


@dataclass(slots=True)
class _Batch:
    """One append call's rows, and the seq of its first once a group commit stored them."""

    group: Group
    first_seq: int = 0


class SQLiteHitLog(GroupCommitting, HitLog):
    """`path` is the SQLite file; `max_records` and `max_bytes` (None: no byte bound) are the
    bounds behind `QueueFull`; `retention_s` is the window `sweep` keeps whatever the cursors.
    `checkpoint_every_s` and `wal_restart_pages` pace the WAL's checkpoints (`Checkpointer`)."""

    commit_metric_names = COMMIT_METRIC_NAMES

    def __init__(
        self,
        path: Path,
        *,
        max_records: int,
        max_bytes: int | None = None,
        retention_s: float = 72 * 3600.0,
        busy_timeout_s: float = 10.0,
        clock: Callable[[], float] = time.time,
        checkpoint_every_s: float = CHECKPOINT_EVERY_S,
        wal_restart_pages: int = RESTART_WAL_PAGES,
    ) -> None:
        self.path = path
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.retention_s = retention_s
        self._clock = clock
        # The writer never checkpoints inside a commit: `_checkpoints` does, on its own thread.
        self._writer = ThreadConnection(path, "hitlog-writer", busy_timeout_s, autocheckpoint=False)
        self._reader = ThreadConnection(path, "hitlog-reader", busy_timeout_s)
        self._checkpoints = Checkpointer(
            self._writer,
            path,
            "hitlog-checkpoint",
            every_s=checkpoint_every_s,
            restart_pages=wal_restart_pages,
        )
        self._group: GroupCommit[_Batch] = GroupCommit(self._insert)
        # Per consumer: (its source, the last seq this handle handed out).
        self._handed: dict[str, tuple[str, int]] = {}
        self._closed = False

    async def open(self) -> None:
        await self._writer.open()
        await self._writer.run(_create_schema)
        await self._reader.open(query_only=True)
        await self._checkpoints.open()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._group.finish()
        await self._checkpoints.close()
        await self._reader.close()
        await self._writer.close()

    # Appending

    async def append(self, records: Sequence[LogRecord]) -> list[str]:
        if not records:
            return []
        if self._closed:
            raise StoreError("the hit log is closed")
        sizes: dict[str, tuple[int, int]] = {}
        for r in records:  # counted here, on the loop: the writer thread is the bottleneck
            count, size = sizes.get(r.source_id, (0, 0))
            sizes[r.source_id] = (count + 1, size + record_bytes(r))
        rows = [(r.source_id, r.received_at, r.event_id, r.data) for r in records]
        batch = _Batch((rows, sizes))
        await self._group.submit(batch, len(records))
        return [str(seq) for seq in range(batch.first_seq, batch.first_seq + len(records))]

    async def _insert(self, batches: list[_Batch]) -> list[bool]:
        firsts = await self._writer.run(
            _insert_groups, [b.group for b in batches], self.max_records, self.max_bytes
        )
        for batch, first in zip(batches, firsts, strict=True):
            if first is not None:
                batch.first_seq = first
        return [first is not None for first in firsts]

    # Consumers

    async def add_consumer(self, consumer_id: str, source_id: str, start: Start = "tail") -> bool:
        return await self._writer.run(_add_consumer, consumer_id, source_id, start)

    async def drop_consumer(self, consumer_id: str) -> None:
        self._handed.pop(consumer_id, None)
        await self._writer.run(_drop_consumer, consumer_id)

    async def read(self, consumer_id: str, limit: int) -> list[LogEntry]:
        if limit <= 0:
            return []
        if consumer_id not in self._handed:
            self._handed[consumer_id] = await self._reader.run(_cursor, consumer_id)
        source_id, after = self._handed[consumer_id]
        entries = await self._reader.run(
            _fetch_entries,
            f"SELECT {_HIT_COLUMNS} FROM hits WHERE source_id = ? AND seq > ? ORDER BY seq LIMIT ?",
            (source_id, after, limit),
        )
        if entries:
            self._handed[consumer_id] = (source_id, int(entries[-1].id))
        return entries

    async def commit(self, consumer_id: str, entries: Sequence[LogEntry]) -> None:
        if entries:
            await self._writer.run(_commit, consumer_id, max(int(e.id) for e in entries))

    async def take_over(self, consumer_id: str, idle_s: float) -> list[LogEntry]:
        return []  # one delivering process per data dir: nobody else holds entries

    async def lag(self, consumer_id: str) -> Lag:
        return await self._reader.run(_lag, consumer_id)

    # Failures

    async def retry_later(
        self, consumer_id: str, items: Sequence[FailedItem], retry_at: float, error: str | None
    ) -> None:
        rows = [
            (consumer_id, i.data, i.event_id, i.entry_id, i.attempts, retry_at, error)
            for i in items
        ]
        if rows:
            await self._writer.run(
                _execute_many,
                "INSERT INTO log_retries (consumer_id, data, event_id, entry_id, attempts,"
                " retry_at, error) VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    async def due_retries(self, consumer_id: str, now: float, limit: int) -> list[Retry]:
        rows = await self._reader.run(
            _fetch_all,
            f"SELECT {_FAILED_COLUMNS}, retry_at, error FROM log_retries"
            " WHERE consumer_id = ? AND retry_at <= ? ORDER BY retry_at, id LIMIT ?",
            (consumer_id, now, limit),
        )
        return [Retry(str(r[0]), *r[1:]) for r in rows]

    async def claim_retries(
        self, consumer_id: str, now: float, limit: int, lease_s: float
    ) -> list[Retry]:
        if limit <= 0:
            return []
        rows = await self._writer.run(_claim_retries, consumer_id, now, limit, now + lease_s)
        return [Retry(str(r[0]), *r[1:]) for r in rows]

    async def reschedule(
        self,
        consumer_id: str,
        ids: Sequence[str],
        retry_at: float,
        error: str | None,
        count_attempt: bool,
    ) -> None:
        chosen = _int_ids(ids)
        if chosen:
            await self._writer.run(_reschedule, consumer_id, chosen, retry_at, error, count_attempt)

    async def retried(self, consumer_id: str, ids: Sequence[str]) -> int:
        return await self._writer.run(_delete_ids, "log_retries", consumer_id, _int_ids(ids))

    async def retry_info(self, consumer_id: str, now: float) -> RetryInfo:
        return await self._reader.run(_retry_info, consumer_id, now)

    async def dead_letter(
        self,
        consumer_id: str,
        items: Sequence[FailedItem],
        reason: str,
        answer: str | None,
        now: float,
    ) -> None:
        rows = [
            (consumer_id, i.data, i.event_id, i.entry_id, i.attempts, reason, answer, now)
            for i in items
        ]
        if rows:
            await self._writer.run(
                _execute_many,
                "INSERT INTO log_dead_letters (consumer_id, data, event_id, entry_id, attempts,"
                " reason, answer, dead_lettered_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    async def list_dead_letters(
        self, consumer_id: str, limit: int = 100, offset: int = 0
    ) -> list[DeadLetterItem]:
        rows = await self._reader.run(
            _fetch_all,
            f"SELECT {_DEAD_LETTER_COLUMNS} FROM log_dead_letters WHERE consumer_id = ?"
            " ORDER BY id LIMIT ? OFFSET ?",
            (consumer_id, limit, offset),
        )
        return [_dead_letter(r) for r in rows]

    async def take_dead_letters(
        self, consumer_id: str, ids: Sequence[str] | None
    ) -> list[DeadLetterItem]:
        chosen = None if ids is None else _int_ids(ids)
        rows = await self._writer.run(_take_dead_letters, consumer_id, chosen)
        return [_dead_letter(r) for r in rows]

    async def replay_dead_letters(
        self, consumer_id: str, ids: Sequence[str] | None, now: float
    ) -> list[DeadLetterItem]:
        chosen = None if ids is None else _int_ids(ids)
        rows = await self._writer.run(_replay_dead_letters, consumer_id, chosen, now)
        return [_dead_letter(r) for r in rows]

    async def purge_dead_letters(self, consumer_id: str, ids: Sequence[str] | None) -> int:
        if ids is None:
            return await self._writer.run(_delete_all, "log_dead_letters", consumer_id)
        return await self._writer.run(_delete_ids, "log_dead_letters", consumer_id, _int_ids(ids))

    # Counters

    async def add_counts(
        self,
        consumer_id: str,
        *,
        delivered: int = 0,
        failed: int = 0,
        dead_lettered: int = 0,
        last_error: str | None = None,
        success_at: float | None = None,
    ) -> None:
        row = (consumer_id, delivered, failed, dead_lettered, last_error, success_at)
        await self._writer.run(_execute_many, _ADD_COUNTS, [row])

    async def counts(self, consumer_id: str) -> Counts:
        rows = await self._reader.run(
            _fetch_all,
            "SELECT delivered, failed, dead_lettered, last_error, last_success_at"
            " FROM log_counts WHERE consumer_id = ?",
            (consumer_id,),
        )
        return Counts(*rows[0]) if rows else Counts()

    async def consumers(self) -> dict[str, str]:
        rows = await self._reader.run(
            _fetch_all, "SELECT consumer_id, source_id FROM log_cursors", ()
        )
        return {str(consumer_id): str(source_id) for consumer_id, source_id in rows}

    # Replay and the debugger

    async def read_range(
        self,
        source_id: str,
        since: float,
        until: float,
        limit: int = 100,
        after: str | None = None,
    ) -> list[LogEntry]:
        after_seq = _int_ids([after])[0] if after and _int_ids([after]) else 0
        return await self._reader.run(_read_range, source_id, since, until, limit, after_seq)

    async def get(self, source_id: str, entry_id: str) -> LogEntry | None:
        ids = _int_ids([entry_id])
        if not ids:
            return None
        found = await self._reader.run(
            _fetch_entries,
            f"SELECT {_HIT_COLUMNS} FROM hits WHERE seq = ? AND source_id = ?",
            (ids[0], source_id),
        )
        return found[0] if found else None

    async def _find_ids(
        self, source_id: str, event_ids: list[str], received: tuple[float, float] | None
    ) -> list[LogEntry]:
        return await self._reader.run(_find_ids, source_id, event_ids, received)

    async def newest(self, source_id: str, limit: int, before: str | None = None) -> list[LogEntry]:
        below = _int_ids([before])[0] if before and _int_ids([before]) else 2**63 - 1
        return await self._reader.run(
            _fetch_entries,
            f"SELECT {_HIT_COLUMNS} FROM hits WHERE source_id = ? AND seq < ?"
            " ORDER BY seq DESC LIMIT ?",
            (source_id, below, limit),
        )

    # Retention, metrics

    async def sweep_before(self, cutoff: float) -> int:
        removed = 0
        for source_id, passed_seq in await self._writer.run(_sweep_limits):
            while True:
                n = await self._writer.run(_sweep_chunk, source_id, cutoff, passed_seq)
                removed += n
                if n < _SWEEP_CHUNK:
                    break
        return removed

    async def depth(self) -> int:
        return int((await self._reader.run(_fetch_all, _TOTALS, ()))[0][0])

    async def size_bytes(self) -> int:
        return int((await self._reader.run(_fetch_all, _TOTALS, ()))[0][1])


# --- What runs on the connection threads -------------------------------------------------------


def _create_schema(conn: sqlite3.Connection) -> None:
    with immediate(conn):
        for statement in split_script(_SCHEMA):
            conn.execute(statement)
        (version,) = conn.execute(
            "SELECT value FROM log_meta WHERE key = 'schema_version'"
        ).fetchone()
        if version < 2:
            _upgrade_to_event_id_table(conn)
    if version > SCHEMA_VERSION:
        raise StoreError(f"hit log schema {version} is newer than this gateway ({SCHEMA_VERSION})")


def _upgrade_to_event_id_table(conn: sqlite3.Connection) -> None:
    """Schema 1 -> 2: the records' event ids into `hit_ids`, and schema 1's index dropped."""
    conn.execute(
        "INSERT OR IGNORE INTO hit_ids (seq, event_id)"
        " SELECT seq, event_id FROM hits WHERE event_id IS NOT NULL"
    )
    conn.execute("DROP INDEX IF EXISTS hits_by_event")
    conn.execute("UPDATE log_meta SET value = 2 WHERE key = 'schema_version'")


def _insert_groups(
    conn: sqlite3.Connection,
    groups: list[Group],
    max_records: int,
    max_bytes: int | None,
) -> list[int | None]:
    """Store every group that fits under the bounds, in one transaction; return each stored
    group's first seq (None: it did not fit).

    AUTOINCREMENT hands out sqlite_sequence + 1, + 2, ... to the rows one transaction inserts
    while it holds the write lock, so the groups' ids follow from where the sequence stood.
    """
    with immediate(conn):
        # One statement, not two: each is a trip out of Python and back for the GIL, which a
        # busy event loop can hold for its whole switch interval.
        records, size, last_seq = conn.execute(_TOTALS_AND_LAST_SEQ).fetchone()
        next_seq = last_seq + 1
        firsts: list[int | None] = []
        rows: list[HitRow] = []
        change: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
        for group, sizes in groups:
            grows = sum(size for _, size in sizes.values())
            fits = records + len(group) <= max_records and (
                max_bytes is None or size + grows <= max_bytes
            )
            if not fits:
                firsts.append(None)
                continue
            firsts.append(next_seq)
            next_seq += len(group)
            records += len(group)
            size += grows
            for source_id, (count, source_bytes) in sizes.items():
                change[source_id][0] += count
                change[source_id][1] += source_bytes
            rows.extend(group)
        if rows:
            _insert_rows(conn, _INSERT_HITS, rows)
            first_seq = last_seq + 1
            ids = [(first_seq + i, row[2]) for i, row in enumerate(rows) if row[2] is not None]
            _insert_rows(conn, _INSERT_IDS, ids)
            conn.executemany(_COUNT_APPENDED, [(s, n, n, b) for s, (n, b) in change.items()])
    return firsts


def _insert_rows(conn: sqlite3.Connection, insert: str, rows: Sequence[tuple[Any, ...]]) -> None:
    """`insert` ("INSERT ... VALUES ") of these rows, in order, many rows per statement."""
    at = 0
    while at < len(rows):
        size = next(n for n in _ROWS_PER_INSERT if n <= len(rows) - at)
        chunk = rows[at : at + size]
        conn.execute(insert + _values(size, len(chunk[0])), [v for row in chunk for v in row])
        at += size


@functools.lru_cache(maxsize=2 * len(_ROWS_PER_INSERT))
def _values(rows: int, columns: int) -> str:
    one = "(" + ", ".join("?" * columns) + ")"
    return ", ".join([one] * rows)


def _add_consumer(conn: sqlite3.Connection, consumer_id: str, source_id: str, start: Start) -> bool:
    with immediate(conn):
        known = conn.execute("SELECT 1 FROM log_cursors WHERE consumer_id = ?", (consumer_id,))
        if known.fetchone():
            return False
        row = conn.execute("SELECT appended FROM log_sources WHERE source_id = ?", (source_id,))
        appended = (row.fetchone() or (0,))[0]
        (last_seq,) = conn.execute(
            "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'hits'), 0)"
        ).fetchone()
        first = _first_seq(conn, source_id, start)
        seq = last_seq if first is None else first - 1
        (ahead,) = conn.execute(
            "SELECT count(*) FROM hits WHERE source_id = ? AND seq > ?", (source_id, seq)
        ).fetchone()
        conn.execute(
            "INSERT INTO log_cursors (consumer_id, source_id, seq, passed) VALUES (?, ?, ?, ?)",
            (consumer_id, source_id, seq, appended - ahead),
        )
    return True


def _first_seq(conn: sqlite3.Connection, source_id: str, start: Start) -> int | None:
    """The seq of the first record a new consumer reads; None when it starts past the end."""
    if start == "tail":
        return None
    if start == "head":
        row = conn.execute(
            "SELECT seq FROM hits WHERE source_id = ? ORDER BY seq LIMIT 1", (source_id,)
        ).fetchone()
    else:
        return _first_seq_at(conn, source_id, float(start))
    return None if row is None else int(row[0])


def _first_seq_at(conn: sqlite3.Connection, source_id: str, at: float) -> int | None:
    """The first seq of the source received at or after `at`, found by bisection on seq.

    received_at grows with seq but for the moments between a hit's arrival and its commit
    (and clock differences between processes), so this is exact up to those moments; callers
    that must not miss a record look from `at - TIME_SLACK_S` and filter. No index on time
    needed: ~40 primary-key seeks for a million records.
    """
    by_seq = (
        "SELECT seq, received_at FROM hits WHERE source_id = ? AND seq >= ? ORDER BY seq LIMIT 1"
    )
    first = conn.execute(by_seq, (source_id, 0)).fetchone()
    last = conn.execute(
        "SELECT seq, received_at FROM hits WHERE source_id = ? ORDER BY seq DESC LIMIT 1",
        (source_id,),
    ).fetchone()
    if first is None or last[1] < at:
        return None
    low, high = int(first[0]), int(last[0])  # the answer is in [low, high]
    while low < high:
        seq, received_at = conn.execute(by_seq, (source_id, (low + high) // 2)).fetchone()
        if received_at < at:
            low = seq + 1
        else:
            high = seq
    return low


def _read_range(
    conn: sqlite3.Connection, source_id: str, since: float, until: float, limit: int, after: int
) -> list[LogEntry]:
    with snapshot(conn):
        start = _first_seq_at(conn, source_id, since - TIME_SLACK_S)
        if start is None:
            return []
        seq = max(start - 1, after)
        out: list[LogEntry] = []
        while len(out) < limit:
            page = _fetch_entries(
                conn,
                f"SELECT {_HIT_COLUMNS} FROM hits WHERE source_id = ? AND seq > ?"
                " ORDER BY seq LIMIT ?",
                (source_id, seq, _RANGE_PAGE),
            )
            out += [e for e in page if since <= e.received_at < until]
            if len(page) < _RANGE_PAGE or page[-1].received_at >= until + TIME_SLACK_S:
                break
            seq = int(page[-1].id)
    return out[:limit]


def _drop_consumer(conn: sqlite3.Connection, consumer_id: str) -> None:
    with immediate(conn):
        for table in ("log_cursors", "log_retries", "log_dead_letters", "log_counts"):
            conn.execute(f"DELETE FROM {table} WHERE consumer_id = ?", (consumer_id,))


def _cursor(conn: sqlite3.Connection, consumer_id: str) -> tuple[str, int]:
    row = conn.execute(
        "SELECT source_id, seq FROM log_cursors WHERE consumer_id = ?", (consumer_id,)
    ).fetchone()
    if row is None:
        raise StoreError(f"no hit log consumer {consumer_id!r}")
    return str(row[0]), int(row[1])


def _commit(conn: sqlite3.Connection, consumer_id: str, seq: int) -> None:
    with immediate(conn):
        source_id, cursor = _cursor(conn, consumer_id)
        if seq <= cursor:
            return
        # The records between the two cursors are still there: sweep keeps what a cursor has
        # not passed. Counting them is a range of the batch's size.
        (passed,) = conn.execute(
            "SELECT count(*) FROM hits WHERE source_id = ? AND seq > ? AND seq <= ?",
            (source_id, cursor, seq),
        ).fetchone()
        conn.execute(
            "UPDATE log_cursors SET seq = ?, passed = passed + ? WHERE consumer_id = ?",
            (seq, passed, consumer_id),
        )


def _lag(conn: sqlite3.Connection, consumer_id: str) -> Lag:
    with snapshot(conn):
        row = conn.execute(
            """SELECT c.source_id, c.seq, coalesce(s.appended, 0) - c.passed
            FROM log_cursors c LEFT JOIN log_sources s USING (source_id) WHERE c.consumer_id = ?""",
            (consumer_id,),
        ).fetchone()
        if row is None:
            raise StoreError(f"no hit log consumer {consumer_id!r}")
        oldest = conn.execute(
            "SELECT received_at FROM hits WHERE source_id = ? AND seq > ? ORDER BY seq LIMIT 1",
            (row[0], row[1]),
        ).fetchone()
    return Lag(entries=int(row[2]), oldest_received_at=None if oldest is None else oldest[0])


def _sweep_limits(conn: sqlite3.Connection) -> list[tuple[str, int | None]]:
    """Each source with records, and the seq every one of its consumers passed (None: none)."""
    return conn.execute(
        """SELECT s.source_id,
            (SELECT min(c.seq) FROM log_cursors c WHERE c.source_id = s.source_id)
        FROM log_sources s WHERE s.records > 0"""
    ).fetchall()


def _sweep_chunk(
    conn: sqlite3.Connection, source_id: str, cutoff: float, passed_seq: int | None
) -> int:
    """Delete from the source's oldest record on, up to the first one a cursor has not passed
    or the window still holds (as the Redis backend trims a stream's head)."""
    passed_clause = "" if passed_seq is None else " AND seq <= :passed"
    with immediate(conn):
        rows = conn.execute(
            "SELECT seq, length(data) + coalesce(length(CAST(event_id AS BLOB)), 0), received_at"
            f" FROM hits WHERE source_id = :source{passed_clause} ORDER BY seq LIMIT :chunk",
            {"source": source_id, "passed": passed_seq, "chunk": _SWEEP_CHUNK},
        ).fetchall()
        inside = next((n for n, r in enumerate(rows) if r[2] >= cutoff), None)
        rows = rows if inside is None else rows[:inside]
        if not rows:
            return 0
        for chunk in _chunks([r[0] for r in rows]):
            marks = ",".join("?" * len(chunk))
            conn.execute(f"DELETE FROM hits WHERE seq IN ({marks})", chunk)
            conn.execute(f"DELETE FROM hit_ids WHERE seq IN ({marks})", chunk)
        freed = sum(r[1] for r in rows) + len(rows) * (
            len(source_id.encode()) + RECORD_OVERHEAD_BYTES
        )
        conn.execute(
            "UPDATE log_sources SET records = records - ?, bytes = bytes - ? WHERE source_id = ?",
            (len(rows), freed, source_id),
        )
    return len(rows)


def _find_ids(
    conn: sqlite3.Connection,
    source_id: str,
    event_ids: list[str],
    received: tuple[float, float] | None,
) -> list[LogEntry]:
    """A source's records with these event ids, in log order: a scan of the narrow `hit_ids`
    (under 0.1 s a million records), only over the seqs received around `received` when given."""
    with snapshot(conn):
        low, high = 0, 2**63 - 1
        if received is not None:
            start = _first_seq_at(conn, source_id, received[0] - _FIND_SLACK_S)
            if start is None:
                return []
            end = _first_seq_at(conn, source_id, received[1] + _FIND_SLACK_S)
            low, high = start, high if end is None else end
        found: list[LogEntry] = []
        for at in range(0, len(event_ids), _IN_CHUNK):
            chunk = event_ids[at : at + _IN_CHUNK]
            found += _fetch_entries(
                conn,
                f"SELECT {_HIT_COLUMNS} FROM hits WHERE source_id = ? AND seq IN"
                " (SELECT seq FROM hit_ids WHERE seq BETWEEN ? AND ?"
                f" AND event_id IN ({','.join('?' * len(chunk))}))",
                (source_id, low, high, *chunk),
            )
    return sorted(found, key=lambda e: int(e.id))


def _fetch_all(conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> list[Any]:
    return conn.execute(sql, params).fetchall()


def _fetch_entries(conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> list[LogEntry]:
    return [
        LogEntry(str(seq), source_id, received_at, data, event_id)
        for seq, source_id, received_at, event_id, data in conn.execute(sql, params)
    ]


def _execute_many(conn: sqlite3.Connection, sql: str, rows: list[tuple[Any, ...]]) -> None:
    with immediate(conn):
        conn.executemany(sql, rows)


def _delete_ids(conn: sqlite3.Connection, table: str, consumer_id: str, ids: list[int]) -> int:
    deleted = 0
    with immediate(conn):
        for chunk in _chunks(ids):
            marks = ",".join("?" * len(chunk))
            deleted += conn.execute(
                f"DELETE FROM {table} WHERE consumer_id = ? AND id IN ({marks})",
                (consumer_id, *chunk),
            ).rowcount
    return deleted


def _delete_all(conn: sqlite3.Connection, table: str, consumer_id: str) -> int:
    with immediate(conn):
        return conn.execute(f"DELETE FROM {table} WHERE consumer_id = ?", (consumer_id,)).rowcount


_DEAD_LETTER_COLUMNS = f"{_FAILED_COLUMNS}, reason, answer, dead_lettered_at"


def _take_dead_letters(
    conn: sqlite3.Connection, consumer_id: str, ids: list[int] | None
) -> list[Any]:
    with immediate(conn):
        return _take_dead_letters_in(conn, consumer_id, ids)


def _take_dead_letters_in(
    conn: sqlite3.Connection, consumer_id: str, ids: list[int] | None
) -> list[Any]:
    """Delete and return dead letters, oldest first, inside the caller's transaction."""
    select = f"SELECT {_DEAD_LETTER_COLUMNS} FROM log_dead_letters WHERE consumer_id = ?"
    if ids is None:
        rows = conn.execute(select + " ORDER BY id", (consumer_id,)).fetchall()
    else:
        rows = []
        for chunk in _chunks(ids):
            marks = ",".join("?" * len(chunk))
            rows += conn.execute(f"{select} AND id IN ({marks})", (consumer_id, *chunk))
        rows.sort(key=lambda r: int(r[0]))
    for chunk in _chunks([int(r[0]) for r in rows]):
        marks = ",".join("?" * len(chunk))
        conn.execute(f"DELETE FROM log_dead_letters WHERE id IN ({marks})", chunk)
    return rows


def _claim_retries(
    conn: sqlite3.Connection, consumer_id: str, now: float, limit: int, lease_until: float
) -> list[Any]:
    """The due retries, earliest first, as they were; their retry_at moved to the lease's end
    in the same transaction, so a second claim cannot see them due."""
    with immediate(conn):
        rows = conn.execute(
            f"SELECT {_FAILED_COLUMNS}, retry_at, error FROM log_retries"
            " WHERE consumer_id = ? AND retry_at <= ? ORDER BY retry_at, id LIMIT ?",
            (consumer_id, now, limit),
        ).fetchall()
        for chunk in _chunks([int(r[0]) for r in rows]):
            marks = ",".join("?" * len(chunk))
            conn.execute(
                f"UPDATE log_retries SET retry_at = ? WHERE id IN ({marks})", (lease_until, *chunk)
            )
    return rows


def _reschedule(
    conn: sqlite3.Connection,
    consumer_id: str,
    ids: list[int],
    retry_at: float,
    error: str | None,
    count_attempt: bool,
) -> None:
    change = "retry_at = ?, attempts = attempts + 1, error = ?" if count_attempt else "retry_at = ?"
    values: tuple[Any, ...] = (retry_at, error) if count_attempt else (retry_at,)
    with immediate(conn):
        for chunk in _chunks(ids):
            marks = ",".join("?" * len(chunk))
            conn.execute(
                f"UPDATE log_retries SET {change} WHERE consumer_id = ? AND id IN ({marks})",
                (*values, consumer_id, *chunk),
            )


def _retry_info(conn: sqlite3.Connection, consumer_id: str, now: float) -> RetryInfo:
    # Every query walks log_retries_due (consumer_id, retry_at, id) from one end.
    with snapshot(conn):
        (due,) = conn.execute(
            "SELECT count(*) FROM (SELECT 1 FROM log_retries"
            " WHERE consumer_id = ? AND retry_at <= ? LIMIT ?)",
            (consumer_id, now, RETRY_DUE_COUNT_CAP),
        ).fetchone()
        first = conn.execute(
            "SELECT retry_at FROM log_retries WHERE consumer_id = ? ORDER BY retry_at LIMIT 1",
            (consumer_id,),
        ).fetchone()
        later = conn.execute(
            "SELECT retry_at FROM log_retries WHERE consumer_id = ? AND retry_at > ?"
            " ORDER BY retry_at LIMIT 1",
            (consumer_id, now),
        ).fetchone()
        (total,) = conn.execute(
            "SELECT count(*) FROM log_retries WHERE consumer_id = ?", (consumer_id,)
        ).fetchone()
    return RetryInfo(
        due=int(due),
        oldest_due_at=first[0] if due else None,
        next_at=None if later is None else later[0],
        total=int(total),
    )


def _replay_dead_letters(
    conn: sqlite3.Connection, consumer_id: str, ids: list[int] | None, now: float
) -> list[Any]:
    """Take the dead letters and insert them as retries due at `now`, in one transaction."""
    with immediate(conn):
        rows = _take_dead_letters_in(conn, consumer_id, ids)
        conn.executemany(
            "INSERT INTO log_retries (consumer_id, data, event_id, entry_id, attempts,"
            " retry_at, error) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(r[1], r[2], r[3], r[4], r[5], now, r[6]) for r in rows],
        )
    return rows


def _dead_letter(row: Sequence[Any]) -> DeadLetterItem:
    return DeadLetterItem(str(row[0]), *row[1:])


def _int_ids(ids: Sequence[str]) -> list[int]:
    """Ids as this backend's integers; one that is not a number cannot exist, so it is dropped."""
    return [int(i) for i in ids if str(i).isdigit()]


def _chunks(ids: list[int]) -> Iterator[list[int]]:
    for start in range(0, len(ids), _IN_CHUNK):
        yield ids[start : start + _IN_CHUNK]
