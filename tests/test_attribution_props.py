"""Attribution fidelity, end to end: hits go in over HTTP, and the assertions read what the TikTok
double received (or what was dead-lettered instead).

Values that are not finite, TikTok's recommended properties and the `properties.tiktok`
passthrough, the seven added mapping rows, a hit's own `limited_data_use`, and the sources'
`event_source` (web, app, offline, crm) with what each requires.
"""

from __future__ import annotations

import json
from typing import Any

from tests.conftest import Gateway
from tests.tiktok_double import TikTokDouble

GRANTED = {"advertising": True}
CRM_SET_ID = "7301234567890123456"
APP_ID = "7000000000000000001"
STORE_APP_ID = "com.example.shop"
OFFLINE_SET_ID = "7200000000000000002"


def hit(event: str, properties: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "source_id": "src_test",
        "event": event,
        "context": {"consent": GRANTED},
    }
    if properties is not None:
        body["properties"] = properties
    body.update(fields)
    return body


async def send(gw: Gateway, body: dict[str, Any] | bytes, **headers: str) -> None:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    resp = await gw.collect.post(
        "/v1/t", data=data, headers={"Content-Type": "application/json", **headers}
    )
    assert resp.status == 200, await resp.text()


async def received(tiktok: TikTokDouble, count: int) -> dict[str, dict[str, Any]]:
    """The events TikTok accepted, by event_id, once `count` have arrived (all well formed)."""
    await tiktok.wait_for(lambda: len(tiktok.accepted) >= count)
    assert tiktok.problems == []
    return {a.event["event_id"]: a.event for a in tiktok.accepted}


async def dead_letter_reasons(gw: Gateway, integration_id: str) -> dict[str, str]:
    resp = await gw.admin.get(f"/v1/admin/integrations/{integration_id}/dead-letters")
    assert resp.status == 200
    return {d["event_id"]: d["reason"] for d in (await resp.json())["dead_letters"]}


# -- 1. values that are not finite ------------------------------------------------------------


async def test_a_purchase_whose_value_is_not_finite_is_dead_lettered_never_sent_as_null(
    gateway: Gateway, tiktok: TikTokDouble
) -> None:
    await gateway.create_source()
    integration = await gateway.create_integration()
    # Raw bodies: 1e308 x 10 overflows a float to infinity, which JSON encoders write as null.
    bodies = [
        b'{"source_id":"src_test","event":"Order Completed","message_id":"overflow",'
        b'"context":{"consent":{"advertising":true}},"properties":{"currency":"USD",'
        b'"products":[{"product_id":"P1","price":1e308,"quantity":10}]}}',
        b'{"source_id":"src_test","event":"Order Completed","message_id":"negative",'
        b'"context":{"consent":{"advertising":true}},"properties":{"currency":"USD",'
        b'"total":-5}}',
        # An unusable total gives way to the next source of a value.
        b'{"source_id":"src_test","event":"Order Completed","message_id":"revenue",'
        b'"context":{"consent":{"advertising":true}},"properties":{"currency":"USD",'
        b'"total":-1,"revenue":12.5}}',
        # Not a purchase: sent, without a value (the price itself is finite and kept).
        b'{"source_id":"src_test","event":"Product Viewed","message_id":"viewed",'
        b'"context":{"consent":{"advertising":true}},"properties":{"currency":"USD",'
        b'"product_id":"P1","price":1e308,"quantity":10}}',
    ]
    for body in bodies:
        await send(gateway, body)

    events = await received(tiktok, 2)
    assert set(events) == {"revenue", "viewed"}
    assert events["revenue"]["properties"]["value"] == 12.5
    assert events["viewed"]["properties"] == {
        "contents": [{"content_id": "P1", "price": 1e308, "quantity": 10}],
        "content_type": "product",
        "content_ids": ["P1"],
        "num_items": 10,
        "currency": "USD",
    }
    for request in tiktok.requests:
        assert b"null" not in request.raw and b"Infinity" not in request.raw
    assert await dead_letter_reasons(gateway, integration["id"]) == {
        "overflow": "missing_value_or_currency",
        "negative": "missing_value_or_currency",
    }


