"""The shared hit log: one Redis Stream per source, one consumer group per consumer id.

Replicas append to the same streams; each handle reads as a consumer of its own name (host, pid,
a random suffix) in the groups, so two replicas never get the same entry, and XACK is the commit.
A replica that dies leaves its entries pending under its name: `take_over` (XAUTOCLAIM) hands
those idle longer than a given time to the caller. A handle's first reads after it opened return
what its consumer name still holds pending (a replica restarted under the same name re-reads).

Appends go through group commit, one Lua script per commit (`redis_lua.APPEND`) that checks the
bounds against a counter it moves itself, so replicas together never exceed them. Retention
(`redis_lua.SWEEP`) trims a stream's head with XTRIM MINID, up to the first entry a group still
needs or the retention window holds, and takes what it trimmed off the counters.

Entry ids are Redis' own (the server's clock at append). Time queries (`read_range`) look at the
ids within `TIME_SLACK_S` of the asked range and filter by the records' `received_at`, so a record
appended more than that long after it was received is not found by time (nor by `since` starts,
which go by the ids' time).

Retries are leased by moving their score in the retry set to the lease's end, in the script that
picks them (`redis_lua.RETRIES`), so two replicas claiming at once never get the same one.

Durability is Redis' own, as for the shared queue: what an acknowledged append survives depends
on `appendonly` / `appendfsync`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Sequence
from typing import Any

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from gateway.core.errors import StoreError
from gateway.core.redisconn import connect, split_redis_url
from gateway.log import redis_lua
from gateway.log.base import (
    COMMIT_METRIC_NAMES,
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
    entry_order,
)
from gateway.log.group import GroupCommit, GroupCommitting

log = logging.getLogger(__name__)

# A handle refreshes its "alive" key every HEARTBEAT_S; one not refreshed for ALIVE_S is a
# replica that died, and the others take over what it had read at once.
HEARTBEAT_S = 2.0
ALIVE_S = 10.0
_FLUSH_MAX_RECORDS = 2000  # records per append script: a script blocks Redis while it runs
_SWEEP_SCAN = 2000  # entries one sweep script looks at
_LAG_COUNT_CAP = 10_000  # entries counted one by one when Redis cannot tell a group's lag
_RANGE_PAGE = 1000
_MAX_SEQ = 18446744073709551615  # the largest sequence part of a stream id
_REPLAY_CHUNK = 1000  # dead letters one replay script moves: a script blocks Redis while it runs
_SCRIPTS = (
    "APPEND",
    "SWEEP",
    "TAKE_DEAD_LETTERS",
    "RETRIES",
    "RESCHEDULE",
    "REPLAY_DEAD_LETTERS",
    "ADD_COUNTS",
)

# Retries and dead letters: (data, event_id, entry_id, attempts, text, answer, time), where text
# is the retry's error or the dead letter's reason and time the retry's or the dead-lettering's.
_Stored = tuple[bytes, str | None, str | None, int, str | None, str | None, float]
_stored_decoder = msgspec.msgpack.Decoder(_Stored)


class RedisHitLog(GroupCommitting, HitLog):
    """`url` is a `redis://` or `rediss://` URL (`?prefix=` sets the key prefix); `name` is this
    handle's consumer name in the groups (a fresh one per process by default)."""

    commit_metric_names = COMMIT_METRIC_NAMES

    def __init__(
        self,
        url: str,
        *,
        max_records: int,
        max_bytes: int | None = None,
        retention_s: float = 72 * 3600.0,
        prefix: str | None = None,
        name: str | None = None,
    ) -> None:
        client_url, url_prefix = split_redis_url(url)
        self.prefix = prefix or url_prefix
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.retention_s = retention_s
        self.name = name or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self._url = client_url
        self._redis: aioredis.Redis | None = None
        self._scripts: dict[str, Any] = {}
        self._group: GroupCommit[_Batch] = GroupCommit(
            self._append_groups, max_events=_FLUSH_MAX_RECORDS
        )
        self._sources: dict[str, str] = {}  # consumer id -> source id, as read from Redis
        # Per consumer: where the re-read of this name's pending entries stands (None: done),
        # and the ids take_over handed out meanwhile (not to be handed out twice).
        self._pending_from: dict[str, str | None] = {}
        self._taken: dict[str, set[str]] = {}
        self._closed = False
        self._heartbeat: asyncio.Task[None] | None = None

    async def open(self) -> None:
        self._redis = connect(self._url)
        self._scripts = {n: self._redis.register_script(getattr(redis_lua, n)) for n in _SCRIPTS}
        await self._call("ping", self._redis.ping())
        await self._warn_when_not_durable()
        await self._beat()
        self._heartbeat = asyncio.create_task(self._beat_forever(), name="hitlog-heartbeat")

    async def _beat(self) -> None:
        """Say this handle is alive: what it read is not another replica's to take yet."""
        alive_ms = int(ALIVE_S * 1000)
        await self._call("heartbeat", self._client.set(self._alive_key(self.name), 1, px=alive_ms))

    async def _beat_forever(self) -> None:
        # Ends when the log closes, not only when cancelled: redis-py can swallow a cancellation
        # that lands while a command is in flight (the task then stays "cancelling" and beats
        # on), and `close`, which waited for this task, hung for ever (seen under a flood).
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            if self._closed:
                return
            try:
                await self._beat()
            except StoreError:
                log.warning("hit log heartbeat failed; retrying")

    def _alive_key(self, name: str) -> str:
        return self._key("alive", name)

    async def _warn_when_not_durable(self) -> None:
        try:
            config = await self._client.config_get("appendonly")
        except (RedisError, OSError):  # managed services often forbid CONFIG: say nothing then
            return
        if any(
            k in (b"appendonly", "appendonly") and v in (b"no", "no") for k, v in config.items()
        ):
            log.warning(
                "redis runs without appendonly: a restart of Redis loses appended hits"
                " (set appendonly yes, appendfsync everysec or always)"
            )

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            # Bounded: a beat whose cancellation was swallowed ends at its next loop.
            await asyncio.wait({self._heartbeat}, timeout=HEARTBEAT_S + 1.0)
        await self._group.finish()
        if self._redis is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._redis.delete(self._alive_key(self.name))
            await self._redis.aclose()

    # Appending

    async def append(self, records: Sequence[LogRecord]) -> list[str]:
        if not records:
            return []
        if self._closed:
            raise StoreError("the hit log is closed")
        args: list[bytes | str] = [str(len(records))]
        for r in records:
            args += [r.source_id, repr(r.received_at), r.event_id or "", r.data]
        batch = _Batch(args)
        await self._group.submit(batch, len(records))
        return batch.ids

    async def _append_groups(self, batches: list[_Batch]) -> list[bool]:
        bound = -1 if self.max_bytes is None else self.max_bytes
        args: list[bytes | str] = [self.prefix, str(self.max_records), str(bound)]
        args.append(str(len(batches)))
        for batch in batches:
            args += batch.args
        stored = await self._run("APPEND", args)
        for batch, ids in zip(batches, stored, strict=True):
            if ids:
                batch.ids = [_text(i) for i in ids]
        return [bool(ids) for ids in stored]

    # Consumers

    async def add_consumer(self, consumer_id: str, source_id: str, start: Start = "tail") -> bool:
        added = await self._call(
            "add_consumer", self._client.hsetnx(self._key("consumers"), consumer_id, source_id)
        )
        if not added:
            return False
        try:
            await self._client.xgroup_create(
                self._stream(source_id), consumer_id, _start_id(start), mkstream=True
            )
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):  # a group left by a consumer dropped half-way
                raise StoreError(f"redis (add_consumer): {exc}") from exc
        except (RedisError, OSError) as exc:
            raise StoreError(f"redis (add_consumer): {type(exc).__name__}") from exc
        await self._call("add_consumer", self._client.sadd(self._key("sources"), source_id))
        return True

    async def drop_consumer(self, consumer_id: str) -> None:
        source_id = await self._source_or_none(consumer_id)
        self._sources.pop(consumer_id, None)
        self._pending_from.pop(consumer_id, None)
        self._taken.pop(consumer_id, None)
        async with self._client.pipeline(transaction=True) as pipe:
            if source_id is not None:
                pipe.xgroup_destroy(self._stream(source_id), consumer_id)
            pipe.hdel(self._key("consumers"), consumer_id)
            for kind in ("retry", "retry-data", "retry-state", "dl", "counts"):
                pipe.delete(self._key(kind, consumer_id))
            await self._call("drop_consumer", pipe.execute())

    async def read(self, consumer_id: str, limit: int) -> list[LogEntry]:
        if limit <= 0:
            return []
        source_id = await self._source(consumer_id)
        stream = self._stream(source_id)
        start = self._pending_from.setdefault(consumer_id, "0")
        while start is not None:
            # This name's own pending entries first: read before a restart, never committed.
            rows = await self._read_group(consumer_id, stream, start, limit)
            if not rows:
                self._pending_from[consumer_id] = start = None
                self._taken.pop(consumer_id, None)
                break
            self._pending_from[consumer_id] = start = _text(rows[-1][0])
            taken = self._taken.get(consumer_id, set())
            entries = [e for e in _entries(source_id, rows) if e.id not in taken]
            if entries:
                return entries
        rows = await self._read_group(consumer_id, stream, ">", limit)
        return _entries(source_id, rows)

    async def _read_group(self, consumer_id: str, stream: str, start: str, limit: int) -> list[Any]:
        answer = await self._call(
            "read",
            self._client.xreadgroup(consumer_id, self.name, {stream: start}, count=limit),
        )
        return list(answer[0][1]) if answer else []

    async def commit(self, consumer_id: str, entries: Sequence[LogEntry]) -> None:
        if entries:
            stream = self._stream(await self._source(consumer_id))
            await self._call(
                "commit", self._client.xack(stream, consumer_id, *[e.id for e in entries])
            )

    async def take_over(self, consumer_id: str, idle_s: float) -> list[LogEntry]:
        source_id = await self._source(consumer_id)
        stream = self._stream(source_id)
        idle_ms = max(0, int(idle_s * 1000))
        # A replica whose heartbeat lapsed is dead: its entries now, not after `idle_s`.
        taken = await self._take_from_the_dead(stream, source_id, consumer_id)
        cursor = "0-0"
        while True:
            answer = await self._call(
                "take_over",
                self._client.xautoclaim(stream, consumer_id, self.name, idle_ms, cursor, 100),
            )
            taken += _entries(source_id, answer[1])
            cursor = _text(answer[0])
            if cursor == "0-0":
                break
        if self._pending_from.get(consumer_id, "0") is not None:
            self._taken.setdefault(consumer_id, set()).update(e.id for e in taken)
        return taken

    async def _take_from_the_dead(
        self, stream: str, source_id: str, consumer_id: str
    ) -> list[LogEntry]:
        summary = await self._call("take_over", self._client.xpending(stream, consumer_id))
        taken: list[LogEntry] = []
        for holder in summary.get("consumers") or []:
            name = _text(holder["name"])
            if name == self.name or await self._call(
                "take_over", self._client.exists(self._alive_key(name))
            ):
                continue
            while True:
                rows = await self._call(
                    "take_over",
                    self._client.xpending_range(stream, consumer_id, "-", "+", 100, name),
                )
                if not rows:
                    break
                ids = [row["message_id"] for row in rows]
                claimed = await self._call(
                    "take_over", self._client.xclaim(stream, consumer_id, self.name, 0, ids)
                )
                taken += _entries(source_id, claimed)
                if len(rows) < 100:
                    break
        return taken

    async def lag(self, consumer_id: str) -> Lag:
        source_id = await self._source(consumer_id)
        stream = self._stream(source_id)
        groups = await self._call("lag", self._client.xinfo_groups(stream))
        group = next((g for g in groups if _text(g["name"]) == consumer_id), None)
        if group is None:
            raise StoreError(f"no hit log consumer {consumer_id!r}")
        pending = int(group["pending"])
        last = _text(group["last-delivered-id"])
        unread = group.get("lag")
        if unread is None:  # Redis cannot tell (a group started mid-stream): count, capped
            rows = await self._call(
                "lag", self._client.xrange(stream, f"({last}", "+", count=_LAG_COUNT_CAP)
            )
            unread = len(rows)
        first_unread = await self._call(
            "lag", self._client.xrange(stream, f"({last}", "+", count=1)
        )
        oldest_unread = float(first_unread[0][1][b"r"]) if first_unread else None
        oldest = oldest_unread
        if pending:
            summary = await self._call("lag", self._client.xpending(stream, consumer_id))
            first = await self._call(
                "lag", self._client.xrange(stream, summary["min"], summary["min"])
            )
            oldest = float(first[0][1][b"r"]) if first else oldest
        return Lag(
            entries=int(unread) + pending,
            oldest_received_at=oldest,
            unread=int(unread),
            oldest_unread_at=oldest_unread,
        )

    # Failures

    async def retry_later(
        self, consumer_id: str, items: Sequence[FailedItem], retry_at: float, error: str | None
    ) -> None:
        if not items:
            return
        last = await self._call("retry_later", self._client.incrby(self._key("seq"), len(items)))
        first = int(last) - len(items) + 1
        async with self._client.pipeline(transaction=True) as pipe:
            for n, item in enumerate(items, start=first):
                stored = (
                    item.data,
                    item.event_id,
                    item.entry_id,
                    item.attempts,
                    error,
                    None,
                    retry_at,
                )
                pipe.hset(self._key("retry-data", consumer_id), str(n), _encode(stored))
                pipe.zadd(self._key("retry", consumer_id), {str(n): retry_at})
            await self._call("retry_later", pipe.execute())

    async def due_retries(self, consumer_id: str, now: float, limit: int) -> list[Retry]:
        return await self._retries(consumer_id, now, limit, "")

    async def claim_retries(
        self, consumer_id: str, now: float, limit: int, lease_s: float
    ) -> list[Retry]:
        return await self._retries(consumer_id, now, limit, repr(now + lease_s))

    async def _retries(
        self, consumer_id: str, now: float, limit: int, lease_until: str
    ) -> list[Retry]:
        if limit <= 0:
            return []
        rows = await self._run(
            "RETRIES", [self.prefix, consumer_id, repr(now), str(limit), lease_until]
        )
        return [_retry(consumer_id, row) for row in rows]

    async def reschedule(
        self,
        consumer_id: str,
        ids: Sequence[str],
        retry_at: float,
        error: str | None,
        count_attempt: bool,
    ) -> None:
        if not ids:
            return
        await self._run(
            "RESCHEDULE",
            [
                self.prefix,
                consumer_id,
                repr(retry_at),
                "1" if count_attempt else "0",
                "0" if error is None else "1",
                error or "",
                *ids,
            ],
        )

    async def retried(self, consumer_id: str, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.zrem(self._key("retry", consumer_id), *ids)
            pipe.hdel(self._key("retry-data", consumer_id), *ids)
            pipe.hdel(self._key("retry-state", consumer_id), *ids)
            removed, _, _ = await self._call("retried", pipe.execute())
        return int(removed)

    async def retry_info(self, consumer_id: str, now: float) -> RetryInfo:
        key = self._key("retry", consumer_id)
        # Each a lookup in the sorted set, none a walk: due is counted exactly.
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.zcount(key, "-inf", now)
            pipe.zrangebyscore(key, "-inf", now, 0, 1, withscores=True)
            pipe.zrangebyscore(key, f"({now!r}", "+inf", 0, 1, withscores=True)
            pipe.zcard(key)
            due, oldest, later, total = await self._call("retry_info", pipe.execute())
        return RetryInfo(
            due=int(due),
            oldest_due_at=float(oldest[0][1]) if oldest else None,
            next_at=float(later[0][1]) if later else None,
            total=int(total),
        )

    async def dead_letter(
        self,
        consumer_id: str,
        items: Sequence[FailedItem],
        reason: str,
        answer: str | None,
        now: float,
    ) -> None:
        if not items:
            return
        async with self._client.pipeline(transaction=True) as pipe:
            for item in items:
                stored = (
                    item.data,
                    item.event_id,
                    item.entry_id,
                    item.attempts,
                    reason,
                    answer,
                    now,
                )
                pipe.xadd(self._key("dl", consumer_id), {"v": _encode(stored)})
            await self._call("dead_letter", pipe.execute())

    async def list_dead_letters(
        self, consumer_id: str, limit: int = 100, offset: int = 0
    ) -> list[DeadLetterItem]:
        if limit <= 0:
            return []
        rows = await self._call(
            "list_dead_letters",
            self._client.xrange(self._key("dl", consumer_id), count=offset + limit),
        )
        return [_dead_letter(consumer_id, i, f[b"v"]) for i, f in rows[offset:]]

    async def take_dead_letters(
        self, consumer_id: str, ids: Sequence[str] | None
    ) -> list[DeadLetterItem]:
        chosen = [] if ids is None else _stream_ids(ids)
        if ids is not None and not chosen:
            return []
        flag = "1" if ids is None else "0"
        rows = await self._run("TAKE_DEAD_LETTERS", [self.prefix, consumer_id, flag, *chosen])
        out = [_dead_letter(consumer_id, i, _pairs(flat)[b"v"]) for i, flat in rows]
        return sorted(out, key=lambda d: entry_order(d.id))

    async def replay_dead_letters(
        self, consumer_id: str, ids: Sequence[str] | None, now: float
    ) -> list[DeadLetterItem]:
        # Each script moves a chunk whole: a dead letter is in one place or the other, always.
        head = [self.prefix, consumer_id, repr(now)]
        rows: list[Any] = []
        if ids is None:
            while True:
                moved = await self._run("REPLAY_DEAD_LETTERS", [*head, "1", str(_REPLAY_CHUNK)])
                rows += moved
                if len(moved) < _REPLAY_CHUNK:
                    break
        else:
            # Oldest first, so the new retry ids keep the dead letters' order.
            chosen = sorted(set(_stream_ids(ids)), key=entry_order)
            for start in range(0, len(chosen), _REPLAY_CHUNK):
                part = chosen[start : start + _REPLAY_CHUNK]
                rows += await self._run("REPLAY_DEAD_LETTERS", [*head, "0", "0", *part])
        out = [_dead_letter(consumer_id, i, _pairs(flat)[b"v"]) for i, flat in rows]
        return sorted(out, key=lambda d: entry_order(d.id))

    async def purge_dead_letters(self, consumer_id: str, ids: Sequence[str] | None) -> int:
        key = self._key("dl", consumer_id)
        if ids is None:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.xlen(key)
                pipe.delete(key)
                count, _ = await self._call("purge_dead_letters", pipe.execute())
            return int(count)
        chosen = _stream_ids(ids)
        if not chosen:
            return 0
        return int(await self._call("purge_dead_letters", self._client.xdel(key, *chosen)))

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
        await self._run(
            "ADD_COUNTS",
            [
                self.prefix,
                consumer_id,
                str(delivered),
                str(failed),
                str(dead_lettered),
                last_error or "",
                "0" if last_error is None else "1",
                "" if success_at is None else repr(success_at),
            ],
        )

    async def counts(self, consumer_id: str) -> Counts:
        raw = await self._call("counts", self._client.hgetall(self._key("counts", consumer_id)))
        stored = {_text(k): _text(v) for k, v in raw.items()}
        success_at = stored.get("last_success_at")
        return Counts(
            delivered=int(stored.get("delivered", 0)),
            failed=int(stored.get("failed", 0)),
            dead_lettered=int(stored.get("dead_lettered", 0)),
            last_error=stored.get("last_error"),
            last_success_at=None if success_at is None else float(success_at),
        )

    async def consumers(self) -> dict[str, str]:
        raw = await self._call("consumers", self._client.hgetall(self._key("consumers")))
        return {_text(k): _text(v) for k, v in raw.items()}

    # Replay and the debugger

    async def read_range(
        self,
        source_id: str,
        since: float,
        until: float,
        limit: int = 100,
        after: str | None = None,
    ) -> list[LogEntry]:
        stream = self._stream(source_id)
        low = f"{max(0, int((since - TIME_SLACK_S) * 1000))}-0"
        if after is not None and _stream_ids([after]) and entry_order(after) >= entry_order(low):
            low = f"({after}"
        high = f"{int((until + TIME_SLACK_S) * 1000)}-{_MAX_SEQ}"
        out: list[LogEntry] = []
        while len(out) < limit:
            rows = await self._call(
                "read_range", self._client.xrange(stream, low, high, count=_RANGE_PAGE)
            )
            out += [e for e in _entries(source_id, rows) if since <= e.received_at < until]
            if len(rows) < _RANGE_PAGE:
                break
            low = f"({_text(rows[-1][0])}"
        return out[:limit]

    async def get(self, source_id: str, entry_id: str) -> LogEntry | None:
        if not _stream_ids([entry_id]):
            return None
        rows = await self._call(
            "get", self._client.xrange(self._stream(source_id), entry_id, entry_id)
        )
        found = _entries(source_id, rows)
        return found[0] if found else None

    async def _find_ids(
        self, source_id: str, event_ids: list[str], received: tuple[float, float] | None
    ) -> list[LogEntry]:
        # The ids hash answers at once: the receive range is not needed.
        key = self._key("ids", source_id)
        known = await self._call("find", self._client.hmget(key, event_ids))
        idents = sorted(
            {ident for value in known if value for ident in _text(value).split()},
            key=entry_order,
        )
        stream = self._stream(source_id)
        async with self._client.pipeline(transaction=False) as pipe:
            for ident in idents:
                pipe.xrange(stream, ident, ident)
            answers = await self._call("find", pipe.execute())
        return [e for rows in answers for e in _entries(source_id, rows)]

    async def newest(self, source_id: str, limit: int, before: str | None = None) -> list[LogEntry]:
        high = f"({before}" if before is not None and _stream_ids([before]) else "+"
        rows = await self._call(
            "newest", self._client.xrevrange(self._stream(source_id), high, "-", count=limit)
        )
        return _entries(source_id, rows)

    # Retention, metrics

    async def sweep_before(self, cutoff_s: float) -> int:
        cutoff = repr(cutoff_s)
        sources = await self._call("sweep", self._client.smembers(self._key("sources")))
        removed = 0
        for source in sorted(_text(s) for s in sources):
            while True:
                n = int(await self._run("SWEEP", [self.prefix, source, cutoff, str(_SWEEP_SCAN)]))
                removed += n
                if n < _SWEEP_SCAN:
                    break
        return removed

    async def depth(self) -> int:
        return await self._usage("records")

    async def size_bytes(self) -> int:
        return await self._usage("bytes")

    async def _usage(self, field: str) -> int:
        value = await self._call("usage", self._client.hget(self._key("usage"), field))
        return int(value or 0)

    # Plumbing

    @property
    def _client(self) -> aioredis.Redis:
        if self._redis is None:
            raise StoreError("the redis hit log is not open")
        return self._redis

    def _key(self, kind: str, name: str | None = None) -> str:
        base = f"{self.prefix}:hitlog:{kind}"
        return base if name is None else f"{base}:{name}"

    def _stream(self, source_id: str) -> str:
        return f"{self.prefix}:log:{source_id}"

    async def _source(self, consumer_id: str) -> str:
        source_id = await self._source_or_none(consumer_id)
        if source_id is None:
            raise StoreError(f"no hit log consumer {consumer_id!r}")
        return source_id

    async def _source_or_none(self, consumer_id: str) -> str | None:
        if consumer_id not in self._sources:
            raw = await self._call(
                "consumer", self._client.hget(self._key("consumers"), consumer_id)
            )
            if raw is None:
                return None
            self._sources[consumer_id] = _text(raw)
        return self._sources[consumer_id]

    async def _run(self, script: str, args: Sequence[bytes | str]) -> Any:
        return await self._call(script.lower(), self._scripts[script](keys=[], args=list(args)))

    @staticmethod
    async def _call(what: str, pending: Awaitable[Any]) -> Any:
        """Await a Redis call; its errors become `StoreError` here, the one boundary.

        Any: redis-py's stubs type replies loosely (str | bytes | None for a stream entry), and
        this client always answers bytes (`decode_responses=False`)."""
        try:
            return await pending
        except ResponseError as exc:
            raise StoreError(f"redis ({what}): {exc}") from exc
        except (RedisError, OSError) as exc:
            raise StoreError(f"redis ({what}): {type(exc).__name__}: {exc}") from exc


class _Batch:
    """One append call's script arguments, and its entry ids once a group commit stored it."""

    __slots__ = ("args", "ids")

    def __init__(self, args: list[bytes | str]) -> None:
        self.args = args
        self.ids: list[str] = []


def _start_id(start: Start) -> str:
    if start == "head":
        return "0"
    if start == "tail":
        return "$"
    # Entries from the ms `since` falls in: everything up to the one before counts as read.
    ms = int(float(start) * 1000)
    return "0" if ms <= 0 else f"{ms - 1}-{_MAX_SEQ}"


def _entries(source_id: str, rows: Sequence[Any]) -> list[LogEntry]:
    out: list[LogEntry] = []
    for ident, fields in rows:
        if not fields:  # an entry deleted while pending: nothing left to hand out
            continue
        event_id = fields.get(b"e")
        out.append(
            LogEntry(
                id=_text(ident),
                source_id=source_id,
                received_at=float(fields[b"r"]),
                data=bytes(fields[b"d"]),
                event_id=None if event_id is None else event_id.decode(),
            )
        )
    return out


def _retry(consumer_id: str, row: Sequence[Any]) -> Retry:
    """A retry from what `redis_lua.RETRIES` answers: its time is the set's score, and once
    rescheduled its state adds attempts and says the error."""
    ident, score, blob, state = row
    data, event_id, entry_id, attempts, error, _, _ = _stored_decoder.decode(blob)
    if state is not None:
        added, has_error, text = _text(state).partition(" ")
        attempts += int(added)
        error = text if has_error else None
    return Retry(_text(ident), consumer_id, data, event_id, entry_id, attempts, float(score), error)


def _dead_letter(consumer_id: str, ident: bytes | str, blob: bytes) -> DeadLetterItem:
    data, event_id, entry_id, attempts, reason, answer, at = _stored_decoder.decode(blob)
    return DeadLetterItem(
        _text(ident), consumer_id, data, event_id, entry_id, attempts, reason or "", answer, at
    )


def _pairs(flat: Sequence[bytes]) -> dict[bytes, bytes]:
    return {flat[i]: flat[i + 1] for i in range(0, len(flat), 2)}


def _encode(stored: _Stored) -> bytes:
    return msgspec.msgpack.encode(stored)


def _stream_ids(ids: Sequence[str]) -> list[str]:
    """Ids shaped like stream ids; one that is not cannot exist, so it is dropped."""
    out: list[str] = []
    for ident in ids:
        head, sep, tail = str(ident).partition("-")
        if sep and head.isdigit() and tail.isdigit():
            out.append(str(ident))
    return out


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)
