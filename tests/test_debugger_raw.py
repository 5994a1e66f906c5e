"""The debugger's detail of one event: the whole raw hit (personal data hashed), the facts of
its request (cookies read and set), the exact request the destination posts, and its answer."""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
import zlib
from typing import Any

from tests.conftest import Gateway
from tests.tiktok_double import TikTokDouble

EMAIL = "Jane.Doe@Example.com"
PHONE = "+14155550123"
RAW_PII = (
    EMAIL.lower(),
    "jane.doe",
    "4155550123",
    "Janeth",
    "Doerington",
    "Springfieldia",
    "user-4711",
)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def _order(gateway: Gateway) -> None:
    body: dict[str, Any] = {
        "source_id": "src_test",
        "type": "track",
        "event": "Order Completed",
        "message_id": "ORD-RAW-1",
        "user_id": "user-4711",
        "properties": {
            "order_id": "ORD-RAW-1",
            "total": 42.5,
            "currency": "EUR",
            "coupon_note": "spring",
            "products": [{"product_id": "SKU-1", "price": 20, "quantity": 2, "name": "Mug"}],
        },
        "traits": {"email": EMAIL, "phone": PHONE, "first_name": "Janeth"},
        "context": {
            "consent": {"advertising": True},
            "page": {"url": "https://shop.example/thanks?ttclid=CLICK123"},
            "traits": {"last_name": "Doerington", "address": {"city": "Springfieldia"}},
        },
    }
    resp = await gateway.collect.post(
        "/v1/t",
        json=body,
        headers={
            "User-Agent": "Mozilla/5.0 (RawHitTest)",
            "Accept-Language": "de-DE,de;q=0.9",
            "Cookie": "_ttp=ttp-from-cookie; _dfuser=some-sealed-value",
        },
    )
    assert resp.status == 200, await resp.text()


async def test_the_detail_shows_the_whole_hit_hashed_its_request_and_the_exact_request(
    gateway: Gateway, tiktok: TikTokDouble
) -> None:
    await gateway.create_source()
    integration = await gateway.create_integration(
        config={
            "pixel_code": "CTESTPIXEL0000000001",
            "access_token": "tok_test_0123456789",
            "test_event_code": "TEST12345",
        }
    )
    await _order(gateway)
    assert gateway.wired.worker is not None
    await gateway.wired.worker.drain(10)
    await gateway.wired.ledger.flush()

    resp = await gateway.admin.get("/v1/admin/events/ORD-RAW-1")
    assert resp.status == 200
    (record,) = (await resp.json())["records"]

    hit = record["raw"]["hit"]
    properties = hit["properties"]
    assert properties["total"] == 42.5
    assert properties["products"] == [
        {"product_id": "SKU-1", "price": 20, "quantity": 2, "name": "Mug"}
    ]
    assert hit["user_id"] == _sha("user-4711")
    assert hit["traits"]["email"] == [_sha(EMAIL.lower())]
    assert hit["traits"]["first_name"] == _sha("janeth")
    assert hit["context"]["traits"]["last_name"] == _sha("doerington")
    assert hit["context"]["page"]["url"] == "https://shop.example/thanks?ttclid=CLICK123"

    facts = record["raw"]["request"]
    assert facts["user_agent"] == "Mozilla/5.0 (RawHitTest)"
    assert facts["locale"] == "de-DE"
    assert facts["ip"] == "127.0.0.1"
    assert facts["from_server"] is False
    assert facts["source_id"] == "src_test"
    assert facts["received_at"].endswith("Z")
    assert facts["cookies_read"]["_ttp"] == "ttp-from-cookie"
    assert facts["cookies_read"]["_dfuser"] == "present"  # never its sealed value
    assert facts["cookies_set"]["_ttp"] == "ttp-from-cookie"
    assert facts["cookies_set"]["ttclid"] == "CLICK123"
    assert "_dfid" in facts["cookies_set"]

    request = record["request"]
    assert request["event_source"] == "web"
    assert request["event_source_id"] == "CTESTPIXEL0000000001"
    assert request["test_event_code"] == "TEST12345"
    assert request["data"] == [record["payload"]]
    assert "tok_test_0123456789" not in str(record)
    assert record["delivery"]["answer"]["code"] == 0
    assert integration["id"] == record["integration_id"]

    # Nothing raw about the person anywhere in the ledger's file (WAL included), nor in the
    # request bodies it keeps compressed.
    await gateway.wired.ledger.close()
    stored = b"".join(p.read_bytes() for p in gateway.data_dir.glob("ledger.db*"))
    with contextlib.closing(sqlite3.connect(gateway.data_dir / "ledger.db")) as db:
        bodies = [zlib.decompress(b) for (b,) in db.execute("SELECT body FROM changes") if b]
    assert any(b"ORD-RAW-1" in body and b"Mug" in body for body in bodies)
    for raw in RAW_PII:
        assert raw.encode() not in stored.lower(), raw
        assert all(raw.encode() not in body.lower() for body in bodies), raw
    assert b"some-sealed-value" not in stored
    assert b"tok_test_0123456789" not in stored and not any(
        b"tok_test_0123456789" in body for body in bodies
    )
