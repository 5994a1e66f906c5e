"""A source's `event_source` and `event_source_id` in both configuration stores, and the
migration that adds them to a store written before they existed."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from gateway.config.base import ConfigStore
from gateway.config.postgres import MIGRATIONS, PostgresConfigStore
from gateway.config.sqlite import SQLiteConfigStore
from gateway.core.models import EventSource
from tests.backends import (
    POSTGRES_URL,
    drop_postgres_schema,
    require_service,
    token_box,
    unique_name,
)
from tests.test_store import source


async def test_event_source_round_trip(config_store: ConfigStore) -> None:
    created = await config_store.create_source(
        source(event_source=EventSource.CRM, event_source_id="7301234567890123456")
    )
    assert (created.event_source, created.event_source_id) == (
        EventSource.CRM,
        "7301234567890123456",
    )
    updated = await config_store.update_source(
        source(
            event_source=EventSource.APP,
            event_source_id="7000000000000000001",
            app_id="com.example.shop",
        )
    )
    assert (updated.event_source, updated.event_source_id, updated.app_id) == (
        EventSource.APP,
        "7000000000000000001",
        "com.example.shop",
    )
    back_to_web = await config_store.update_source(source())
    assert (back_to_web.event_source, back_to_web.event_source_id, back_to_web.app_id) == (
        EventSource.WEB,
        None,
        None,
    )
    assert await config_store.get_source("src_abc123") == back_to_web


# The sources table as the gateway's first release created it (config schema 1).
_SQLITE_SCHEMA_1 = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    "INSERT INTO meta (key, value) VALUES ('schema_version', 1), ('config_version', 3)",
    """CREATE TABLE sources (
        id TEXT PRIMARY KEY, name TEXT NOT NULL, allowed_origins TEXT NOT NULL,
        cookie_domain TEXT, consent_default TEXT NOT NULL, default_phone_region TEXT,
        server_key_hash TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL)""",
    """INSERT INTO sources VALUES ('src_old', 'Old shop', '["https://old.example"]', NULL,
        'deny', 'DE', 'cd', '2026-01-01T00:00:00.000000Z', '2026-01-01T00:00:00.000000Z')""",
)


async def test_sqlite_file_from_before_event_source_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "config.db"
    with sqlite3.connect(path) as conn:
        for statement in _SQLITE_SCHEMA_1:
            conn.execute(statement)
    conn.close()

    store = SQLiteConfigStore(path, token_box())
    await store.open()
    try:
        old = await store.require_source("src_old")
        assert (old.name, old.default_phone_region) == ("Old shop", "DE")
        assert (old.event_source, old.event_source_id, old.app_id) == (EventSource.WEB, None, None)
        updated = await store.update_source(
            source("src_old", event_source=EventSource.OFFLINE, event_source_id="OFF1")
        )
        assert updated.event_source is EventSource.OFFLINE
    finally:
        await store.close()
    with sqlite3.connect(path) as conn:
        (version,) = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    conn.close()
    assert version == 2


@pytest.fixture
async def schema() -> AsyncIterator[str]:
    require_service("PostgreSQL", POSTGRES_URL)
    name = unique_name("s")
    yield name
    await drop_postgres_schema(name)


async def test_postgres_schema_from_before_event_source_is_migrated(schema: str) -> None:
    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        await conn.execute(f'SET search_path TO "{schema}"')
        await conn.execute(
            """CREATE TABLE gateway_schema_migrations (version integer PRIMARY KEY,
                applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        for statement in MIGRATIONS[1]:
            await conn.execute(statement)
        await conn.execute("INSERT INTO gateway_schema_migrations (version) VALUES (1)")
        await conn.execute(
            """INSERT INTO sources VALUES ('src_old', 'Old shop', '[]', NULL, 'deny', NULL, 'cd',
                now(), now())"""
        )
    finally:
        await conn.close()

    store = PostgresConfigStore(POSTGRES_URL, token_box(), schema=schema)
    await store.open()
    try:
        old = await store.require_source("src_old")
        assert (old.event_source, old.event_source_id) == (EventSource.WEB, None)
        updated = await store.update_source(
            source("src_old", event_source=EventSource.CRM, event_source_id="CRM1")
        )
        assert (updated.event_source, updated.event_source_id) == (EventSource.CRM, "CRM1")
    finally:
        await store.close()
