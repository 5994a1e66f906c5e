"""The OpenAPI schemas of a TikTok integration's config (the admin document adds them).

As the API shows it (the token masked), as a create body takes it, and as a PATCH does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_ACCESS_TOKEN_IN: Mapping[str, Any] = {
    "type": "string",
    "minLength": 1,
    "maxLength": 1000,
    "writeOnly": True,
    "description": "sealed at rest, never returned",
}
# What a create body and a PATCH may set; they differ only in what `required` says and in how
# an access token that is left out (or repeats the mask) is read.
_WRITABLE: Mapping[str, Any] = {
    "pixel_code": {"type": "string", "pattern": "^[A-Za-z0-9]{5,64}$"},
    "access_token": _ACCESS_TOKEN_IN,
    "test_event_code": {"type": ["string", "null"], "minLength": 1, "maxLength": 64},
    "rate_limit_rps": {
        "type": "number",
        "exclusiveMinimum": 0,
        "maximum": 10000,
        "default": 100,
    },
    "rate_limit_burst": {
        "type": "integer",
        "minimum": 1,
        "maximum": 100000,
        "default": 200,
    },
    "use_current_event_names": {
        "type": "boolean",
        "default": False,
        "description": "send Purchase and Lead instead of CompletePayment and SubmitForm",
    },
    "event_mapping": {
        "type": "object",
        "additionalProperties": {"type": "string", "minLength": 1, "maxLength": 200},
        "description": "hit event name -> TikTok event name",
    },
    "limited_data_use": {"type": "boolean", "default": False},
}

CONFIG_SCHEMAS: Mapping[str, Mapping[str, Any]] = {
    "shown": {
        "type": "object",
        "properties": {
            "pixel_code": {"type": "string"},
            "access_token": {
                "type": "string",
                "pattern": "^\\*{4}.{0,4}$",
                "description": "a mask: **** and at most the last 4 "
                "characters; the token itself is "
                "never returned",
            },
            "test_event_code": {"type": ["string", "null"]},
            "rate_limit_rps": {"type": "number", "exclusiveMinimum": 0, "maximum": 10000},
            "rate_limit_burst": {"type": "integer", "minimum": 1, "maximum": 100000},
            "use_current_event_names": {"type": "boolean"},
            "event_mapping": {"type": "object", "additionalProperties": {"type": "string"}},
            "limited_data_use": {"type": "boolean"},
        },
        "additionalProperties": False,
        "required": [
            "pixel_code",
            "access_token",
            "test_event_code",
            "rate_limit_rps",
            "rate_limit_burst",
            "use_current_event_names",
            "event_mapping",
            "limited_data_use",
        ],
    },
    "create": {
        "type": "object",
        "properties": _WRITABLE,
        "additionalProperties": False,
        "required": ["pixel_code", "access_token"],
    },
    "patch": {
        "type": "object",
        "properties": {
            **_WRITABLE,
            "access_token": {
                **_ACCESS_TOKEN_IN,
                "description": "sealed at rest, never returned; "
                "kept when absent (or when it repeats the mask)",
            },
        },
        "additionalProperties": False,
    },
}
