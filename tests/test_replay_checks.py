"""Replaying dead letters runs the destination's checks again; fix-then-replay corrects fields."""

from __future__ import annotations

from typing import Any

from tests.conftest import Gateway
from tests.tiktok_double import TikTokDouble


async def _purchase(gateway: Gateway, message_id: str, **properties: Any) -> None:
    """A purchase hit through the collection port; without value and currency it is set aside."""
    body: dict[str, Any] = {
        "source_id": "src_test",
        "event": "Order Completed",
        "message_id": message_id,
        "properties": {"order_id": f"order-{message_id}", **properties},
        "context": {"consent": {"advertising": True}},
    }
    resp = await gateway.collect.post("/v1/t", json=body)
    assert resp.status == 200, await resp.text()


async def _dead_letters(gateway: Gateway, integration_id: str) -> list[dict[str, Any]]:
    resp = await gateway.admin.get(f"/v1/admin/integrations/{integration_id}/dead-letters")
    assert resp.status == 200
    return list((await resp.json())["dead_letters"])


async def _setup(gateway: Gateway) -> str:
    await gateway.create_source()
    return str((await gateway.create_integration())["id"])


async def test_a_purchase_without_value_stays_a_dead_letter_on_replay(
    gateway: Gateway, tiktok: TikTokDouble
) -> None:
    iid = await _setup(gateway)
    await _purchase(gateway, "buy-1")
    await gateway.delivered()  # delivery sets it aside when it reads it
    [dead] = await _dead_letters(gateway, iid)
    assert dead["reason"] == "missing_value_or_currency"

    resp = await gateway.admin.post(
        f"/v1/admin/integrations/{iid}/dead-letters/replay", json={"all": True}
    )
    assert resp.status == 200
    answer = await resp.json()
    assert answer["replayed"] == 0
    assert answer["replayed_event_ids"] == []
    assert answer["still_failing"] == [
        {
            "id": dead["id"],
            "event_id": "buy-1",
            "reason": "missing_value_or_currency",
            "message": "still failing: missing_value_or_currency",
        }
    ]
    assert [d["event_id"] for d in await _dead_letters(gateway, iid)] == ["buy-1"]
    await gateway.wired.ledger.flush()
    resp = await gateway.admin.get("/v1/admin/events/buy-1")
    record = (await resp.json())["records"][0]
    assert record["delivery"]["status"] == "dead_lettered"
    assert record["delivery"]["reason"] == "still failing: missing_value_or_currency"
    assert tiktok.requests == []


async def test_replay_sends_what_passes_and_keeps_what_fails(
    gateway: Gateway, tiktok: TikTokDouble
) -> None:
    iid = await _setup(gateway)
    await _purchase(gateway, "buy-bad")
    # A good purchase TikTok refused once: its dead letter passes the checks.
    tiktok.reject_event_ids.add("buy-good")
    await _purchase(gateway, "buy-good", value=12.5, currency="eur")
    await gateway.delivered()  # isolation dead-letters it once TikTok's answer is in
    assert len(await _dead_letters(gateway, iid)) == 2
    tiktok.reject_event_ids.clear()

    resp = await gateway.admin.post(
        f"/v1/admin/integrations/{iid}/dead-letters/replay", json={"all": True}
    )
    answer = await resp.json()
    assert answer["replayed"] == 1
    assert answer["replayed_event_ids"] == ["buy-good"]
    assert [f["event_id"] for f in answer["still_failing"]] == ["buy-bad"]
    await tiktok.wait_for(lambda: "buy-good" in tiktok.accepted_ids())
    assert [d["event_id"] for d in await _dead_letters(gateway, iid)] == ["buy-bad"]


async def test_fix_then_replay_previews_then_sends_with_the_same_event_id(
    gateway: Gateway, tiktok: TikTokDouble
) -> None:
    iid = await _setup(gateway)
    await _purchase(gateway, "buy-2")
    await gateway.delivered()
    [dead] = await _dead_letters(gateway, iid)
    url = f"/v1/admin/integrations/{iid}/dead-letters/{dead['id']}/fix"

    # Half a fix: the preview shows the event and says it still fails; sending it is refused.
    resp = await gateway.admin.post(url, json={"preview": True, "changes": {"value": 30}})
    assert resp.status == 200
    preview = await resp.json()
    assert preview["still_failing"] == "still failing: missing_value_or_currency"
    assert preview["replayed"] is False
    resp = await gateway.admin.post(url, json={"changes": {"value": 30}})
    assert resp.status == 409
    assert (await resp.json())["error"]["code"] == "still_failing"

    changes = {"value": 30, "currency": "usd", "event": "Purchase"}
    resp = await gateway.admin.post(url, json={"preview": True, "changes": changes})
    preview = await resp.json()
    assert preview["still_failing"] is None
    assert preview["event_name"] == "Purchase"
    assert preview["payload"]["event_id"] == "buy-2"
    assert preview["payload"]["properties"]["value"] == 30
    assert preview["payload"]["properties"]["currency"] == "USD"
    assert preview["payload"]["properties"]["order_id"] == "order-buy-2"
    assert tiktok.requests == []  # a preview sends nothing
    assert len(await _dead_letters(gateway, iid)) == 1

    resp = await gateway.admin.post(url, json={"changes": changes})
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["replayed"] is True
    await tiktok.wait_for(lambda: "buy-2" in tiktok.accepted_ids())
    [sent] = [a.event for a in tiktok.accepted if a.event["event_id"] == "buy-2"]
    assert sent["event"] == "Purchase"
    assert sent["properties"]["value"] == 30
    assert sent["properties"]["currency"] == "USD"
    assert await _dead_letters(gateway, iid) == []


async def test_fix_refuses_bad_changes_by_field_and_unknown_dead_letters(
    gateway: Gateway,
) -> None:
    iid = await _setup(gateway)
    await _purchase(gateway, "buy-3")
    await gateway.delivered()
    [dead] = await _dead_letters(gateway, iid)
    url = f"/v1/admin/integrations/{iid}/dead-letters/{dead['id']}/fix"
    cases: list[tuple[Any, str | None]] = [
        ({"changes": {"value": "lots"}}, "changes.value"),
        ({"changes": {"value": -1}}, "changes.value"),
        ({"changes": {"currency": "dollars"}}, "changes.currency"),
        ({"changes": {"event": ""}}, "changes.event"),
        ({"changes": {"event_id": "other"}}, "changes.event_id"),
        ({"changes": {"order_id": {"a": 1}}}, "changes.order_id"),
        ({"changes": {"value": 1}, "preview": "yes"}, "preview"),
        ({"preview": True}, "changes"),
        ([], None),
    ]
    for body, field in cases:
        resp = await gateway.admin.post(url, json=body)
        assert resp.status == 422, (body, await resp.text())
        error = (await resp.json())["error"]
        if field is not None:
            assert error["field"] == field, (body, error)
    missing = f"/v1/admin/integrations/{iid}/dead-letters/999999/fix"
    resp = await gateway.admin.post(missing, json={"changes": {"value": 1}})
    assert resp.status == 404
    assert [d["event_id"] for d in await _dead_letters(gateway, iid)] == ["buy-3"]
