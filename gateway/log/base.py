"""The hit log: one append-only record per collection hit, read by every integration in turn.

Life of a record:

1. `append` stores it (opaque bytes: the hit as received plus the request facts, which the log
   never parses) under an entry id that orders it within its source. The call returns only once
   the record is durable; concurrent callers share one commit (group commit). When the log's
   record or byte bound would be exceeded, nothing of that call is stored (`QueueFull`).
2. Each integration is a consumer with a cursor on one source's records (`add_consumer`, starting
   at the log's head, its tail, or the first record received since a time). `read` hands out the
   records after the cursor, in order; `commit` moves the cursor past a batch once it is settled.
   A record read and not committed is read again after a restart (at least once, never lost).
3. Only failures are copied out of the log: `retry_later` keeps the failed, transformed events
   of a consumer with the time they may be tried again. A deliverer `claim_retries` those due,
   which leases them (their time moves to the lease's end, so no other replica gets them and a
   crashed one's come back), then either `retried` (done) or `reschedule`s them. `dead_letter`
   keeps those that will never be sent until an operator replays (`replay_dead_letters` moves
   them back into the retry set; `take_dead_letters` hands them out) or purges them.
4. Per consumer, durable counters (`add_counts`, `counts`) of what was delivered, failed and
   dead-lettered, shared by every replica.
5. `sweep` deletes a record once every consumer of its source has committed past it AND it was
   received longer ago than the retention window (the debugger reads records inside the window:
   `read_range`, `get`, `find`, `find_many`, `newest`). A source without consumers keeps only
   the window.

Entry ids are strings: the SQLite backend's are its row numbers (never reused), the Redis
backend's are stream ids. Both compare in log order within a source with `entry_order`.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Literal

import msgspec

# Where a new consumer starts: the oldest retained record, only records appended from now on,
# or the first record received at or after a Unix time.
Start = Literal["head", "tail"] | float


class LogRecord(msgspec.Struct, frozen=True):
    """What collect appends: `data` is opaque to the log (the encoded hit and request facts)."""

    source_id: str
    received_at: float
    data: bytes
    # What the debugger looks a hit up by (the hit's message id / event id), when it has one.
    event_id: str | None = None


class LogEntry(msgspec.Struct, frozen=True):
    """A stored record and its place in the log."""

    id: str
    source_id: str
    received_at: float
    data: bytes
    event_id: str | None = None


class Lag(msgspec.Struct, frozen=True):
    """How far a consumer is behind: entries past its cursor (read and not committed included)
    and when the oldest of them was received (None when there are none).

    A shared log also tells the entries no handle has read yet (`unread`, and the oldest of
    them): what another replica holds is not this one's to claim. None: the backend has one
    reading process, whose handle knows what it holds.
    """

    entries: int
    oldest_received_at: float | None
    unread: int | None = None
    oldest_unread_at: float | None = None


class FailedItem(msgspec.Struct, frozen=True):
    """A copy of what a consumer failed to deliver: its own transformed event (opaque bytes),
    the event id it will be looked up by, and the log entry it came from when known."""

    data: bytes
    event_id: str | None = None
    entry_id: str | None = None
    attempts: int = 1


class Retry(msgspec.Struct, frozen=True):
    id: str
    consumer_id: str
    data: bytes
    event_id: str | None
    entry_id: str | None
    attempts: int
    retry_at: float
    error: str | None


class DeadLetterItem(msgspec.Struct, frozen=True):
    id: str
    consumer_id: str
    data: bytes
    event_id: str | None
    entry_id: str | None
    attempts: int
    reason: str
    answer: str | None
    dead_lettered_at: float


class RetryInfo(msgspec.Struct, frozen=True):
    """A consumer's retry set at a moment: what is due now, when the next one comes due (a
    leased retry comes due again when its lease runs out), and how many there are in all."""

    due: int  # due and not leased; may stop counting at RETRY_DUE_COUNT_CAP
    oldest_due_at: float | None  # the earliest time among the due ones
    next_at: float | None  # the earliest time after now, None when nothing waits
    total: int  # due, waiting or leased


class Counts(msgspec.Struct, frozen=True):
    """What a consumer's deliverers reported, over its whole life (every replica together)."""

    delivered: int = 0
    failed: int = 0
    dead_lettered: int = 0
    last_error: str | None = None
    last_success_at: float | None = None


# Counting due retries one by one stops here: "more than this many" is all a status page needs.
RETRY_DUE_COUNT_CAP = 10_000

# The log's group-commit counters go by names of their own, beside the queue's in one registry.
COMMIT_METRIC_NAMES = (
    ("gateway_log_commits", "Group commits of appended hit log records by this process"),
    ("gateway_log_committed_records", "Hit log records stored by this process's group commits"),
)


def entry_order(entry_id: str) -> tuple[int, int]:
    """A sort key of both backends' entry ids: `"17"` (SQLite) and `"1700000000000-3"` (Redis)."""
    head, _, tail = entry_id.partition("-")
    return int(head), int(tail or 0)


