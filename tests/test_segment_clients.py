"""Segment's and RudderStack's own Python libraries, host set to the gateway.

The libraries are the real ones from PyPI (the `test` extra). Each sends the seed's purchase and
a page view with a source's server key as its write key; what reaches the TikTok double must
match what the same calls sent in the native protocol (a Bearer server key) produce.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.conftest import Gateway
from tests.tiktok_double import TikTokDouble

EMAIL = " Jane.Doe@Example.COM "
PRODUCTS = [
    {"product_id": "SKU-A", "price": 49.99, "quantity": 2},
    {"product_id": "SKU-B", "price": 30.01, "quantity": 1},
]
PURCHASE = {"order_id": "ORD-1", "total": 129.99, "currency": "usd", "products": PRODUCTS}
PAGE_URL = "https://shop.example/spring?utm_source=tt"
GRANTED = {"consent": {"categoryPreferences": {"Advertising": True}}}


@pytest.fixture(autouse=True)
def quiet_client_libraries() -> Iterator[None]:
    """The libraries log each request body (write key, raw email) at DEBUG: that is their own
    log, not the gateway's, so the log audit is kept to what the gateway writes."""
    loggers = [logging.getLogger(name) for name in ("segment", "rudderstack")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.INFO)
    yield
    for logger, level in zip(loggers, levels, strict=True):
        logger.setLevel(level)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def segment_client(write_key: str, host: str) -> Any:
    from segment.analytics import Client

    return Client(write_key, host=host, sync_mode=True, on_error=_raise)


def rudder_client(write_key: str, host: str) -> Any:
    from rudderstack.analytics import Client

    return Client(write_key, host=host, sync_mode=True, on_error=_raise)


def _raise(error: Exception, _batch: Any) -> None:
    raise error


async def native_events(gw: Gateway, tiktok: TikTokDouble, server_key: str) -> list[dict[str, Any]]:
    """The same purchase and page view in the gateway's own protocol, from a server."""
    context = {"consent": {"advertising": True}, "traits": {"email": EMAIL}}
    batch = [
        {
            "type": "track",
            "source_id": "src_test",
            "event": "Order Completed",
            "properties": PURCHASE,
            "user_id": "u-42",
            "message_id": "native-purchase",
            "context": context,
        },
        {
            "type": "page",
            "source_id": "src_test",
            "user_id": "u-42",
            "message_id": "native-page",
            "context": {**context, "page": {"url": PAGE_URL, "title": "Spring"}},
        },
    ]
    resp = await gw.collect.post(
        "/v1/batch", json={"batch": batch}, headers={"Authorization": f"Bearer {server_key}"}
    )
    assert resp.status == 200, await resp.text()
    await tiktok.wait_for(lambda: len(tiktok.accepted) >= 2)
    return [a.event for a in tiktok.accepted]


def comparable(event: dict[str, Any]) -> dict[str, Any]:
    """What must agree between the protocols (event ids differ: each call makes its own)."""
    user = event["user"]
    return {
        "event": event["event"],
        "properties": event.get("properties"),
        "page": event.get("page"),
        "email": user.get("email"),
        "external_id": user.get("external_id"),
    }


@pytest.mark.parametrize("make_client", [segment_client, rudder_client], ids=["segment", "rudder"])
async def test_server_library_purchase_and_page_match_the_native_protocol(
    gateway: Gateway, tiktok: TikTokDouble, make_client: Callable[[str, str], Any]
) -> None:
    source = await gateway.create_source(default_phone_region="US")
    await gateway.create_integration()
    native = await native_events(gateway, tiktok, source["server_key"])
    tiktok.accepted.clear()

    client = make_client(source["server_key"], str(gateway.collect.make_url("")).rstrip("/"))
    purchase_id, page_id = str(uuid.uuid4()), str(uuid.uuid4())
    context = {**GRANTED, "traits": {"email": EMAIL}}

    def send() -> None:
        client.track(
            user_id="u-42",
            event="Order Completed",
            properties=PURCHASE,
            context=context,
            message_id=purchase_id,
        )
        client.page(
            user_id="u-42",
            name="Spring",
            properties={"url": PAGE_URL, "title": "Spring"},
            context=context,
            message_id=page_id,
        )

    await asyncio.to_thread(send)
    await tiktok.wait_for(lambda: len(tiktok.accepted) >= 2)
    assert tiktok.problems == []
    purchase, page = (a.event for a in tiktok.accepted)

    assert purchase["event_id"] == purchase_id  # messageId is TikTok's event_id
    assert page["event_id"] == page_id
    assert [comparable(purchase), comparable(page)] == [comparable(e) for e in native]
    assert purchase["event"] == "CompletePayment"
    assert purchase["properties"]["value"] == 129.99
    assert purchase["properties"]["currency"] == "USD"
    assert [c["content_id"] for c in purchase["properties"]["contents"]] == ["SKU-A", "SKU-B"]
    assert purchase["user"]["email"] == sha256("jane.doe@example.com")
    assert page["event"] == "PageView"
    assert page["page"]["url"] == PAGE_URL


@pytest.mark.parametrize("make_client", [segment_client, rudder_client], ids=["segment", "rudder"])
async def test_server_library_context_and_timestamp_count_with_the_server_key(
    gateway: Gateway, tiktok: TikTokDouble, make_client: Callable[[str, str], Any]
) -> None:
    source = await gateway.create_source()
    await gateway.create_integration()
    client = make_client(source["server_key"], str(gateway.collect.make_url("")).rstrip("/"))
    an_hour_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    context = {**GRANTED, "ip": "203.0.113.9", "userAgent": "Shop/1.0", "locale": "de-DE"}

    await asyncio.to_thread(
        lambda: client.track(
            anonymous_id="anon-7",
            event="Product Added",
            properties={"product_id": "SKU-A", "price": 10.0, "currency": "EUR"},
            context=context,
            timestamp=an_hour_ago,
        )
    )
    [event] = [a.event for a in await _accepted(tiktok, 1)]
    assert event["event"] == "AddToCart"
    assert event["event_time"] == int(an_hour_ago.timestamp())
    assert event["user"]["ip"] == "203.0.113.9"
    assert event["user"]["user_agent"] == "Shop/1.0"
    assert event["user"]["locale"] == "de-DE"
    # No cookie on a server: the client's own anonymous id is the external_id.
    assert event["user"]["external_id"] == [sha256("anon-7")]


@pytest.mark.parametrize("make_client", [segment_client, rudder_client], ids=["segment", "rudder"])
async def test_server_library_with_a_wrong_key_is_told_401(
    gateway: Gateway, make_client: Callable[[str, str], Any]
) -> None:
    await gateway.create_source()
    await gateway.create_integration()
    client = make_client("sk_not_a_key", str(gateway.collect.make_url("")).rstrip("/"))
    with pytest.raises(Exception) as caught:
        await asyncio.to_thread(lambda: client.track(user_id="u", event="Signed Up"))
    # The libraries read Segment's `code` and `message` from the answer.
    assert caught.value.status == 401  # type: ignore[attr-defined]
    assert caught.value.code == "unauthorized"  # type: ignore[attr-defined]


async def _accepted(tiktok: TikTokDouble, count: int) -> list[Any]:
    await tiktok.wait_for(lambda: len(tiktok.accepted) >= count)
    assert tiktok.problems == []
    return list(tiktok.accepted)
