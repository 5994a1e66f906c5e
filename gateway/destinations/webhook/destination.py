"""The webhook as a `Destination`."""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from typing import Any, ClassVar

import aiohttp
import msgspec

from gateway.core.crypto import SecretBox
from gateway.core.hashing import hash_external_id
from gateway.core.hit import Hit
from gateway.core.models import DestinationConfig, Integration, Source
from gateway.core.settings import Settings
from gateway.destinations.base import (
    Answer,
    Client,
    Destination,
    FormField,
    HitContext,
    Rejected,
    Transformed,
    Verdict,
)
from gateway.destinations.webhook import config as webhook_config
from gateway.destinations.webhook.client import WebhookSender, classify
from gateway.destinations.webhook.config import CONFIG_SCHEMAS, WebhookConfig


def _own(config: DestinationConfig) -> WebhookConfig:
    if not isinstance(config, WebhookConfig):
        raise TypeError("not a webhook config")
    return config


class Webhook(Destination):
    vendor: ClassVar[str] = "webhook"
    label: ClassVar[str] = "Webhook"
    description: ClassVar[str] = "Each event posted as JSON to a URL of your choice."
    form: ClassVar[tuple[FormField, ...]] = (
        FormField("url", "URL", "url", required=True, hint="Events are POSTed here as JSON."),
        FormField("secret", "Secret", "secret", hint="Sent in the X-Webhook-Secret header."),
        FormField("rate_limit_rps", "Requests per second", "number"),
        FormField("rate_limit_burst", "Burst", "integer"),
    )
    schema_name: ClassVar[str] = "Webhook"
    config_schemas: ClassVar[Mapping[str, Mapping[str, Any]]] = CONFIG_SCHEMAS

    def parse_config(self, data: Any, path: str) -> DestinationConfig:
        return webhook_config.parse_config(data, path)

    def patch_config(
        self, current: DestinationConfig, data: Any, path: str
    ) -> DestinationConfig | None:
        return webhook_config.patch_config(_own(current), data, path)

    def public_config(self, config: DestinationConfig) -> dict[str, Any]:
        return webhook_config.public_config(_own(config))

    def seal_config(self, box: SecretBox, config: DestinationConfig) -> str:
        return webhook_config.seal_config(box, _own(config))

    def open_config(
        self, box: SecretBox, raw: str | bytes, integration_id: str
    ) -> DestinationConfig:
        return webhook_config.open_config(box, raw, integration_id)

    def transform(
        self, hit: Hit, context: HitContext, integration: Integration, source: Source
    ) -> Transformed | Rejected:
        """The event as JSON: what happened, when, on which page; people only as hashes."""
        event_name = hit.event if hit.type == "track" and hit.event else "page"
        page = hit.context.page if hit.context else None
        event: dict[str, Any] = {
            "event_id": context.event_id,
            "event_time": context.event_time,
            "type": hit.type,
            "event": event_name,
            "source_id": source.id,
            "anonymous_id": context.anonymous_id,
            "user_id_hash": hash_external_id(hit.user_id) or context.identity.user_id_hash,
            "properties": msgspec.to_builtins(hit.properties) if hit.properties else {},
            "page": msgspec.to_builtins(page) if page else None,
        }
        return Transformed(event_name, event)

    def client(self, session: aiohttp.ClientSession, settings: Settings) -> Client:
        return WebhookSender(session)

    def classify(self, answer: Answer) -> Verdict:
        return classify(answer)

    def sample_event(self, integration: Integration, now: float) -> bytes:
        event = {
            "event_id": "test_" + secrets.token_hex(8),
            "event_time": int(now),
            "type": "track",
            "event": "Gateway Test",
        }
        return json.dumps(event, separators=(",", ":")).encode()
