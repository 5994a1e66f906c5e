"""Checking and correcting a stored TikTok event (a dead letter) before it is sent again.

A dead letter holds the event exactly as it would have been sent. Replaying it must apply the
same rules as collection did (`transform.refusal_reason`), and an operator may correct the few
fields that made it fail: the event name, value, currency and the other mapped properties.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from gateway.core.errors import Invalid
from gateway.core.models import EventSource, Source
from gateway.destinations.tiktok.rules import (
    MISSING_EMAIL_OR_PHONE,
    MISSING_LEAD_ID,
    MISSING_VALUE_OR_CURRENCY,
    PURCHASE_EVENTS,
)
from gateway.destinations.tiktok.transform import attributable_value

NOT_AN_EVENT = "not_an_event"
MAX_TEXT = 500  # bounds a corrected text field (TikTok's own limits are of this order)
# `properties` fields taken as text; `value`, `currency` and `event` have rules of their own.
TEXT_PROPERTIES = ("order_id", "content_type", "description", "query", "search_string", "shop_id")
FIXABLE = ("event", "value", "currency", "lead_id", *TEXT_PROPERTIES)


def decode(payload: bytes) -> dict[str, Any] | None:
    try:
        event = json.loads(payload)
    except ValueError:
        return None
    return event if isinstance(event, dict) else None


def check_event(payload: bytes, source: Source | None) -> str | None:
    """Why this stored event cannot be sent (collection's reasons), or None when it can.

    Without its source (deleted since) the source-kind rules (CRM, offline) cannot apply."""
    event = decode(payload)
    if event is None or not isinstance(event.get("event"), str):
        return NOT_AN_EVENT
    properties = event.get("properties")
    properties = properties if isinstance(properties, dict) else {}
    if event["event"] in PURCHASE_EVENTS and not (
        attributable_value(properties.get("value")) is not None and "currency" in properties
    ):
        return MISSING_VALUE_OR_CURRENCY
    kind = source.event_source if source is not None else None
    if kind is EventSource.CRM and not isinstance(event.get("lead"), dict):
        return MISSING_LEAD_ID
    user = event.get("user")
    user = user if isinstance(user, dict) else {}
    if kind is EventSource.OFFLINE and not ("email" in user or "phone" in user):
        return MISSING_EMAIL_OR_PHONE
    return None


def apply_changes(payload: bytes, changes: Any, path: str) -> tuple[str, bytes]:
    """(event name, payload) of the stored event with `changes` applied; a null removes a
    field. `Invalid` names the first refused field; the event_id is never changed."""
    if not isinstance(changes, Mapping):  # empty is allowed: it shows the event as stored
        raise Invalid("invalid_value", f"{path} must be an object naming fields to change", path)
    event = decode(payload)
    if event is None:
        raise Invalid("invalid_value", "the stored event cannot be read", path)
    properties = event.get("properties")
    properties = dict(properties) if isinstance(properties, dict) else {}
    for name, value in changes.items():
        where = f"{path}.{name}"
        if name not in FIXABLE:
            allowed = ", ".join(FIXABLE)
            raise Invalid("unknown_field", f"{where} cannot be changed (one of: {allowed})", where)
        if name == "event":
            event["event"] = _event_name(value, where)
        elif name == "lead_id":
            _set_lead(event, _text(value, where))
        else:
            _set(properties, name, _property(name, value, where))
    if properties:
        event["properties"] = properties
    else:
        event.pop("properties", None)
    return str(event["event"]), json.dumps(event, separators=(",", ":")).encode()


def _set(target: dict[str, Any], key: str, value: Any) -> None:
    if value is None:
        target.pop(key, None)
    else:
        target[key] = value


def _set_lead(event: dict[str, Any], lead_id: str | None) -> None:
    lead = event.get("lead")
    lead = dict(lead) if isinstance(lead, dict) else {}
    _set(lead, "lead_id", lead_id)
    _set(event, "lead", lead or None)


def _event_name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 100:
        raise Invalid(
            "invalid_value", f"{where} must be an event name (1 to 100 characters)", where
        )
    return value.strip()


def _property(name: str, value: Any, where: str) -> Any:
    if value is None:
        return None
    if name == "value":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise Invalid("invalid_value", f"{where} must be a number", where)
        if not math.isfinite(value) or value < 0:
            raise Invalid("invalid_value", f"{where} must be a finite number, 0 or more", where)
        return value
    if name == "currency":
        code = value.strip().upper() if isinstance(value, str) else ""
        if not (len(code) == 3 and code.isascii() and code.isalpha()):
            raise Invalid("invalid_value", f"{where} must be a three-letter ISO 4217 code", where)
        return code
    return _text(value, where)


def _text(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise Invalid("invalid_value", f"{where} must be a string", where)
    text = str(value).strip()
    if len(text) > MAX_TEXT:
        raise Invalid("invalid_value", f"{where} holds at most {MAX_TEXT} characters", where)
    return text or None
