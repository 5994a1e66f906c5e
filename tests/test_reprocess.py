"""Re-processing an integration's raw hits of a time range after a mapping change:
POST /v1/admin/integrations/{id}/reprocess, a dry-run count first, then the real run."""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from typing import Any

from tests.conftest import Gateway
from tests.tiktok_double import TikTokDouble

EMAIL = "sam@example.com"


def _iso(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).isoformat()


async def _hit(gateway: Gateway, message_id: str, event: str, **fields: Any) -> None:
    body: dict[str, Any] = {
        "source_id": "src_test",
        "event": event,
        "message_id": message_id,
        "context": {"consent": {"advertising": True}},
    }
    body.update(fields)
    resp = await gateway.collect.post("/v1/t", json=body)
    assert resp.status == 200, await resp.text()


async def _settle(gateway: Gateway) -> None:
    assert gateway.wired.worker is not None
    await gateway.wired.worker.drain(10)
    await gateway.wired.ledger.flush()


async def test_a_mapping_change_is_re_processed_after_a_dry_run_count(
    gateway: Gateway, tiktok: TikTokDouble
) -> None:
    await gateway.create_source()
    integration = await gateway.create_integration()
    path = f"/v1/admin/integrations/{integration['id']}"
    since = time.time() - 1
    await _hit(gateway, "S-1", "Signed Up", traits={"email": EMAIL})
    await _hit(gateway, "S-2", "Signed Up")
    await _hit(gateway, "P-1", "Product Added", properties={"product_id": "SKU-1"})
    await _hit(gateway, "D-1", "Signed Up", context={"consent": {"advertising": False}})
    await _hit(gateway, "O-1", "Order Completed")  # no value: set aside, never sent
    await _hit(gateway, "I-1", "", type="identify", user_id="u-1", traits={"email": EMAIL})
    await _settle(gateway)
    sent_before = {e["event_id"]: e["event"] for r in tiktok.requests for e in r.events}
    assert sent_before == {
        "S-1": "CompleteRegistration",
        "S-2": "CompleteRegistration",
        "P-1": "AddToCart",
    }

    resp = await gateway.admin.patch(
        path, json={"config": {"event_mapping": {"Signed Up": "Subscribe"}}}
    )
    assert resp.status == 200, await resp.text()
    window = {"since": _iso(since), "until": _iso(time.time() + 1)}

    resp = await gateway.admin.post(f"{path}/reprocess", json=window)  # a dry run by default
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["dry_run"] is True
    assert body["retention_hours"] == 72
    assert body["counts"] == {
        "hits": 6,
        "queue": 2,
        "skipped_consent": 1,
        "rejected": 1,
        "skipped_delivered": 1,
        "skipped_pending": 0,
        "not_sendable": 1,
    }
    assert sorted(body["event_ids"]) == ["S-1", "S-2"]
    await _settle(gateway)
    assert len(tiktok.requests) == 1  # the dry run queued nothing

    resp = await gateway.admin.post(f"{path}/reprocess", json={**window, "dry_run": False})
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["counts"]["queue"] == 2
    await _settle(gateway)
    resent = [e for r in tiktok.requests[1:] for e in r.events]
    assert {e["event_id"]: e["event"] for e in resent} == {"S-1": "Subscribe", "S-2": "Subscribe"}
    (first,) = [e for e in resent if e["event_id"] == "S-1"]
    assert first["user"]["email"] == hashlib.sha256(EMAIL.encode()).hexdigest()
    record = (await (await gateway.admin.get("/v1/admin/events/S-1")).json())["records"][0]
    assert record["tiktok_event"] == "Subscribe"
    assert record["delivery"]["status"] == "delivered"
    assert record["raw"]["hit"]["event"] == "Signed Up"

    # Now delivered under the new name: a second run has nothing left to send.
    resp = await gateway.admin.post(f"{path}/reprocess", json={**window, "dry_run": False})
    counts = (await resp.json())["counts"]
    assert counts["queue"] == 0 and counts["skipped_delivered"] == 3


async def test_re_processing_refuses_bad_input(gateway: Gateway) -> None:
    await gateway.create_source()
    integration = await gateway.create_integration()
    path = f"/v1/admin/integrations/{integration['id']}/reprocess"
    now = time.time()
    bad: list[tuple[Any, str]] = [
        ({"since": _iso(now)}, "missing_field"),
        ({"since": _iso(now), "until": _iso(now - 60)}, "invalid_value"),
        ({"since": "yesterday", "until": _iso(now)}, "invalid_value"),
        ({"since": _iso(now - 60), "until": _iso(now), "dry_run": "no"}, "invalid_type"),
        ({"since": _iso(now - 60), "until": _iso(now), "limit": 5}, "unknown_field"),
        ([], "invalid_type"),
    ]
    for body, code in bad:
        resp = await gateway.admin.post(path, json=body)
        assert resp.status == 422, body
        assert (await resp.json())["error"]["code"] == code, body
    resp = await gateway.admin.post(
        "/v1/admin/integrations/int_missing/reprocess",
        json={"since": _iso(now - 60), "until": _iso(now)},
    )
    assert resp.status == 404


async def test_an_integration_added_later_gets_a_range_of_the_retained_log(
    gateway: Gateway, tiktok: TikTokDouble
) -> None:
    """Hits collected before an integration existed are in the hit log, not in its queue: it
    starts after them, and re-processing their range is how it sends them."""
    await gateway.create_source()
    since = time.time() - 1
    await _hit(gateway, "early-1", "Signed Up", traits={"email": EMAIL})
    await _hit(gateway, "early-2", "Product Added", properties={"product_id": "SKU-9"})
    integration = await gateway.create_integration()
    await _hit(gateway, "late-1", "Signed Up")
    await _settle(gateway)
    assert sorted(e["event_id"] for r in tiktok.requests for e in r.events) == ["late-1"]

    path = f"/v1/admin/integrations/{integration['id']}/reprocess"
    window = {"since": _iso(since), "until": _iso(time.time() + 1)}
    resp = await gateway.admin.post(path, json=window)
    assert resp.status == 200, await resp.text()
    counts = (await resp.json())["counts"]
    assert (counts["hits"], counts["queue"], counts["skipped_delivered"]) == (3, 2, 1)

    resp = await gateway.admin.post(path, json={**window, "dry_run": False})
    assert resp.status == 200
    await _settle(gateway)
    sent = {e["event_id"]: e for r in tiktok.requests for e in r.events}
    assert sorted(sent) == ["early-1", "early-2", "late-1"]
    assert sent["early-1"]["user"]["email"] == hashlib.sha256(EMAIL.encode()).hexdigest()
