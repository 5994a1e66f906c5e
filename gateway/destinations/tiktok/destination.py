"""The TikTok Events API as a `Destination`: what the rest of the gateway knows of TikTok."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import aiohttp
import msgspec

from gateway.core.crypto import SecretBox
from gateway.core.hit import Hit
from gateway.core.models import DestinationConfig, Integration, Source
from gateway.core.settings import Settings
from gateway.destinations.base import (
    Answer,
    Client,
    Destination,
    FormField,
    HitContext,
    PauseHint,
    Rejected,
    Transformed,
    Verdict,
)
from gateway.destinations.tiktok import config as tiktok_config
from gateway.destinations.tiktok import repair
from gateway.destinations.tiktok.classify import classify, explain_pause
from gateway.destinations.tiktok.client import (
    TikTokClient,
    TikTokSender,
    build_body,
    event_source_id_of,
    event_source_of,
)
from gateway.destinations.tiktok.config import TikTokConfig
from gateway.destinations.tiktok.sample import sample_event
from gateway.destinations.tiktok.schema import CONFIG_SCHEMAS
from gateway.destinations.tiktok.transform import lookup_event_name, transform

# Calls a protocol records without an event of their own (Segment's); see `sendable`.
RECORDED_CALLS = frozenset({"screen", "alias", "group"})


def _own(config: DestinationConfig) -> TikTokConfig:
    if not isinstance(config, TikTokConfig):
        raise TypeError("not a TikTok config")
    return config


class TikTok(Destination):
    vendor: ClassVar[str] = "tiktok"
    label: ClassVar[str] = "TikTok"
    description: ClassVar[str] = (
        "Server-side events for a TikTok pixel: page views, carts, checkouts, purchases."
    )
    # The UI has its own richer form for TikTok (event mapping, hints); this one lists the fields.
    form: ClassVar[tuple[FormField, ...]] = (
        FormField("pixel_code", "Pixel code", "text", required=True),
        FormField("access_token", "Access token", "secret", required=True),
        FormField("test_event_code", "Test event code"),
        FormField("rate_limit_rps", "Requests per second", "number"),
        FormField("rate_limit_burst", "Burst", "integer"),
        FormField("use_current_event_names", "Current event names", "boolean"),
        FormField("event_mapping", "Event mapping", "mapping"),
        FormField("limited_data_use", "Limited data use", "boolean"),
    )
    schema_name: ClassVar[str] = "TikTok"
    body_events_key: ClassVar[str] = "data"  # the Events API's `data[]`
    config_schemas: ClassVar[Mapping[str, Mapping[str, Any]]] = CONFIG_SCHEMAS

    def parse_config(self, data: Any, path: str) -> DestinationConfig:
        return tiktok_config.parse_config(data, path)

    def patch_config(
        self, current: DestinationConfig, data: Any, path: str
    ) -> DestinationConfig | None:
        return tiktok_config.patch_config(_own(current), data, path)

    def public_config(self, config: DestinationConfig) -> dict[str, Any]:
        return tiktok_config.public_config(_own(config))

    def seal_config(self, box: SecretBox, config: DestinationConfig) -> str:
        return tiktok_config.seal_config(box, _own(config))

    def open_config(
        self, box: SecretBox, raw: str | bytes, integration_id: str
    ) -> DestinationConfig:
        return tiktok_config.open_config(box, raw, integration_id)

    def sendable(self, hit: Hit, integration: Integration) -> Hit | None:
        """Also alias, group and screen calls, as a track of that name, when the integration's
        event mapping names the call (e.g. `"screen": "ViewContent"`)."""
        if hit.type in RECORDED_CALLS:
            kind = str(hit.type)
            if lookup_event_name(kind, _own(integration.config).event_mapping) is None:
                return None
            return msgspec.structs.replace(hit, type="track", event=kind)
        return super().sendable(hit, integration)

    def transform(
        self, hit: Hit, context: HitContext, integration: Integration, source: Source
    ) -> Transformed | Rejected:
        return transform(hit, context, integration, source)

    def check_event(
        self, payload: bytes, integration: Integration, source: Source | None
    ) -> str | None:
        del integration
        return repair.check_event(payload, source)

    def fix_event(self, payload: bytes, changes: Any, path: str) -> tuple[str, bytes]:
        return repair.apply_changes(payload, changes, path)

    def client(self, session: aiohttp.ClientSession, settings: Settings) -> Client:
        return TikTokSender(TikTokClient(session, settings.tiktok_api_url))

    def classify(self, answer: Answer) -> Verdict:
        return classify(answer)

    def sample_event(self, integration: Integration, now: float) -> bytes:
        return sample_event(_own(integration.config).limited_data_use, now)

    def request_body(
        self,
        integration: Integration,
        source: Source | None,
        payloads: Sequence[bytes],
        *,
        test_event_code: str | None = None,
    ) -> Any:
        return json.loads(self._body(integration, source, payloads, test_event_code))

    def request_bytes(
        self, integration: Integration, source: Source | None, payloads: Sequence[bytes]
    ) -> bytes:
        return self._body(integration, source, payloads, None)

    @staticmethod
    def _body(
        integration: Integration,
        source: Source | None,
        payloads: Sequence[bytes],
        test_event_code: str | None,
    ) -> bytes:
        config = _own(integration.config)
        return build_body(
            event_source_id_of(source, config),
            test_event_code or config.test_event_code,
            payloads,
            event_source_of(source).value,
        )

    def explain_pause(self, reason: str | None) -> PauseHint | None:
        return explain_pause(reason)
