"""The delivery worker's view of integration configurations.

Each integration is read from the store at most every `ttl_s`, and the whole cache is dropped as
soon as the store's configuration version changes (polled every `version_poll_s`): a pause, a
resume or a new token reaches delivery within a fraction of a second, without a store read for
every batch. A pause the worker decides itself is put here first, so that until the store's new
version is read the cache already says "paused".
"""

from __future__ import annotations

from collections.abc import Callable

from gateway.config.base import ConfigStore
from gateway.core.metrics import Metrics
from gateway.core.models import Integration, Source

VERSION_POLL_S = 0.25


class ConfigCache:
    def __init__(
        self,
        store: ConfigStore,
        metrics: Metrics,
        *,
        monotonic: Callable[[], float],
        ttl_s: float,
        version_poll_s: float = VERSION_POLL_S,
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._monotonic = monotonic
        self._ttl_s = ttl_s
        self._version_poll_s = version_poll_s
        self._configs: dict[str, tuple[Integration | None, float]] = {}
        # An integration's source decides the request envelope (event_source and its id).
        self._sources: dict[str, tuple[Source | None, float]] = {}
        self._version: int | None = None
        self._version_checked = float("-inf")

    def clear(self) -> None:
        """Forget everything (the admin API resumed or changed an integration)."""
        self._configs.clear()
        self._sources.clear()
        self._version = None

    def put(self, integration: Integration) -> None:
        """The worker changed this integration itself (paused it): believe it until re-read."""
        self._configs[integration.id] = (integration, self._monotonic())

    async def get(self, integration_id: str, *, fresh: bool = False) -> Integration | None:
        """The integration's config (None once deleted); `fresh` reads the store regardless."""
        mono = await self._check_version()
        cached = self._configs.get(integration_id)
        if not fresh and cached is not None and mono - cached[1] < self._ttl_s:
            return cached[0]
        integration = await self._store.get_integration(integration_id)
        self._configs[integration_id] = (integration, mono)
        paused = integration is not None and integration.paused_reason is not None
        self._metrics.integration_paused.labels(integration_id).set(1 if paused else 0)
        return integration

    async def get_source(self, source_id: str) -> Source | None:
        """The source's record (None once deleted), cached like the integrations."""
        mono = await self._check_version()
        cached = self._sources.get(source_id)
        if cached is not None and mono - cached[1] < self._ttl_s:
            return cached[0]
        source = await self._store.get_source(source_id)
        self._sources[source_id] = (source, mono)
        return source

    async def _check_version(self) -> float:
        """Drop everything when the store's configuration changed; returns the monotonic now."""
        mono = self._monotonic()
        if mono - self._version_checked >= self._version_poll_s:
            self._version_checked = mono
            version = await self._store.config_version()
            if version != self._version:
                self._configs.clear()
                self._sources.clear()
                self._version = version
        return mono
