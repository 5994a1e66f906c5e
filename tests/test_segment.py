"""Segment's wire format on the collection port, request by request (gateway/segment.py).

The bodies and headers are the ones Segment's clients send (read from their source): analytics.js
posts one call to `/v1/t`, `/v1/p`, ... as text/plain with the write key in the body and as
Basic credentials; the server libraries post `{"batch": [...]}` to `/v1/batch`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from http.cookies import SimpleCookie
from typing import Any

import pytest

from gateway.collect.cookies import IDENTITY
from tests.conftest import Gateway, MakeGateway
from tests.tiktok_double import TikTokDouble

PAGE = {"url": "https://shop.example/p/widget", "referrer": "https://shop.example/", "title": "W"}
GRANTED = {"categoryPreferences": {"Advertising": True}}


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def basic(key: str) -> dict[str, str]:
    token = base64.b64encode(f"{key}:".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def call(**fields: Any) -> dict[str, Any]:
    """One analytics.js call as its Segment.io plugin sends it."""
    body: dict[str, Any] = {
        "anonymousId": "ajs-anon-1",
        "messageId": "ajs-next-1",
        "writeKey": "src_test",
        "context": {"page": PAGE, "consent": GRANTED, "ip": "198.51.100.1", "userAgent": "X"},
    }
    body.update(fields)
    return body


async def post(gw: Gateway, path: str, body: Any, **headers: str) -> Any:
    headers.setdefault("Content-Type", "text/plain")
    return await gw.collect.post(path, data=json.dumps(body), headers=headers)


def set_cookies(resp: Any) -> dict[str, Any]:
    jar: SimpleCookie = SimpleCookie()
    for header in resp.headers.getall("Set-Cookie", []):
        jar.load(header)
    return dict(jar)


async def setup(gw: Gateway, **integration: Any) -> dict[str, Any]:
    source = await gw.create_source(default_phone_region="US")
    await gw.create_integration(**integration)
    return source


async def events_of(tiktok: TikTokDouble, count: int) -> list[dict[str, Any]]:
    await tiktok.wait_for(lambda: len(tiktok.accepted) >= count)
    assert tiktok.problems == []
    return [a.event for a in tiktok.accepted]


async def nothing_queued(gw: Gateway) -> bool:
    """Nothing reached the hit log: for requests the gateway refused outright."""
    return await gw.wired.queue.depth() == 0


async def nothing_sent(gw: Gateway, tiktok: TikTokDouble) -> bool:
    """Delivery read every hit so far and sent none of them to TikTok."""
    await gw.delivered()
    return tiktok.requests == []


# -- paths and answers ----


@pytest.mark.parametrize(
    ("path", "event"),
    [
        ("/v1/t", "CompletePayment"),  # analytics.js, apiHost "<gateway>/v1" (shared path)
        ("/t", "CompletePayment"),  # analytics.js, apiHost "<gateway>"
        ("/v1/track", "CompletePayment"),  # Segment's HTTP API, RudderStack's JavaScript SDK
    ],
)
async def test_a_track_call_answers_as_segment_and_reaches_tiktok(
    gateway: Gateway, tiktok: TikTokDouble, path: str, event: str
) -> None:
    await setup(gateway)
    purchase = {"total": 129.99, "currency": "USD", "products": [{"product_id": "SKU-A"}]}
    body = call(type="track", event="Order Completed", properties=purchase)
    resp = await post(gateway, path, body, **basic("src_test"))
    assert resp.status == 200
    assert await resp.json() == {"success": True}
    [sent] = await events_of(tiktok, 1)
    assert sent["event"] == event
    assert sent["event_id"] == "ajs-next-1"
    assert sent["properties"]["contents"] == [{"content_id": "SKU-A"}]


async def test_batches_on_the_native_batch_path_and_analytics_js_batching_path(
    gateway: Gateway, tiktok: TikTokDouble
) -> None:
    await setup(gateway)
    page = call(type="page", messageId="m-page")
    track = call(type="track", event="Product Viewed", messageId="m-view")
    for path, message in (("/v1/batch", page), ("/v1/b", track)):
        resp = await post(gateway, path, {"batch": [message], "writeKey": "src_test"})
        assert resp.status == 200, await resp.text()
    events = await events_of(tiktok, 2)
    assert sorted(e["event_id"] for e in events) == ["m-page", "m-view"]


async def test_native_hits_on_shared_paths_stay_native(
    gateway: Gateway, tiktok: TikTokDouble
) -> None:
    await setup(gateway)
    # A property named writeKey does not make a native hit a Segment call.
    native = {
        "source_id": "src_test",
        "event": "Product Viewed",
        "properties": {"writeKey": "x"},
        "context": {"consent": {"advertising": True}, "page": PAGE},
    }
    resp = await gateway.collect.post("/v1/t", json=native)
    assert resp.status == 200
    assert await resp.json() == {"ok": True}
    resp = await gateway.collect.post("/v1/batch", json={"batch": [{**native, "type": "track"}]})
    assert await resp.json() == {"ok": True}
    assert len(await events_of(tiktok, 2)) == 2


# -- write keys ----


@pytest.mark.parametrize(
    "headers_and_key",
    [
        ({"Authorization": "Basic " + base64.b64encode(b"src_nope:").decode()}, None),
        ({}, "src_nope"),
        ({}, None),
        ({"Authorization": "Basic !!!"}, "src_test"),
    ],
    ids=["unknown-basic", "unknown-body", "missing", "unreadable-basic"],
)
async def test_a_wrong_write_key_is_a_401_in_segments_shape(
    gateway: Gateway, headers_and_key: tuple[dict[str, str], str | None]
) -> None:
    await setup(gateway)
    headers, key = headers_and_key
    body = call(type="track", event="Signed Up", writeKey=key)
    resp = await post(gateway, "/v1/track", body, **headers)
    assert resp.status == 401
    answer = await resp.json()
    assert answer["success"] is False
    assert answer["code"] == "unauthorized"
    assert answer["error"] == {"code": "unauthorized", "message": answer["message"]}
    assert await nothing_queued(gateway)


async def test_the_source_id_is_a_public_key_with_browser_rules(
    gateway: Gateway, tiktok: TikTokDouble
) -> None:
    await setup(gateway)
    body = call(type="track", event="Product Viewed", timestamp="2020-01-01T00:00:00Z")
    resp = await post(gateway, "/v1/t", body, **basic("src_test"), **{"User-Agent": "Browser/1"})
    assert resp.status == 200
    cookies = set_cookies(resp)
    assert {"_ttp", "_dfid"} <= set(cookies)
    assert cookies["_dfid"].value == "ajs-anon-1"  # the client's id starts the first-party one
    [event] = await events_of(tiktok, 1)
    # The request decides, not the body: its address, its User-Agent, the receive time.
    assert event["user"]["ip"] == "127.0.0.1"
    assert event["user"]["user_agent"] == "Browser/1"
    assert event["event_time"] > 1_577_836_800 + 86400  # not the body's 2020-01-01
    assert event["user"]["external_id"] == [sha256("ajs-anon-1")]


async def test_the_server_key_is_a_secret_key_with_server_rules(
    gateway: Gateway, tiktok: TikTokDouble
) -> None:
    source = await setup(gateway)
    body = call(type="track", event="Product Viewed", writeKey=None)
    resp = await post(gateway, "/v1/batch", {"batch": [body]}, **basic(source["server_key"]))
    assert resp.status == 200
    assert set_cookies(resp) == {}  # a server has no cookie jar
    [event] = await events_of(tiktok, 1)
    assert event["user"]["ip"] == "198.51.100.1"
    assert event["user"]["user_agent"] == "X"


# -- consent ----


@pytest.mark.parametrize(
    ("consent", "consent_default", "sent"),
    [
        ({"categoryPreferences": {"ADVERTISING": True}}, "deny", True),
        ({"categoryPreferences": {"advertising": False}}, "grant", False),
        ({"categoryPreferences": {"analytics": True}}, "grant", False),
        (None, "grant", True),
        (None, "deny", False),
    ],
)
async def test_category_preferences_decide_consent(
    make_gateway: MakeGateway,
    tiktok: TikTokDouble,
    consent: dict[str, Any] | None,
    consent_default: str,
    sent: bool,
) -> None:
    async with make_gateway() as gw:
        await gw.create_source(consent_default=consent_default)
        await gw.create_integration(consent_categories=["Advertising"])
        context: dict[str, Any] = {"page": PAGE}
        if consent is not None:
            context["consent"] = consent
        body = call(type="page", context=context)
        resp = await post(gw, "/v1/p", body, **basic("src_test"))
        assert resp.status == 200
        await gw.delivered()
        assert len(tiktok.accepted) == (1 if sent else 0)
        resp = await gw.admin.get("/v1/admin/events/ajs-next-1")
        (record,) = (await resp.json())["records"]
        expected = {"status": "delivered"} if sent else {"status": "not_sent", "reason": "consent"}
        assert expected.items() <= record["delivery"].items()


# -- alias, group, screen ----


async def test_alias_group_and_screen_are_accepted_and_shown_but_not_sent(
    gateway: Gateway, tiktok: TikTokDouble
) -> None:
    await setup(gateway)
    calls = [
        call(type="alias", previousId="old", userId="u-1", messageId="m-alias"),
        call(type="group", groupId="g-1", userId="u-1", messageId="m-group"),
        call(type="screen", name="Home", messageId="m-screen"),
    ]
    resp = await post(gateway, "/v1/batch", {"batch": calls, "writeKey": "src_test"})
    assert resp.status == 200
    assert await nothing_sent(gateway, tiktok)
    for message_id, kind in (("m-alias", "alias"), ("m-group", "group"), ("m-screen", "screen")):
        resp = await gateway.admin.get(f"/v1/admin/events/{message_id}")
        (record,) = (await resp.json())["records"]
        assert record["hit"]["type"] == kind
        assert record["tiktok_event"] is None
        assert record["delivery"]["status"] == "not_sent"


async def test_an_event_mapping_entry_sends_a_screen_call(
    gateway: Gateway, tiktok: TikTokDouble
) -> None:
    config = {
        "pixel_code": "CTESTPIXEL0000000001",
        "access_token": "tok_test_0123456789",
        "event_mapping": {"Screen": "ViewContent"},
    }
    await setup(gateway, config=config)
    resp = await post(gateway, "/v1/s", call(type="screen", name="Home"), **basic("src_test"))
    assert resp.status == 200
    [event] = await events_of(tiktok, 1)
    assert event["event"] == "ViewContent"


# -- limits and bad input ----


async def test_a_message_over_32_kb_is_refused(gateway: Gateway) -> None:
    await setup(gateway)
    big = call(type="track", event="Product Viewed", properties={"description": "x" * 33_000})
    resp = await post(gateway, "/v1/batch", {"batch": [big], "writeKey": "src_test"})
    assert resp.status == 400
    assert (await resp.json())["code"] == "event_too_large"
    assert await nothing_queued(gateway)


async def test_a_batch_over_500_kb_is_refused_even_when_the_gateway_allows_more(
    make_gateway: MakeGateway,
) -> None:
    async with make_gateway(GATEWAY_MAX_BODY_BYTES=str(2 * 1024 * 1024)) as gw:
        await setup(gw)
        message = call(type="track", event="Product Viewed", properties={"name": "x" * 20_000})
        body = {"batch": [message] * 30, "writeKey": "src_test"}
        resp = await post(gw, "/v1/batch", body)
        assert resp.status == 413
        assert (await resp.json())["code"] == "payload_too_large"
        assert await nothing_queued(gw)


async def test_a_batch_just_under_500_kb_fits_the_default_limit(gateway: Gateway) -> None:
    # The server libraries fill a batch up to Segment's 500 KB and drop it whole on a 413.
    await setup(gateway)
    message = call(type="track", event="Product Viewed", properties={"name": "x" * 20_000})
    body = {"batch": [message] * 24, "writeKey": "src_test"}
    assert 480_000 < len(json.dumps(body)) < 500_000
    resp = await post(gateway, "/v1/batch", body)
    assert resp.status == 200, await resp.text()


async def test_the_gateways_own_body_limit_answers_in_segments_shape(
    make_gateway: MakeGateway,
) -> None:
    # An operator's limit below Segment's 500 KB: the gateway's own 413 comes first.
    async with make_gateway(GATEWAY_MAX_BODY_BYTES=str(256 * 1024)) as gw:
        await setup(gw)
        message = call(type="track", event="Product Viewed", properties={"name": "x" * 20_000})
        resp = await post(gw, "/v1/b", {"batch": [message] * 15, "writeKey": "src_test"})
        assert resp.status == 413
        assert (await resp.json())["code"] == "payload_too_large"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ("{", "malformed_json"),
        ({"writeKey": "src_test", "batch": []}, "invalid_field"),
        ({"writeKey": "src_test", "batch": [{"userId": "u"}]}, "invalid_field"),
        ({"writeKey": "src_test", "batch": [{"type": "track", "userId": "u"}]}, "invalid_field"),
        ({"writeKey": "src_test", "batch": [{"type": "page"}]}, "invalid_field"),
        ({"writeKey": "src_test", "batch": [{"type": "fly", "userId": "u"}]}, "invalid_field"),
        ({"writeKey": "src_test", "batch": [{"type": "page", "userId": ["u"]}]}, "invalid_field"),
        (
            {"writeKey": "src_test", "batch": [{"type": "page", "anonymousId": "a b;"}]},
            "invalid_field",
        ),
    ],
)
async def test_bad_calls_are_a_4xx_in_segments_shape(
    gateway: Gateway, body: Any, code: str
) -> None:
    await setup(gateway)
    data = body if isinstance(body, str) else json.dumps(body)
    resp = await gateway.collect.post("/v1/b", data=data, headers={"Content-Type": "text/plain"})
    assert resp.status == 400
    answer = await resp.json()
    assert answer["code"] == code and answer["success"] is False
    assert await nothing_queued(gateway)


# -- identity ----


async def test_browser_identify_enriches_later_calls_through_the_identity_cookie(
    gateway: Gateway, tiktok: TikTokDouble
) -> None:
    await setup(gateway)
    traits = {
        "email": " Jane.Doe@Example.COM ",
        "firstName": "Jane",
        "lastName": "Doe",
        "address": {"city": "Los Angeles", "postalCode": "90001", "country": "US"},
    }
    resp = await post(
        gateway, "/v1/i", call(type="identify", userId="u-42", traits=traits), **basic("src_test")
    )
    assert resp.status == 200
    assert IDENTITY in set_cookies(resp)  # sealed; the client's cookie jar keeps it
    assert await nothing_sent(gateway, tiktok)  # identify itself sends nothing
    purchase = {"total": 10, "currency": "USD"}
    body = call(type="track", event="Order Completed", properties=purchase, anonymousId="other")
    resp = await post(gateway, "/v1/t", body, **basic("src_test"))
    assert resp.status == 200
    [event] = await events_of(tiktok, 1)
    user = event["user"]
    assert user["email"] == sha256("jane.doe@example.com")
    assert user["first_name"] == sha256("jane")
    assert user["zip_code"] == sha256("90001")
    # The first-party id set on the first call wins over the client's later anonymous id.
    assert user["external_id"] == [sha256("u-42"), sha256("ajs-anon-1")]


async def test_ttclid_and_ttp_cookies_count_for_browser_calls(
    gateway: Gateway, tiktok: TikTokDouble
) -> None:
    await setup(gateway)
    gateway.collect.session.cookie_jar.update_cookies(
        {"_ttp": "pixel-ttp.1", "ttclid": "E.C.P.click1", "_dfid": "anon-cookie"}
    )
    resp = await post(gateway, "/v1/p", call(type="page"), **basic("src_test"))
    assert resp.status == 200
    [event] = await events_of(tiktok, 1)
    assert event["user"]["ttp"] == "pixel-ttp.1"
    assert event["user"]["ttclid"] == "E.C.P.click1"
    assert event["user"]["external_id"] == [sha256("anon-cookie")]


async def test_server_identify_sends_nothing_and_each_call_brings_its_own_traits(
    gateway: Gateway, tiktok: TikTokDouble
) -> None:
    source = await setup(gateway)
    key = basic(source["server_key"])
    identify = call(type="identify", userId="u-9", traits={"email": "a@shop.example"})
    resp = await post(gateway, "/v1/batch", {"batch": [identify]}, **key)
    assert resp.status == 200
    assert await nothing_sent(gateway, tiktok)
    track = call(
        type="track",
        event="Signed Up",
        userId="u-9",
        context={"consent": GRANTED, "traits": {"email": "b@shop.example"}},
    )
    resp = await post(gateway, "/v1/batch", {"batch": [track]}, **key)
    [event] = await events_of(tiktok, 1)
    assert event["user"]["email"] == sha256("b@shop.example")
    assert event["user"]["external_id"] == [sha256("u-9"), sha256("ajs-anon-1")]


async def test_a_beacon_batch_carries_its_key_in_the_query(
    gateway: Gateway, tiktok: TikTokDouble
) -> None:
    await setup(gateway)
    message = call(type="track", event="Product Viewed", writeKey=None)
    resp = await gateway.collect.post(
        "/beacon/v1/batch?writeKey=src_test",
        data=json.dumps({"batch": [message]}),
        headers={"Content-Type": "text/plain"},
    )
    assert resp.status == 200, await resp.text()
    [event] = await events_of(tiktok, 1)
    assert event["event"] == "ViewContent"


async def test_a_server_key_in_the_query_is_refused(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The test server's access log (the gateway runs without one) would write the URL, key and
    # all, which is the very reason such a key is refused: keep it out of the log audit.
    monkeypatch.setattr(logging.getLogger("aiohttp.access"), "disabled", True)
    source = await setup(gateway)
    message = call(type="track", event="Product Viewed", writeKey=None)
    resp = await gateway.collect.post(
        f"/beacon/v1/batch?writeKey={source['server_key']}",
        data=json.dumps({"batch": [message]}),
        headers={"Content-Type": "text/plain"},
    )
    assert resp.status == 401
    assert "URL" in (await resp.json())["message"]
    assert await nothing_queued(gateway)


async def test_a_server_key_made_after_the_first_call_is_known_at_once(
    gateway: Gateway, tiktok: TikTokDouble
) -> None:
    first = await setup(gateway)
    message = call(type="track", event="Product Viewed", writeKey=None)
    resp = await post(gateway, "/v1/batch", {"batch": [message]}, **basic(first["server_key"]))
    assert resp.status == 200
    second = await gateway.create_source(id="src_two", name="Second shop")
    await gateway.create_integration(source_id="src_two")
    resp = await post(gateway, "/v1/batch", {"batch": [message]}, **basic(second["server_key"]))
    assert resp.status == 200, await resp.text()
    assert len(await events_of(tiktok, 2)) == 2


# What a retried analytics-next call and a RudderStack JavaScript call ask the preflight for.
REQUESTED_HEADERS = "anonymousid,authorization,content-type,x-retry-count"


async def test_the_preflight_allows_the_headers_segment_and_rudderstack_send(
    gateway: Gateway,
) -> None:
    await setup(gateway)
    resp = await gateway.collect.options(
        "/v1/t",
        headers={
            "Origin": "https://shop.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": REQUESTED_HEADERS,
        },
    )
    assert resp.status == 204
    allowed = {h.strip().lower() for h in resp.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"anonymousid", "authorization", "content-type", "x-retry-count"} <= allowed
    assert resp.headers["Access-Control-Allow-Credentials"] == "true"
