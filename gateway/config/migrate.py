"""`gateway migrate-config`: copy sources and integrations from one configuration store to another.

The way from the embedded default to a shared deployment: `--from sqlite:///data/config.db
--to postgresql://...`. Records keep their ids, server key hashes, consent settings and paused
state; access tokens are opened with the gateway's secret key and sealed again by the target.
Records whose id the target already has are left alone, so the command can be run again.
Queued events and dead letters are not configuration: drain the old queue before switching.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from gateway.config.base import ConfigStore
from gateway.core.errors import Conflict, SettingsError
from gateway.core.settings import Secret, Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Copied:
    sources: int = 0
    integrations: int = 0
    skipped: int = 0


def secret_keys(settings: Settings) -> tuple[Secret, ...]:
    """The keys that sealed the tokens: GATEWAY_SECRET_KEY, else the data dir's; never new ones."""
    if settings.secret_keys:
        return settings.secret_keys
    path = settings.data_dir / "secret_key"
    try:
        return (Secret(Path(path).read_text(encoding="utf-8").strip()),)
    except OSError:
        raise SettingsError(
            "GATEWAY_SECRET_KEY", f"is not set and {path} cannot be read: the tokens stay sealed"
        ) from None


async def copy_config(source: ConfigStore, target: ConfigStore) -> Copied:
    """Copy every source, then every integration, in creation order; skip ids already there."""
    sources = integrations = skipped = 0
    for record in await source.list_sources():
        try:
            await target.create_source(record)
            sources += 1
        except Conflict:
            skipped += 1
    for integration in await source.list_integrations():
        try:
            await target.create_integration(integration)
            integrations += 1
        except Conflict:
            skipped += 1
    return Copied(sources, integrations, skipped)
