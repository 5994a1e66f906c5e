"""The shared queue: Redis Streams, for several gateway replicas behind a load balancer.

One stream per integration with one consumer group; `claim` reads new entries with XREADGROUP
and takes over released or abandoned ones with XCLAIM, so XPENDING always names the replica
holding an entry. Lease ends and retry times live in sorted sets scored by the caller's clock
(`redis_lua.py` draws the keys). Every state change is one Lua script, so two replicas never
lease the same event and the counters never drift from the events.

Durability is Redis' own: an `enqueue` returns once Redis executed the script, and what that
survives depends on `appendonly` / `appendfsync` (see the README's Operations section). Enqueues
use group commit like the SQLite queue: callers arriving while a script runs share the next one.

Replicas that die: every process that claims keeps a heartbeat key alive; when one is gone, any
other delivering replica gives that consumer's leases back within `dead_after_s` instead of
waiting for them to expire. `recover_leases` (a worker starting) does the same and also takes
back expired leases; unlike SQLite it leaves the leases of live replicas alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from gateway.core.errors import StoreError
from gateway.core.models import ClaimedEvent, DeadLetter, IntegrationStats, NewEvent, ReadyInfo
from gateway.core.redisconn import connect
from gateway.queue import redis_lua
from gateway.queue.base import Queue
from gateway.queue.group import GroupCommit, GroupCommitting

log = logging.getLogger(__name__)
T = TypeVar("T")

_STREAM_ID = re.compile(r"^\d+-\d+$")
_OLDEST_SCAN = 1000  # claimable entries ready_info looks at for the oldest (as in SQLite)
_FLUSH_MAX_EVENTS = 2000  # events per enqueue script: a script blocks Redis while it runs
_consent_decoder = msgspec.json.Decoder(dict[str, bool] | None)


def split_queue_url(url: str) -> tuple[str, str]:
    """`redis://h/0?prefix=shop` -> (the URL for the client, the key prefix, `gateway` if none)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefix = next((v for k, v in query if k == "prefix" and v), "gateway")
    rest = urlencode([(k, v) for k, v in query if k != "prefix"])
    return urlunsplit(parts._replace(query=rest)), prefix


