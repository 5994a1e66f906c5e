"""Delivery that loses nothing: every fault injected for real, against the TikTok double.

Each proof prints the figures it measured (run with `pytest -s` to see them). Assertions are on
what came out (the double's records, the queue, the worker's counters, the Management API), and
waiting is bounded (`drain`, `wait_for`), never a bare sleep except to show that nothing happens.
"""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Gateway, MakeGateway
from tests.tiktok_double import TikTokDouble

# --- Helpers --------------------------------------------------------------------------------------


def hit(message_id: str) -> dict[str, Any]:
    """A browser hit that consent routes to the test integration."""
    return {
        "source_id": "src_test",
        "event": "Product Added",
        "message_id": message_id,
        "properties": {"product_id": "SKU-1", "price": 9.5, "quantity": 1, "currency": "USD"},
        "context": {"consent": {"advertising": True}},
    }


async def metric(gw: Gateway, name: str, **labels: str) -> float | None:
    """One sample of the admin port's /metrics, as Prometheus reads it."""
    resp = await gw.admin.get("/metrics")
    assert resp.status == 200
    for family in text_string_to_metric_families(await resp.text()):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return None


async def status(gw: Gateway, integration_id: str) -> dict[str, Any]:
    resp = await gw.admin.get(f"/v1/admin/integrations/{integration_id}")
    assert resp.status == 200
    body: dict[str, Any] = await resp.json()
    return dict(body["status"])


# --- Backpressure ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bound", "setting"),
    [
        pytest.param("events", {"GATEWAY_QUEUE_MAX_EVENTS": "40"}, id="events"),
        pytest.param("bytes", {"GATEWAY_QUEUE_MAX_BYTES": str(96 * 1024)}, id="bytes-on-disk"),
    ],
)
async def test_full_queue_answers_503_and_drops_nothing_accepted(
    make_gateway: MakeGateway, tiktok: TikTokDouble, bound: str, setting: dict[str, str]
) -> None:
    async with make_gateway(**setting) as gw:
        await gw.create_source()
        iid = (await gw.create_integration())["id"]
        # Paused, so delivery cannot make room: the queue only fills.
        assert (await gw.admin.post(f"/v1/admin/integrations/{iid}/pause")).status == 200

        accepted: list[str] = []
        refusals: list[tuple[int, str, str]] = []
        for n in range(5000):
            resp = await gw.collect.post("/v1/t", json=hit(f"m-{bound}-{n}"))
            if resp.status == 200:
                assert not refusals, "a hit was accepted again while the queue was still full"
                accepted.append(f"m-{bound}-{n}")
                continue
            body = await resp.json()
            refusals.append((resp.status, body["error"]["code"], resp.headers.get("Retry-After")))
            if len(refusals) == 3:
                break

        assert refusals == [(503, "queue_full", "5")] * 3
        assert await metric(gw, "gateway_hits_rejected_total", reason="queue_full") == 3
        seen = await status(gw, iid)
        assert seen["queued"] == seen["queue_depth"] == len(accepted)
        assert await metric(gw, "gateway_queue_depth") == len(accepted)
        assert await metric(gw, "gateway_queue_bound") == seen["queue_bound"]
        assert await metric(gw, "gateway_queue_bytes_bound") == seen["queue_bytes_bound"]
        assert await metric(gw, "gateway_queue_bytes") == seen["queue_bytes"]
        if bound == "events":
            assert len(accepted) == seen["queue_bound"] == 40
        else:
            assert seen["queue_bytes_bound"] == 96 * 1024
            assert seen["queue_bytes"] <= seen["queue_bytes_bound"]
            assert len(accepted) > 10

        # Nothing accepted was dropped: resumed, all of it is delivered, each event_id once.
        assert (await gw.admin.post(f"/v1/admin/integrations/{iid}/resume")).status == 200
        await tiktok.wait_for(lambda: len(tiktok.accepted) >= len(accepted), timeout=20)
        assert sorted(tiktok.accepted_ids()) == sorted(accepted)
        assert gw.runtime.worker is not None
        await gw.runtime.worker.drain(timeout_s=10)
        # And with room again, collection accepts again.
        assert (await gw.collect.post("/v1/t", json=hit(f"m-{bound}-after"))).status == 200
        print(
            f"backpressure ({bound}): {len(accepted)} hits stored up to the bound "
            f"(queue {seen['queue_depth']} of {seen['queue_bound']} events, "
            f"{seen['queue_bytes']} of {seen['queue_bytes_bound']} bytes), then 503 with "
            f"Retry-After {refusals[0][2]} s x{len(refusals)}; after resume "
            f"{len(tiktok.accepted_ids())} of {len(accepted)} delivered, "
            f"{len(tiktok.accepted_ids()) - len(set(tiktok.accepted_ids()))} duplicates"
        )
