"""A webhook integration's config: the URL, an optional secret (sealed at rest, masked in
answers, sent in the `X-Webhook-Secret` header) and the pace of its requests."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import msgspec

from gateway.core.crypto import SecretBox
from gateway.core.errors import Invalid, StoreError
from gateway.core.settings import Secret
from gateway.core.validation import (
    Validator,
    burst,
    expect,
    mask_secret,
    nullable,
    parse_object,
    rate,
    require,
)

MAX_URL_LENGTH = 2000


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    url: str
    secret: Secret | None = None
    rate_limit_rps: float = 100.0
    rate_limit_burst: int = 200


def _url(value: Any, path: str) -> str:
    text = expect(value, str, "a string", path).strip()
    try:
        parts = urlsplit(text)
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        parts, port_ok = None, False
    if (
        parts is None
        or not port_ok
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or len(text) > MAX_URL_LENGTH
        or any(c.isspace() for c in text)
    ):
        raise Invalid(
            "invalid_value", f"{path} must be an http or https URL of at most 2000 characters", path
        )
    return text


def _secret(value: Any, path: str) -> Secret:
    # The message never repeats the value: it is a credential. It goes into a header: printable
    # ASCII only.
    text = expect(value, str, "a string", path).strip()
    if not 1 <= len(text) <= 1000 or not text.isascii() or not text.isprintable():
        raise Invalid("invalid_value", f"{path} must be 1 to 1000 printable ASCII characters", path)
    return Secret(text)


CONFIG_FIELDS: Mapping[str, Validator] = {
    "url": _url,
    "secret": nullable(_secret),
    "rate_limit_rps": rate,
    "rate_limit_burst": burst,
}


def parse_config(data: Any, path: str) -> WebhookConfig:
    values = parse_object(data, CONFIG_FIELDS, path)
    require(values, ("url",), path)
    return dataclasses.replace(WebhookConfig(url=""), **values)


def patch_config(current: WebhookConfig, data: Any, path: str) -> WebhookConfig | None:
    """`current` with a PATCH's fields; the secret is kept when the PATCH repeats its mask."""
    if (
        isinstance(data, dict)
        and current.secret is not None
        and data.get("secret") == mask_secret(current.secret)
    ):
        data = {k: v for k, v in data.items() if k != "secret"}
    values = parse_object(data, CONFIG_FIELDS, path)
    return dataclasses.replace(current, **values) if values else None


def public_config(config: WebhookConfig) -> dict[str, Any]:
    return {
        "url": config.url,
        "secret": mask_secret(config.secret) if config.secret is not None else None,
        "rate_limit_rps": config.rate_limit_rps,
        "rate_limit_burst": config.rate_limit_burst,
    }


class StoredConfig(msgspec.Struct, kw_only=True):
    """WebhookConfig as written to disk: the secret sealed, never in plaintext."""

    url: str
    secret_sealed: str | None = None
    rate_limit_rps: float = 100.0
    rate_limit_burst: int = 200


_config_decoder = msgspec.json.Decoder(StoredConfig)


def seal_config(box: SecretBox, config: WebhookConfig) -> str:
    sealed = box.seal(config.secret.reveal().encode()) if config.secret is not None else None
    stored = StoredConfig(
        url=config.url,
        secret_sealed=sealed,
        rate_limit_rps=config.rate_limit_rps,
        rate_limit_burst=config.rate_limit_burst,
    )
    return msgspec.json.encode(stored).decode()


def open_config(box: SecretBox, raw: str | bytes, integration_id: str) -> WebhookConfig:
    stored = _config_decoder.decode(raw)
    secret = None
    if stored.secret_sealed is not None:
        opened = box.open(stored.secret_sealed)
        if opened is None:
            raise StoreError(
                f"the webhook secret of integration {integration_id!r} cannot be decrypted:"
                " was the key that sealed it removed from GATEWAY_SECRET_KEY?"
            )
        secret = Secret(opened.decode())
    return WebhookConfig(
        url=stored.url,
        secret=secret,
        rate_limit_rps=stored.rate_limit_rps,
        rate_limit_burst=stored.rate_limit_burst,
    )


_RATE = {"type": "number", "exclusiveMinimum": 0, "maximum": 10000, "default": 100}
_BURST = {"type": "integer", "minimum": 1, "maximum": 100000, "default": 200}
_URL = {"type": "string", "pattern": "^https?://", "maxLength": MAX_URL_LENGTH}
_SECRET_IN = {
    "type": ["string", "null"],
    "minLength": 1,
    "maxLength": 1000,
    "writeOnly": True,
    "description": "sealed at rest, sent as X-Webhook-Secret, never returned in full",
}
CONFIG_SCHEMAS: Mapping[str, Mapping[str, Any]] = {
    "shown": {
        "type": "object",
        "required": ["url", "secret", "rate_limit_rps", "rate_limit_burst"],
        "additionalProperties": False,
        "properties": {
            "url": _URL,
            "secret": {"type": ["string", "null"], "description": "masked"},
            "rate_limit_rps": _RATE,
            "rate_limit_burst": _BURST,
        },
    },
    "create": {
        "type": "object",
        "required": ["url"],
        "additionalProperties": False,
        "properties": {
            "url": _URL,
            "secret": _SECRET_IN,
            "rate_limit_rps": _RATE,
            "rate_limit_burst": _BURST,
        },
    },
    "patch": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "url": _URL,
            "secret": _SECRET_IN,
            "rate_limit_rps": _RATE,
            "rate_limit_burst": _BURST,
        },
    },
}
