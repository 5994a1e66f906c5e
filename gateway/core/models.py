"""The domain's values: configuration (sources, integrations) and what travels through the queue.

These are plain frozen dataclasses; a collection hit is `core/hit.py`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol


class ConsentDefault(enum.StrEnum):
    DENY = "deny"
    GRANT = "grant"


class EventSource(enum.StrEnum):
    """Where a source's events happen, as TikTok's `event_source` names it."""

    WEB = "web"
    APP = "app"
    OFFLINE = "offline"
    CRM = "crm"


class IntegrationState(enum.StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    DISABLED = "disabled"


@dataclass(frozen=True, slots=True)
class Source:
    id: str
    name: str
    allowed_origins: tuple[str, ...] = ()
    cookie_domain: str | None = None
    consent_default: ConsentDefault = ConsentDefault.DENY
    default_phone_region: str | None = None
    event_source: EventSource = EventSource.WEB
    # TikTok's id for the source kind (app id, offline or CRM event set id); None sends the
    # integration's pixel code, which is what a web source wants.
    event_source_id: str | None = None
    # App sources: the app's own id in its store (App Store number, Android package name),
    # which TikTok wants in every app event beside the TikTok App ID above.
    app_id: str | None = None
    # SHA-256 hex of the server key; the key itself is shown once, on creation, never stored.
    server_key_hash: str = ""
    created_at: str = ""
    updated_at: str = ""


class DestinationConfig(Protocol):
    """What the gateway reads of any destination's config (the rest is the destination's):
    the rate its requests are paced at."""

    @property
    def rate_limit_rps(self) -> float: ...

    @property
    def rate_limit_burst(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Integration:
    id: str
    source_id: str
    name: str
    config: DestinationConfig  # the destination's own config type (see gateway.destinations)
    vendor: str = "tiktok"
    enabled: bool = True
    consent_categories: tuple[str, ...] = ()
    paused_reason: str | None = None
    created_at: str = ""
    updated_at: str = ""

    @property
    def state(self) -> IntegrationState:
        if not self.enabled:
            return IntegrationState.DISABLED
        if self.paused_reason is not None:
            return IntegrationState.PAUSED
        return IntegrationState.ACTIVE


@dataclass(frozen=True, slots=True)
class NewEvent:
    """One transformed event bound for one integration, ready to be stored."""

    integration_id: str
    event_id: str
    event_name: str
    event_time: int
    # The destination's event as JSON (a TikTok `data[]` item): already hashed, so no raw PII
    # ever reaches the store.
    payload: bytes
    # The hit's consent object (or None when it carried none), so a replay can check it again.
    consent: dict[str, bool] | None = None


@dataclass(frozen=True, slots=True)
class ClaimedEvent:
    """An event leased to one delivery worker until it is acked, released or dead-lettered."""

    id: int | str
    event_id: str
    event_name: str
    event_time: int
    payload: bytes
    attempts: int
    enqueued_at: float


@dataclass(frozen=True, slots=True)
class ReadyInfo:
    """What a worker needs to decide whether a batch should leave now."""

    ready: int  # events whose retry time has come and that no worker holds
    oldest_enqueued_at: float | None  # of the ready ones
    next_retry_at: float | None  # earliest retry time among events still waiting


@dataclass(frozen=True, slots=True)
class IntegrationStats:
    queued: int = 0
    delivered: int = 0
    failed: int = 0
    dead_lettered: int = 0
    last_error: str | None = None
    last_success_at: float | None = None


@dataclass(frozen=True, slots=True)
class QueueUsage:
    """How full the (shared) queue is, against its bounds; bytes are None when not measured."""

    depth: int
    bound: int
    size_bytes: int | None
    bytes_bound: int | None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: int | str
    integration_id: str
    event_id: str
    event_name: str
    event_time: int
    reason: str
    answer: str | None  # the destination's message (or the gateway's reason when it never sent it)
    attempts: int
    first_attempt_at: float | None
    last_attempt_at: float | None
    dead_lettered_at: float
    consent: dict[str, bool] | None = None
    # The stored event as it would be sent (already hashed): replay checks it again.
    payload: bytes | None = None
