"""The embedded configuration store: sources and integrations in one SQLite file.

Access tokens are sealed with a `SecretBox` before they are written and opened when read, so the
file never holds one in plaintext. Every write bumps `config_version` in the same transaction,
which lets the routing cache of every process sharing the file notice a change cheaply.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path
from typing import Any

import msgspec

from gateway.config.base import ConfigStore
from gateway.config.sealed import open_config, seal_config
from gateway.core.crypto import SecretBox
from gateway.core.errors import Conflict, NotFound, StoreError
from gateway.core.models import ConsentDefault, EventSource, Integration, Source
from gateway.core.sqlite import ThreadConnection, immediate

SCHEMA_VERSION = 2

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', 1)",
    "INSERT OR IGNORE INTO meta (key, value) VALUES ('config_version', 0)",
    """CREATE TABLE IF NOT EXISTS sources (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        allowed_origins TEXT NOT NULL,
        cookie_domain TEXT,
        consent_default TEXT NOT NULL,
        default_phone_region TEXT,
        server_key_hash TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS integrations (
        id TEXT PRIMARY KEY,
        source_id TEXT NOT NULL,
        vendor TEXT NOT NULL,
        name TEXT NOT NULL,
        enabled INTEGER NOT NULL,
        consent_categories TEXT NOT NULL,
        paused_reason TEXT,
        config TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS integrations_by_source ON integrations (source_id)",
)

# Version -> statements that bring a file of the version before up to it. `_SCHEMA` is version
# 1 and stays so: a new file is created at 1 and migrated like an old one.
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    2: (
        "ALTER TABLE sources ADD COLUMN event_source TEXT NOT NULL DEFAULT 'web'",
        "ALTER TABLE sources ADD COLUMN event_source_id TEXT",
        "ALTER TABLE sources ADD COLUMN app_id TEXT",
    ),
}

_SOURCE_COLUMNS = """id, name, allowed_origins, cookie_domain, consent_default,
    default_phone_region, event_source, event_source_id, app_id, server_key_hash, created_at,
    updated_at"""
_INTEGRATION_COLUMNS = """id, source_id, vendor, name, enabled, consent_categories,
    paused_reason, config, created_at, updated_at"""


_strings_decoder = msgspec.json.Decoder(list[str])


class SQLiteConfigStore(ConfigStore):
    """The default `ConfigStore`: `path` is the SQLite file, `token_box` seals access tokens."""

    def __init__(self, path: Path, token_box: SecretBox, *, busy_timeout_s: float = 10.0) -> None:
        self.path = path
        self._box = token_box
        # Configuration writes are rare: one thread and connection serve reads and writes.
        self._db = ThreadConnection(path, "config-store", busy_timeout_s)

    async def open(self) -> None:
        await self._db.open()
        await self._db.run(_create_schema)

    async def close(self) -> None:
        await self._db.close()

    # Sources

    async def create_source(self, source: Source) -> Source:
        now = _utc_now()
        row = (*_source_row(source), now, now)
        await self._db.run(_insert, "sources", _SOURCE_COLUMNS, row, _taken("source", source.id))
        return await self.require_source(source.id)

    async def get_source(self, source_id: str) -> Source | None:
        rows = await self._db.run(
            _fetch_all, f"SELECT {_SOURCE_COLUMNS} FROM sources WHERE id = ?", (source_id,)
        )
        return _source_from_row(rows[0]) if rows else None

    async def list_sources(self) -> list[Source]:
        rows = await self._db.run(
            _fetch_all, f"SELECT {_SOURCE_COLUMNS} FROM sources ORDER BY created_at, id", ()
        )
        return [_source_from_row(r) for r in rows]

    async def update_source(self, source: Source) -> Source:
        await self._db.run(
            _update,
            """UPDATE sources SET name = ?, allowed_origins = ?, cookie_domain = ?,
                consent_default = ?, default_phone_region = ?, event_source = ?,
                event_source_id = ?, app_id = ?, server_key_hash = ?, updated_at = ?
            WHERE id = ?""",
            (*_source_row(source)[1:], _utc_now(), source.id),
            NotFound("source", source.id),
        )
        return await self.require_source(source.id)

    async def delete_source(self, source_id: str) -> bool:
        return await self._db.run(_delete_source, source_id)

    # Integrations

    async def create_integration(self, integration: Integration) -> Integration:
        now = _utc_now()
        row = (*self._integration_row(integration), now, now)
        await self._db.run(
            _insert,
            "integrations",
            _INTEGRATION_COLUMNS,
            row,
            _taken("integration", integration.id),
            source_id=integration.source_id,
        )
        return await self.require_integration(integration.id)

    async def get_integration(self, integration_id: str) -> Integration | None:
        rows = await self._db.run(
            _fetch_all,
            f"SELECT {_INTEGRATION_COLUMNS} FROM integrations WHERE id = ?",
            (integration_id,),
        )
        return self._integration_from_row(rows[0]) if rows else None

    async def list_integrations(self, source_id: str | None = None) -> list[Integration]:
        sql = f"SELECT {_INTEGRATION_COLUMNS} FROM integrations"
        params: tuple[str, ...] = ()
        if source_id is not None:
            sql += " WHERE source_id = ?"
            params = (source_id,)
        rows = await self._db.run(_fetch_all, sql + " ORDER BY created_at, id", params)
        return [self._integration_from_row(r) for r in rows]

    async def update_integration(self, integration: Integration) -> Integration:
        await self._db.run(
            _update,
            """UPDATE integrations SET source_id = ?, vendor = ?, name = ?, enabled = ?,
                consent_categories = ?, paused_reason = ?, config = ?, updated_at = ?
            WHERE id = ?""",
            (*self._integration_row(integration)[1:], _utc_now(), integration.id),
            NotFound("integration", integration.id),
            source_id=integration.source_id,
        )
        return await self.require_integration(integration.id)

    async def delete_integration(self, integration_id: str) -> bool:
        return await self._db.run(
            _change, "DELETE FROM integrations WHERE id = ?", (integration_id,)
        )

    async def set_paused(self, integration_id: str, reason: str | None) -> None:
        # Only paused_reason changes (not updated_at: nobody edited the record). An id that no
        # longer exists is ignored: a worker may pause an integration deleted a moment ago.
        await self._db.run(
            _change,
            "UPDATE integrations SET paused_reason = ? WHERE id = ?",
            (reason, integration_id),
        )

    async def config_version(self) -> int:
        rows = await self._db.run(
            _fetch_all, "SELECT value FROM meta WHERE key = 'config_version'", ()
        )
        return int(rows[0][0])

    # Rows <-> records

    def _integration_row(self, integration: Integration) -> tuple[Any, ...]:
        return (
            integration.id,
            integration.source_id,
            integration.vendor,
            integration.name,
            int(integration.enabled),
            _json_list(integration.consent_categories),
            integration.paused_reason,
            seal_config(self._box, integration.vendor, integration.config),
        )

    def _integration_from_row(self, row: tuple[Any, ...]) -> Integration:
        config = open_config(self._box, row[2], row[7], row[0])
        return Integration(
            id=row[0],
            source_id=row[1],
            vendor=row[2],
            name=row[3],
            enabled=bool(row[4]),
            consent_categories=tuple(_strings_decoder.decode(row[5])),
            paused_reason=row[6],
            config=config,
            created_at=row[8],
            updated_at=row[9],
        )