async def test_a_total_beyond_a_float_is_refused_at_collection(
    gateway: Gateway, tiktok: TikTokDouble
) -> None:
    await gateway.create_source()
    await gateway.create_integration()
    body = (
        b'{"source_id":"src_test","event":"Order Completed","context":{"consent":'
        b'{"advertising":true}},"properties":{"currency":"USD","total":1e309}}'
    )
    resp = await gateway.collect.post(
        "/v1/t", data=body, headers={"Content-Type": "application/json"}
    )
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "invalid_field"
    assert await gateway.wired.queue.depth() == 0


# -- 3. recommended properties and the passthrough -----------------------------------------------


async def test_recommended_properties_and_the_passthrough_reach_tiktok(
    gateway: Gateway, tiktok: TikTokDouble
) -> None:
    await gateway.create_source()
    await gateway.create_integration()
    travel = {"departing_departure_date": "20260301", "num_adults": 2, "city": "Lisbon"}
    await send(
        gateway,
        hit(
            "Checkout Started",
            {
                "products": [
                    {"product_id": "G1", "category": "Trips", "brand": "Acme", "price": 120},
                    {"sku": "G2", "price": 30, "quantity": 2},
                ],
                "content_type": "product_group",
                "description": "Spring trip",
                "shop_id": 42,
                "currency": "eur",
                "tiktok": travel,
            },
            message_id="checkout",
        ),
    )
    await send(gateway, hit("Products Searched", {"query": "lisbon"}, message_id="search"))

    events = await received(tiktok, 2)
    assert events["checkout"]["properties"] == {
        "contents": [
            {"content_id": "G1", "content_category": "Trips", "brand": "Acme", "price": 120.0},
            {"content_id": "G2", "price": 30.0, "quantity": 2},
        ],
        "content_type": "product_group",
        "content_ids": ["G1", "G2"],
        "num_items": 2,
        "value": 180.0,
        "currency": "EUR",
        "shop_id": "42",
        "description": "Spring trip",
        **travel,
    }
    assert events["search"]["properties"] == {"query": "lisbon", "search_string": "lisbon"}


async def test_a_hit_names_its_own_item_count(gateway: Gateway, tiktok: TikTokDouble) -> None:
    await gateway.create_source()
    await gateway.create_integration()
    properties = {"products": [{"product_id": "A", "quantity": 2}], "num_items": 7}
    await send(gateway, hit("Product Added", properties, message_id="cart"))
    events = await received(tiktok, 1)
    assert events["cart"]["properties"]["num_items"] == 7


async def test_a_hostile_passthrough_is_refused_with_a_4xx_and_nothing_is_stored(
    gateway: Gateway, tiktok: TikTokDouble
) -> None:
    await gateway.create_source()
    await gateway.create_integration()
    deep: dict[str, Any] = {"leaf": 1}
    for _ in range(20):
        deep = {"next": deep}
    hostile = [
        json.dumps(hit("Product Viewed", {"tiktok": {"blob": "x" * 9000}})).encode(),
        json.dumps(hit("Product Viewed", {"tiktok": {"list": list(range(3000))}})).encode(),
        json.dumps(hit("Product Viewed", {"tiktok": deep})).encode(),
        json.dumps(hit("Product Viewed", {"tiktok": "not an object"})).encode(),
        b'{"source_id":"src_test","event":"Product Viewed","properties":'
        b'{"tiktok":{"value":1e309}}}',
    ]
    for body in hostile:
        resp = await gateway.collect.post(
            "/v1/t", data=body, headers={"Content-Type": "application/json"}
        )
        assert resp.status == 400, body[:80]
        error = (await resp.json())["error"]
        assert error["code"] == "invalid_field"
        assert "properties.tiktok" in error["message"]
    assert await gateway.wired.queue.depth() == 0
    assert tiktok.requests == []


# -- 4. the added mapping rows -----------------------------------------------------------------


