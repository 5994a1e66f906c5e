"""An integration's timeline: events per bucket by outcome, batch sizes, TikTok's latency and
match quality over time."""

from __future__ import annotations

from typing import Any

from tests.conftest import Gateway
from tests.tiktok_double import Answer, TikTokDouble


async def _hit(gateway: Gateway, message_id: str, consent: bool, **fields: Any) -> None:
    body: dict[str, Any] = {
        "source_id": "src_test",
        "event": "Product Viewed",
        "message_id": message_id,
        "properties": {"product_id": "SKU-1"},
        "context": {
            "consent": {"advertising": consent},
            "page": {"url": "https://shop.example/p?ttclid=E.C.P.click"},
        },
    }
    body.update(fields)
    resp = await gateway.collect.post("/v1/t", json=body)
    assert resp.status == 200, await resp.text()


async def _timeline(gateway: Gateway, integration_id: str, hours: str) -> dict[str, Any]:
    resp = await gateway.admin.get(
        f"/v1/admin/integrations/{integration_id}/timeline", params={"hours": hours}
    )
    assert resp.status == 200, await resp.text()
    return dict(await resp.json())


async def test_the_timeline_counts_outcomes_batches_latency_and_match_quality(
    gateway: Gateway, tiktok: TikTokDouble
) -> None:
    await gateway.create_source()
    iid = (await gateway.create_integration())["id"]
    worker = gateway.wired.worker
    assert worker is not None
    await _hit(gateway, "seen-1", True)
    await _hit(gateway, "seen-2", True, traits={"email": "jane@example.com"})
    await _hit(gateway, "kept-back", False)  # consent denies it
    await _hit(gateway, "buy-1", True, event="Order Completed", properties={})  # no value
    await worker.drain(10)
    tiktok.play(Answer(status=500, code=0, message="down"))
    await _hit(gateway, "unlucky", True)
    await tiktok.wait_for(lambda: any("unlucky" in r.event_ids for r in tiktok.requests))
    await gateway.wired.ledger.flush()

    hour = await _timeline(gateway, iid, "1")
    assert hour["bucket_seconds"] == 60
    assert len(hour["points"]) == 60
    assert hour["outcomes"] == ["delivered", "failed", "dead_lettered", "denied"]
    assert hour["totals"] == {"delivered": 2, "failed": 1, "dead_lettered": 1, "denied": 1}
    points = hour["points"]
    assert sum(p["delivered"] for p in points) == 2
    sent = [p for p in points if p["requests"]]
    assert sum(p["requests"] for p in sent) == 2  # one batch of two, then the failed one
    assert max(p["batch_size_max"] for p in sent) == 2
    assert all(p["latency_ms_avg"] is not None and p["latency_ms_avg"] >= 0 for p in sent)
    assert all(p["latency_ms_max"] >= p["latency_ms_avg"] for p in sent)
    idle = [p for p in points if not p["requests"]]
    assert idle and all(p["batch_size_avg"] is None and p["latency_ms_avg"] is None for p in idle)
    # Match quality per bucket: the stored events (two sent, one dead letter, one failing).
    matched = [p["match"] for p in points if p["match"]["events"]]
    assert sum(m["events"] for m in matched) == 4
    assert all(m["shares"]["ttclid"] == 1.0 for m in matched)
    emails = sum(m["shares"]["email"] * m["events"] for m in matched)
    assert round(emails) == 1
    assert points[0]["at"].endswith("Z")

    day = await _timeline(gateway, iid, "24")
    assert day["bucket_seconds"] == 600
    assert len(day["points"]) == 144
    assert day["totals"] == hour["totals"]


async def test_the_timeline_refuses_other_windows_and_unknown_integrations(
    gateway: Gateway,
) -> None:
    await gateway.create_source()
    iid = (await gateway.create_integration())["id"]
    for hours in ("2", "0", "day", ""):
        resp = await gateway.admin.get(
            f"/v1/admin/integrations/{iid}/timeline", params={"hours": hours}
        )
        assert resp.status == 422
        assert (await resp.json())["error"]["field"] == "hours"
    resp = await gateway.admin.get("/v1/admin/integrations/int_missing/timeline")
    assert resp.status == 404
    empty = await _timeline(gateway, iid, "1")
    assert empty["totals"] == {"delivered": 0, "failed": 0, "dead_lettered": 0, "denied": 0}