def _source_row(source: Source) -> tuple[Any, ...]:
    return (
        source.id,
        source.name,
        _json_list(source.allowed_origins),
        source.cookie_domain,
        str(source.consent_default),
        source.default_phone_region,
        str(source.event_source),
        source.event_source_id,
        source.app_id,
        source.server_key_hash,
    )


def _source_from_row(row: tuple[Any, ...]) -> Source:
    return Source(
        id=row[0],
        name=row[1],
        allowed_origins=tuple(_strings_decoder.decode(row[2])),
        cookie_domain=row[3],
        consent_default=ConsentDefault(row[4]),
        default_phone_region=row[5],
        event_source=EventSource(row[6]),
        event_source_id=row[7],
        app_id=row[8],
        server_key_hash=row[9],
        created_at=row[10],
        updated_at=row[11],
    )


def _taken(what: str, ident: str) -> Conflict:
    return Conflict("conflict", f"{what} {ident!r} already exists", field="id")


def _json_list(values: tuple[str, ...]) -> str:
    return msgspec.json.encode(list(values)).decode()


def _utc_now() -> str:
    # Microseconds keep creation order visible in `ORDER BY created_at` for quick successions.
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


# --- What runs on the connection thread -------------------------------------------------------


def _create_schema(conn: sqlite3.Connection) -> None:
    with immediate(conn):
        for statement in _SCHEMA:
            conn.execute(statement)
        (version,) = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"config schema {version} is newer than this gateway ({SCHEMA_VERSION})"
            )
        # In the same write transaction: processes opening one file together migrate it once.
        for step in range(version + 1, SCHEMA_VERSION + 1):
            for statement in _MIGRATIONS[step]:
                conn.execute(statement)
            conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (step,))


def _require_source(conn: sqlite3.Connection, source_id: str | None) -> None:
    """An integration must belong to a source that exists (checked in the write transaction)."""
    if source_id is None:
        return
    if conn.execute("SELECT 1 FROM sources WHERE id = ?", (source_id,)).fetchone() is None:
        raise NotFound("source", source_id)


def _bump_version(conn: sqlite3.Connection) -> None:
    conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'config_version'")


def _fetch_all(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> list[Any]:
    return conn.execute(sql, params).fetchall()


def _insert(
    conn: sqlite3.Connection,
    table: str,
    columns: str,
    row: tuple[Any, ...],
    taken: Conflict,
    source_id: str | None = None,
) -> None:
    marks = ",".join("?" * len(row))
    with immediate(conn):
        _require_source(conn, source_id)
        try:
            conn.execute(f"INSERT INTO {table} ({columns}) VALUES ({marks})", row)
        except sqlite3.IntegrityError:
            raise taken from None
        _bump_version(conn)


def _update(
    conn: sqlite3.Connection,
    sql: str,
    params: tuple[Any, ...],
    missing: NotFound,
    source_id: str | None = None,
) -> None:
    with immediate(conn):
        _require_source(conn, source_id)
        if conn.execute(sql, params).rowcount == 0:
            raise missing
        _bump_version(conn)


def _change(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> bool:
    """Run a write; bump the version only when it changed a row."""
    with immediate(conn):
        changed = conn.execute(sql, params).rowcount > 0
        if changed:
            _bump_version(conn)
    return changed


def _delete_source(conn: sqlite3.Connection, source_id: str) -> bool:
    with immediate(conn):
        if conn.execute("DELETE FROM sources WHERE id = ?", (source_id,)).rowcount == 0:
            return False
        conn.execute("DELETE FROM integrations WHERE source_id = ?", (source_id,))
        _bump_version(conn)
    return True
