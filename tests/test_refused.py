"""Refused requests and identify hits are visible in the debugger (hashed or summarised only)."""

from __future__ import annotations

import json
from typing import Any

from gateway.core.hashing import hash_email, hash_external_id
from tests.conftest import Gateway

EMAIL = "Refused.Person@Example.com"


async def _refused(gateway: Gateway, **query: str) -> dict[str, Any]:
    resp = await gateway.admin.get("/v1/admin/refused", params=query)
    assert resp.status == 200, await resp.text()
    return dict(await resp.json())


async def test_every_refused_request_is_listed_newest_first_without_its_content(
    gateway: Gateway,
) -> None:
    source = await gateway.create_source()
    await gateway.create_integration()
    server_key = source["server_key"]
    unknown = {"source_id": "src_nowhere", "event": "Order Completed", "traits": {"email": EMAIL}}
    assert (await gateway.collect.post("/v1/t", json=unknown)).status == 400
    no_event = {"source_id": "src_test", "type": "track", "properties": {"email": EMAIL}}
    resp = await gateway.collect.post(
        "/v1/batch",
        json={"batch": [no_event]},
        headers={"Authorization": f"Bearer {server_key}"},
    )
    assert resp.status == 400
    resp = await gateway.collect.post(
        "/v1/t", data=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert resp.status == 400
    good = {
        "source_id": "src_test",
        "event": "Product Viewed",
        "context": {"consent": {"advertising": True}},
    }
    assert (await gateway.collect.post("/v1/t", json=good)).status == 200

    listed = await _refused(gateway)
    assert listed["capacity"] == 1000
    assert listed["total"] == 3
    malformed, batch, unknown_source = listed["refused"]
    assert unknown_source["source_id"] == "src_nowhere"
    assert unknown_source["status"] == 400
    assert unknown_source["code"] == "unknown_source"
    assert unknown_source["path"] == "/v1/t"
    assert unknown_source["summary"]["events"] == ["Order Completed"]
    assert unknown_source["at"].endswith("Z")
    assert batch["source_id"] == "src_test"
    assert batch["code"] == "invalid_field"
    assert batch["summary"]["hits"] == 1
    assert batch["summary"]["types"] == ["track"]
    assert malformed["code"] == "malformed_json"
    assert malformed["source_id"] is None

    text = json.dumps(listed)
    for secret in (EMAIL, EMAIL.lower(), server_key, hash_email(EMAIL)):
        assert secret not in text  # neither the trait, hashed or not, nor the key

    of_source = await _refused(gateway, source_id="src_test")
    assert [r["code"] for r in of_source["refused"]] == ["invalid_field"]
    assert (await _refused(gateway, limit="1"))["refused"] == [malformed]
    resp = await gateway.admin.get("/v1/admin/refused", params={"limit": "0"})
    assert resp.status == 422


async def test_the_ring_keeps_only_the_latest_thousand(gateway: Gateway) -> None:
    for _ in range(1005):
        resp = await gateway.collect.post("/v1/t", json={"source_id": "src_none", "event": "x"})
        assert resp.status == 400
    listed = await _refused(gateway, limit="1000")
    assert listed["total"] == 1005
    assert len(listed["refused"]) == 1000


async def test_an_identify_hit_is_recorded_with_hashed_traits_only(gateway: Gateway) -> None:
    await gateway.create_source()
    created = await gateway.create_integration()
    resp = await gateway.collect.post(
        "/v1/i",
        json={
            "source_id": "src_test",
            "message_id": "ident-1",
            "user_id": "customer-42",
            "traits": {"email": EMAIL, "first_name": "Ada"},
            "context": {"consent": {"advertising": True}},
        },
    )
    assert resp.status == 200
    await gateway.wired.ledger.flush()
    resp = await gateway.admin.get("/v1/admin/events/ident-1")
    assert resp.status == 200
    [record] = (await resp.json())["records"]
    assert record["integration_id"] == created["id"]
    assert record["delivery"]["status"] == "identified"
    identity = record["hit"]["identity"]
    assert identity["email"] == [hash_email(EMAIL)]
    assert identity["user_id"] == hash_external_id("customer-42")
    assert len(identity["first_name"]) == 64
    text = json.dumps(record)
    assert EMAIL not in text and EMAIL.lower() not in text
    assert "customer-42" not in text and "Ada" not in text