class HitLog(abc.ABC):
    """An append-only, bounded, durable log of hits with per-consumer cursors."""

    @abc.abstractmethod
    async def open(self) -> None:
        """Create files/tables/keys as needed."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Let the commit in flight finish and release resources (idempotent)."""

    # Appending

    @abc.abstractmethod
    async def append(self, records: Sequence[LogRecord]) -> list[str]:
        """Store `records` durably, in order; returns their entry ids once they would survive the
        process being killed. Concurrent callers share commits.

        Raises `QueueFull` when the log's record or byte bound would be exceeded: nothing of that
        call is stored then (another call's records may be).
        """

    # Consumers and cursors

    @abc.abstractmethod
    async def add_consumer(self, consumer_id: str, source_id: str, start: Start = "tail") -> bool:
        """Give `consumer_id` a cursor on `source_id`'s records; False (and nothing changes) when
        it has one already."""

    @abc.abstractmethod
    async def drop_consumer(self, consumer_id: str) -> None:
        """Forget the consumer: its cursor, its retries, its dead letters and its counts."""

    @abc.abstractmethod
    async def read(self, consumer_id: str, limit: int) -> list[LogEntry]:
        """Up to `limit` entries after what this handle already handed out, in log order.

        The first reads of a handle return what was read before (by this replica, on Redis) and
        never committed, so a restart re-reads rather than loses. Two handles on Redis
        (replicas) never get the same entry; the SQLite log has one delivering process.
        """

    @abc.abstractmethod
    async def commit(self, consumer_id: str, entries: Sequence[LogEntry]) -> None:
        """The consumer is done with these entries (delivered, retried or dead-lettered):
        move its cursor past them. Called once per batch, in the order batches were read."""

    @abc.abstractmethod
    async def take_over(self, consumer_id: str, idle_s: float) -> list[LogEntry]:
        """Take entries that another replica read and has not committed for `idle_s` (it died)
        and return them; they are this handle's to commit from then on. The SQLite log has one
        delivering process per data dir and so never has anything to take over."""

    @abc.abstractmethod
    async def lag(self, consumer_id: str) -> Lag:
        """Entries past the consumer's cursor, without counting the log row by row."""

    # Failures: the retry set and the dead letters

    @abc.abstractmethod
    async def retry_later(
        self, consumer_id: str, items: Sequence[FailedItem], retry_at: float, error: str | None
    ) -> None:
        """Keep copies of events to try again at `retry_at` (durable on return)."""

    @abc.abstractmethod
    async def due_retries(self, consumer_id: str, now: float, limit: int) -> list[Retry]:
        """Retries whose time has come, earliest first; they stay until `retried`."""

    @abc.abstractmethod
    async def claim_retries(
        self, consumer_id: str, now: float, limit: int, lease_s: float
    ) -> list[Retry]:
        """Up to `limit` due retries (retry_at <= now), earliest retry_at first, leased to this
        caller: atomically their retry_at becomes now + lease_s, so no other handle or replica
        gets them until the lease runs out (a crashed replica's retries come back then). They
        stay until `retried` or `reschedule`. Returned `Retry.retry_at` is the time they were
        due (before the lease); `attempts` as stored."""

    @abc.abstractmethod
    async def reschedule(
        self,
        consumer_id: str,
        ids: Sequence[str],
        retry_at: float,
        error: str | None,
        count_attempt: bool,
    ) -> None:
        """Atomically set these retries' retry_at; with count_attempt, attempts += 1 and
        error becomes their error (without it, attempts and error stay). Ids that are not (or
        no longer) retries of the consumer are left alone."""

    @abc.abstractmethod
    async def retried(self, consumer_id: str, ids: Sequence[str]) -> int:
        """Remove retries (tried again: delivered, re-scheduled or dead-lettered)."""

    @abc.abstractmethod
    async def retry_info(self, consumer_id: str, now: float) -> RetryInfo:
        """How the consumer's retry set stands at `now` (nothing in it: zeros and Nones)."""

    @abc.abstractmethod
    async def dead_letter(
        self,
        consumer_id: str,
        items: Sequence[FailedItem],
        reason: str,
        answer: str | None,
        now: float,
    ) -> None:
        """Keep events that will not be sent again without an operator, with why."""

    @abc.abstractmethod
    async def list_dead_letters(
        self, consumer_id: str, limit: int = 100, offset: int = 0
    ) -> list[DeadLetterItem]:
        """Dead letters of one consumer, oldest first."""

    @abc.abstractmethod
    async def take_dead_letters(
        self, consumer_id: str, ids: Sequence[str] | None
    ) -> list[DeadLetterItem]:
        """Remove and return dead letters (these ids, or all when None), for a replay."""

    @abc.abstractmethod
    async def replay_dead_letters(
        self, consumer_id: str, ids: Sequence[str] | None, now: float
    ) -> list[DeadLetterItem]:
        """Atomically move dead letters (these ids, or all when None) into the retry set, due at
        `now` (attempts kept; the dead letter's reason becomes the retry's error, under a new
        retry id); returns what was moved, oldest first. Nothing lost if the process dies
        midway: each one is a dead letter or a retry, never neither (never both)."""

    @abc.abstractmethod
    async def purge_dead_letters(self, consumer_id: str, ids: Sequence[str] | None) -> int:
        """Delete dead letters (these ids, or all when None); returns how many."""

    # Counters

    @abc.abstractmethod
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
        """Durable per-consumer counters (shared by all replicas on Redis): add the numbers;
        a non-None last_error replaces the stored one; a non-None success_at replaces
        last_success_at when later than it."""

    @abc.abstractmethod
    async def counts(self, consumer_id: str) -> Counts:
        """The consumer's counters (all zero for one that never counted)."""

    @abc.abstractmethod
    async def consumers(self) -> dict[str, str]:
        """consumer id -> its source id, every consumer with a cursor."""

    # Replay and the debugger

    @abc.abstractmethod
    async def read_range(
        self,
        source_id: str,
        since: float,
        until: float,
        limit: int = 100,
        after: str | None = None,
    ) -> list[LogEntry]:
        """Retained records of a source received in [since, until), in log order, after entry
        `after` (the last id of the previous page)."""

    @abc.abstractmethod
    async def get(self, source_id: str, entry_id: str) -> LogEntry | None:
        """One retained entry of a source by id."""

    async def find(self, source_id: str, event_id: str) -> list[LogEntry]:
        """Retained entries of a source with this event id (a hit sent twice is there twice)."""
        return await self.find_many(source_id, [event_id])

    async def find_many(
        self,
        source_id: str,
        event_ids: Sequence[str],
        received: tuple[float, float] | None = None,
    ) -> list[LogEntry]:
        """Retained entries of a source with any of these event ids, in log order (the
        debugger shows a batch's events by the ids its request body holds). `received`: the
        first and last receive time of the entries wanted (a ledger row's), which a backend
        may use to look in that part of the log only."""
        ids = list(dict.fromkeys(event_ids))
        return await self._find_ids(source_id, ids, received) if ids else []

    @abc.abstractmethod
    async def _find_ids(
        self, source_id: str, event_ids: list[str], received: tuple[float, float] | None
    ) -> list[LogEntry]:
        """`find_many` for distinct ids, at least one."""

    @abc.abstractmethod
    async def newest(self, source_id: str, limit: int, before: str | None = None) -> list[LogEntry]:
        """Up to `limit` retained entries of a source, the newest first, older than entry
        `before` when given (the last id of the previous page): the debugger's recent list."""

    # Retention, metrics and the bound

    # Set by each backend from its constructor's arguments.
    retention_s: float
    max_records: int
    max_bytes: int | None

    async def sweep(self, now: float) -> int:
        """Delete what every consumer of its source passed and the retention window no longer
        holds; returns how many records went.

        The window gives way to the bounds: while the log holds more than half of its record
        or byte bound, records every consumer passed go even inside the window (the youngest
        last, halving the window kept until under half), so hits the integrations have
        delivered never make collection answer 503. Only records some consumer still needs
        count against the bound then.
        """
        window = self.retention_s
        removed = await self.sweep_before(now - window)
        while window > 0 and await self._over_half_bound():
            window = window / 2 if window > _MIN_PRESSED_WINDOW_S else 0.0
            removed += await self.sweep_before(now - window)
        return removed

    async def _over_half_bound(self) -> bool:
        if await self.depth() * 2 > self.max_records:
            return True
        return self.max_bytes is not None and await self.size_bytes() * 2 > self.max_bytes

    @abc.abstractmethod
    async def sweep_before(self, cutoff: float) -> int:
        """Delete, source by source from its oldest record on, what every consumer of the
        source passed and was received before `cutoff`; returns how many records went."""

    @abc.abstractmethod
    async def depth(self) -> int:
        """Records retained, all sources."""

    @abc.abstractmethod
    async def size_bytes(self) -> int:
        """Bytes the log's records take (what the byte bound is checked against)."""


# Under pressure the window halves down to this, then to nothing.
_MIN_PRESSED_WINDOW_S = 60.0

# Time lookups (`read_range`, `since` starts) go by the log's order, in which received_at grows
# but for the moments between a hit's arrival and its append: they look this far around.
TIME_SLACK_S = 300.0

# What a record costs against the byte bound beyond its data and ids: row or entry header,
# numbers and index keys (about what SQLite and a Redis stream take; both backends count alike).
RECORD_OVERHEAD_BYTES = 48


def record_bytes(record: LogRecord) -> int:
    """The bytes one record counts for against the byte bound."""
    # UTF-8 bytes: what SQLite's length() of a blob and Lua's # count, so the backends' sweeps
    # take off exactly what their appends added.
    ids = len(record.source_id.encode()) + len((record.event_id or "").encode())
    return len(record.data) + ids + RECORD_OVERHEAD_BYTES
