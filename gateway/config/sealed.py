"""An integration's TikTok config as the stores write it: JSON with the access token sealed.

Shared by every `ConfigStore` backend, so a stored config never holds a token in plaintext and
reads the same way whatever the engine.
"""

from __future__ import annotations

import msgspec

from gateway.core.crypto import SecretBox
from gateway.core.errors import StoreError
from gateway.core.models import TikTokConfig
from gateway.core.settings import Secret


class StoredConfig(msgspec.Struct, kw_only=True):
    """TikTokConfig as written to disk: the token sealed, never in plaintext."""

    pixel_code: str
    access_token_sealed: str
    test_event_code: str | None = None
    rate_limit_rps: float = 100.0
    rate_limit_burst: int = 200
    use_current_event_names: bool = False
    event_mapping: dict[str, str] = msgspec.field(default_factory=dict)
    limited_data_use: bool = False


_config_decoder = msgspec.json.Decoder(StoredConfig)


def seal_config(box: SecretBox, config: TikTokConfig) -> str:
    stored = StoredConfig(
        pixel_code=config.pixel_code,
        access_token_sealed=box.seal(config.access_token.reveal().encode()),
        test_event_code=config.test_event_code,
        rate_limit_rps=config.rate_limit_rps,
        rate_limit_burst=config.rate_limit_burst,
        use_current_event_names=config.use_current_event_names,
        event_mapping=dict(config.event_mapping),
        limited_data_use=config.limited_data_use,
    )
    return msgspec.json.encode(stored).decode()


def open_config(box: SecretBox, raw: str | bytes, integration_id: str) -> TikTokConfig:
    stored = _config_decoder.decode(raw)
    token = box.open(stored.access_token_sealed)
    if token is None:
        # Without the key that sealed it the token is lost; say so instead of sending junk.
        raise StoreError(
            f"the access token of integration {integration_id!r} cannot be decrypted:"
            " was the key that sealed it removed from GATEWAY_SECRET_KEY?"
        )
    return TikTokConfig(
        pixel_code=stored.pixel_code,
        access_token=Secret(token.decode()),
        test_event_code=stored.test_event_code,
        rate_limit_rps=stored.rate_limit_rps,
        rate_limit_burst=stored.rate_limit_burst,
        use_current_event_names=stored.use_current_event_names,
        event_mapping=stored.event_mapping,
        limited_data_use=stored.limited_data_use,
    )
