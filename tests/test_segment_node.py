"""Segment's Node.js library (@segment/analytics-node from npm), host set to the gateway.

`make test` installs it under tests/js (npm ci); without Node.js or the package these tests skip
with the reason, and fail under GATEWAY_TEST_REQUIRE_SERVICES=1 (as CI runs them).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REQUIRE_SERVICES, Gateway
from tests.test_segment_clients import EMAIL, PAGE_URL, PURCHASE, comparable, native_events
from tests.tiktok_double import TikTokDouble

JS_DIR = Path(__file__).parent / "js"
SENDER = JS_DIR / "send_with_analytics_node.mjs"


def node_unavailable() -> str | None:
    if shutil.which("node") is None:
        return "Node.js is not installed (apt-get install nodejs npm)"
    if not (JS_DIR / "node_modules" / "@segment" / "analytics-node").is_dir():
        return "tests/js/node_modules is missing (make test runs npm ci there)"
    return None


@pytest.fixture
def node() -> str:
    reason = node_unavailable()
    if reason:
        if REQUIRE_SERVICES:
            pytest.fail(f"GATEWAY_TEST_REQUIRE_SERVICES=1 but {reason}")
        pytest.skip(reason)
    path = shutil.which("node")
    assert path is not None
    return path


async def send(node: str, host: str, write_key: str, calls: list[dict[str, Any]]) -> None:
    process = await asyncio.create_subprocess_exec(
        node,
        str(SENDER),
        host,
        write_key,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate(json.dumps(calls).encode())
    assert process.returncode == 0, (out + err).decode()


async def test_analytics_node_purchase_and_page_match_the_native_protocol(
    gateway: Gateway, tiktok: TikTokDouble, node: str
) -> None:
    source = await gateway.create_source(default_phone_region="US")
    await gateway.create_integration()
    native = await native_events(gateway, tiktok, source["server_key"])
    tiktok.accepted.clear()

    context = {
        "consent": {"categoryPreferences": {"advertising": True}},
        "traits": {"email": EMAIL},
    }
    calls = [
        {
            "method": "track",
            "params": {
                "userId": "u-42",
                "event": "Order Completed",
                "properties": PURCHASE,
                "context": context,
                "messageId": "node-purchase",
            },
        },
        {
            "method": "page",
            "params": {
                "userId": "u-42",
                "name": "Spring",
                "properties": {"url": PAGE_URL, "title": "Spring"},
                "context": context,
                "messageId": "node-page",
            },
        },
    ]
    host = str(gateway.collect.make_url("")).rstrip("/")
    await send(node, host, source["server_key"], calls)

    await tiktok.wait_for(lambda: len(tiktok.accepted) >= 2)
    assert tiktok.problems == []
    events = sorted((a.event for a in tiktok.accepted), key=lambda e: e["event"])
    purchase, page = events
    assert purchase["event"] == "CompletePayment"
    assert purchase["event_id"] == "node-purchase"
    assert page["event_id"] == "node-page"
    assert [comparable(purchase), comparable(page)] == [comparable(e) for e in native]
    assert purchase["properties"]["value"] == 129.99
    assert purchase["properties"]["currency"] == "USD"
    email = hashlib.sha256(b"jane.doe@example.com").hexdigest()
    assert purchase["user"]["email"] == email


async def test_analytics_node_with_a_wrong_key_is_refused(
    gateway: Gateway, tiktok: TikTokDouble, node: str
) -> None:
    await gateway.create_source()
    await gateway.create_integration()
    host = str(gateway.collect.make_url("")).rstrip("/")
    with pytest.raises(AssertionError, match="401"):
        await send(
            node,
            host,
            "sk_wrong",
            [{"method": "track", "params": {"userId": "u", "event": "Signed Up"}}],
        )
    assert await gateway.wired.queue.depth() == 0
