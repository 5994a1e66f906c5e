"""A whole gateway on the shared backends, selected by URL as an operator would select them."""

from __future__ import annotations

from gateway.config.postgres import PostgresConfigStore
from gateway.deliver.consumers import LogConsumers
from gateway.log.redis import RedisHitLog
from tests.conftest import MakeGateway
from tests.tiktok_double import TikTokDouble


async def test_gateway_on_redis_and_postgresql(
    make_gateway: MakeGateway, tiktok: TikTokDouble, shared_urls: dict[str, str]
) -> None:
    async with make_gateway(**shared_urls) as gw:
        assert isinstance(gw.wired.log, RedisHitLog)
        assert isinstance(gw.wired.queue, LogConsumers)
        assert isinstance(gw.wired.store, PostgresConfigStore)
        await gw.create_source(consent_default="grant")
        created = await gw.create_integration()
        for n in range(3):
            resp = await gw.collect.post(
                "/v1/p", json={"source_id": "src_test", "message_id": f"m-{n}"}
            )
            assert resp.status == 200, await resp.text()
        await tiktok.wait_for(lambda: len(tiktok.accepted) == 3, timeout=10)
        assert sorted(tiktok.accepted_ids()) == ["m-0", "m-1", "m-2"]

        resp = await gw.admin.get(f"/v1/admin/integrations/{created['id']}")
        status = (await resp.json())["status"]
        assert (status["queued"], status["delivered"]) == (0, 3)
        resp = await gw.admin.get("/readyz")
        assert resp.status == 200
