"""The shared configuration store: sources and integrations in PostgreSQL, through asyncpg.

Every replica opens the same database. The schema is versioned: `MIGRATIONS` lists each version's
statements and start-up applies the missing ones, each in its own transaction, while holding a
PostgreSQL advisory lock, so replicas starting together migrate once and the others wait and
find the work done. A database migrated by a newer gateway is refused rather than misread.

Secrets are sealed (`config/sealed.py`, by each destination) exactly as in SQLite. Every write
bumps the `config_version` row in the same transaction; the router of every replica polls it
twice a second, so a change made on one replica reaches the others within a second.

`schema` (or `?schema=` in the URL) puts the tables in a schema of their own, created if
needed: several gateways (or test runs) can share one database.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from gateway.config.base import ConfigStore
from gateway.config.sealed import open_config, seal_config
from gateway.core.crypto import SecretBox
from gateway.core.errors import Conflict, NotFound, StoreError
from gateway.core.models import ConsentDefault, EventSource, Integration, Source

T = TypeVar("T")

# Version -> statements. Append a new version for every change; never edit a released one.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """CREATE TABLE gateway_meta (key text PRIMARY KEY, value bigint NOT NULL)""",
        """INSERT INTO gateway_meta (key, value) VALUES ('config_version', 0)""",
        """CREATE TABLE sources (
            id text PRIMARY KEY,
            name text NOT NULL,
            allowed_origins jsonb NOT NULL,
            cookie_domain text,
            consent_default text NOT NULL,
            default_phone_region text,
            server_key_hash text NOT NULL,
            created_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL
        )""",
        """CREATE TABLE integrations (
            id text PRIMARY KEY,
            source_id text NOT NULL REFERENCES sources (id) ON DELETE CASCADE,
            vendor text NOT NULL,
            name text NOT NULL,
            enabled boolean NOT NULL,
            consent_categories jsonb NOT NULL,
            paused_reason text,
            config jsonb NOT NULL,
            created_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL
        )""",
        "CREATE INDEX integrations_by_source ON integrations (source_id)",
    ),
    # Sources say where their events happen (TikTok's event_source) and under which TikTok id.
    2: (
        "ALTER TABLE sources ADD COLUMN event_source text NOT NULL DEFAULT 'web'",
        "ALTER TABLE sources ADD COLUMN event_source_id text",
        "ALTER TABLE sources ADD COLUMN app_id text",
    ),
}
SCHEMA_VERSION = max(MIGRATIONS)

_SOURCE_COLUMNS = """id, name, allowed_origins::text, cookie_domain, consent_default,
    default_phone_region, event_source, event_source_id, app_id, server_key_hash, created_at,
    updated_at"""
_INTEGRATION_COLUMNS = """id, source_id, vendor, name, enabled, consent_categories::text,
    paused_reason, config::text, created_at, updated_at"""
_BUMP = "UPDATE gateway_meta SET value = value + 1 WHERE key = 'config_version'"


def split_database_url(url: str) -> tuple[str, str | None]:
    """`postgresql://h/db?schema=gw` -> (the URL for asyncpg, the schema or None)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((v for k, v in query if k == "schema" and v), None)
    rest = urlencode([(k, v) for k, v in query if k != "schema"])
    return urlunsplit(parts._replace(query=rest)), schema


