"""What only the PostgreSQL store does: migrations shared by replicas, tokens sealed in the rows,
and a change on one replica reaching another's router within a second.

The common contract runs in test_store.py; these tests open several stores on one schema.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest

from gateway.collect.route import Router
from gateway.config.postgres import SCHEMA_VERSION, PostgresConfigStore, split_database_url
from gateway.core.errors import StoreError
from tests.backends import (
    POSTGRES_URL,
    drop_postgres_schema,
    require_service,
    token_box,
    unique_name,
)
from tests.test_store import TOKEN, integration, source

Replica = Callable[[], Awaitable[PostgresConfigStore]]


@pytest.fixture
async def schema() -> AsyncIterator[str]:
    require_service("PostgreSQL", POSTGRES_URL)
    name = unique_name("s")
    yield name
    await drop_postgres_schema(name)


@pytest.fixture
async def replica(schema: str) -> AsyncIterator[Replica]:
    opened: list[PostgresConfigStore] = []

    async def start() -> PostgresConfigStore:
        store = PostgresConfigStore(POSTGRES_URL, token_box(), schema=schema)
        opened.append(store)
        await store.open()
        return store

    yield start
    for store in opened:
        await store.close()


async def query(schema: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(POSTGRES_URL, server_settings={"search_path": schema})
    try:
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


async def test_replicas_starting_together_migrate_once(replica: Replica, schema: str) -> None:
    stores = await asyncio.gather(*(replica() for _ in range(6)))
    await stores[0].create_source(source())
    assert [s.id for s in await stores[5].list_sources()] == ["src_abc123"]
    rows = await query(schema, "SELECT version FROM gateway_schema_migrations ORDER BY version")
    assert [r["version"] for r in rows] == list(range(1, SCHEMA_VERSION + 1))


async def test_a_newer_schema_is_refused(replica: Replica, schema: str) -> None:
    await replica()
    await query(schema, f"INSERT INTO gateway_schema_migrations VALUES ({SCHEMA_VERSION + 1})")
    with pytest.raises(StoreError, match="newer than this gateway"):
        await replica()


async def test_access_token_is_sealed_in_the_row(replica: Replica, schema: str) -> None:
    store = await replica()
    await store.create_source(source())
    await store.create_integration(integration())
    (row,) = await query(schema, "SELECT config::text AS config FROM integrations")
    assert "CXXXXXXXXXXXXXXXXX" in row["config"]
    assert TOKEN not in row["config"]


async def test_another_replicas_router_sees_a_change_within_a_second(replica: Replica) -> None:
    writer, reader = await replica(), await replica()
    await writer.create_source(source())
    router = Router(reader)
    await router.start()
    try:
        assert (await router.route("src_abc123")) is not None
        assert (await router.route("src_abc123")).integrations == ()  # type: ignore[union-attr]
        await writer.create_integration(integration())
        loop = asyncio.get_running_loop()
        started = loop.time()
        while not (await router.route("src_abc123")).integrations:  # type: ignore[union-attr]
            assert loop.time() - started < 1.0, "the change took longer than a second"
            await asyncio.sleep(0.02)
    finally:
        await router.stop()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u@h/db", ("postgresql://u@h/db", None)),
        (
            "postgresql://u@h/db?schema=gw&sslmode=require",
            ("postgresql://u@h/db?sslmode=require", "gw"),
        ),
    ],
    ids=["plain", "schema"],
)
def test_database_url_schema(url: str, expected: tuple[str, str | None]) -> None:
    assert split_database_url(url) == expected
