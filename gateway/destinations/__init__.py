"""Destinations: where events are delivered. The registry below is the only list of them.

Adding one means a new folder implementing `base.Destination` and one line here; delivery, the
Management API, the UI and the OpenAPI document take everything else from the registry.
"""

from __future__ import annotations

from collections.abc import Mapping

from gateway.destinations.base import Destination
from gateway.destinations.tiktok.destination import TikTok
from gateway.destinations.webhook.destination import Webhook

# One line per destination.
REGISTRY: Mapping[str, Destination] = {
    TikTok.vendor: TikTok(),
    Webhook.vendor: Webhook(),
}

# What an integration created without a `vendor` is for.
DEFAULT_VENDOR = "tiktok"


def get(vendor: str) -> Destination:
    """The destination of a vendor name; `LookupError` for one this gateway does not know."""
    destination = REGISTRY.get(vendor)
    if destination is None:
        raise LookupError(vendor)
    return destination


def vendors() -> tuple[str, ...]:
    return tuple(REGISTRY)
