"""The visitor's IP: one header believed (GATEWAY_CLIENT_IP_HEADER), only from trusted proxies.

The attack: a visitor sends its own `Forwarded`, `X-Forwarded-For` and `X-Real-IP` through the
shipped nginx configurations, hoping the gateway reports a made-up address to TikTok.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.core.errors import SettingsError
from gateway.core.settings import Settings
from tests.conftest import MakeGateway
from tests.nginx import Snippet, lb_location, running_nginx, sidecar_snippet
from tests.test_collect import events_of, hit
from tests.test_collect import setup as setup_source
from tests.test_sidecar import HIT, VISITOR_IP, site, visitor_session
from tests.tiktok_double import TikTokDouble

FORGED = {
    "Forwarded": 'for="198.51.100.1";proto=https',
    "X-Forwarded-For": "198.51.100.2, 198.51.100.3",
    "X-Real-IP": "198.51.100.4",
}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("snippet", "hit_path"),
    [(sidecar_snippet, "/df/v1/p"), (lb_location, "/v1/p")],
    ids=["nginx-sidecar.conf", "nginx-lb.conf"],
)
async def test_forged_forwarding_headers_through_shipped_nginx_change_nothing(
    make_gateway: MakeGateway,
    tiktok: TikTokDouble,
    tmp_path: Path,
    snippet: Snippet,
    hit_path: str,
) -> None:
    async with make_gateway() as gw:
        await gw.create_source(allowed_origins=[])
        await gw.create_integration()
        port = gw.collect.server.port
        assert port is not None
        async with (
            running_nginx(tmp_path / "nginx", site(tmp_path), port, snippet) as nginx,
            visitor_session() as session,
            session.post(
                nginx.http_origin + hit_path,
                data=json.dumps(HIT),
                headers={"Content-Type": "text/plain;charset=UTF-8", **FORGED},
            ) as resp,
        ):
            assert resp.status == 200, await resp.text()
        await tiktok.wait_for(lambda: len(tiktok.accepted) == 1)
    assert tiktok.accepted[0].event["user"]["ip"] == VISITOR_IP


@pytest.mark.parametrize(
    ("header", "believed"),
    [
        ("X-Forwarded-For", "198.51.100.3"),
        ("Forwarded", "198.51.100.1"),
        ("X-Real-IP", "198.51.100.4"),
    ],
)
async def test_only_the_named_header_is_believed(
    make_gateway: MakeGateway, tiktok: TikTokDouble, header: str, believed: str
) -> None:
    # The test client connects from 127.0.0.1, a trusted proxy by default, and sends all three.
    async with make_gateway(GATEWAY_CLIENT_IP_HEADER=header) as gw:
        await setup_source(gw)
        resp = await gw.collect.post("/v1/p", json=hit(), headers=FORGED)
        assert resp.status == 200, await resp.text()
        [event] = await events_of(tiktok, 1)
    assert event["user"]["ip"] == believed


async def test_right_most_untrusted_hop_of_the_named_header(
    make_gateway: MakeGateway, tiktok: TikTokDouble
) -> None:
    async with make_gateway(
        GATEWAY_CLIENT_IP_HEADER="forwarded", GATEWAY_TRUSTED_PROXIES="127.0.0.1/32,10.0.0.0/8"
    ) as gw:
        await setup_source(gw)
        forwarded = 'for=198.51.100.7, for="[2001:db8::17]:4711", for=10.0.0.2;proto=http'
        await gw.collect.post("/v1/p", json=hit(), headers={"Forwarded": forwarded})
        [event] = await events_of(tiktok, 1)
    assert event["user"]["ip"] == "2001:db8::17"


def test_client_ip_header_must_be_a_header_name() -> None:
    assert Settings.from_mapping({}).client_ip_header == "X-Forwarded-For"
    with pytest.raises(SettingsError, match="GATEWAY_CLIENT_IP_HEADER"):
        Settings.from_mapping({"GATEWAY_CLIENT_IP_HEADER": "X-Real-IP: 1"})