class PostgresConfigStore(ConfigStore):
    """`url` is a `postgresql://` URL; `token_box` seals access tokens."""

    def __init__(
        self, url: str, token_box: SecretBox, *, schema: str | None = None, pool_size: int = 5
    ) -> None:
        dsn, url_schema = split_database_url(url)
        self.schema = schema or url_schema
        self._dsn = dsn.replace("postgres://", "postgresql://", 1)
        self._box = token_box
        self._pool_size = pool_size
        self._pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        settings = {"application_name": "tiktok-event-gateway"}
        if self.schema is not None:
            settings["search_path"] = _quote(self.schema)
        self._pool = await self._call(
            asyncpg.create_pool(
                self._dsn,
                min_size=1,
                max_size=self._pool_size,
                command_timeout=15,
                server_settings=settings,
            )
        )
        await self._migrate()

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def _migrate(self) -> None:
        await self._call(self._migrate_locked())

    async def _migrate_locked(self) -> None:
        """Apply the missing migrations, one replica at a time (an advisory lock per schema)."""
        lock = f"tiktok-event-gateway migrations {self.schema or 'default'}"
        async with self._acquire() as conn:
            await conn.execute("SELECT pg_advisory_lock(hashtext($1))", lock)
            try:
                if self.schema is not None:
                    await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {_quote(self.schema)}")
                await conn.execute(
                    """CREATE TABLE IF NOT EXISTS gateway_schema_migrations (
                        version integer PRIMARY KEY,
                        applied_at timestamptz NOT NULL DEFAULT now())"""
                )
                applied = await conn.fetchval(
                    "SELECT coalesce(max(version), 0) FROM gateway_schema_migrations"
                )
                if applied > SCHEMA_VERSION:
                    raise StoreError(
                        f"config schema {applied} is newer than this gateway ({SCHEMA_VERSION})"
                    )
                for version in sorted(v for v in MIGRATIONS if v > applied):
                    async with conn.transaction():
                        for statement in MIGRATIONS[version]:
                            await conn.execute(statement)
                        await conn.execute(
                            "INSERT INTO gateway_schema_migrations (version) VALUES ($1)", version
                        )
            finally:
                await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", lock)

    # Sources

    async def create_source(self, source: Source) -> Source:
        now = _utc_now()
        async with self._transaction() as conn:
            try:
                await conn.execute(
                    f"INSERT INTO sources ({_SOURCE_COLUMNS.replace('::text', '')})"
                    " VALUES ($1, $2, $3::jsonb, $4, $5, $6, $7, $8, $9, $10, $11, $11)",
                    *_source_row(source),
                    now,
                )
            except asyncpg.UniqueViolationError:
                raise _taken("source", source.id) from None
            await conn.execute(_BUMP)
        return await self.require_source(source.id)

    async def get_source(self, source_id: str) -> Source | None:
        row = await self._fetchrow(
            f"SELECT {_SOURCE_COLUMNS} FROM sources WHERE id = $1", source_id
        )
        return None if row is None else _source_from_row(row)

    async def list_sources(self) -> list[Source]:
        rows = await self._fetch(f"SELECT {_SOURCE_COLUMNS} FROM sources ORDER BY created_at, id")
        return [_source_from_row(r) for r in rows]

    async def update_source(self, source: Source) -> Source:
        async with self._transaction() as conn:
            status = await conn.execute(
                """UPDATE sources SET name = $2, allowed_origins = $3::jsonb, cookie_domain = $4,
                    consent_default = $5, default_phone_region = $6, event_source = $7,
                    event_source_id = $8, app_id = $9, server_key_hash = $10, updated_at = $11
                WHERE id = $1""",
                *_source_row(source),
                _utc_now(),
            )
            if _changed(status) == 0:
                raise NotFound("source", source.id)
            await conn.execute(_BUMP)
        return await self.require_source(source.id)

    async def delete_source(self, source_id: str) -> bool:
        # Its integrations go with it (ON DELETE CASCADE), in the same transaction.
        return await self._change("DELETE FROM sources WHERE id = $1", source_id)

    # Integrations

    async def create_integration(self, integration: Integration) -> Integration:
        now = _utc_now()
        async with self._transaction() as conn:
            try:
                await conn.execute(
                    f"""INSERT INTO integrations ({_INTEGRATION_COLUMNS.replace("::text", "")})
                    VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8::jsonb, $9, $9)""",
                    *self._integration_row(integration),
                    now,
                )
            except asyncpg.UniqueViolationError:
                raise _taken("integration", integration.id) from None
            except asyncpg.ForeignKeyViolationError:
                raise NotFound("source", integration.source_id) from None
            await conn.execute(_BUMP)
        return await self.require_integration(integration.id)

    async def get_integration(self, integration_id: str) -> Integration | None:
        row = await self._fetchrow(
            f"SELECT {_INTEGRATION_COLUMNS} FROM integrations WHERE id = $1", integration_id
        )
        return None if row is None else self._integration_from_row(row)

    async def list_integrations(self, source_id: str | None = None) -> list[Integration]:
        sql = f"SELECT {_INTEGRATION_COLUMNS} FROM integrations"
        if source_id is None:
            rows = await self._fetch(sql + " ORDER BY created_at, id")
        else:
            rows = await self._fetch(
                sql + " WHERE source_id = $1 ORDER BY created_at, id", source_id
            )
        return [self._integration_from_row(r) for r in rows]

    async def update_integration(self, integration: Integration) -> Integration:
        async with self._transaction() as conn:
            try:
                status = await conn.execute(
                    """UPDATE integrations SET source_id = $2, vendor = $3, name = $4,
                        enabled = $5, consent_categories = $6::jsonb, paused_reason = $7,
                        config = $8::jsonb, updated_at = $9
                    WHERE id = $1""",
                    *self._integration_row(integration),
                    _utc_now(),
                )
            except asyncpg.ForeignKeyViolationError:
                raise NotFound("source", integration.source_id) from None
            if _changed(status) == 0:
                raise NotFound("integration", integration.id)
            await conn.execute(_BUMP)
        return await self.require_integration(integration.id)

    async def delete_integration(self, integration_id: str) -> bool:
        return await self._change("DELETE FROM integrations WHERE id = $1", integration_id)

    async def set_paused(self, integration_id: str, reason: str | None) -> None:
        # Only paused_reason changes; an id deleted a moment ago is ignored (as in SQLite).
        await self._change(
            "UPDATE integrations SET paused_reason = $2 WHERE id = $1", integration_id, reason
        )

    async def config_version(self) -> int:
        value = await self._fetchrow("SELECT value FROM gateway_meta WHERE key = 'config_version'")
        assert value is not None
        return int(value[0])

    # Plumbing

    def _acquire(self) -> Any:
        if self._pool is None:
            raise StoreError("the postgresql store is not open")
        return self._pool.acquire()

    def _transaction(self) -> _Transaction:
        if self._pool is None:
            raise StoreError("the postgresql store is not open")
        return _Transaction(self._pool)

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        async def fetch() -> list[asyncpg.Record]:
            async with self._acquire() as conn:
                rows: list[asyncpg.Record] = await conn.fetch(sql, *args)
                return rows

        return await self._call(fetch())

    async def _fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        rows = await self._fetch(sql, *args)
        return rows[0] if rows else None

    async def _change(self, sql: str, *args: Any) -> bool:
        """Run a write; bump the version only when it changed a row."""
        async with self._transaction() as conn:
            changed = _changed(await conn.execute(sql, *args)) > 0
            if changed:
                await conn.execute(_BUMP)
        return changed

    @staticmethod
    async def _call(pending: Awaitable[T]) -> T:
        try:
            return await pending
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise StoreError(f"postgresql: {type(exc).__name__}: {exc}") from exc

    def _integration_row(self, integration: Integration) -> tuple[Any, ...]:
        return (
            integration.id,
            integration.source_id,
            integration.vendor,
            integration.name,
            integration.enabled,
            json.dumps(list(integration.consent_categories)),
            integration.paused_reason,
            seal_config(self._box, integration.vendor, integration.config),
        )

    def _integration_from_row(self, row: Sequence[Any]) -> Integration:
        return Integration(
            id=row[0],
            source_id=row[1],
            vendor=row[2],
            name=row[3],
            enabled=row[4],
            consent_categories=tuple(json.loads(row[5])),
            paused_reason=row[6],
            config=open_config(self._box, row[2], row[7], row[0]),
            created_at=_iso(row[8]),
            updated_at=_iso(row[9]),
        )


