"""Storage backends under test: every hit log and config-store test runs once per backend.

SQLite always; Redis and PostgreSQL against the real services (`GATEWAY_TEST_REDIS_URL`,
`GATEWAY_TEST_POSTGRES_URL`, defaulting to this machine's), skipped when a service does not
answer unless `GATEWAY_TEST_REQUIRE_SERVICES=1` (CI), which makes that a failure. Each test gets
its own Redis key prefix or PostgreSQL schema, removed afterwards. A factory fixture opens further
handles onto the same storage, the way several replicas share it, and closes every handle it opened.
"""

from __future__ import annotations

import functools
import os
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from gateway.config.base import ConfigStore
from gateway.config.postgres import PostgresConfigStore
from gateway.config.sqlite import SQLiteConfigStore
from gateway.core.crypto import SecretBox
from gateway.core.settings import Secret
from gateway.log import HitLog
from gateway.log.redis import RedisHitLog
from gateway.log.sqlite import SQLiteHitLog

LOG_BACKENDS = ["sqlite", "redis"]
STORE_BACKENDS = ["sqlite", "postgresql"]
DEFAULT_MAX_RECORDS = 1_000_000
WINDOW_S = 3600.0  # the logs' retention window, unless a test sets its own
REDIS_URL = os.environ.get("GATEWAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get(
    "GATEWAY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REQUIRE_SERVICES = os.environ.get("GATEWAY_TEST_REQUIRE_SERVICES") == "1"

OpenLog = Callable[..., Awaitable[HitLog]]
OpenStore = Callable[[], Awaitable[ConfigStore]]


def token_box() -> SecretBox:
    return SecretBox([Secret("test-secret-key-0123456789-abcdefghij")], "token")


@functools.cache
def _answers(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), 1.0):
            return True
    except OSError:
        return False


def require_service(name: str, url: str) -> None:
    """Skip (or, in CI, fail) a test whose service does not answer."""
    if _answers(url):
        return
    message = f"{name} is not reachable at {url}"
    if REQUIRE_SERVICES:
        pytest.fail(f"{message} and GATEWAY_TEST_REQUIRE_SERVICES=1")
    pytest.skip(message)


def unique_name(kind: str) -> str:
    return f"gwtest_{kind}_{uuid.uuid4().hex[:12]}"


async def drop_redis_prefix(prefix: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


async def drop_postgres_schema(schema: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


def _new_store(backend: str, data_dir: Path, name: str) -> ConfigStore:
    if backend == "sqlite":
        return SQLiteConfigStore(data_dir / "config.db", token_box())
    if backend == "postgresql":
        return PostgresConfigStore(POSTGRES_URL, token_box(), schema=name)
    raise AssertionError(f"unknown store backend {backend!r}")


@pytest.fixture(params=LOG_BACKENDS)
async def log_factory(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[OpenLog]:
    """`await log_factory(max_records=5, name="r1")`: one more handle onto the same log storage
    (`name` is the Redis consumer name of the handle, as a replica's; SQLite has none)."""
    backend: str = request.param
    if backend == "redis":
        require_service("Redis", REDIS_URL)
    prefix = unique_name("log")
    opened: list[HitLog] = []

    async def open_handle(
        max_records: int = DEFAULT_MAX_RECORDS,
        max_bytes: int | None = None,
        retention_s: float = WINDOW_S,
        name: str | None = None,
    ) -> HitLog:
        handle: HitLog
        if backend == "sqlite":
            handle = SQLiteHitLog(
                tmp_path / "hitlog.db",
                max_records=max_records,
                max_bytes=max_bytes,
                retention_s=retention_s,
            )
        else:
            handle = RedisHitLog(
                REDIS_URL,
                max_records=max_records,
                max_bytes=max_bytes,
                retention_s=retention_s,
                prefix=prefix,
                name=name,
            )
        await handle.open()
        opened.append(handle)
        return handle

    open_handle.backend = backend  # type: ignore[attr-defined]
    try:
        yield open_handle
    finally:
        for handle in reversed(opened):
            await handle.close()  # close is idempotent: a test may have closed it already
        if backend == "redis":
            await drop_redis_prefix(prefix)


def backend_of(log_factory: OpenLog) -> str:
    """Which backend a `log_factory` opens: "sqlite" or "redis"."""
    return str(log_factory.backend)  # type: ignore[attr-defined]


@pytest.fixture
async def hitlog(log_factory: OpenLog) -> HitLog:
    return await log_factory()


@pytest.fixture(params=STORE_BACKENDS)
async def config_store_factory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[OpenStore]:
    """`await config_store_factory()`: one more handle onto the same configuration storage."""
    backend: str = request.param
    if backend == "postgresql":
        require_service("PostgreSQL", POSTGRES_URL)
    name = unique_name("s")
    opened: list[ConfigStore] = []

    async def open_store() -> ConfigStore:
        store = _new_store(backend, tmp_path, name)
        await store.open()
        opened.append(store)
        return store

    try:
        yield open_store
    finally:
        for store in reversed(opened):
            await store.close()
        if backend == "postgresql":
            await drop_postgres_schema(name)


@pytest.fixture
async def config_store(config_store_factory: OpenStore) -> ConfigStore:
    return await config_store_factory()


@pytest.fixture
async def shared_urls() -> AsyncIterator[dict[str, str]]:
    """GATEWAY_QUEUE_URL and GATEWAY_DATABASE_URL on a key prefix and a schema of their own."""
    require_service("Redis", REDIS_URL)
    require_service("PostgreSQL", POSTGRES_URL)
    prefix, schema = unique_name("q"), unique_name("s")
    yield {
        "GATEWAY_QUEUE_URL": f"{REDIS_URL}?prefix={prefix}",
        "GATEWAY_DATABASE_URL": f"{POSTGRES_URL}?schema={schema}",
    }
    await drop_redis_prefix(prefix)
    await drop_postgres_schema(schema)
