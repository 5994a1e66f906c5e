"""The webhook destination, end to end: created through the Management API, fed by real hits,
delivered to a real receiver. It proves that a destination is one folder plus a registry line."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.destinations.webhook.client import SECRET_HEADER
from tests.conftest import Gateway
from tests.tiktok_double import TikTokDouble
from tests.webhook_double import WebhookDouble

SECRET = "whsec_test_0123456789abcdef"
HIT = {
    "source_id": "src_test",
    "type": "track",
    "event": "Order Completed",
    "anonymous_id": "anon-1",
    "user_id": "user-42",
    "traits": {"email": "webhook.buyer@example.org"},
    "properties": {"order_id": "ORD-9", "total": 12.5, "currency": "EUR"},
    "context": {"page": {"url": "https://shop.example/thanks"}},
}


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookDouble]:
    async with WebhookDouble() as double:
        yield double


async def _webhook(gw: Gateway, receiver: WebhookDouble, **config: Any) -> dict[str, Any]:
    await gw.create_source(consent_default="grant")
    return await gw.create_integration(
        vendor="webhook",
        name="Order hook",
        consent_categories=[],
        config={"url": receiver.url, "secret": SECRET, **config},
    )


async def test_webhook_integration_is_created_with_its_secret_masked_and_sealed(
    gateway: Gateway, receiver: WebhookDouble
) -> None:
    created = await _webhook(gateway, receiver)
    assert created["vendor"] == "webhook"
    assert created["config"] == {
        "url": receiver.url,
        "secret": "****" + SECRET[-4:],
        "rate_limit_rps": 100.0,
        "rate_limit_burst": 200,
    }
    shown = await (await gateway.admin.get(f"/v1/admin/integrations/{created['id']}")).json()
    assert shown == created
    with sqlite3.connect(gateway.data_dir / "config.db") as db:
        [(stored,)] = db.execute("SELECT config FROM integrations").fetchall()
    assert receiver.url in stored and SECRET not in stored


async def test_a_hit_reaches_the_webhook_as_json_with_the_secret_header(
    gateway: Gateway, receiver: WebhookDouble
) -> None:
    await _webhook(gateway, receiver)
    resp = await gateway.collect.post("/v1/t", json=HIT)
    assert resp.status == 200, await resp.text()
    await receiver.wait_for(lambda: len(receiver.accepted_events()) == 1)
    [request] = receiver.requests
    assert request.headers[SECRET_HEADER] == SECRET
    [event] = request.body["events"]
    assert event["event"] == "Order Completed"
    assert event["type"] == "track"
    assert event["properties"] == HIT["properties"]
    assert event["page"] == {"url": "https://shop.example/thanks"}
    assert event["anonymous_id"] == "anon-1"
    # People only as hashes: the raw user id and email never leave for a webhook.
    assert "user-42" not in str(event) and "webhook.buyer" not in str(event)
    assert len(event["user_id_hash"]) == 64


async def test_the_debugger_shows_the_event_the_webhook_received(
    gateway: Gateway, receiver: WebhookDouble
) -> None:
    """The debugger finds an event in a stored request by the destination's own body layout
    (a webhook's `events`, TikTok's `data`)."""
    await _webhook(gateway, receiver)
    hit = {**HIT, "message_id": "hook-msg-1"}
    assert (await gateway.collect.post("/v1/t", json=hit)).status == 200
    await receiver.wait_for(lambda: len(receiver.accepted_events()) == 1)
    await gateway.delivered()

    resp = await gateway.admin.get("/v1/admin/events/hook-msg-1")
    assert resp.status == 200, await resp.text()
    (record,) = (await resp.json())["records"]
    assert record["delivery"]["status"] == "delivered"
    assert record["payload"] == receiver.accepted_events()[0]


async def test_one_hit_goes_to_tiktok_and_to_the_webhook_of_the_same_source(
    gateway: Gateway, receiver: WebhookDouble, tiktok: TikTokDouble
) -> None:
    await _webhook(gateway, receiver)
    await gateway.create_integration(consent_categories=[])
    assert (await gateway.collect.post("/v1/t", json=HIT)).status == 200
    await receiver.wait_for(lambda: len(receiver.accepted_events()) == 1)
    await tiktok.wait_for(lambda: len(tiktok.accepted) == 1)
    assert tiktok.accepted[0].event["event"] == "CompletePayment"
    assert receiver.accepted_events()[0]["event_id"] == tiktok.accepted[0].event["event_id"]


async def test_a_5xx_is_retried_until_the_webhook_accepts(
    gateway: Gateway, receiver: WebhookDouble
) -> None:
    created = await _webhook(gateway, receiver)
    receiver.play(503)
    assert (await gateway.collect.post("/v1/t", json=HIT)).status == 200
    await receiver.wait_for(lambda: len(receiver.accepted_events()) == 1, timeout=30)
    assert [r.status for r in receiver.requests] == [503, 200]
    body = await (await gateway.admin.get(f"/v1/admin/integrations/{created['id']}")).json()
    assert body["status"]["dead_lettered"] == 0


async def test_a_4xx_dead_letters_the_event(gateway: Gateway, receiver: WebhookDouble) -> None:
    created = await _webhook(gateway, receiver)
    receiver.play(400)
    assert (await gateway.collect.post("/v1/t", json=HIT)).status == 200
    worker = gateway.wired.worker
    assert worker is not None
    await receiver.wait_for(lambda: worker.events_dead_lettered == 1)
    path = f"/v1/admin/integrations/{created['id']}/dead-letters"
    letters = (await (await gateway.admin.get(path)).json())["dead_letters"]
    assert [d["event_name"] for d in letters] == ["Order Completed"]
    assert [r.status for r in receiver.requests] == [400]


async def test_the_test_send_posts_a_sample_to_the_webhook(
    gateway: Gateway, receiver: WebhookDouble
) -> None:
    created = await _webhook(gateway, receiver)
    resp = await gateway.admin.post(f"/v1/admin/integrations/{created['id']}/test", json={})
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["sent"] is True
    [request] = receiver.requests
    assert request.body["events"][0]["event"] == "Gateway Test"
    assert request.headers[SECRET_HEADER] == SECRET


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({}, "config.url"),
        ({"url": "ftp://files.example/x"}, "config.url"),
        ({"url": "not a url"}, "config.url"),
        ({"url": "https://hooks.example/x", "secret": ""}, "config.secret"),
        ({"url": "https://hooks.example/x", "secret": "line\nbreak"}, "config.secret"),
        ({"url": "https://hooks.example/x", "pixel_code": "C123456"}, "config.pixel_code"),
        ({"url": "https://hooks.example/x", "rate_limit_rps": 0}, "config.rate_limit_rps"),
    ],
)
async def test_a_bad_webhook_config_is_a_4xx_naming_the_field(
    gateway: Gateway, config: dict[str, Any], field: str
) -> None:
    await gateway.create_source()
    body = {"source_id": "src_test", "vendor": "webhook", "name": "Hook", "config": config}
    resp = await gateway.admin.post("/v1/admin/integrations", json=body)
    assert resp.status in (400, 422), await resp.text()
    assert (await resp.json())["error"]["field"] == field
    assert await gateway.wired.store.list_integrations() == []


async def test_a_patch_repeating_the_masked_secret_keeps_it(
    gateway: Gateway, receiver: WebhookDouble
) -> None:
    created = await _webhook(gateway, receiver)
    path = f"/v1/admin/integrations/{created['id']}"
    resp = await gateway.admin.patch(path, json={"config": {"secret": created["config"]["secret"]}})
    assert resp.status == 200, await resp.text()
    await gateway.admin.post(f"{path}/test", json={})
    assert receiver.requests[-1].headers[SECRET_HEADER] == SECRET


async def test_the_destinations_come_from_the_registry(gateway: Gateway) -> None:
    body = await (await gateway.admin.get("/v1/admin/destinations")).json()
    vendors = {d["vendor"]: d for d in body["destinations"]}
    assert set(vendors) == {"tiktok", "webhook"}
    assert [f["name"] for f in vendors["webhook"]["form"] if f["required"]] == ["url"]
    doc = await (await gateway.admin.get("/v1/admin/openapi.json")).json()
    schemas = doc["components"]["schemas"]
    assert schemas["IntegrationCreate"]["properties"]["vendor"]["enum"] == ["tiktok", "webhook"]
    assert {"WebhookConfigCreate", "TikTokConfigCreate"} <= set(schemas)
