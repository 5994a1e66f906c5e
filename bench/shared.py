"""The redis phase's services: Redis and PostgreSQL as the gateway's shared backends.

The harness reaches them directly (not through the gateway) to: check that they answer before
the phase starts, give each mode its own key prefix and schema, read the hit log's backlog and
its streams' memory from Redis, measure what CPU Redis and PostgreSQL spent, and remove every
key and schema the phase made, whatever happens. Also here: merging the latency distributions of
several load generator processes (two wrk instances driving two replicas) into one set of
percentiles.

The URLs default to the test suite's (`GATEWAY_TEST_REDIS_URL`, `GATEWAY_TEST_POSTGRES_URL`,
this machine's services otherwise); `GATEWAY_TEST_REQUIRE_SERVICES=1` turns "unreachable" from a
skipped phase into a failed one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

REDIS_URL = os.environ.get("GATEWAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get(
    "GATEWAY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Percentiles each load generator reports when several drive one mode; fine in the tail, so
# that the merged p99 and p99.9 are within 0.01-0.1 percentile of exact.
QUANTILE_GRID: tuple[float, ...] = (
    tuple(i / 2 for i in range(1, 180))  # 0.5 .. 89.5
    + tuple(round(90 + i / 10, 1) for i in range(90))  # 90.0 .. 98.9
    + tuple(round(99 + i / 100, 2) for i in range(101))  # 99.00 .. 100.00
)


def require_services() -> bool:
    return os.environ.get("GATEWAY_TEST_REQUIRE_SERVICES") == "1"


def merged_percentile(parts: list[tuple[int, list[float]]], pct: float) -> float | None:
    """The `pct` percentile of several distributions together, each given as (count, its
    latencies at QUANTILE_GRID). Each part's CDF at x is taken as the largest grid percentile
    whose latency is <= x: the result is within about a grid step of the exact percentile (on
    two mixed exponential samples of 30,000 and 20,000: p50 +0.7%, p99 +1.6%, p99.9 -0.5%)."""
    parts = [(n, q) for n, q in parts if n and q]
    total = sum(n for n, _ in parts)
    if not total:
        return None
    wanted = pct / 100 * total
    for x in sorted({v for _, q in parts for v in q}):
        covered = 0.0
        for n, q in parts:
            below = 0.0
            for p, value in zip(QUANTILE_GRID, q, strict=True):
                if value > x:
                    break
                below = p
            covered += n * below / 100
        if covered >= wanted - 1e-9:
            return x
    return max(v for _, q in parts for v in q)


@dataclass
class Services:
    """Redis and PostgreSQL for one run of the phase; `names` made here are dropped by close."""

    redis_url: str = REDIS_URL
    postgres_url: str = POSTGRES_URL
    tag: str = field(default_factory=lambda: f"gwbench_{uuid.uuid4().hex[:10]}")
    prefixes: list[str] = field(default_factory=list)
    schemas: list[str] = field(default_factory=list)
    _redis: Any = None

    def unreachable(self) -> str | None:
        """Why the services cannot be used, or None: a PING and a `SELECT 1`, 3 s each."""
        import redis

        try:
            client = redis.Redis.from_url(
                self.redis_url, socket_connect_timeout=3, socket_timeout=3
            )
            client.ping()
            self._redis = client
        except (redis.RedisError, OSError) as exc:
            return f"Redis is not reachable at {self.redis_url}: {exc}"
        try:
            asyncio.run(self._pg("SELECT 1"))
        except Exception as exc:  # asyncpg's errors, OSError, timeouts: all mean "not usable"
            return f"PostgreSQL is not reachable at {self.postgres_url}: {exc!r}"
        return None

    def names(self, mode: str) -> tuple[str, str]:
        """A fresh (Redis key prefix, PostgreSQL schema) for one mode, both dropped by close."""
        name = f"{self.tag}_{mode}"
        self.prefixes.append(name)
        self.schemas.append(name)
        return name, name

    def gateway_settings(self, prefix: str, schema: str) -> dict[str, str]:
        sep = "&" if "?" in self.redis_url else "?"
        pg_sep = "&" if "?" in self.postgres_url else "?"
        return {
            "GATEWAY_QUEUE_URL": f"{self.redis_url}{sep}prefix={prefix}",
            "GATEWAY_DATABASE_URL": f"{self.postgres_url}{pg_sep}schema={schema}",
        }

    def backlog(self, prefix: str) -> int:
        """Hits not yet delivered under the prefix: each consumer group's entries not yet read
        and read but not acknowledged, and its retries (-1 when Redis does not answer)."""
        try:
            return sum(
                self._group_backlog(prefix, _text(consumer), _text(source))
                for consumer, source in self._redis.hgetall(f"{prefix}:hitlog:consumers").items()
            )
        except Exception:
            return -1

    def _group_backlog(self, prefix: str, consumer: str, source: str) -> int:
        stream = f"{prefix}:log:{source}"
        waiting = int(self._redis.zcard(f"{prefix}:hitlog:retry:{consumer}"))
        for group in self._redis.xinfo_groups(stream):
            if _text(group["name"]) != consumer:
                continue
            unread = group.get("lag")
            if unread is None:  # Redis cannot tell (a group made mid-stream): count them
                last = _text(group["last-delivered-id"])
                unread = len(self._redis.xrange(stream, f"({last}", "+", count=100_000))
            waiting += int(unread) + int(group["pending"])
        return waiting

    def stream_usage(self, prefix: str) -> dict[str, int]:
        """The log's streams under the prefix: records retained and the memory Redis gives them
        and their event-id hashes (the debugger's lookups by event id), `MEMORY USAGE`, exact:
        every node counted."""
        records = streams = ids = 0
        for source in self._redis.smembers(f"{prefix}:hitlog:sources"):
            stream = f"{prefix}:log:{_text(source)}"
            records += int(self._redis.xlen(stream))
            streams += int(self._redis.memory_usage(stream, samples=0) or 0)
            id_hash = f"{prefix}:hitlog:ids:{_text(source)}"
            ids += int(self._redis.memory_usage(id_hash, samples=0) or 0)
        return {"records": records, "bytes": streams + ids, "ids_bytes": ids}

    def redis_info(self) -> dict[str, Any]:
        info = self._redis.info()
        config = {}
        with contextlib.suppress(Exception):  # managed services may forbid CONFIG
            config = self._redis.config_get("append*")
        return {
            "version": info.get("redis_version"),
            "appendonly": config.get("appendonly"),
            "appendfsync": config.get("appendfsync"),
        }

    def redis_cpu_s(self) -> float:
        """Redis' own CPU time (all its threads), from INFO: whoever else uses it counts too."""
        info = self._redis.info("cpu")
        return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])

    def postgres_cpu_s(self) -> float | None:
        """CPU time of every PostgreSQL process on this machine (backends that exited are in
        the postmaster's children's times), or None when PostgreSQL is not local."""
        host = urlsplit(self.postgres_url).hostname or "127.0.0.1"
        if host not in ("127.0.0.1", "localhost", "::1"):
            return None
        total = 0
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                if (proc / "comm").read_text().strip() != "postgres":
                    continue
                stat = (proc / "stat").read_text()
                fields = stat[stat.rindex(")") + 2 :].split()
                # utime, stime, and cutime + cstime (the children waited for: ended backends)
                total += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
        return total / CLK_TCK

    def close(self) -> dict[str, Any]:
        """Drop every key prefix and schema this run made; say what is left (should be none)."""
        left = 0
        for prefix in self.prefixes:
            keys = list(self._redis.scan_iter(match=f"{prefix}:*", count=1000))
            for start in range(0, len(keys), 1000):
                self._redis.delete(*keys[start : start + 1000])
            left += sum(1 for _ in self._redis.scan_iter(match=f"{prefix}:*", count=1000))
        for schema in self.schemas:
            asyncio.run(self._pg(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        schemas_left = 0
        if self.schemas:
            schemas_left = int(
                asyncio.run(
                    self._pg(
                        "SELECT count(*) FROM information_schema.schemata"
                        " WHERE schema_name = any($1::text[])",
                        self.schemas,
                    )
                )
                or 0
            )
        self._redis.close()
        return {
            "redis_prefixes": list(self.prefixes),
            "postgres_schemas": list(self.schemas),
            "redis_keys_left": left,
            "postgres_schemas_left": schemas_left,
        }

    async def _pg(self, sql: str, *args: Any) -> Any:
        import asyncpg

        conn = await asyncpg.connect(self.postgres_url, timeout=3)
        try:
            return await conn.fetchval(sql, *args)
        finally:
            await conn.close()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
