"""An integration's config as the stores write it: its destination's JSON, secrets sealed.

Shared by every `ConfigStore` backend, so a stored config never holds a secret in plaintext and
reads the same way whatever the engine. Each destination decides what its secrets are.
"""

from __future__ import annotations

from gateway import destinations
from gateway.core.crypto import SecretBox
from gateway.core.errors import StoreError
from gateway.core.models import DestinationConfig


def seal_config(box: SecretBox, vendor: str, config: DestinationConfig) -> str:
    return destinations.get(vendor).seal_config(box, config)


def open_config(
    box: SecretBox, vendor: str, raw: str | bytes, integration_id: str
) -> DestinationConfig:
    try:
        destination = destinations.get(vendor)
    except LookupError:
        raise StoreError(
            f"integration {integration_id!r} is for {vendor!r}, which this gateway does not know"
        ) from None
    return destination.open_config(box, raw, integration_id)
