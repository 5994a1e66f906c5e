"""Collection end to end: real HTTP in, the TikTok double's records out."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from http.cookies import SimpleCookie
from typing import Any

import pytest

from tests.conftest import Gateway, MakeGateway
from tests.tiktok_double import TikTokDouble

GRANTED = {"advertising": True}
PAGE = {"url": "https://shop.example/", "referrer": "https://search.example/", "title": "Home"}
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def hit(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "source_id": "src_test",
        "context": {"consent": GRANTED, "page": PAGE, "locale": "en-US"},
    }
    body.update(fields)
    return body


def set_cookies(resp: Any) -> dict[str, Any]:
    """The Set-Cookie headers of a response, parsed: name -> morsel."""
    jar: SimpleCookie = SimpleCookie()
    for header in resp.headers.getall("Set-Cookie", []):
        jar.load(header)
    return dict(jar)


async def setup(gw: Gateway, **integration: Any) -> dict[str, Any]:
    await gw.create_source(default_phone_region="US")
    return await gw.create_integration(**integration)


async def events_of(tiktok: TikTokDouble, count: int) -> list[dict[str, Any]]:
    await tiktok.wait_for(lambda: len(tiktok.accepted) >= count)
    assert tiktok.problems == []
    return [a.event for a in tiktok.accepted]


async def queue_depth(gw: Gateway) -> int:
    return await gw.wired.queue.depth()


# -- cookies ----


async def test_first_hit_sets_first_party_cookies(gateway: Gateway, tiktok: TikTokDouble) -> None:
    await setup(gateway)
    resp = await gateway.collect.post(
        "/v1/p", json=hit(), headers={"Accept-Language": "en-US,en;q=0.9"}
    )
    assert resp.status == 200
    cookies = set_cookies(resp)
    assert set(cookies) == {"_ttp", "_dfid"}
    ttp, dfid = cookies["_ttp"], cookies["_dfid"]
    assert UUID_RE.match(ttp.value) and UUID_RE.match(dfid.value)
    for morsel in (ttp, dfid):
        assert morsel["path"] == "/"
        assert morsel["samesite"] == "Lax"
        assert int(morsel["max-age"]) >= 390 * 86400  # 13 months
        assert not morsel["secure"]  # plain HTTP here
    assert dfid["httponly"] and not ttp["httponly"]

    [event] = await events_of(tiktok, 1)
    assert event["event"] == "PageView"
    assert event["user"]["ttp"] == ttp.value
    assert event["user"]["ip"] == "127.0.0.1"
    assert event["page"] == {"url": PAGE["url"], "referrer": PAGE["referrer"]}
    assert event["user"]["locale"] == "en-US"  # the browser's request says it
    assert event["user"]["external_id"] == [hashlib.sha256(dfid.value.encode()).hexdigest()]


async def test_existing_ttp_is_reused_unchanged_and_refreshed(
    gateway: Gateway, tiktok: TikTokDouble
) -> None:
    await setup(gateway)
    pixel_ttp = "01JABCDEF.tt.1"  # TikTok's pixel writes its own formats; never rewrite them
    gateway.collect.session.cookie_jar.update_cookies({"_ttp": pixel_ttp, "_dfid": "anon-1"})
    resp = await gateway.collect.post("/v1/p", json=hit())
    cookies = set_cookies(resp)
    assert cookies["_ttp"].value == pixel_ttp
    assert cookies["_dfid"].value == "anon-1"
    [event] = await events_of(tiktok, 1)
    assert event["user"]["ttp"] == pixel_ttp


async def test_ttclid_from_landing_url_is_kept_30_days(
    gateway: Gateway, tiktok: TikTokDouble
) -> None:
    await setup(gateway)
    landing = {"url": "https://shop.example/p?utm_source=tt&ttclid=E.C.P.abc123", "title": "P"}
    resp = await gateway.collect.post(
        "/v1/p", json=hit(context={"consent": GRANTED, "page": landing})
    )
    cookie = set_cookies(resp)["ttclid"]
    assert cookie.value == "E.C.P.abc123"
    assert int(cookie["max-age"]) == 30 * 86400

    # A later page without ttclid still attributes the click, and does not rewrite the cookie.
    resp = await gateway.collect.post("/v1/t", json=hit(event="Product Viewed"))
    assert "ttclid" not in set_cookies(resp)
    first, second = await events_of(tiktok, 2)
    assert first["user"]["ttclid"] == "E.C.P.abc123"
    assert second["user"]["ttclid"] == "E.C.P.abc123"


async def test_identify_then_purchase_carries_hashed_identity(
    gateway: Gateway, tiktok: TikTokDouble
) -> None:
    await setup(gateway)
    traits = {"email": " ALICE_abc@gmail.com ", "phone": "(+1)2133734253"}
    resp = await gateway.collect.post("/v1/i", json=hit(user_id="u-42", traits=traits))
    assert resp.status == 200
    identity = set_cookies(resp)["_dfuser"]
    assert identity["httponly"]
    assert "alice" not in identity.value.lower() and "2133734253" not in identity.value

    purchase = hit(
        event="Order Completed",
        anonymous_id="user_123",
        properties={"order_id": "ORD-1", "total": 10, "currency": "usd"},
    )
    await gateway.collect.post("/v1/t", json=purchase)
    [event] = await events_of(tiktok, 1)  # identify itself sends nothing
    user = event["user"]
    # TikTok's own test vectors.
    assert user["email"] == "848a771458438fc2ec420560d769fb9b9b86851ee338ec56517baabd79d3bb4f"
    assert user["phone"] == "9f7ec22d72092cd3c0b58726ed9c2d91b92e51a3f29837508fb2948bb22dd2fd"
    # The identified user's id first, then the anonymous id (user_123: TikTok's vector).
    assert user["external_id"] == [
        hashlib.sha256(b"u-42").hexdigest(),
        "80fba0ae1c48e3978e43e4efc365e14e12ea0c830ba8ba5b9a2dafc7e3f2ab8b",
    ]


async def test_tampered_identity_cookie_is_ignored(gateway: Gateway, tiktok: TikTokDouble) -> None:
    await setup(gateway)
    await gateway.collect.post("/v1/i", json=hit(traits={"email": "jane@example.com"}))
    sealed = gateway.collect.session.cookie_jar.filter_cookies(gateway.collect.make_url("/"))[
        "_dfuser"
    ].value
    tampered = sealed[:-6] + ("AAAAAA" if not sealed.endswith("AAAAAA") else "BBBBBB")
    gateway.collect.session.cookie_jar.clear()
    for value in (tampered, "not-a-sealed-value", "\u00e9"):
        resp = await gateway.collect.post(
            "/v1/p", json=hit(), headers={"Cookie": f"_dfuser={value}"}
        )
        assert resp.status == 200
        gateway.collect.session.cookie_jar.clear()
    events = await events_of(tiktok, 3)
    assert all("email" not in e["user"] for e in events)


# -- consent ----


async def test_identity_cookie_opens_after_key_rotation_not_under_a_foreign_key(
    make_gateway: MakeGateway, tiktok: TikTokDouble, tmp_path: Any
) -> None:
    old_key = "old-secret-key-0123456789-abcdefghij"
    new_key = "new-secret-key-0123456789-abcdefghij"
    async with make_gateway(GATEWAY_SECRET_KEY=old_key) as gw:
        await setup(gw)
        resp = await gw.collect.post("/v1/i", json=hit(traits={"email": "jane@example.com"}))
        sealed = set_cookies(resp)["_dfuser"].value
    email_hash = hashlib.sha256(b"jane@example.com").hexdigest()
    page = hit(event="Product Viewed")
    # Rotated: the new key seals, the old one still opens what it sealed.
    async with make_gateway(GATEWAY_SECRET_KEY=f"{new_key},{old_key}") as gw:
        resp = await gw.collect.post("/v1/t", json=page, headers={"Cookie": f"_dfuser={sealed}"})
        assert set_cookies(resp)["_dfuser"].value == sealed  # nothing changed: re-sent as it came
        [event] = await events_of(tiktok, 1)
        assert event["user"]["email"] == email_hash
    # Another deployment's key opens nothing.
    foreign = {"GATEWAY_SECRET_KEY": new_key, "GATEWAY_DATA_DIR": str(tmp_path / "other")}
    async with make_gateway(**foreign) as gw:
        await setup(gw)
        resp = await gw.collect.post("/v1/t", json=page, headers={"Cookie": f"_dfuser={sealed}"})
        assert "_dfuser" not in set_cookies(resp)
        _, event = await events_of(tiktok, 2)
        assert "email" not in event["user"]


@pytest.mark.parametrize(
    ("consent", "source_default", "categories", "delivered"),
    [
        pytest.param({"advertising": True}, "deny", ["advertising"], True, id="granted"),
        pytest.param({"advertising": False}, "grant", ["advertising"], False, id="denied"),
        pytest.param({"analytics": True}, "grant", ["advertising"], False, id="other-category"),
        pytest.param(None, "deny", ["advertising"], False, id="missing-default-deny"),
        pytest.param(None, "grant", ["advertising"], True, id="missing-default-grant"),
        pytest.param({"advertising": "yes"}, "deny", ["advertising"], None, id="not-a-bool"),
        pytest.param(None, "deny", [], True, id="no-categories-needed"),
        pytest.param(
            {"advertising": True}, "deny", ["advertising", "marketing"], False, id="needs-all"
        ),
    ],
)
async def test_consent_gate(
    gateway: Gateway,
    tiktok: TikTokDouble,
    consent: dict[str, Any] | None,
    source_default: str,
    categories: list[str],
    delivered: bool | None,
) -> None:
    await gateway.create_source(consent_default=source_default)
    await gateway.create_integration(consent_categories=categories)
    context: dict[str, Any] = {"page": PAGE}
    if consent is not None:
        context["consent"] = consent
    resp = await gateway.collect.post("/v1/p", json=hit(context=context))
    if delivered is None:
        assert resp.status == 400
        assert await queue_depth(gateway) == 0
        return
    assert resp.status == 200
    marker = await gateway.collect.post(
        "/v1/p",
        json=hit(context={"page": PAGE, "consent": {"advertising": True, "marketing": True}}),
    )
    assert marker.status == 200
    await tiktok.wait_for(lambda: len(tiktok.accepted) >= (2 if delivered else 1))
    assert len(tiktok.accepted) == (2 if delivered else 1)
    if not delivered:
        # Accepted and counted, but no cookie for a visitor who allowed nothing.
        assert set_cookies(resp) == {}


# -- event mapping through the whole path ----


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Product Added", "AddToCart"),
        ("Order Completed", "CompletePayment"),
        ("Product Purchased", "CompletePayment"),
        ("Checkout Started", "InitiateCheckout"),
        ("Product Viewed", "ViewContent"),
        ("Products Searched", "Search"),
        ("Product Added to Wishlist", "AddToWishlist"),
        ("Signed Up", "CompleteRegistration"),
        ("Lead Generated", "SubmitForm"),
        ("order completed", "CompletePayment"),
        ("Newsletter Joined", "Newsletter Joined"),
    ],
)
async def test_mapping_rows_end_to_end(
    gateway: Gateway, tiktok: TikTokDouble, name: str, expected: str
) -> None:
    await setup(gateway)
    properties = {
        "product_id": "SKU-1",
        "price": 5,
        "quantity": 2,
        "currency": "eur",
        "order_id": "O-9",
        "query": "shoes",
    }
    resp = await gateway.collect.post("/v1/t", json=hit(event=name, properties=properties))
    assert resp.status == 200
    [event] = await events_of(tiktok, 1)
    assert event["event"] == expected
    assert event["properties"]["currency"] == "EUR"
    assert event["properties"]["value"] == 10


async def test_seed_purchase_arrives_as_the_seed_contents(
    gateway: Gateway, tiktok: TikTokDouble
) -> None:
    await setup(gateway)
    seed = hit(
        event="Order Completed",
        message_id="evt_abc123def456",
        properties={
            "order_id": "ORD-001",
            "total": 129.99,
            "currency": "USD",
            "products": [
                {"product_id": "SKU-A", "name": "Widget", "price": 49.99, "quantity": 2},
                {
                    "sku": "SKU-B",
                    "name": "Gadget",
                    "category": "Tools",
                    "price": 30.01,
                    "quantity": 1,
                },
            ],
        },
    )
    await gateway.collect.post("/v1/t", json=seed)
    [event] = await events_of(tiktok, 1)
    assert event["event"] == "CompletePayment"
    assert event["event_id"] == "evt_abc123def456"
    assert isinstance(event["event_time"], int)
    assert event["properties"] == {
        "currency": "USD",
        "value": 129.99,
        "order_id": "ORD-001",
        "content_type": "product",
        "content_ids": ["SKU-A", "SKU-B"],
        "num_items": 3,
        "contents": [
            {"content_id": "SKU-A", "content_name": "Widget", "price": 49.99, "quantity": 2},
            {
                "content_id": "SKU-B",
                "content_name": "Gadget",
                "content_category": "Tools",
                "price": 30.01,
                "quantity": 1,
            },
        ],
    }
    request = tiktok.requests[-1]
    assert request.headers["Access-Token"] == "tok_test_0123456789"
    assert request.body["event_source_id"] == "CTESTPIXEL0000000001"
    assert request.body["event_source"] == "web"


async def test_purchase_without_value_is_dead_lettered_not_sent(
    gateway: Gateway, tiktok: TikTokDouble
) -> None:
    integration = await setup(gateway)
    resp = await gateway.collect.post(
        "/v1/t", json=hit(event="Order Completed", properties={"order_id": "O-1"})
    )
    assert resp.status == 200
    await gateway.collect.post("/v1/p", json=hit())
    await events_of(tiktok, 1)
    assert [e["event"] for e in (a.event for a in tiktok.accepted)] == ["PageView"]
    resp = await gateway.admin.get(f"/v1/admin/integrations/{integration['id']}/dead-letters")
    body = await resp.json()
    [letter] = body["dead_letters"]
    assert letter["reason"] == "missing_value_or_currency"
    assert letter["event_name"] == "CompletePayment"


async def test_current_event_names_option(gateway: Gateway, tiktok: TikTokDouble) -> None:
    await setup(
        gateway,
        config={
            "pixel_code": "CTESTPIXEL0000000001",
            "access_token": "tok_test_0123456789",
            "use_current_event_names": True,
            "event_mapping": {"Quote Requested": "Lead Generated"},
        },
    )
    await gateway.collect.post(
        "/v1/t", json=hit(event="Order Completed", properties={"total": 1, "currency": "USD"})
    )
    await gateway.collect.post("/v1/t", json=hit(event="Lead Generated"))
    events = await events_of(tiktok, 2)
    assert sorted(e["event"] for e in events) == ["Lead", "Purchase"]


# -- bad input: a 4xx, a JSON error, nothing stored ------------------------------------------------


def _nested(depth: int) -> bytes:
    return b'{"source_id":"src_test","properties":{"x":' + b"[" * depth + b"]" * depth + b"}}"


BAD_INPUTS = [
    pytest.param("/v1/p", b'{"source_id": "src_test",', {}, 400, id="malformed-json"),
    pytest.param("/v1/p", b"", {}, 400, id="empty-body"),
    pytest.param("/v1/t", b'{"source_id": "src_test", "event": 5}', {}, 400, id="wrong-type"),
    pytest.param(
        "/v1/t",
        json.dumps(hit(properties={"total": "a lot"})).encode(),
        {},
        400,
        id="wrong-type-nested",
    ),
    pytest.param("/v1/t", b'{"source_id": "src_test"}', {}, 400, id="track-without-event"),
    pytest.param(
        "/v1/batch",
        b'{"batch": [{"type": "alias", "source_id": "src_test"}]}',
        {},
        400,
        id="unknown-type",
    ),
    pytest.param("/v1/p", b'{"source_id": "src_nope"}', {}, 400, id="unknown-source"),
    pytest.param("/v1/p", b'{"context": {}}', {}, 400, id="missing-source"),
    pytest.param(
        "/v1/p",
        b'{"source_id": "src_test", "x": "' + b"a" * 600_000 + b'"}',
        {},
        413,
        id="oversized",
    ),
    pytest.param(
        "/v1/batch",
        json.dumps({"batch": [hit(type="page")] * 101}).encode(),
        {},
        400,
        id="too-many-hits",
    ),
    pytest.param("/v1/batch", b'{"batch": []}', {}, 400, id="empty-batch"),
    pytest.param(
        "/v1/p", b'{"source_id": "src_test", "user_id": "\xff\xfe"}', {}, 400, id="invalid-utf8"
    ),
    pytest.param("/v1/p", _nested(5000), {}, 400, id="absurd-nesting"),
    pytest.param(
        "/v1/t",
        b'{"source_id": "src_test", "event": "x", "properties": {"total": NaN}}',
        {},
        400,
        id="nan",
    ),
    pytest.param(
        "/v1/t",
        b'{"source_id": "src_test", "event": "x", "properties": {"total": Infinity}}',
        {},
        400,
        id="infinity",
    ),
    pytest.param(
        "/v1/t",
        b'{"source_id": "src_test", "event": "x", "properties": {"total": 1e999}}',
        {},
        400,
        id="huge-number",
    ),
    pytest.param("/v1/p", b"[1, 2, 3]", {}, 400, id="not-an-object"),
    pytest.param(
        "/v1/p",
        json.dumps(hit()).encode(),
        {"Content-Type": "application/xml"},
        415,
        id="wrong-content-type",
    ),
    pytest.param(
        "/v1/p",
        json.dumps(hit()).encode(),
        {"Authorization": "Bearer wrong-key"},
        401,
        id="wrong-server-key",
    ),
    pytest.param(
        "/v1/p", json.dumps(hit(message_id="m" * 500)).encode(), {}, 400, id="overlong-id"
    ),
]


@pytest.mark.parametrize(("path", "body", "headers", "status"), BAD_INPUTS)
async def test_bad_input_is_refused_and_leaves_no_trace(
    gateway: Gateway, path: str, body: bytes, headers: dict[str, str], status: int
) -> None:
    await setup(gateway)
    send_headers = {"Content-Type": "application/json", **headers}
    resp = await gateway.collect.post(path, data=body, headers=send_headers)
    assert resp.status == status
    error = (await resp.json())["error"]
    assert error["code"] and error["message"]
    assert await queue_depth(gateway) == 0
    assert set_cookies(resp) == {}


@pytest.mark.parametrize(
    "forwarded",
    [
        pytest.param("1.2.3.4, " * 2000, id="huge-list"),
        pytest.param("not-an-ip, <script>", id="garbage"),
        pytest.param("\u00e9\u00e9\u00e9", id="non-ascii"),
        pytest.param("[::1", id="broken-ipv6"),
    ],
)
async def test_hostile_forwarded_for_is_harmless(
    gateway: Gateway, tiktok: TikTokDouble, forwarded: str
) -> None:
    await setup(gateway)
    resp = await gateway.collect.post("/v1/p", json=hit(), headers={"X-Forwarded-For": forwarded})
    assert resp.status in (200, 400, 431)
    if resp.status == 200:
        [event] = await events_of(tiktok, 1)
        # From a trusted proxy with an unreadable header: no IP rather than a made-up one.
        assert event["user"].get("ip") in (None, "1.2.3.4")


async def test_text_plain_body_like_send_beacon(gateway: Gateway, tiktok: TikTokDouble) -> None:
    await setup(gateway)
    resp = await gateway.collect.post(
        "/v1/t", data=json.dumps(hit(event="Signed Up")), headers={"Content-Type": "text/plain"}
    )
    assert resp.status == 200
    [event] = await events_of(tiktok, 1)
    assert event["event"] == "CompleteRegistration"


async def test_batch_endpoint_keeps_order_and_identity(
    gateway: Gateway, tiktok: TikTokDouble
) -> None:
    await setup(gateway)
    batch = [
        hit(type="identify", user_id="u-1", traits={"email": "a@b.example"}),
        hit(type="page", message_id="m-page"),
        hit(
            type="track",
            event="Product Viewed",
            message_id="m-view",
            properties={"sku": 77, "price": 3},
        ),
    ]
    resp = await gateway.collect.post("/v1/batch", json={"batch": batch})
    assert resp.status == 200
    events = await events_of(tiktok, 2)
    assert {e["event_id"] for e in events} == {"m-page", "m-view"}
    assert all("email" in e["user"] for e in events)
    view = next(e for e in events if e["event_id"] == "m-view")
    assert (
        view["properties"]["contents"] == [{"content_id": "77", "price": 3}]
        or view["properties"]["contents"][0]["content_id"] == "77"
    )


# -- CORS and visitor address ----------------------------------------------------------------------


async def test_cors_for_allowed_origins_only(gateway: Gateway) -> None:
    await setup(gateway)
    ok = await gateway.collect.post("/v1/p", json=hit(), headers={"Origin": "https://shop.example"})
    assert ok.headers["Access-Control-Allow-Origin"] == "https://shop.example"
    assert ok.headers["Access-Control-Allow-Credentials"] == "true"
    other = await gateway.collect.post(
        "/v1/p", json=hit(), headers={"Origin": "https://evil.example"}
    )
    assert other.status == 200
    assert "Access-Control-Allow-Origin" not in other.headers

    preflight = await gateway.collect.options(
        "/v1/t",
        headers={
            "Origin": "https://shop.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert preflight.status == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://shop.example"
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    denied = await gateway.collect.options("/v1/t", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in denied.headers


async def test_forwarded_headers_believed_only_from_trusted_proxies(
    make_gateway: MakeGateway, tiktok: TikTokDouble
) -> None:
    # The test client connects from 127.0.0.1; first as a trusted proxy, then as a stranger.
    async with make_gateway() as gw:
        await setup(gw)
        await gw.collect.post(
            "/v1/p",
            json=hit(),
            headers={"X-Forwarded-For": "198.51.100.7, 10.0.0.2", "X-Forwarded-Proto": "https"},
        )
        await gw.collect.post(
            "/v1/p", json=hit(), headers={"Forwarded": 'for="[2001:db8::17]:4711";proto=https'}
        )
        events = await events_of(tiktok, 2)
        # Only X-Forwarded-For (GATEWAY_CLIENT_IP_HEADER's default) is believed: the second
        # hit's Forwarded is ignored (tests/test_client_ip.py names other headers).
        assert sorted(e["user"]["ip"] for e in events) == ["10.0.0.2", "127.0.0.1"]
    tiktok.accepted.clear()
    async with make_gateway(GATEWAY_TRUSTED_PROXIES="10.0.0.0/8") as gw:
        resp = await gw.collect.post(
            "/v1/p",
            json=hit(),
            headers={"X-Forwarded-For": "198.51.100.7", "X-Forwarded-Proto": "https"},
        )
        assert not set_cookies(resp)["_ttp"]["secure"]  # a forged proto changes nothing either
        [event] = await events_of(tiktok, 1)
        assert event["user"]["ip"] == "127.0.0.1"


async def test_secure_cookies_behind_https_proxy_with_cookie_domain(gateway: Gateway) -> None:
    await gateway.create_source(cookie_domain="shop.example")
    await gateway.create_integration()
    resp = await gateway.collect.post("/v1/p", json=hit(), headers={"X-Forwarded-Proto": "https"})
    for morsel in set_cookies(resp).values():
        assert morsel["secure"]
        assert morsel["domain"].lstrip(".") == "shop.example"


# -- server sources ----


async def test_server_source_may_set_ip_user_agent_and_past_time(
    gateway: Gateway, tiktok: TikTokDouble
) -> None:
    source = await gateway.create_source()
    await gateway.create_integration()
    key = source["server_key"]
    two_days_ago = "2026-01-01T00:00:00Z"
    order = hit(
        event="Order Completed",
        anonymous_id="anon-9",
        properties={"total": 20, "currency": "USD"},
        context={"consent": GRANTED, "ip": "203.0.113.50", "user_agent": "Shop/1.0"},
    )
    # A browser cannot override what the request shows.
    await gateway.collect.post("/v1/t", json={**order, "message_id": "browser"})
    import datetime as dt

    stamp = (dt.datetime.now(dt.UTC) - dt.timedelta(days=2)).replace(microsecond=0)
    two_days_ago = stamp.isoformat().replace("+00:00", "Z")
    resp = await gateway.collect.post(
        "/v1/t",
        json={**order, "message_id": "server", "timestamp": two_days_ago},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert resp.status == 200
    assert set_cookies(resp) == {}  # the answer goes to a backend, not a browser
    events = {e["event_id"]: e for e in await events_of(tiktok, 2)}
    assert events["server"]["user"]["ip"] == "203.0.113.50"
    assert events["server"]["user"]["user_agent"] == "Shop/1.0"
    assert events["server"]["event_time"] == int(stamp.timestamp())
    assert events["browser"]["user"]["ip"] == "127.0.0.1"
    assert events["browser"]["user"]["user_agent"] != "Shop/1.0"

    old = (dt.datetime.now(dt.UTC) - dt.timedelta(days=8)).isoformat()
    resp = await gateway.collect.post(
        "/v1/t", json={**order, "timestamp": old}, headers={"Authorization": f"Bearer {key}"}
    )
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "timestamp_too_old"


# -- configuration changes and bursts ----


async def test_configuration_change_takes_effect_at_once(
    gateway: Gateway, tiktok: TikTokDouble
) -> None:
    integration = await setup(gateway)
    await gateway.collect.post("/v1/p", json=hit(message_id="before"))
    resp = await gateway.admin.patch(
        f"/v1/admin/integrations/{integration['id']}", json={"enabled": False}
    )
    assert resp.status == 200
    await gateway.collect.post("/v1/p", json=hit(message_id="while-disabled"))
    await gateway.admin.patch(f"/v1/admin/integrations/{integration['id']}", json={"enabled": True})
    await gateway.collect.post("/v1/p", json=hit(message_id="after"))
    await events_of(tiktok, 2)
    assert sorted(tiktok.accepted_ids()) == ["after", "before"]


async def test_burst_is_coalesced_into_batches_each_event_once(
    make_gateway: MakeGateway, tiktok: TikTokDouble
) -> None:
    import asyncio

    async with make_gateway(GATEWAY_BATCH_MAX_EVENTS="500", GATEWAY_BATCH_MAX_WAIT_MS="200") as gw:
        await setup(gw)
        ids = [f"burst-{i}-{uuid.uuid4().hex[:6]}" for i in range(3000)]
        semaphore = asyncio.Semaphore(64)

        async def send(message_id: str) -> int:
            async with semaphore:
                resp = await gw.collect.post("/v1/p", json=hit(message_id=message_id))
                return resp.status

        statuses = await asyncio.gather(*(send(i) for i in ids))
        assert set(statuses) == {200}
        await tiktok.wait_for(lambda: len(tiktok.accepted) >= len(ids), timeout=60)
        assert sorted(tiktok.accepted_ids()) == sorted(ids)
        sizes = [len(r.events) for r in tiktok.requests]
        assert max(sizes) <= 500
        assert len(sizes) < len(ids) / 10  # coalesced, not one request per hit
        print(f"burst: {len(ids)} hits -> {len(sizes)} TikTok requests, sizes {sorted(sizes)[-5:]}")


async def test_a_source_id_a_client_makes_up_never_reaches_the_log_even_at_debug(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    # The routing table's cache logged every key it looked up at DEBUG: a client may send
    # anything as its source id, an email address included.
    caplog.set_level("DEBUG")
    await setup(gateway)
    made_up = "someone.private@mail.example"
    for source_id in (made_up, "src_test"):
        resp = await gateway.collect.post("/v1/p", json={"source_id": source_id})
        assert resp.status in (200, 400)
    assert made_up not in caplog.text
    assert "src_test" not in caplog.text  # nor a real one: the cache says nothing at DEBUG


async def test_raw_pii_never_reaches_disk_or_logs(
    gateway: Gateway, tiktok: TikTokDouble, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    await setup(gateway)
    email, phone = "Private.Person@Example.org", "(415) 555-0199"
    person = {
        "first_name": "Wilhelmina",
        "last_name": "Quixotry",
        "address": {
            "city": "Springwood",
            "state": "Oklahoma",
            "country": "Norway",
            "postal_code": "QX9 7WZ",
        },
    }
    resp = await gateway.collect.post(
        "/v1/i",
        json=hit(
            user_id="customer-zqx-7781",
            traits={"email": [email, "second.person@example.org"], "phone": phone, **person},
        ),
    )
    assert resp.status == 200
    await gateway.collect.post(
        "/v1/t",
        json=hit(
            event="Order Completed",
            properties={"order_id": "O-1"},  # dead-lettered
            context={"consent": GRANTED, "traits": {"email": email, "phone": phone}},
        ),
    )
    await gateway.collect.post(
        "/v1/t",
        json=hit(event="Signed Up", context={"consent": GRANTED, "traits": {"email": email}}),
    )
    await events_of(tiktok, 1)
    # The WAL file holds what was committed but not yet checkpointed: both files are read.
    needles = [email.encode(), email.lower().encode(), b"555-0199", b"4155550199"]
    needles += [b"second.person", b"customer-zqx-7781", b"Wilhelmina", b"wilhelmina"]
    needles += [b"Quixotry", b"quixotry", b"Springwood", b"springwood", b"Oklahoma", b"Norway"]
    needles += [b"QX9 7WZ", b"qx97wz"]
    files = [p for p in gateway.data_dir.rglob("*") if p.is_file()]
    assert any(p.name.startswith("hitlog.db") for p in files)
    for path in files:
        content = path.read_bytes()
        for needle in needles:
            assert needle not in content, f"{needle!r} found in {path.name}"
    logged = caplog.text.encode()
    for needle in needles:
        assert needle not in logged


# -- attribution: click ids, _ttp, match keys ----

# A click id as TikTok issues them today: "E.C.P." then base64url, 330 characters in all.
LONG_TTCLID = "E.C.P." + ("CqIBa-Zk_9QwX3vH2" * 20)[:324]
assert len(LONG_TTCLID) == 330


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


async def test_long_click_id_round_trips_url_cookie_tiktok(
    gateway: Gateway, tiktok: TikTokDouble
) -> None:
    await setup(gateway)
    landing = {"url": f"https://shop.example/p?ttclid={LONG_TTCLID}&utm_source=tiktok"}
    resp = await gateway.collect.post(
        "/v1/p", json=hit(context={"consent": GRANTED, "page": landing})
    )
    assert resp.status == 200
    assert set_cookies(resp)["ttclid"].value == LONG_TTCLID
    # The next hit has no ttclid in its URL: the cookie the browser sends back carries it.
    resp = await gateway.collect.post("/v1/t", json=hit(event="Product Viewed"))
    assert resp.status == 200
    sent_cookie = gateway.collect.session.cookie_jar.filter_cookies(gateway.collect.make_url("/"))
    assert sent_cookie["ttclid"].value == LONG_TTCLID
    first, second = await events_of(tiktok, 2)
    assert first["user"]["ttclid"] == LONG_TTCLID
    assert second["user"]["ttclid"] == LONG_TTCLID


@pytest.mark.parametrize(
    ("ttclid", "kept"),
    [
        pytest.param("E.C.P." + "A" * 994, True, id="1000-characters"),
        pytest.param("E.C.P.abc;Path=/evil", False, id="semicolon"),
        pytest.param("E.C.P.abc,def", False, id="comma"),
        pytest.param('E.C.P."abc"', False, id="quotes"),
        pytest.param("E.C.P.abc\r\nSet-Cookie:x=1", False, id="crlf"),
    ],
)
async def test_click_ids_that_could_break_a_cookie_are_not_taken(
    gateway: Gateway, tiktok: TikTokDouble, ttclid: str, kept: bool
) -> None:
    await setup(gateway)
    from urllib.parse import quote

    landing = {"url": f"https://shop.example/?ttclid={quote(ttclid, safe='')}"}
    resp = await gateway.collect.post(
        "/v1/p", json=hit(context={"consent": GRANTED, "page": landing})
    )
    assert resp.status == 200
    cookie = set_cookies(resp).get("ttclid")
    [event] = await events_of(tiktok, 1)
    if kept:
        assert cookie is not None and cookie.value == ttclid
        assert event["user"]["ttclid"] == ttclid
    else:
        assert cookie is None
        assert "ttclid" not in event["user"]


@pytest.mark.parametrize(
    ("referrer", "taken"),
    [
        # TikTok's GTM template: a referrer on the page's own host carries the click.
        pytest.param("https://shop.example/landing?ttclid=E.C.P.ref1", True, id="same-host"),
        pytest.param("https://www.tiktok.com/?ttclid=E.C.P.ref1", True, id="tiktok-subdomain"),
        pytest.param("https://tiktok.com/foo?ttclid=E.C.P.ref1", True, id="tiktok-apex"),
        pytest.param(
            "https://tiktok.com.evil.example/?ttclid=E.C.P.ref1", False, id="lookalike-suffix"
        ),
        pytest.param("https://nottiktok.com/?ttclid=E.C.P.ref1", False, id="lookalike-prefix"),
        pytest.param("https://www.fake-tiktok.com/?ttclid=E.C.P.ref1", False, id="gtm-fake"),
        pytest.param("https://shop.example.evil/?ttclid=E.C.P.ref1", False, id="other-host"),
        pytest.param("not a url ?ttclid=E.C.P.ref1", False, id="unreadable"),
    ],
)
async def test_ttclid_from_a_trusted_referrer_only(
    gateway: Gateway, tiktok: TikTokDouble, referrer: str, taken: bool
) -> None:
    await setup(gateway)
    page = {"url": "https://shop.example/product/1", "referrer": referrer}
    resp = await gateway.collect.post("/v1/p", json=hit(context={"consent": GRANTED, "page": page}))
    assert resp.status == 200
    [event] = await events_of(tiktok, 1)
    if taken:
        assert event["user"]["ttclid"] == "E.C.P.ref1"
        assert set_cookies(resp)["ttclid"].value == "E.C.P.ref1"
    else:
        assert "ttclid" not in event["user"]
        assert "ttclid" not in set_cookies(resp)


async def test_page_url_click_id_wins_over_the_referrer(
    gateway: Gateway, tiktok: TikTokDouble
) -> None:
    await setup(gateway)
    page = {
        "url": "https://shop.example/?ttclid=E.C.P.url",
        "referrer": "https://www.tiktok.com/?ttclid=E.C.P.ref",
    }
    await gateway.collect.post("/v1/p", json=hit(context={"consent": GRANTED, "page": page}))
    [event] = await events_of(tiktok, 1)
    assert event["user"]["ttclid"] == "E.C.P.url"


@pytest.mark.parametrize(
    "pixel_ttp",
    [
        pytest.param("01KEMC163EX38R4MP15Q3AE1EF_.tt.1", id="current-pixel-format"),
        pytest.param("2Kx9fQ3y1tPz0aBcDeFgHiJkLmN", id="older-27-characters"),
    ],
)
async def test_pixel_written_ttp_is_reused_byte_for_byte(
    gateway: Gateway, tiktok: TikTokDouble, pixel_ttp: str
) -> None:
    await setup(gateway)
    resp = await gateway.collect.post(
        "/v1/p", json=hit(), headers={"Cookie": f"_ttp={pixel_ttp}; _dfid=anon-7"}
    )
    assert resp.status == 200
    refreshed = set_cookies(resp)["_ttp"]
    assert refreshed.value == pixel_ttp
    assert int(refreshed["max-age"]) >= 390 * 86400
    raw_header = next(h for h in resp.headers.getall("Set-Cookie") if h.startswith("_ttp="))
    assert raw_header.startswith(f"_ttp={pixel_ttp};")  # not quoted, not re-encoded
    [event] = await events_of(tiktok, 1)
    assert event["user"]["ttp"] == pixel_ttp


async def test_server_source_sets_ttp_ttclid_locale_browser_cannot(
    gateway: Gateway, tiktok: TikTokDouble
) -> None:
    source = await gateway.create_source()
    await gateway.create_integration()
    context = {
        "consent": GRANTED,
        "page": {"url": "https://shop.example/thanks"},
        "ttp": "01KEMC163EX38R4MP15Q3AE1EF_.tt.1",
        "ttclid": LONG_TTCLID,
        "locale": "pt-BR",
    }
    order = hit(
        event="Order Completed",
        anonymous_id="anon-9",
        properties={"total": 20, "currency": "USD"},
        context=context,
    )
    resp = await gateway.collect.post(
        "/v1/t",
        json={**order, "message_id": "server"},
        headers={"Authorization": f"Bearer {source['server_key']}"},
    )
    assert resp.status == 200
    resp = await gateway.collect.post(
        "/v1/t",
        json={**order, "message_id": "browser"},
        headers={"Accept-Language": "de-DE,de;q=0.8"},
    )
    assert resp.status == 200
    assert "ttclid" not in set_cookies(resp)
    events = {e["event_id"]: e for e in await events_of(tiktok, 2)}
    server, browser = events["server"]["user"], events["browser"]["user"]
    assert server["ttp"] == "01KEMC163EX38R4MP15Q3AE1EF_.tt.1"
    assert server["ttclid"] == LONG_TTCLID
    assert server["locale"] == "pt-BR"
    # The browser's own cookies, URL and request decide: its context claims are ignored.
    assert browser["ttp"] != context["ttp"]
    assert "ttclid" not in browser
    assert browser["locale"] == "de-DE"


@pytest.mark.parametrize(
    ("context", "field"),
    [
        pytest.param({"ttclid": "E.C.P.abc; Path=/"}, "ttclid", id="ttclid-with-semicolon"),
        pytest.param({"ttclid": "E.C.P." + "A" * 1100}, "ttclid", id="ttclid-too-long"),
        pytest.param({"ttp": "a b"}, "ttp", id="ttp-with-space"),
        pytest.param({"locale": "en US!"}, "locale", id="locale-not-a-tag"),
    ],
)
async def test_server_context_values_are_checked(
    gateway: Gateway, context: dict[str, Any], field: str
) -> None:
    source = await gateway.create_source()
    await gateway.create_integration()
    resp = await gateway.collect.post(
        "/v1/t",
        json=hit(event="Signed Up", context={"consent": GRANTED, **context}),
        headers={"Authorization": f"Bearer {source['server_key']}"},
    )
    assert resp.status == 400
    error = (await resp.json())["error"]
    assert error["code"] == "invalid_field" and field in error["message"]
    assert await queue_depth(gateway) == 0


async def test_identify_with_names_address_and_several_emails(
    gateway: Gateway, tiktok: TikTokDouble
) -> None:
    await setup(gateway)
    traits = {
        "email": ["Jane.Doe@Example.com", " jane@work.example "],
        "phone": ["+1 (213) 373-4253", "+44 20 7946 0958"],
        "first_name": " Jane ",
        "last_name": "Doe-Smith",
        "address": {
            "city": "San Francisco",
            "state": "CA",
            "country": "United States",
            "postal_code": "94105-1234",
        },
    }
    resp = await gateway.collect.post("/v1/i", json=hit(user_id="User-42", traits=traits))
    assert resp.status == 200
    sealed = set_cookies(resp)["_dfuser"].value
    # The sealed identity holds hashes only: no raw value, and nothing but 64-hex strings.
    plaintext = gateway.wired.cookie_box.open(sealed, ttl_s=3600)
    assert plaintext is not None
    values = [v for v in json.loads(plaintext).values()]
    flat = [x for v in values for x in (v if isinstance(v, list) else [v])]
    assert flat and all(re.fullmatch(r"[0-9a-f]{64}", x) for x in flat)

    await gateway.collect.post("/v1/t", json=hit(event="Product Viewed", anonymous_id="anon-1"))
    [event] = await events_of(tiktok, 1)
    assert event["user"]["external_id"] == [sha("User-42"), sha("anon-1")]  # case kept
    assert event["user"]["email"] == [sha("jane.doe@example.com"), sha("jane@work.example")]
    assert event["user"]["phone"] == [sha("+12133734253"), sha("+442079460958")]
    assert event["user"]["first_name"] == sha("jane")
    assert event["user"]["last_name"] == sha("doesmith")
    assert event["user"]["city"] == sha("sanfrancisco")
    assert event["user"]["state"] == sha("ca")
    assert event["user"]["country"] == sha("us")
    assert event["user"]["zip_code"] == sha("941051234")


async def test_uppercase_prehashed_values_pass_through_lowercased(
    gateway: Gateway, tiktok: TikTokDouble
) -> None:
    await setup(gateway)
    email_hash, phone_hash, user_hash = sha("a@example.com"), sha("+12133734253"), sha("u-1")
    traits = {"email": email_hash.upper(), "phone": phone_hash.upper(), "first_name": "AB" * 32}
    await gateway.collect.post("/v1/i", json=hit(user_id=user_hash.upper(), traits=traits))
    await gateway.collect.post("/v1/t", json=hit(event="Signed Up", anonymous_id="anon-2"))
    [event] = await events_of(tiktok, 1)
    assert event["user"]["email"] == email_hash
    assert event["user"]["phone"] == phone_hash
    assert event["user"]["first_name"] == "ab" * 32
    assert event["user"]["external_id"] == [user_hash, sha("anon-2")]


async def test_identity_cookie_of_an_older_gateway_still_reads(
    gateway: Gateway, tiktok: TikTokDouble
) -> None:
    await setup(gateway)
    # What gateways before hashed user ids sealed: the raw user id and one email hash.
    legacy = json.dumps({"u": "u-42", "e": sha("jane@example.com")}).encode()
    sealed = gateway.wired.cookie_box.seal(legacy)
    resp = await gateway.collect.post(
        "/v1/t",
        json=hit(event="Product Viewed", anonymous_id="anon-3"),
        headers={"Cookie": f"_dfuser={sealed}"},
    )
    assert resp.status == 200
    [event] = await events_of(tiktok, 1)
    assert event["user"]["external_id"] == [sha("u-42"), sha("anon-3")]
    assert event["user"]["email"] == sha("jane@example.com")
    # The browser gets it back sealed anew, without the raw user id.
    resealed = set_cookies(resp)["_dfuser"].value
    assert resealed != sealed
    plaintext = gateway.wired.cookie_box.open(resealed, ttl_s=3600)
    assert plaintext is not None and b"u-42" not in plaintext
    assert json.loads(plaintext) == {"x": sha("u-42"), "e": sha("jane@example.com")}


async def test_identity_cookie_stays_small_when_full(gateway: Gateway) -> None:
    await setup(gateway)
    traits = {
        "email": [f"person.{i}@example.com" for i in range(5)],
        "phone": [f"+1 213 373 42{i:02d}" for i in range(5)],
        "first_name": "Jane",
        "last_name": "Doe",
        "address": {"city": "A", "state": "B", "country": "US", "postal_code": "1"},
    }
    resp = await gateway.collect.post("/v1/i", json=hit(user_id="u-1", traits=traits))
    header = next(h for h in resp.headers.getall("Set-Cookie") if h.startswith("_dfuser="))
    assert len(header) < 4096  # what every browser keeps of one cookie


@pytest.mark.parametrize(
    "traits",
    [
        pytest.param({"email": [f"p{i}@example.com" for i in range(6)]}, id="too-many-emails"),
        pytest.param({"phone": ["+12133734253"] * 6}, id="too-many-phones"),
        pytest.param({"email": "a" * 300 + "@example.com"}, id="email-too-long"),
        pytest.param({"first_name": "J" * 257}, id="name-too-long"),
        pytest.param({"address": {"city": "C" * 257}}, id="city-too-long"),
        pytest.param({"email": [1, 2]}, id="email-list-of-numbers"),
        pytest.param({"address": "Main Street 1"}, id="address-not-an-object"),
    ],
)
async def test_oversized_or_malformed_traits_are_refused(
    gateway: Gateway, traits: dict[str, Any]
) -> None:
    await setup(gateway)
    for path, body in (("/v1/i", hit(traits=traits)), ("/v1/t", hit(event="X", traits=traits))):
        resp = await gateway.collect.post(path, json=body)
        assert resp.status == 400, path
        error = (await resp.json())["error"]
        assert error["code"] == "invalid_field" and "traits" in error["message"]
        assert set_cookies(resp) == {}
    assert await queue_depth(gateway) == 0
