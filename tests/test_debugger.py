"""The event debugger's API: the ledger by event, recent records, the live stream, match quality."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from typing import Any

import aiohttp

from gateway.ledger.base import Claim
from gateway.ledger.sqlite import SQLiteLedger
from gateway.log.base import LogRecord
from tests.conftest import ADMIN_TOKEN, Gateway
from tests.tiktok_double import TikTokDouble


async def _hit(gateway: Gateway, message_id: str, **fields: Any) -> None:
    body: dict[str, Any] = {
        "source_id": "src_test",
        "event": "Product Added",
        "message_id": message_id,
        "properties": {"product_id": "SKU-1", "price": 5, "currency": "USD"},
        "context": {"consent": {"advertising": True}},
    }
    body.update(fields)
    resp = await gateway.collect.post("/v1/t", json=body)
    assert resp.status == 200, await resp.text()


async def _read_records(resp: aiohttp.ClientResponse, count: int) -> list[dict[str, Any]]:
    """Read the stream until `count` records came (the test's timeout bounds the wait)."""
    records: list[dict[str, Any]] = []
    event = ""
    async for raw in resp.content:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            event = line.removeprefix("event: ")
        elif line.startswith("data: ") and event == "record":
            records.append(json.loads(line.removeprefix("data: ")))
            if len(records) == count:
                return records
    raise AssertionError(f"the stream ended after {len(records)} records")


async def test_did_this_order_reach_tiktok(gateway: Gateway, tiktok: TikTokDouble) -> None:
    await gateway.create_source()
    integration = await gateway.create_integration()
    await _hit(
        gateway, "ORD-7", event="Order Completed", properties={"total": 9, "currency": "EUR"}
    )
    await gateway.delivered()

    resp = await gateway.admin.get("/v1/admin/events/ORD-7")
    assert resp.status == 200
    (record,) = (await resp.json())["records"]
    assert record["integration_id"] == integration["id"]
    assert record["delivery"]["status"] == "delivered"
    assert record["delivery"]["answer"]["code"] == 0
    assert record["payload"]["event"] == "CompletePayment"

    resp = await gateway.admin.get("/v1/admin/events/ORD-unknown")
    assert resp.status == 404
    assert "72 hours" in (await resp.json())["error"]["message"]


async def test_recent_records_filter_by_event_name(gateway: Gateway) -> None:
    await gateway.create_source()
    await gateway.create_integration()
    await _hit(gateway, "m-1")
    await _hit(gateway, "m-2", event="Product Viewed")
    await gateway.delivered()
    for event in ("Product Viewed", "ViewContent"):
        resp = await gateway.admin.get("/v1/admin/events", params={"event": event})
        assert [r["event_id"] for r in (await resp.json())["records"]] == ["m-2"]
    resp = await gateway.admin.get("/v1/admin/events", params={"limit": "1"})
    body = await resp.json()
    assert [r["event_id"] for r in body["records"]] == ["m-2"]
    assert body["cursor"] >= body["records"][0]["seq"]


async def test_the_stream_shows_new_records_live_and_filtered(gateway: Gateway) -> None:
    await gateway.create_source()
    await gateway.create_integration()
    resp = await gateway.admin.get("/v1/admin/events/stream", params={"event_id": "m-live"})
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/event-stream"
    assert (await resp.content.readline()).decode().strip() == "event: ready"
    await _hit(gateway, "m-other")
    await _hit(gateway, "m-live")
    (record,) = await _read_records(resp, 1)
    assert record["event_id"] == "m-live"
    resp.close()


async def test_the_stream_sees_what_another_process_wrote(gateway: Gateway) -> None:
    """`--workers N`: each process has its own ledger writer on the same file."""
    await gateway.create_source()  # no integration: collection notes what nobody will read
    resp = await gateway.admin.get("/v1/admin/events/stream")
    assert resp.status == 200
    # Another process's collection: the hit in the shared log, its row in the shared ledger.
    record = b'{"hit": {"type": "page", "event": "Other Process"}}'
    await gateway.wired.log.append([LogRecord("src_test", time.time(), record, "e-other")])
    other = SQLiteLedger(gateway.data_dir / "ledger.db", retention_s=3600, max_records=100)
    await other.open()
    try:
        now = time.time()
        other.note([Claim("", "src_test", now, ["e-other"], now, now)])
        await other.flush()
        (shown,) = await _read_records(resp, 1)
        assert shown["event_id"] == "e-other"
        assert shown["event"] == "Other Process"
        assert shown["integration_id"] is None
    finally:
        resp.close()
        await other.close()


async def test_a_stream_resumes_after_its_last_event_id(gateway: Gateway) -> None:
    await gateway.create_source()
    await gateway.create_integration()
    await _hit(gateway, "m-1")
    await _hit(gateway, "m-2")
    await gateway.delivered()
    first = (await (await gateway.admin.get("/v1/admin/events?event_id=m-1")).json())["records"]
    resp = await gateway.admin.get(
        "/v1/admin/events/stream", headers={"Last-Event-ID": str(first[0]["seq"])}
    )
    records = await _read_records(resp, 1)
    assert records[0]["event_id"] == "m-2"
    resp.close()


async def test_open_streams_do_not_hold_shutdown_up(make_gateway: Any) -> None:
    async with make_gateway() as gw:
        resp = await gw.admin.get("/v1/admin/events/stream")
        assert resp.status == 200
        await resp.content.readline()
        closing = asyncio.create_task(gw.admin.close())
        await asyncio.wait_for(closing, 5)  # aiohttp would wait out its shutdown timeout


def _streams_open(gateway: Gateway) -> float:
    value = gateway.wired.metrics.registry.get_sample_value("gateway_admin_streams_open")
    assert value is not None
    return value


async def _until(predicate: Any, what: str) -> None:
    """Poll the server's side for a generous while: well inside the stream's heartbeat."""
    for _ in range(400):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"not within 8 s: {what}")