async def test_the_added_mapping_rows(gateway: Gateway, tiktok: TikTokDouble) -> None:
    await gateway.create_source()
    await gateway.create_integration()
    rows = {
        "Order Placed": "PlaceAnOrder",
        "Payment Info Entered": "AddPaymentInfo",
        "Subscription Created": "Subscribe",
        "Callback Started": "Contact",
        "Form Submitted": "SubmitForm",
        "Product Clicked": "ClickButton",
        "Download Link Clicked": "Download",
    }
    batch = [
        {**hit(name, message_id=f"m{index}"), "type": "track"} for index, name in enumerate(rows)
    ]
    resp = await gateway.collect.post("/v1/batch", json={"batch": batch})
    assert resp.status == 200, await resp.text()
    events = await received(tiktok, len(rows))
    assert {events[f"m{i}"]["event"] for i in range(len(rows))} == set(rows.values())
    assert [events[f"m{i}"]["event"] for i in range(len(rows))] == list(rows.values())


# -- 5. limited_data_use per event ---------------------------------------------------------------


async def test_a_hit_overrides_the_integrations_limited_data_use(
    gateway: Gateway, tiktok: TikTokDouble
) -> None:
    await gateway.create_source()
    await gateway.create_integration(
        config={
            "pixel_code": "CTESTPIXEL0000000001",
            "access_token": "tok_test_0123456789",
            "limited_data_use": True,
        }
    )
    for message_id, own in (("own-false", False), ("own-true", True), ("default", None)):
        body = hit("Signed Up", message_id=message_id)
        if own is not None:
            body["context"]["limited_data_use"] = own
        await send(gateway, body)
    events = await received(tiktok, 3)
    assert events["own-false"]["limited_data_use"] is False
    assert events["own-true"]["limited_data_use"] is True
    assert events["default"]["limited_data_use"] is True

    bad = hit("Signed Up")
    bad["context"]["limited_data_use"] = "yes"
    resp = await gateway.collect.post("/v1/t", json=bad)
    assert resp.status == 400
    assert "limited_data_use" in (await resp.json())["error"]["message"]


# -- 2. event_source on sources ----------------------------------------------------------------


async def test_event_source_through_the_management_api(gateway: Gateway) -> None:
    admin = gateway.admin
    base = {"id": "src_crm", "name": "CRM"}

    resp = await admin.post("/v1/admin/sources", json={**base, "event_source": "store"})
    assert resp.status == 422
    error = (await resp.json())["error"]
    assert (error["code"], error["field"]) == ("invalid_value", "event_source")

    resp = await admin.post("/v1/admin/sources", json={**base, "event_source": "crm"})
    assert resp.status == 422
    assert (await resp.json())["error"]["field"] == "event_source_id"

    resp = await admin.post(
        "/v1/admin/sources", json={**base, "event_source": "crm", "event_source_id": "bad id!"}
    )
    assert resp.status == 422
    assert (await resp.json())["error"]["field"] == "event_source_id"
    assert await gateway.wired.store.get_source("src_crm") is None

    resp = await admin.post(
        "/v1/admin/sources", json={**base, "event_source": "crm", "event_source_id": CRM_SET_ID}
    )
    assert resp.status == 201
    created = await resp.json()
    assert (created["event_source"], created["event_source_id"]) == ("crm", CRM_SET_ID)

    web = await gateway.create_source(id="src_web")
    assert (web["event_source"], web["event_source_id"], web["app_id"]) == ("web", None, None)

    app = {"id": "src_app", "name": "App", "event_source": "app", "event_source_id": APP_ID}
    resp = await admin.post("/v1/admin/sources", json=app)
    assert resp.status == 422  # TikTok's app events name the app by its store id
    assert (await resp.json())["error"]["field"] == "app_id"
    resp = await admin.post("/v1/admin/sources", json={**app, "app_id": "not/an id"})
    assert (await resp.json())["error"]["field"] == "app_id"
    resp = await admin.post("/v1/admin/sources", json={**app, "app_id": STORE_APP_ID})
    assert resp.status == 201
    assert (await resp.json())["app_id"] == STORE_APP_ID

    resp = await admin.patch("/v1/admin/sources/src_crm", json={"event_source": 5})
    assert resp.status == 422
    assert (await resp.json())["error"]["field"] == "event_source"
    resp = await admin.patch("/v1/admin/sources/src_crm", json={"event_source_id": None})
    assert resp.status == 422  # a CRM source cannot fall back to a pixel code
    resp = await admin.patch(
        "/v1/admin/sources/src_crm", json={"event_source": "web", "event_source_id": None}
    )
    assert resp.status == 200
    resp = await admin.get("/v1/admin/sources/src_crm")
    body = await resp.json()
    assert (body["event_source"], body["event_source_id"]) == ("web", None)