class _Transaction:
    """`async with`: a pooled connection inside a transaction; driver errors -> StoreError.

    The gateway's own errors (Conflict, NotFound) raised inside roll back and pass through.
    """

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._conn: Any = None
        self._tx: Any = None

    async def __aenter__(self) -> Any:
        try:
            self._conn = await self._pool.acquire()
            self._tx = self._conn.transaction()
            await self._tx.start()
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            if self._conn is not None:
                await self._pool.release(self._conn)
            raise StoreError(f"postgresql: {type(exc).__name__}: {exc}") from exc
        return self._conn

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        try:
            if exc_type is None:
                await self._tx.commit()
            else:
                await self._tx.rollback()
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as error:
            raise StoreError(f"postgresql: {type(error).__name__}: {error}") from error
        finally:
            await self._pool.release(self._conn)
        if isinstance(exc, asyncpg.PostgresError | asyncpg.InterfaceError | OSError):
            raise StoreError(f"postgresql: {type(exc).__name__}: {exc}") from exc


def _source_row(source: Source) -> tuple[Any, ...]:
    return (
        source.id,
        source.name,
        json.dumps(list(source.allowed_origins)),
        source.cookie_domain,
        str(source.consent_default),
        source.default_phone_region,
        str(source.event_source),
        source.event_source_id,
        source.app_id,
        source.server_key_hash,
    )


def _source_from_row(row: Sequence[Any]) -> Source:
    return Source(
        id=row[0],
        name=row[1],
        allowed_origins=tuple(json.loads(row[2])),
        cookie_domain=row[3],
        consent_default=ConsentDefault(row[4]),
        default_phone_region=row[5],
        event_source=EventSource(row[6]),
        event_source_id=row[7],
        app_id=row[8],
        server_key_hash=row[9],
        created_at=_iso(row[10]),
        updated_at=_iso(row[11]),
    )


def _changed(status: str) -> int:
    """Rows a command changed, from asyncpg's status string ("UPDATE 1", "DELETE 0")."""
    return int(status.rsplit(" ", 1)[-1])


def _taken(what: str, ident: str) -> Conflict:
    return Conflict("conflict", f"{what} {ident!r} already exists", field="id")


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _iso(value: dt.datetime) -> str:
    # Same shape as the SQLite store: microseconds, "Z".
    return value.astimezone(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