async def test_a_stream_whose_client_has_gone_ends_without_waiting_for_its_heartbeat(
    gateway: Gateway,
) -> None:
    port = gateway.admin.server.port
    assert port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"GET /v1/admin/events/stream HTTP/1.1\r\nHost: gateway\r\n"
        + f"Authorization: Bearer {ADMIN_TOKEN}\r\n\r\n".encode()
    )
    await asyncio.wait_for(reader.readuntil(b"event: ready"), 10)
    await _until(lambda: _streams_open(gateway) == 1, "the stream counted as open")
    writer.close()
    await _until(lambda: _streams_open(gateway) == 0, "the stream's handler ended")


async def test_match_quality_shows_which_user_fields_events_carry(gateway: Gateway) -> None:
    await gateway.create_source()
    integration = await gateway.create_integration()
    await _hit(gateway, "m-1", traits={"email": "a@example.com"})
    await _hit(gateway, "m-2")
    await gateway.delivered()
    resp = await gateway.admin.get(f"/v1/admin/integrations/{integration['id']}/match-quality")
    body = await resp.json()
    assert body["events"] == 2
    signals = body["signals"]
    assert signals["email"] == {"events": 1, "share": 0.5}
    assert signals["ip"]["share"] == 1.0  # the test client's loopback address
    assert signals["phone"] == {"events": 0, "share": 0.0}


async def test_match_quality_counts_names_address_and_identified_visitors(
    gateway: Gateway,
) -> None:
    await gateway.create_source()
    integration = await gateway.create_integration()
    person = {
        "first_name": "Jane",
        "last_name": "Doe",
        "address": {"city": "Oslo", "state": "Oslo", "country": "NO", "postal_code": "0150"},
    }
    # Identified: the hit's own user id, and a visitor identify() told the gateway about.
    await _hit(gateway, "q-1", user_id="u-1", anonymous_id="a-1", traits=person)
    resp = await gateway.collect.post(
        "/v1/i",
        json={
            "source_id": "src_test",
            "user_id": "u-2",
            "context": {"consent": {"advertising": True}},
        },
    )
    assert resp.status == 200
    await _hit(gateway, "q-2", traits={"first_name": "Ola"})  # the identity cookie's user id
    gateway.collect.session.cookie_jar.clear()
    await _hit(gateway, "q-3")  # anonymous only
    await _hit(gateway, "q-4", anonymous_id="a-4")  # anonymous only
    await gateway.delivered()
    resp = await gateway.admin.get(f"/v1/admin/integrations/{integration['id']}/match-quality")
    assert resp.status == 200
    body = await resp.json()
    assert body["events"] == 4
    signals = body["signals"]
    assert signals["first_name"] == {"events": 2, "share": 0.5}
    for name in ("last_name", "city", "state", "country", "zip_code"):
        assert signals[name] == {"events": 1, "share": 0.25}, name
    assert signals["external_id"] == {"events": 4, "share": 1.0}
    assert signals["external_id_user"] == {"events": 2, "share": 0.5}
    assert signals["external_id_anonymous"] == {"events": 2, "share": 0.5}


# ------------------------------------------------------------------------------------- search


