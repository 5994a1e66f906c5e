"""Transformation (pure): one collection hit -> one TikTok Events API v1.3 event for one integration.

No I/O, no aiohttp: values in, values out, so it is tested with parameter tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.hits import Hit
from gateway.models import Integration, Source


@dataclass(frozen=True, slots=True)
class HitContext:
    """What the collection stage resolved about a hit from the request and the cookies."""

    event_id: str  # the hit's message_id, else generated once per hit ("evt_" + hex)
    event_time: int  # Unix seconds
    anonymous_id: str | None = None
    ttp: str | None = None
    ttclid: str | None = None  # from the page URL, else the ttclid cookie
    ip: str | None = None
    user_agent: str | None = None
    email_hash: str | None = None  # from the identity cookie (already hashed)
    phone_hash: str | None = None


@dataclass(frozen=True, slots=True)
class Transformed:
    event_name: str
    event: dict[str, Any]  # one TikTok `data[]` item


@dataclass(frozen=True, slots=True)
class Rejected:
    """An event that must not be sent (and is dead-lettered with `reason`)."""

    event_name: str
    reason: str
    event: dict[str, Any]


def transform(
    hit: Hit, context: HitContext, integration: Integration, source: Source
) -> Transformed | Rejected:
    raise NotImplementedError