class RedisQueue(GroupCommitting, Queue):
    """`url` is a `redis://` or `rediss://` URL (`?prefix=` sets the key prefix).

    `commits` counts group commits and `enqueued` the events they stored (this instance only).
    """

    def __init__(
        self,
        url: str,
        max_events: int,
        *,
        prefix: str | None = None,
        consumer: str | None = None,
        heartbeat_s: float = 2.0,
        dead_after_s: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        client_url, url_prefix = split_queue_url(url)
        self.prefix = prefix or url_prefix
        self.max_events = max_events
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self._url = client_url
        self._heartbeat_s = heartbeat_s
        self._dead_after_ms = max(1, int(dead_after_s * 1000))
        self._clock = clock
        self._redis: aioredis.Redis | None = None
        self._scripts: dict[str, Any] = {}
        self._group: GroupCommit[list[bytes | str]] = GroupCommit(
            self._enqueue_groups, max_events=_FLUSH_MAX_EVENTS
        )
        self._heartbeat: asyncio.Task[None] | None = None
        # Ids this process leased and has not settled, per integration (see ready_info).
        self._mine: dict[str, set[str]] = {}
        self._closed = False

    # Lifecycle

    async def open(self) -> None:
        self._redis = connect(self._url)
        names = (
            "ENQUEUE",
            "CLAIM",
            "ACK",
            "RELEASE",
            "DEAD_LETTER",
            "REPLAY",
            "READY_INFO",
            "RECOVER",
            "DROP",
        )
        self._scripts = {n: self._redis.register_script(getattr(redis_lua, n)) for n in names}
        await self._call("ping", self._redis.ping())
        await self._warn_when_not_durable()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._group.finish()
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
            self._heartbeat = None
            # A clean stop holds nothing: whatever this consumer still leases goes back now.
            with contextlib.suppress(StoreError):
                await self._recover([self.consumer], include_expired=False)
                await self._call("leave", self._client.delete(self._key("alive", self.consumer)))
                await self._call("leave", self._client.srem(self._key("consumers"), self.consumer))
        if self._redis is not None:
            await self._redis.aclose()

    async def _warn_when_not_durable(self) -> None:
        try:
            config = await self._client.config_get("appendonly")
        except (RedisError, OSError):  # managed services often forbid CONFIG: say nothing then
            return
        if any(_text(k) == "appendonly" and _text(v) == "no" for k, v in config.items()):
            log.warning(
                "redis runs without appendonly: a restart of Redis loses queued events"
                " (set appendonly yes, appendfsync everysec or always)"
            )

    # Enqueue: group commit

    async def enqueue(self, events: Sequence[NewEvent]) -> None:
        if not events:
            return
        if self._closed:
            raise StoreError("the queue is closed")
        now = repr(self._clock())
        args: list[bytes | str] = [str(len(events))]
        for e in events:
            consent = b"" if e.consent is None else msgspec.json.encode(e.consent)
            args += [
                e.integration_id,
                e.event_id,
                e.event_name,
                str(e.event_time),
                e.payload,
                consent,
                now,
            ]
        await self._group.submit(args, len(events))

    async def _enqueue_groups(self, groups: list[list[bytes | str]]) -> list[bool]:
        args: list[bytes | str] = [self.prefix, str(self.max_events), str(len(groups))]
        for group in groups:
            args += group
        return [bool(ok) for ok in await self._run("ENQUEUE", args)]

    # Leases

    async def ready_info(self, integration_id: str, now: float) -> ReadyInfo:
        ready, oldest, next_at, leased = await self._run(
            "READY_INFO", [self.prefix, integration_id, repr(now), str(_OLDEST_SCAN)]
        )
        next_retry_at = _float_or_none(next_at)
        if int(leased) > len(self._mine.get(integration_id, ())):
            # Another replica holds leases: if it dies, a heartbeat sweep gives them back long
            # before they end, and nothing would wake a worker sleeping until then.
            recheck = now + self._heartbeat_s
            next_retry_at = recheck if next_retry_at is None else min(next_retry_at, recheck)
        return ReadyInfo(int(ready), _float_or_none(oldest), next_retry_at)

    async def claim(
        self, integration_id: str, limit: int, now: float, lease_s: float, at_least: int = 1
    ) -> list[ClaimedEvent]:
        if limit <= 0:
            return []
        await self._join()
        rows = await self._run(
            "CLAIM",
            [
                self.prefix,
                integration_id,
                str(limit),
                repr(now),
                repr(now + lease_s),
                self.consumer,
                str(at_least),
            ],
        )
        self._mine.setdefault(integration_id, set()).update(r[0].decode() for r in rows)
        return [
            ClaimedEvent(
                id=r[0].decode(),
                event_id=r[1].decode(),
                event_name=r[2].decode(),
                event_time=int(r[3]),
                payload=bytes(r[4]),
                attempts=int(r[5]),
                enqueued_at=float(r[6]),
            )
            for r in rows
        ]

    async def ack(self, integration_id: str, ids: Sequence[int | str], now: float) -> None:
        if chosen := _stream_ids(ids):
            self._settled(integration_id, chosen)
            await self._run("ACK", [self.prefix, integration_id, repr(now), *chosen])

    async def release(
        self,
        integration_id: str,
        ids: Sequence[int | str],
        retry_at: float,
        error: str | None,
        now: float,
    ) -> None:
        if chosen := _stream_ids(ids):
            self._settled(integration_id, chosen)
            flag = "0" if error is None else "1"
            args = [self.prefix, integration_id, repr(retry_at), flag, error or "", *chosen]
            await self._run("RELEASE", args)

    async def recover_leases(self, now: float) -> int:
        await self._join()
        dead = await self._dead_consumers()
        recovered = await self._recover(dead, include_expired=True, now=now)
        return recovered

    # Dead letters

    async def dead_letter(
        self,
        integration_id: str,
        ids: Sequence[int | str],
        reason: str,
        answer: str | None,
        now: float,
    ) -> None:
        if chosen := _stream_ids(ids):
            self._settled(integration_id, chosen)
            flag = "0" if answer is None else "1"
            args = [self.prefix, integration_id, reason, flag, answer or "", repr(now), *chosen]
            await self._run("DEAD_LETTER", args)

    async def dead_letter_new(
        self, events: Sequence[NewEvent], reason: str, answer: str | None, now: float
    ) -> None:
        if not events:
            return
        stamp = repr(now)
        async with self._client.pipeline(transaction=True) as pipe:
            for e in events:
                fields: dict[str, bytes | str] = {
                    "i": e.integration_id,
                    "e": e.event_id,
                    "n": e.event_name,
                    "t": str(e.event_time),
                    "p": e.payload,
                    "c": b"" if e.consent is None else msgspec.json.encode(e.consent),
                    "q": stamp,
                    "r": reason,
                    "a": "0",
                    "f": "",
                    "l": "",
                    "d": stamp,
                }
                if answer is not None:
                    fields["w"] = answer
                pipe.xadd(self._key("dl", e.integration_id), fields)  # type: ignore[arg-type]
            await self._call("dead_letter_new", pipe.execute())

    async def list_dead_letters(
        self, integration_id: str, limit: int = 100, offset: int = 0
    ) -> list[DeadLetter]:
        if limit <= 0:
            return []
        rows: list[tuple[bytes, dict[bytes, bytes]]] = await self._call(
            "list_dead_letters",
            self._client.xrange(self._key("dl", integration_id), count=offset + limit),  # type: ignore[arg-type]  # redis-py's stub types the reply loosely
        )
        return [_dead_letter(ident, fields) for ident, fields in rows[offset:]]

    async def replay_dead_letters(
        self, integration_id: str, ids: Sequence[int | str] | None, now: float
    ) -> list[DeadLetter]:
        chosen = [] if ids is None else _stream_ids(ids)
        if ids is not None and not chosen:
            return []
        flag = "1" if ids is None else "0"
        rows = await self._run("REPLAY", [self.prefix, integration_id, repr(now), flag, *chosen])
        return [_dead_letter(ident, _pairs(flat)) for ident, flat in rows]

    async def purge_dead_letters(self, integration_id: str, ids: Sequence[int | str] | None) -> int:
        key = self._key("dl", integration_id)
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

    async def stats(self, integration_id: str) -> IntegrationStats:
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.hget(self._key("queued"), integration_id)
            pipe.hmget(
                self._key("stats", integration_id),
                ["delivered", "failed", "last_error", "last_success_at"],
            )
            pipe.xlen(self._key("dl", integration_id))
            queued, (delivered, failed, last_error, last_success), dead = await self._call(
                "stats", pipe.execute()
            )
        return IntegrationStats(
            queued=int(queued or 0),
            delivered=int(delivered or 0),
            failed=int(failed or 0),
            dead_lettered=int(dead),
            last_error=None if last_error is None else last_error.decode(),
            last_success_at=_float_or_none(last_success),
        )

    async def depth(self) -> int:
        total = await self._call("depth", self._client.get(self._key("total")))
        return int(total or 0)

    async def integrations_with_events(self) -> list[str]:
        counts = await self._call("integrations", self._client.hgetall(self._key("queued")))
        return sorted(_text(k) for k, v in counts.items() if int(v) > 0)

    async def drop_integration(self, integration_id: str) -> None:
        await self._run("DROP", [self.prefix, integration_id])

    # Consumers: heartbeats, and leases of the dead given back

    def _settled(self, integration_id: str, ids: Iterable[str]) -> None:
        mine = self._mine.get(integration_id)
        if mine is not None:
            mine.difference_update(ids)

    async def _join(self) -> None:
        """Register this process as a consumer the first time it claims, and keep it alive."""
        if self._heartbeat is not None or self._closed:
            return
        await self._beat()
        self._heartbeat = asyncio.create_task(self._keep_alive(), name="redis-queue-heartbeat")

    async def _beat(self) -> None:
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.sadd(self._key("consumers"), self.consumer)
            pipe.set(self._key("alive", self.consumer), b"1", px=self._dead_after_ms)
            await self._call("heartbeat", pipe.execute())

    async def _keep_alive(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_s)
            try:
                await self._beat()
                if dead := await self._dead_consumers():
                    count = await self._recover(dead, include_expired=False)
                    if count:
                        log.warning(
                            "took back %d events leased by stopped replicas %s", count, dead
                        )
            except StoreError:  # Redis away for a moment: the next beat tries again
                log.warning("redis queue heartbeat failed", exc_info=True)

    async def _dead_consumers(self) -> list[str]:
        members = await self._call("consumers", self._client.smembers(self._key("consumers")))
        names = sorted(_text(m) for m in members if _text(m) != self.consumer)
        if not names:
            return []
        async with self._client.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.exists(self._key("alive", name))
            alive = await self._call("consumers", pipe.execute())
        return [name for name, up in zip(names, alive, strict=True) if not up]

    async def _recover(
        self, dead: Sequence[str], *, include_expired: bool, now: float | None = None
    ) -> int:
        if not dead and not include_expired:
            return 0
        stamp = repr(self._clock() if now is None else now)
        flag = "1" if include_expired else "0"
        count = await self._run("RECOVER", [self.prefix, stamp, flag, self.consumer, *dead])
        if dead:
            await self._call("consumers", self._client.srem(self._key("consumers"), *dead))
        return int(count)

    # Plumbing

    @property
    def _client(self) -> aioredis.Redis:
        if self._redis is None:
            raise StoreError("the redis queue is not open")
        return self._redis

    def _key(self, kind: str, name: str | None = None) -> str:
        return f"{self.prefix}:{kind}" if name is None else f"{self.prefix}:{kind}:{name}"

    async def _run(self, script: str, args: Sequence[bytes | str]) -> Any:
        if self._redis is None:
            raise StoreError("the redis queue is not open")
        return await self._call(script.lower(), self._scripts[script](keys=[], args=list(args)))

    @staticmethod
    async def _call(what: str, pending: Awaitable[T]) -> T:
        """Await a Redis call; its errors become `StoreError` here, the one boundary."""
        try:
            return await pending
        except ResponseError as exc:
            raise StoreError(f"redis ({what}): {exc}") from exc
        except (RedisError, OSError) as exc:
            raise StoreError(f"redis ({what}): {type(exc).__name__}: {exc}") from exc


def _stream_ids(ids: Iterable[int | str]) -> list[str]:
    """Ids as stream ids; one that is not shaped like one cannot exist, so it is dropped."""
    return [str(i) for i in ids if _STREAM_ID.match(str(i))]


def _text(raw: bytes | str | None) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def _float_or_none(raw: bytes | str | None) -> float | None:
    if raw is None or raw in (b"", ""):
        return None
    return float(raw)


def _pairs(flat: Sequence[bytes]) -> dict[bytes, bytes]:
    return {flat[i]: flat[i + 1] for i in range(0, len(flat), 2)}


def _dead_letter(ident: bytes | str, fields: dict[bytes, bytes]) -> DeadLetter:
    consent = fields.get(b"c") or b""
    answer = fields.get(b"w")
    return DeadLetter(
        id=ident.decode() if isinstance(ident, bytes) else ident,
        integration_id=fields[b"i"].decode(),
        event_id=fields[b"e"].decode(),
        event_name=fields[b"n"].decode(),
        event_time=int(fields[b"t"]),
        reason=fields[b"r"].decode(),
        answer=None if answer is None else answer.decode(),
        attempts=int(fields[b"a"]),
        first_attempt_at=_float_or_none(fields.get(b"f")),
        last_attempt_at=_float_or_none(fields.get(b"l")),
        dead_lettered_at=float(fields[b"d"]),
        consent=_consent_decoder.decode(consent) if consent else None,
        payload=fields.get(b"p"),
    )