async def _search(gateway: Gateway, **body: Any) -> dict[str, Any]:
    resp = await gateway.admin.post("/v1/admin/events/search", json=body)
    assert resp.status == 200, await resp.text()
    return dict(await resp.json())


async def test_one_search_term_finds_ids_orders_names_users_and_click_ids(
    gateway: Gateway, caplog: Any
) -> None:
    await gateway.create_source()
    await gateway.create_integration()
    await _hit(
        gateway,
        "evt-order",
        event="Order Completed",
        user_id="customer-42",
        traits={"email": "Jane.Doe@Example.com"},
        properties={"order_id": "ORD-991", "total": 10, "currency": "USD"},
    )
    await _hit(gateway, "evt-other", event="Product Viewed")  # before the ttclid cookie is set
    await _hit(
        gateway,
        "evt-click",
        context={
            "consent": {"advertising": True},
            "page": {"url": "https://shop.example/p?ttclid=E.C.P.click-7"},
        },
    )
    await gateway.delivered()

    async def ids(q: str) -> list[str]:
        return [r["event_id"] for r in (await _search(gateway, q=q))["records"]]

    assert await ids("evt-order") == ["evt-order"]  # event_id
    assert await ids("ORD-991") == ["evt-order"]  # order_id
    assert await ids("completepayment") == ["evt-order"]  # TikTok's event name, any case
    assert await ids("Product Viewed") == ["evt-other"]  # the hit's event name
    assert await ids(" jane.doe@example.COM ") == ["evt-order"]  # email, normalised and hashed
    assert await ids("customer-42") == ["evt-order"]  # external_id (the user id)
    email_hash = hashlib.sha256(b"jane.doe@example.com").hexdigest()
    assert await ids(email_hash) == ["evt-order"]  # a hash the operator already has
    assert await ids("E.C.P.click-7") == ["evt-click"]  # ttclid
    assert await ids("nothing-like-it") == []
    assert sorted(await ids("")) == ["evt-click", "evt-order", "evt-other"]
    # The raw address was hashed, never logged.
    assert "jane.doe@example" not in caplog.text.lower()


async def _stored_hits(gateway: Gateway, template: str, hits: list[tuple[str, float]]) -> None:
    """Hits as the log keeps them (another process's, or older ones): copies of a collected
    hit's record under other event ids and receive times."""
    (entry,) = await gateway.wired.log.find("src_test", template)
    records = [LogRecord("src_test", at, entry.data, event_id) for event_id, at in hits]
    await gateway.wired.log.append(records)


async def test_search_keeps_to_its_time_range_and_refuses_bad_input(gateway: Gateway) -> None:
    await gateway.create_source()
    await gateway.create_integration()
    await _hit(gateway, "evt-now")
    await gateway.delivered()
    await _stored_hits(gateway, "evt-now", [("evt-yesterday", time.time() - 30 * 3600)])
    day = await _search(gateway, q="Product Added")
    assert [r["event_id"] for r in day["records"]] == ["evt-now"]
    assert day["hours"] == 24 and day["complete"] is True
    two_days = await _search(gateway, q="Product Added", hours=48)
    assert [r["event_id"] for r in two_days["records"]] == ["evt-now", "evt-yesterday"]

    for body, field in (
        ({"q": 5}, "q"),
        ({"q": "x" * 201}, "q"),
        ({"hours": 0}, "hours"),
        ({"hours": 10_000}, "hours"),
        ({"hours": "24"}, "hours"),
        ({"nope": 1}, "nope"),
    ):
        resp = await gateway.admin.post("/v1/admin/events/search", json=body)
        assert resp.status == 422, (body, await resp.text())
        assert (await resp.json())["error"]["field"] == field
    resp = await gateway.admin.post("/v1/admin/events/search", data=b"[")
    assert resp.status == 400


async def test_search_reaches_past_the_newest_thousand_records(gateway: Gateway) -> None:
    """The log is read newest first, page by page: the search walks back past many pages."""
    await gateway.create_source()
    await _hit(gateway, "evt-needle")
    now = time.time()
    hay = [(f"evt-hay-{i}", now + i / 1e4) for i in range(2500)]
    await _stored_hits(gateway, "evt-needle", hay)
    found = await _search(gateway, q="evt-needle")
    assert [r["event_id"] for r in found["records"]] == ["evt-needle"]
    assert found["complete"] is True
    newest = await _search(gateway, q="Product Added", limit=3)
    assert [r["event_id"] for r in newest["records"]] == [
        "evt-hay-2499",
        "evt-hay-2498",
        "evt-hay-2497",
    ]
