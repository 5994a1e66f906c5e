"""The Management API's test send: one obviously synthetic PageView, no personal data."""

from __future__ import annotations

import json
import secrets


def sample_event(limited_data_use: bool, now: float) -> bytes:
    """The one PageView a test send delivers."""
    event = {
        "event": "PageView",
        "event_time": int(now),
        "event_id": "test_" + secrets.token_hex(8),
        "user": {"ip": "203.0.113.10", "user_agent": "gateway-test-send"},
        "page": {"url": "https://example.com/"},
        "limited_data_use": limited_data_use,
    }
    return json.dumps(event, separators=(",", ":")).encode()
