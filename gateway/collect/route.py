"""Routing: a hit's source -> the integrations that receive it, with the consent gate.

Configuration is read through aiocache, so the hot path does no database read; in front of it a
plain dict keeps the routes already looked up, because each aiocache `get` passes through several
decorators (one reads the environment) that cost more than the hit's own routing. A change made
through this process's Management API calls `invalidate()` and takes effect at once; a change
made by another process (``--workers N``) is noticed by a watcher that polls the store's
`config_version` twice a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

from aiocache import SimpleMemoryCache

from gateway.config.base import ConfigStore
from gateway.core.models import ConsentDefault, Integration, Source

log = logging.getLogger(__name__)
# aiocache logs every key it is asked for at DEBUG, and the routing table's keys are source ids
# as clients send them (anything, an email address included): never at DEBUG, whatever the
# process's log level.
logging.getLogger("aiocache").setLevel(logging.INFO)

# Entries live long: invalidation, not expiry, is what keeps them fresh. The TTL only bounds
# how long a missed notification could matter.
CACHE_TTL_S = 30
WATCH_INTERVAL_S = 0.5
# Source ids are validated by the Management API (no spaces), so this key cannot collide.
_ORIGINS_KEY = " origins"


@dataclass(frozen=True, slots=True)
class Route:
    """A source and the integrations configured for it (enabled ones only)."""

    source: Source
    integrations: tuple[Integration, ...]


def consent_allows(
    integration: Integration,
    consent: Mapping[str, bool] | None,
    default: ConsentDefault,
) -> bool:
    """Whether a hit with this consent object may go to this integration.

    Every category the integration needs must be granted; a hit without a consent object is
    decided by its source's default; an integration needing no category takes every hit.
    """
    if not integration.consent_categories:
        return True
    if consent is None:
        return default is ConsentDefault.GRANT
    return all(consent.get(category) is True for category in integration.consent_categories)


class Router:
    def __init__(self, store: ConfigStore) -> None:
        self._store = store
        # No timeout: a memory lookup cannot hang, and aiocache's timeout costs a task per get.
        self._cache = SimpleMemoryCache(timeout=None)
        # The hot path's routes: emptied with the cache, and every CACHE_TTL_S by the watcher.
        self._routes: dict[str, Route] = {}
        self._routes_since = time.monotonic()
        self._version: int | None = None
        self._watcher: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._version = await self._store.config_version()
        self._watcher = asyncio.create_task(self._watch(), name="config-watcher")

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        await self._cache.close()

    @property
    def store(self) -> ConfigStore:
        """The configuration the table is read from (for lookups it does not cache itself)."""
        return self._store

    async def route(self, source_id: str) -> Route | None:
        """The source and its enabled integrations, or None for an unknown source."""
        known = self._routes.get(source_id)
        if known is not None:
            return known
        cached: Route | None = await self._cache.get(source_id)
        if cached is not None:
            self._routes[source_id] = cached
            return cached
        source = await self._store.get_source(source_id)
        if source is None:
            # Unknown ids are not cached: a flood of random ids must not fill memory.
            return None
        integrations = tuple(i for i in await self._store.list_integrations(source_id) if i.enabled)
        route = Route(source, integrations)
        await self._cache.set(source_id, route, ttl=CACHE_TTL_S)
        self._routes[source_id] = route
        return route

    async def allowed_origins(self) -> frozenset[str]:
        """Every origin some source allows: a CORS preflight names no source, so it uses these."""
        cached: frozenset[str] | None = await self._cache.get(_ORIGINS_KEY)
        if cached is not None:
            return cached
        origins = frozenset(
            origin
            for source in await self._store.list_sources()
            for origin in source.allowed_origins
        )
        await self._cache.set(_ORIGINS_KEY, origins, ttl=CACHE_TTL_S)
        return origins

    async def invalidate(self) -> None:
        # The cache first: a lookup in between must not copy a stale route back into the dict.
        await self._cache.clear()
        self._forget_routes()

    def _forget_routes(self) -> None:
        self._routes = {}
        self._routes_since = time.monotonic()

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(WATCH_INTERVAL_S)
            if time.monotonic() - self._routes_since >= CACHE_TTL_S:
                self._forget_routes()
            try:
                version = await self._store.config_version()
            except Exception:  # a passing store failure must not kill the watcher
                log.warning("config version check failed", exc_info=True)
                continue
            if version != self._version:
                self._version = version
                await self.invalidate()