async def test_crm_events_carry_their_lead_and_go_under_the_event_set(
    gateway: Gateway, tiktok: TikTokDouble
) -> None:
    await gateway.create_source(event_source="crm", event_source_id=CRM_SET_ID)
    integration = await gateway.create_integration()
    qualified = {"lead_id": 7301234567890000001, "lead_event_source": "HubSpot"}
    await send(gateway, hit("Lead Qualified", qualified, message_id="qualified"))
    await send(gateway, hit("Lead Qualified", {"lead_event_source": "HubSpot"}, message_id="x"))
    await send(gateway, hit("Lead Won", {"lead_id": "L-2"}, message_id="won"))

    events = await received(tiktok, 2)
    assert events["qualified"]["lead"] == {
        "lead_id": "7301234567890000001",
        "lead_event_source": "HubSpot",
    }
    assert events["won"]["lead"] == {"lead_id": "L-2"}
    assert {(r.body["event_source"], r.body["event_source_id"]) for r in tiktok.requests} == {
        ("crm", CRM_SET_ID)
    }
    assert await dead_letter_reasons(gateway, integration["id"]) == {"x": "missing_lead_id"}


async def test_app_events_name_their_app(gateway: Gateway, tiktok: TikTokDouble) -> None:
    await gateway.create_source(event_source="app", event_source_id=APP_ID, app_id=STORE_APP_ID)
    await gateway.create_integration()
    await send(gateway, hit("Product Added", {"product_id": "P1"}, message_id="app-cart"))
    events = await received(tiktok, 1)
    assert events["app-cart"]["app"] == {"app_id": STORE_APP_ID}
    assert (tiktok.requests[-1].body["event_source"], tiktok.accepted[0].pixel_code) == (
        "app",
        APP_ID,
    )


async def test_offline_events_need_an_email_or_a_phone(
    gateway: Gateway, tiktok: TikTokDouble
) -> None:
    source = await gateway.create_source(event_source="offline", event_source_id=OFFLINE_SET_ID)
    integration = await gateway.create_integration()
    key = {"Authorization": f"Bearer {source['server_key']}"}
    sale = {"order_id": "POS-1", "total": 20, "currency": "USD"}
    with_email = hit("Order Completed", sale, message_id="pos-1")
    with_email["context"]["traits"] = {"email": "buyer@example.com"}
    await send(gateway, with_email, **key)
    await send(gateway, hit("Order Completed", sale, message_id="pos-2"), **key)

    events = await received(tiktok, 1)
    assert set(events) == {"pos-1"}
    assert "email" in events["pos-1"]["user"]
    assert tiktok.accepted[0].event_source == "offline"
    assert tiktok.accepted[0].pixel_code == OFFLINE_SET_ID
    assert await dead_letter_reasons(gateway, integration["id"]) == {
        "pos-2": "missing_email_or_phone"
    }


async def test_a_source_switched_to_crm_changes_the_envelope_of_what_follows(
    gateway: Gateway, tiktok: TikTokDouble
) -> None:
    await gateway.create_source()
    await gateway.create_integration()
    await send(gateway, hit("Signed Up", message_id="before"))
    await received(tiktok, 1)
    assert tiktok.requests[-1].body["event_source_id"] == "CTESTPIXEL0000000001"

    resp = await gateway.admin.patch(
        "/v1/admin/sources/src_test", json={"event_source": "crm", "event_source_id": CRM_SET_ID}
    )
    assert resp.status == 200
    await send(gateway, hit("Lead Won", {"lead_id": "L-9"}, message_id="after"))
    await received(tiktok, 2)
    last = tiktok.requests[-1].body
    assert (last["event_source"], last["event_source_id"]) == ("crm", CRM_SET_ID)
    assert [e["event_id"] for e in last["data"]] == ["after"]
