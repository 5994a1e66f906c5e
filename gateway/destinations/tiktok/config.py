"""A TikTok integration's config: its fields, their validation (the Management API's 4xx name
the field), the access token sealed at rest and masked in answers.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from gateway.core.crypto import SecretBox
from gateway.core.errors import Invalid, StoreError
from gateway.core.settings import Secret
from gateway.core.validation import (
    Validator,
    boolean,
    bounded_text,
    burst,
    expect,
    mask_secret,
    nullable,
    parse_object,
    rate,
    require,
)

_PIXEL_CODE = re.compile(r"[A-Za-z0-9]{5,64}")


@dataclass(frozen=True, slots=True)
class TikTokConfig:
    pixel_code: str
    access_token: Secret
    test_event_code: str | None = None
    rate_limit_rps: float = 100.0
    rate_limit_burst: int = 200
    # TikTok renamed CompletePayment -> Purchase and SubmitForm -> Lead; opt in to the new names.
    use_current_event_names: bool = False
    # Hit event name -> TikTok event name; wins over the built-in table.
    event_mapping: dict[str, str] = field(default_factory=dict)
    limited_data_use: bool = False


def _pixel_code(value: Any, path: str) -> str:
    text = expect(value, str, "a string", path).strip()
    if not _PIXEL_CODE.fullmatch(text):
        raise Invalid("invalid_value", f"{path} must be 5 to 64 letters and digits", path)
    return text


def _access_token(value: Any, path: str) -> Secret:
    # The message never repeats the value: it is a credential.
    text = expect(value, str, "a string", path).strip()
    if not 1 <= len(text) <= 1000:
        raise Invalid("invalid_value", f"{path} must be 1 to 1000 characters", path)
    return Secret(text)


def _event_mapping(value: Any, path: str) -> dict[str, str]:
    obj = expect(value, dict, "an object of event names", path)
    if len(obj) > 500:
        raise Invalid("invalid_value", f"{path} holds at most 500 names", path)
    name = bounded_text(1, 200)
    return {key: name(target, f"{path}.{key}") for key, target in obj.items()}


CONFIG_FIELDS: Mapping[str, Validator] = {
    "pixel_code": _pixel_code,
    "access_token": _access_token,
    "test_event_code": nullable(bounded_text(1, 64)),
    "rate_limit_rps": rate,
    "rate_limit_burst": burst,
    "use_current_event_names": boolean,
    "event_mapping": _event_mapping,
    "limited_data_use": boolean,
}


def public_config(config: TikTokConfig) -> dict[str, Any]:
    return {
        "pixel_code": config.pixel_code,
        "access_token": mask_secret(config.access_token),
        "test_event_code": config.test_event_code,
        "rate_limit_rps": config.rate_limit_rps,
        "rate_limit_burst": config.rate_limit_burst,
        "use_current_event_names": config.use_current_event_names,
        "event_mapping": dict(config.event_mapping),
        "limited_data_use": config.limited_data_use,
    }


def parse_config(data: Any, path: str) -> TikTokConfig:
    """A new integration's config; pixel_code and access_token are required."""
    values = parse_object(data, CONFIG_FIELDS, path)
    require(values, ("pixel_code", "access_token"), path)
    return dataclasses.replace(TikTokConfig(pixel_code="", access_token=Secret("")), **values)


def patch_config(current: TikTokConfig, data: Any, path: str) -> TikTokConfig | None:
    """`current` with a PATCH's fields; the token is kept when the PATCH repeats its mask.

    None when the PATCH names nothing to change.
    """
    if isinstance(data, dict) and data.get("access_token") == mask_secret(current.access_token):
        data = {k: v for k, v in data.items() if k != "access_token"}
    values = parse_object(data, CONFIG_FIELDS, path)
    return dataclasses.replace(current, **values) if values else None


# ------------------------------------------------------------------------ at rest


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
    """The config as the stores write it: the access token sealed."""
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
