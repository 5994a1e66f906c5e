"""The configuration store interface (SQLite now; PostgreSQL later).

The store owns persistence only. Validation happens in the Management API, routing reads go
through the cache in `collect/route.py`, and secrets are sealed by the store with a
`SecretBox` (each destination says what its secrets are) before they touch disk.
"""

from __future__ import annotations

import abc

from gateway.core.errors import NotFound
from gateway.core.models import Integration, Source


class ConfigStore(abc.ABC):
    @abc.abstractmethod
    async def open(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    # Sources
    @abc.abstractmethod
    async def create_source(self, source: Source) -> Source:
        """Insert; raises `Conflict` when the id exists."""

    @abc.abstractmethod
    async def get_source(self, source_id: str) -> Source | None: ...

    @abc.abstractmethod
    async def list_sources(self) -> list[Source]: ...

    @abc.abstractmethod
    async def update_source(self, source: Source) -> Source:
        """Replace; raises `NotFound` when it does not exist."""

    @abc.abstractmethod
    async def delete_source(self, source_id: str) -> bool:
        """Delete a source and its integrations; False when it did not exist."""

    # Integrations
    @abc.abstractmethod
    async def create_integration(self, integration: Integration) -> Integration: ...

    @abc.abstractmethod
    async def get_integration(self, integration_id: str) -> Integration | None: ...

    @abc.abstractmethod
    async def list_integrations(self, source_id: str | None = None) -> list[Integration]: ...

    @abc.abstractmethod
    async def update_integration(self, integration: Integration) -> Integration: ...

    @abc.abstractmethod
    async def delete_integration(self, integration_id: str) -> bool: ...

    @abc.abstractmethod
    async def set_paused(self, integration_id: str, reason: str | None) -> None:
        """Pause (with a reason) or resume (None) without touching the rest of the record."""

    async def require_source(self, source_id: str) -> Source:
        """The source, or `NotFound` (e.g. deleted by another process between write and read)."""
        source = await self.get_source(source_id)
        if source is None:
            raise NotFound("source", source_id)
        return source

    async def require_integration(self, integration_id: str) -> Integration:
        integration = await self.get_integration(integration_id)
        if integration is None:
            raise NotFound("integration", integration_id)
        return integration

    @abc.abstractmethod
    async def config_version(self) -> int:
        """A number that grows with every change, so caches in other processes can notice."""
