"""The Management API through real HTTP calls on a whole in-process gateway."""

from __future__ import annotations

import io
import json
import re
import time
from typing import Any

import aiohttp
import pytest

from gateway.admin.schema import iso_utc, parse_new_source
from gateway.core.crypto import sha256_hex
from gateway.core.errors import Invalid
from gateway.core.models import NewEvent
from gateway.core.settings import Secret
from gateway.core.validation import mask_secret
from tests.conftest import ADMIN_TOKEN, Gateway
from tests.tiktok_double import Answer, TikTokDouble

SEED_BODY = {
    "source_id": "src_abc123",
    "vendor": "tiktok",
    "name": "TikTok Events API",
    "enabled": True,
    "config": {"pixel_code": "CXXXXXXXXXXXXXXXXX", "access_token": "your_access_token"},
    "consent_categories": ["advertising"],
}
TEST_TOKEN = "tok_test_0123456789"


async def _error(resp: aiohttp.ClientResponse, status: int) -> dict[str, Any]:
    text = await resp.text()
    assert resp.status == status, text
    assert "Traceback" not in text
    body = await resp.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "field"}
    return dict(body["error"])


# ----------------------------------------------------------------------------------------- auth


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token-0123456789"},
        {"Authorization": f"Basic {ADMIN_TOKEN}"},
        {"Authorization": "Bearer "},
        {"Authorization": f"Bearer {ADMIN_TOKEN}x"},
    ],
    ids=["missing", "wrong", "not-bearer", "empty", "longer"],
)
async def test_admin_calls_need_the_admin_token(gateway: Gateway, headers: dict[str, str]) -> None:
    async with aiohttp.ClientSession() as raw:
        for method, path in [
            ("GET", "/v1/admin/sources"),
            ("POST", "/v1/admin/integrations"),
            ("GET", "/v1/admin/integrations/int_x/dead-letters"),
            ("GET", "/v1/admin/no-such-thing"),
            ("GET", "/v1/admin/openapi.json"),
        ]:
            async with raw.request(method, gateway.admin.make_url(path), headers=headers) as resp:
                error = await _error(resp, 401)
                assert error["code"] == "unauthorized"
                assert resp.headers["WWW-Authenticate"] == "Bearer"


async def test_health_and_metrics_need_no_token(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as raw:
        async with raw.get(gateway.admin.make_url("/healthz")) as resp:
            assert resp.status == 200
            assert await resp.json() == {"status": "ok"}
        async with raw.get(gateway.admin.make_url("/readyz")) as resp:
            assert resp.status == 200
            assert (await resp.json())["status"] == "ok"
        async with raw.get(gateway.admin.make_url("/metrics")) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/plain")
            assert "gateway_queue_depth 0.0" in await resp.text()


async def test_readyz_answers_503_when_the_store_is_gone(gateway: Gateway) -> None:
    await gateway.wired.store.close()
    resp = await gateway.admin.get("/readyz")
    assert resp.status == 503
    body = await resp.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["store"] != "ok"


# ---------------------------------------------------------------------------- the seed's request


async def test_seed_request_works_verbatim_and_never_shows_the_token(gateway: Gateway) -> None:
    await gateway.create_source(id="src_abc123")
    texts: list[str] = []

    resp = await gateway.admin.post("/v1/admin/integrations", json=SEED_BODY)
    texts.append(await resp.text())
    assert resp.status == 201, texts[-1]
    created = await resp.json()
    assert re.fullmatch(r"int_[0-9a-f]{12}", created["id"])
    assert created["config"]["access_token"] == "****oken"
    assert created["config"]["pixel_code"] == "CXXXXXXXXXXXXXXXXX"
    assert created["config"]["rate_limit_rps"] == 100
    assert created["config"]["rate_limit_burst"] == 200
    assert created["consent_categories"] == ["advertising"]
    assert created["status"]["state"] == "active"

    for call in (
        gateway.admin.get(f"/v1/admin/integrations/{created['id']}"),
        gateway.admin.get("/v1/admin/integrations"),
        gateway.admin.get("/v1/admin/integrations?source_id=src_abc123"),
        gateway.admin.patch(f"/v1/admin/integrations/{created['id']}", json={"name": "Renamed"}),
        gateway.admin.post(f"/v1/admin/integrations/{created['id']}/pause"),
        gateway.admin.post(f"/v1/admin/integrations/{created['id']}/resume"),
    ):
        resp = await call
        texts.append(await resp.text())
        assert resp.status == 200, texts[-1]
    for text in texts:
        assert "your_access_token" not in text
        assert "access_token" in text  # the mask is there instead

    stored = await gateway.wired.store.get_integration(created["id"])
    assert stored is not None
    assert stored.config.access_token.reveal() == "your_access_token"


@pytest.mark.parametrize(
    ("token", "mask"),
    [("your_access_token", "****oken"), ("abc", "****"), ("0123456789a", "****")],
    ids=["long", "tiny", "short"],
)
def test_mask_shows_at_most_four_characters(token: str, mask: str) -> None:
    assert mask_secret(Secret(token)) == mask


# ----------------------------------------------------------------------------------- validation


def _integration(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "source_id": "src_test",
        "vendor": "tiktok",
        "name": "TikTok",
        "config": {"pixel_code": "CTESTPIXEL0000000001", "access_token": TEST_TOKEN},
        "consent_categories": ["advertising"],
    }
    body.update(changes)
    return body


INVALID_INTEGRATIONS = [
    ("missing-pixel", _integration(config={"access_token": "t"}), "config.pixel_code", "required"),
    (
        "missing-token",
        _integration(config={"pixel_code": "CPIXEL1"}),
        "config.access_token",
        "required",
    ),
    (
        "bad-pixel",
        _integration(config={"pixel_code": "no way!", "access_token": "t"}),
        "config.pixel_code",
        "invalid_value",
    ),
    ("unknown-vendor", _integration(vendor="facebook"), "vendor", "unknown_vendor"),
    ("unknown-source", _integration(source_id="src_nope"), "source_id", "unknown_source"),
    ("enabled-string", _integration(enabled="yes"), "enabled", "invalid_type"),
    ("name-number", _integration(name=42), "name", "invalid_type"),
    ("name-empty", _integration(name="  "), "name", "invalid_value"),
    (
        "categories-string",
        _integration(consent_categories="ads"),
        "consent_categories",
        "invalid_type",
    ),
    (
        "category-empty",
        _integration(consent_categories=["ok", ""]),
        "consent_categories[1]",
        "invalid_value",
    ),
    (
        "rps-string",
        _integration(config={"pixel_code": "CPIXEL1", "access_token": "t", "rate_limit_rps": "9"}),
        "config.rate_limit_rps",
        "invalid_type",
    ),
    (
        "rps-zero",
        _integration(config={"pixel_code": "CPIXEL1", "access_token": "t", "rate_limit_rps": 0}),
        "config.rate_limit_rps",
        "invalid_value",
    ),
    (
        "burst-float",
        _integration(
            config={"pixel_code": "CPIXEL1", "access_token": "t", "rate_limit_burst": 2.5}
        ),
        "config.rate_limit_burst",
        "invalid_type",
    ),
    (
        "mapping-values",
        _integration(
            config={"pixel_code": "CPIXEL1", "access_token": "t", "event_mapping": {"a": 1}}
        ),
        "config.event_mapping.a",
        "invalid_type",
    ),
    ("unknown-field", _integration(colour="blue"), "colour", "unknown_field"),
    (
        "unknown-config-field",
        _integration(config={"pixel_code": "CPIXEL1", "access_token": "t", "pixel": "x"}),
        "config.pixel",
        "unknown_field",
    ),
    ("config-list", _integration(config=[]), "config", "invalid_type"),
    (
        "missing-config",
        {k: v for k, v in _integration().items() if k != "config"},
        "config",
        "required",
    ),
]


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [case[1:] for case in INVALID_INTEGRATIONS],
    ids=[case[0] for case in INVALID_INTEGRATIONS],
)
async def test_invalid_integration_is_422_naming_the_field(
    gateway: Gateway, body: dict[str, Any], field: str, code: str
) -> None:
    await gateway.create_source()
    resp = await gateway.admin.post("/v1/admin/integrations", json=body)
    error = await _error(resp, 422)
    assert (error["field"], error["code"]) == (field, code)
    assert TEST_TOKEN not in error["message"]
    assert (await gateway.admin.get("/v1/admin/integrations")).status == 200
    assert (await (await gateway.admin.get("/v1/admin/integrations")).json()) == {
        "integrations": []
    }


INVALID_SOURCES = [
    ("bad-consent-default", {"consent_default": "maybe"}, "consent_default"),
    ("consent-default-bool", {"consent_default": True}, "consent_default"),
    ("bad-id", {"id": "src abc"}, "id"),
    ("long-id", {"id": "x" * 65}, "id"),
    ("missing-name", {"name": None}, "name"),
    ("origin-with-path", {"allowed_origins": ["https://shop.example/shop"]}, "allowed_origins[0]"),
    (
        "origin-ftp",
        {"allowed_origins": ["https://a.example", "ftp://b.example"]},
        "allowed_origins[1]",
    ),
    ("origins-string", {"allowed_origins": "https://shop.example"}, "allowed_origins"),
    ("cookie-domain", {"cookie_domain": "shop example"}, "cookie_domain"),
    ("region", {"default_phone_region": "XX"}, "default_phone_region"),
    ("unknown", {"server_key": "mine"}, "server_key"),
]


@pytest.mark.parametrize(
    ("changes", "field"),
    [case[1:] for case in INVALID_SOURCES],
    ids=[case[0] for case in INVALID_SOURCES],
)
async def test_invalid_source_is_422_naming_the_field(
    gateway: Gateway, changes: dict[str, Any], field: str
) -> None:
    body: dict[str, Any] = {"name": "Shop", **changes}
    body = {k: v for k, v in body.items() if v is not None}
    resp = await gateway.admin.post("/v1/admin/sources", json=body)
    assert (await _error(resp, 422))["field"] == field


@pytest.mark.parametrize(
    "body",
    [b"{", b"{'name': 'x'}", b"", b"\xff\xfe", b"[1,"],
    ids=["truncated", "single-quotes", "empty", "not-utf8", "broken-array"],
)
async def test_malformed_json_is_400(gateway: Gateway, body: bytes) -> None:
    for path in ("/v1/admin/sources", "/v1/admin/integrations"):
        resp = await gateway.admin.post(
            path, data=body, headers={"Content-Type": "application/json"}
        )
        assert (await _error(resp, 400))["code"] == "invalid_json"


async def test_json_that_is_not_an_object_is_422(gateway: Gateway) -> None:
    resp = await gateway.admin.post("/v1/admin/sources", json=["name"])
    assert (await _error(resp, 422))["code"] == "invalid_type"


async def test_unknown_ids_and_routes_are_json_404(gateway: Gateway) -> None:
    for path in (
        "/v1/admin/sources/src_nope",
        "/v1/admin/integrations/int_nope",
        "/v1/admin/integrations/int_nope/dead-letters",
        "/v1/admin/nothing-here",
    ):
        assert (await _error(await gateway.admin.get(path), 404))["code"] == "not_found"
    resp = await gateway.admin.put("/v1/admin/sources")
    assert (await _error(resp, 405))["code"] == "method_not_allowed"


@pytest.mark.parametrize(
    ("origin", "normalised"),
    [
        ("https://Shop.Example", "https://shop.example"),
        ("https://shop.example:443/", "https://shop.example"),
        ("http://localhost:3000", "http://localhost:3000"),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("http://[::1]:8080", "http://[::1]:8080"),
        ("https://bücher.example", "https://xn--bcher-kva.example"),
    ],
)
def test_origins_are_normalised_like_browsers_send_them(origin: str, normalised: str) -> None:
    source = parse_new_source({"name": "x", "allowed_origins": [origin]}, lambda: "src_1", "")
    assert source.allowed_origins == (normalised,)


@pytest.mark.parametrize(
    "origin",
    [
        "*",
        "shop.example",
        "https://",
        "https://shop.example?x=1",
        "https://u:p@shop.example",
        "https://shop.example:99999",
        "javascript://x",
        "https://shop..example",
    ],
)
def test_bad_origins_are_refused(origin: str) -> None:
    with pytest.raises(Invalid) as caught:
        parse_new_source({"name": "x", "allowed_origins": [origin]}, lambda: "src_1", "")
    assert caught.value.field == "allowed_origins[0]"


# ------------------------------------------------------------------------------------- sources


async def test_source_crud_round_trip(gateway: Gateway) -> None:
    resp = await gateway.admin.post(
        "/v1/admin/sources",
        json={
            "name": "Shop",
            "allowed_origins": ["https://shop.example", "https://shop.example"],
            "cookie_domain": ".Shop.Example",
            "default_phone_region": "de",
        },
    )
    assert resp.status == 201
    created = await resp.json()
    assert re.fullmatch(r"src_[0-9a-f]{12}", created["id"])
    server_key = created.pop("server_key")
    assert server_key.startswith("sk_")
    assert created["allowed_origins"] == ["https://shop.example"]
    assert created["cookie_domain"] == "shop.example"
    assert created["default_phone_region"] == "DE"
    assert created["consent_default"] == "deny"
    stored = await gateway.wired.store.get_source(created["id"])
    assert stored is not None
    assert stored.server_key_hash == sha256_hex(server_key)

    path = f"/v1/admin/sources/{created['id']}"
    got = await (await gateway.admin.get(path)).json()
    assert got == created  # the key is shown once, on creation only
    listed = await (await gateway.admin.get("/v1/admin/sources")).json()
    assert listed == {"sources": [got]}
    assert server_key not in await (await gateway.admin.get("/v1/admin/sources")).text()

    resp = await gateway.admin.patch(path, json={"consent_default": "grant", "cookie_domain": None})
    assert resp.status == 200
    patched = await resp.json()
    assert patched["consent_default"] == "grant"
    assert patched["cookie_domain"] is None
    assert patched["name"] == "Shop"  # untouched
    assert patched["allowed_origins"] == ["https://shop.example"]
    assert "server_key" not in patched
    resp = await gateway.admin.patch(path, json={"id": "src_other"})
    assert (await _error(resp, 422))["code"] == "immutable_field"

    resp = await gateway.admin.delete(path)
    assert resp.status == 204
    assert (await gateway.admin.get(path)).status == 404
    assert (await gateway.admin.delete(path)).status == 404


async def test_source_id_given_is_kept_and_duplicates_conflict(gateway: Gateway) -> None:
    created = await gateway.create_source(id="src_abc123")
    assert created["id"] == "src_abc123"
    resp = await gateway.admin.post("/v1/admin/sources", json={"id": "src_abc123", "name": "x"})
    error = await _error(resp, 409)
    assert error["field"] == "id"


async def test_deleting_a_source_deletes_its_integrations_and_their_events(
    gateway: Gateway,
) -> None:
    await gateway.create_source()
    integration = await gateway.create_integration()
    await gateway.wired.queue.dead_letter_new([_event(integration["id"], "evt_1")], "x", None, 1)
    assert (await gateway.wired.queue.stats(integration["id"])).dead_lettered == 1

    assert (await gateway.admin.delete("/v1/admin/sources/src_test")).status == 204
    assert (await gateway.admin.get(f"/v1/admin/integrations/{integration['id']}")).status == 404
    assert await gateway.wired.queue.list_dead_letters(integration["id"]) == []


# -------------------------------------------------------------------------------- integrations


async def test_integration_crud_round_trip(gateway: Gateway) -> None:
    await gateway.create_source()
    await gateway.create_source(id="src_other")
    created = await gateway.create_integration(
        consent_categories=["advertising", "analytics", "advertising"]
    )
    other = await gateway.create_integration(source_id="src_other", consent_categories=[])
    assert created["consent_categories"] == ["advertising", "analytics"]
    assert created["config"]["access_token"] == "****6789"
    path = f"/v1/admin/integrations/{created['id']}"

    assert await (await gateway.admin.get(path)).json() == created
    all_ = await (await gateway.admin.get("/v1/admin/integrations")).json()
    assert [i["id"] for i in all_["integrations"]] == [created["id"], other["id"]]
    mine = await (await gateway.admin.get("/v1/admin/integrations?source_id=src_test")).json()
    assert [i["id"] for i in mine["integrations"]] == [created["id"]]

    # config merges: the token is kept when absent (or when the mask comes back)
    resp = await gateway.admin.patch(
        path,
        json={
            "name": "Renamed",
            "enabled": False,
            "config": {"test_event_code": "TEST123", "access_token": "****6789"},
        },
    )
    assert resp.status == 200, await resp.text()
    patched = await resp.json()
    assert patched["name"] == "Renamed"
    assert patched["status"]["state"] == "disabled"
    assert patched["config"]["pixel_code"] == "CTESTPIXEL0000000001"
    assert patched["config"]["test_event_code"] == "TEST123"
    stored = await gateway.wired.store.get_integration(created["id"])
    assert stored is not None
    assert stored.config.access_token.reveal() == TEST_TOKEN

    resp = await gateway.admin.patch(path, json={"config": {"access_token": "tok_new_abcdefgh"}})
    assert (await resp.json())["config"]["access_token"] == "****efgh"
    stored = await gateway.wired.store.get_integration(created["id"])
    assert stored is not None
    assert stored.config.access_token.reveal() == "tok_new_abcdefgh"
    assert stored.config.test_event_code == "TEST123"

    resp = await gateway.admin.patch(path, json={"source_id": "src_other"})
    assert (await _error(resp, 422))["field"] == "source_id"
    resp = await gateway.admin.patch(path, json={"config": {"rate_limit_burst": 0}})
    assert (await _error(resp, 422))["field"] == "config.rate_limit_burst"

    assert (await gateway.admin.delete(path)).status == 204
    assert (await gateway.admin.get(path)).status == 404
    assert (await gateway.admin.delete(path)).status == 404


async def test_writes_reach_routing_at_once(gateway: Gateway) -> None:
    await gateway.create_source()
    created = await gateway.create_integration()
    route = await gateway.wired.router.route("src_test")
    assert route is not None
    assert [i.id for i in route.integrations] == [created["id"]]
    await gateway.admin.patch(f"/v1/admin/integrations/{created['id']}", json={"enabled": False})
    route = await gateway.wired.router.route("src_test")
    assert route is not None
    assert route.integrations == ()


async def test_the_enqueued_counter_counts_the_events_delivery_takes_to_send(
    gateway: Gateway,
) -> None:
    await gateway.create_source()
    created = await gateway.create_integration()
    granted = {"advertising": True}
    hits = [
        {"type": "page", "message_id": f"p-{n}", "context": {"consent": granted}} for n in range(3)
    ]
    hits.append({"type": "page", "message_id": "denied", "context": {"consent": {}}})
    hits.append({"type": "identify", "user_id": "u-1", "context": {"consent": granted}})
    for hit in hits:
        resp = await gateway.collect.post("/v1/t", json={"source_id": "src_test", **hit})
        assert resp.status == 200
    await gateway.delivered()
    counter = f'gateway_events_enqueued_total{{integration="{created["id"]}"}}'
    # The three granted page views; not the denied one, not the identify hit (nothing to send).
    assert f"{counter} 3.0" in await (await gateway.admin.get("/metrics")).text()


async def test_pause_resume_and_the_paused_gauge(gateway: Gateway) -> None:
    await gateway.create_source()
    created = await gateway.create_integration()
    path = f"/v1/admin/integrations/{created['id']}"
    gauge = f'gateway_integration_paused{{integration="{created["id"]}"}}'

    paused = await (await gateway.admin.post(f"{path}/pause")).json()
    assert paused["status"]["state"] == "paused"
    assert paused["status"]["paused_reason"] == "paused by admin"
    assert f"{gauge} 1.0" in await (await gateway.admin.get("/metrics")).text()

    resumed = await (await gateway.admin.post(f"{path}/resume")).json()
    assert resumed["status"]["state"] == "active"
    assert resumed["status"]["paused_reason"] is None
    assert f"{gauge} 0.0" in await (await gateway.admin.get("/metrics")).text()


async def test_patching_config_resumes_a_paused_integration(gateway: Gateway) -> None:
    await gateway.create_source()
    created = await gateway.create_integration()
    path = f"/v1/admin/integrations/{created['id']}"
    await gateway.admin.post(f"{path}/pause")

    renamed = await (await gateway.admin.patch(path, json={"name": "Still paused"})).json()
    assert renamed["status"]["state"] == "paused"

    resp = await gateway.admin.patch(path, json={"config": {"access_token": "tok_fixed_00000000"}})
    body = await resp.json()
    assert body["status"]["state"] == "active"
    assert body["status"]["paused_reason"] is None
    stored = await gateway.wired.store.get_integration(created["id"])
    assert stored is not None
    assert stored.paused_reason is None


async def test_status_counts_have_their_shape(gateway: Gateway) -> None:
    await gateway.create_source()
    created = await gateway.create_integration()
    queue_bytes = created["status"].pop("queue_bytes")
    assert created["status"] == {
        "state": "active",
        "paused_reason": None,
        "pause_hint": None,
        "queued": 0,
        "delivered": 0,
        "failed": 0,
        "dead_lettered": 0,
        "last_error": None,
        "last_success_at": None,
        "queue_depth": 0,
        "queue_bound": 5_000_000,
        "queue_bytes_bound": 2 * 2**30,
    }
    assert 0 <= queue_bytes < 2**20  # the records the hit log holds (none yet)
    await gateway.wired.queue.dead_letter_new(
        [_event(created["id"], "evt_1")], "missing_value_or_currency", None, time.time()
    )
    got = await (await gateway.admin.get(f"/v1/admin/integrations/{created['id']}")).json()
    assert got["status"]["dead_lettered"] == 1


# ----------------------------------------------------------------------------------- test send


async def test_test_send_reaches_tiktok_with_the_test_event_code(
    gateway: Gateway, tiktok: TikTokDouble
) -> None:
    await gateway.create_source()
    created = await gateway.create_integration(
        config={
            "pixel_code": "CTESTPIXEL0000000001",
            "access_token": TEST_TOKEN,
            "test_event_code": "TEST12345",
        }
    )
    resp = await gateway.admin.post(f"/v1/admin/integrations/{created['id']}/test")
    text = await resp.text()
    assert resp.status == 200, text
    body = await resp.json()
    assert body["sent"] is True
    assert body["error"] is None
    assert body["tiktok"]["http_status"] == 200
    assert body["tiktok"]["code"] == 0
    assert body["tiktok"]["request_id"]
    assert TEST_TOKEN not in text

    assert tiktok.problems == []
    [request] = tiktok.requests
    assert request.headers["Access-Token"] == TEST_TOKEN
    assert request.body["test_event_code"] == "TEST12345"
    assert request.body["event_source_id"] == "CTESTPIXEL0000000001"
    [event] = request.events
    assert event["event"] == "PageView"
    assert event["event_id"].startswith("test_")
    assert abs(event["event_time"] - time.time()) < 60


async def test_test_send_returns_tiktoks_refusal_as_not_accepted(
    gateway: Gateway, tiktok: TikTokDouble
) -> None:
    await gateway.create_source()
    created = await gateway.create_integration()
    tiktok.play(Answer(code=40001, message="No permission to operate pixel code"))
    resp = await gateway.admin.post(
        f"/v1/admin/integrations/{created['id']}/test", json={"test_event_code": "TEST1"}
    )
    body = await resp.json()
    assert body["sent"] is True
    assert body["accepted"] is False  # the UI never shows this one in green
    assert body["tiktok"]["code"] == 40001
    assert body["answer"]["message"] == "No permission to operate pixel code"
    # A test's refusal is its own: the integration is not paused by it.
    got = await (await gateway.admin.get(f"/v1/admin/integrations/{created['id']}")).json()
    assert got["status"]["state"] == "active"
    await gateway.wired.ledger.flush()
    (record,) = (await (await gateway.admin.get(f"/v1/admin/events/{body['event_id']}")).json())[
        "records"
    ]
    assert record["hit"]["test"] is True
    assert record["delivery"]["status"] == "rejected"


async def test_a_test_send_without_a_test_event_code_is_refused_and_nothing_is_sent(
    gateway: Gateway, tiktok: TikTokDouble
) -> None:
    await gateway.create_source()
    created = await gateway.create_integration()  # no test event code saved
    for body in (None, {}, {"test_event_code": "  "}):
        resp = await gateway.admin.post(f"/v1/admin/integrations/{created['id']}/test", json=body)
        error = await _error(resp, 422)
        assert error["code"] == "test_event_code_required"
        assert error["field"] == "test_event_code"
    resp = await gateway.admin.post(
        f"/v1/admin/integrations/{created['id']}/test", json={"test_event_code": 7}
    )
    assert (await _error(resp, 422))["field"] == "test_event_code"
    assert tiktok.requests == []


async def test_a_test_send_shows_its_request_and_is_a_test_in_the_debugger_only(
    gateway: Gateway, tiktok: TikTokDouble
) -> None:
    await gateway.create_source()
    created = await gateway.create_integration(
        config={
            "pixel_code": "CTESTPIXEL0000000001",
            "access_token": TEST_TOKEN,
            "test_event_code": "SAVED1",
        }
    )
    resp = await gateway.admin.post(
        f"/v1/admin/integrations/{created['id']}/test", json={"test_event_code": "TYPED2"}
    )
    text = await resp.text()
    assert resp.status == 200, text
    assert TEST_TOKEN not in text
    body = await resp.json()
    assert body["accepted"] is True
    assert body["test_event_code"] == "TYPED2"  # the dialog's code wins over the saved one
    [request] = tiktok.requests
    assert request.body["test_event_code"] == "TYPED2"
    assert body["request"]["body"] == request.body  # exactly what TikTok received
    assert body["answer"]["code"] == 0 and body["answer"]["request_id"]

    await gateway.wired.ledger.flush()
    listing = await (await gateway.admin.get("/v1/admin/events")).json()
    (record,) = listing["records"]
    assert record["event_id"] == body["event_id"]
    assert record["hit"]["type"] == "test" and record["hit"]["test"] is True
    assert record["hit"]["test_event_code"] == "TYPED2"
    assert record["hit"]["request"] == request.body
    assert record["delivery"]["status"] == "delivered"
    # Real counters and match quality do not count a test.
    got = await (await gateway.admin.get(f"/v1/admin/integrations/{created['id']}")).json()
    assert (got["status"]["delivered"], got["status"]["failed"]) == (0, 0)
    quality = await (
        await gateway.admin.get(f"/v1/admin/integrations/{created['id']}/match-quality")
    ).json()
    assert quality["events"] == 0


async def test_an_unsaved_form_can_be_tested_and_nothing_is_stored(
    gateway: Gateway, tiktok: TikTokDouble
) -> None:
    await gateway.create_source()
    form = {
        "vendor": "tiktok",
        "source_id": "src_test",
        "config": {"pixel_code": "CUNSAVED000000000001", "access_token": "unsaved_token_1"},
    }
    resp = await gateway.admin.post("/v1/admin/integrations/test", json=form)
    assert (await _error(resp, 422))["code"] == "test_event_code_required"
    bad = {**form, "config": {"pixel_code": "no!", "access_token": "x"}, "test_event_code": "T1"}
    resp = await gateway.admin.post("/v1/admin/integrations/test", json=bad)
    assert (await _error(resp, 422))["field"] == "config.pixel_code"
    resp = await gateway.admin.post(
        "/v1/admin/integrations/test",
        json={**form, "source_id": "src_nope", "test_event_code": "T1"},
    )
    assert (await _error(resp, 422))["code"] == "unknown_source"
    assert tiktok.requests == []

    resp = await gateway.admin.post(
        "/v1/admin/integrations/test", json={**form, "test_event_code": "T1"}
    )
    text = await resp.text()
    assert resp.status == 200, text
    assert "unsaved_token_1" not in text
    [request] = tiktok.requests
    assert request.headers["Access-Token"] == "unsaved_token_1"
    assert request.body["event_source_id"] == "CUNSAVED000000000001"
    assert request.body["test_event_code"] == "T1"
    assert (await (await gateway.admin.get("/v1/admin/integrations")).json())["integrations"] == []


async def test_an_edit_form_is_tested_with_the_saved_token_when_left_empty(
    gateway: Gateway, tiktok: TikTokDouble
) -> None:
    await gateway.create_source()
    created = await gateway.create_integration()
    resp = await gateway.admin.post(
        "/v1/admin/integrations/test",
        json={
            "integration_id": created["id"],
            "config": {"pixel_code": "CEDITED0000000000001"},
            "test_event_code": "T2",
        },
    )
    assert resp.status == 200, await resp.text()
    [request] = tiktok.requests
    assert request.headers["Access-Token"] == TEST_TOKEN
    assert request.body["event_source_id"] == "CEDITED0000000000001"
    stored = await (await gateway.admin.get(f"/v1/admin/integrations/{created['id']}")).json()
    assert stored["config"]["pixel_code"] != "CEDITED0000000000001"  # the test saved nothing


# -------------------------------------------------------------------------------- dead letters


def _event(integration_id: str, event_id: str, consent: dict[str, bool] | None = None) -> NewEvent:
    event = {
        "event": "PageView",
        "event_time": int(time.time()),
        "event_id": event_id,
        "user": {"ip": "203.0.113.7"},
        "page": {"url": "https://shop.example/"},
    }
    payload = json.dumps(event).encode()
    return NewEvent(integration_id, event_id, "PageView", int(time.time()), payload, consent)


async def _dead_letters(gateway: Gateway, integration_id: str) -> list[dict[str, Any]]:
    resp = await gateway.admin.get(f"/v1/admin/integrations/{integration_id}/dead-letters")
    assert resp.status == 200
    return list((await resp.json())["dead_letters"])


async def test_replay_rechecks_consent_and_delivers_with_the_same_event_id(
    gateway: Gateway, tiktok: TikTokDouble
) -> None:
    await gateway.create_source()
    created = await gateway.create_integration()
    iid = created["id"]
    await gateway.wired.queue.dead_letter_new(
        [
            _event(iid, "evt_granted", {"advertising": True}),
            _event(iid, "evt_refused", {"advertising": False}),
            _event(iid, "evt_no_consent", None),  # the source's default is deny
        ],
        "rejected",
        "40002: invalid",
        time.time(),
    )
    items = await _dead_letters(gateway, iid)
    assert [d["event_id"] for d in items] == ["evt_granted", "evt_refused", "evt_no_consent"]
    first = items[0]
    assert first["reason"] == "rejected"
    assert first["answer"] == "40002: invalid"
    assert first["dead_lettered_at"].endswith("Z")

    resp = await gateway.admin.post(
        f"/v1/admin/integrations/{iid}/dead-letters/replay", json={"all": True}
    )
    assert resp.status == 200
    result = await resp.json()
    assert result["replayed"] == 1
    assert sorted(s["id"] for s in result["skipped"]) == sorted(d["id"] for d in items[1:])
    assert {s["reason"] for s in result["skipped"]} == {"consent"}

    await tiktok.wait_for(lambda: "evt_granted" in tiktok.accepted_ids())
    assert [d["event_id"] for d in await _dead_letters(gateway, iid)] == [
        "evt_refused",
        "evt_no_consent",
    ]


async def test_replay_by_ids_reports_unknown_ids(gateway: Gateway) -> None:
    await gateway.create_source(consent_default="grant")
    created = await gateway.create_integration()
    iid = created["id"]
    await gateway.admin.post(f"/v1/admin/integrations/{iid}/pause")  # keep replayed ones queued
    await gateway.wired.queue.dead_letter_new(
        [_event(iid, "evt_a"), _event(iid, "evt_b")], "rejected", None, time.time()
    )
    items = await _dead_letters(gateway, iid)
    url = f"/v1/admin/integrations/{iid}/dead-letters/replay"
    resp = await gateway.admin.post(url, json={"ids": [items[0]["id"], "999999"]})
    assert await resp.json() == {
        "replayed": 1,
        "replayed_event_ids": ["evt_a"],
        "skipped": [{"id": "999999", "reason": "not_found"}],
        "still_failing": [],
    }
    resp = await gateway.admin.post(url, json={"event_id": "evt_b"})
    assert (await resp.json())["replayed"] == 1
    assert await _dead_letters(gateway, iid) == []

    for bad in ({}, {"all": False}, {"all": True, "ids": []}, {"ids": "1"}):
        assert (await gateway.admin.post(url, json=bad)).status == 422


async def test_replay_and_purge_by_filter_keep_event_ids(
    gateway: Gateway, tiktok: TikTokDouble
) -> None:
    await gateway.create_source(consent_default="grant")
    iid = (await gateway.create_integration())["id"]
    await gateway.admin.post(f"/v1/admin/integrations/{iid}/pause")  # replayed ones stay queued
    now = time.time()
    purchase = _event(iid, "evt_purchase")
    queue = gateway.wired.queue
    await queue.dead_letter_new(
        [_event(iid, "evt_yesterday")], "rejected", "40002: x", now - 86_400
    )
    await queue.dead_letter_new([_event(iid, "evt_today")], "rejected", "40002: x", now - 60)
    await queue.dead_letter_new([_event(iid, "evt_stale")], "too_old", None, now - 60)
    await queue.dead_letter_new(
        [
            NewEvent(
                iid, purchase.event_id, "CompletePayment", purchase.event_time, purchase.payload
            )
        ],
        "missing_value_or_currency",
        None,
        now - 60,
    )
    url = f"/v1/admin/integrations/{iid}/dead-letters/replay"
    hour_ago = iso_utc(now - 3600)

    async def replay(selection: dict[str, Any]) -> int:
        resp = await gateway.admin.post(url, json=selection)
        assert resp.status == 200, await resp.text()
        body = await resp.json()
        assert body["skipped"] == []
        return int(body["replayed"])

    assert await replay({"filter": {"reason": "rejected", "since": hour_ago}}) == 1
    assert await replay({"filter": {"event_name": "CompletePayment"}}) == 1
    assert await replay({"filter": {"reason": "rejected", "until": hour_ago}}) == 1
    assert await replay({"filter": {"reason": "rejected"}}) == 0
    assert [d["event_id"] for d in await _dead_letters(gateway, iid)] == ["evt_stale"]

    # Replayed, they keep their event_id all the way to TikTok.
    await gateway.admin.post(f"/v1/admin/integrations/{iid}/resume")
    await tiktok.wait_for(lambda: len(tiktok.accepted) == 3)
    assert sorted(tiktok.accepted_ids()) == ["evt_purchase", "evt_today", "evt_yesterday"]

    dead = f"/v1/admin/integrations/{iid}/dead-letters"
    resp = await gateway.admin.delete(dead, params={"reason": "rejected"})
    assert await resp.json() == {"purged": 0}
    resp = await gateway.admin.delete(dead, params={"reason": "too_old", "since": hour_ago})
    assert await resp.json() == {"purged": 1}

    for bad in (
        {"filter": {}},
        {"filter": {"colour": "red"}},
        {"filter": {"since": "yesterday"}},
        {"filter": {"since": iso_utc(now), "until": hour_ago}},
        {"filter": {"reason": "rejected"}, "all": True},
    ):
        resp = await gateway.admin.post(url, json=bad)
        assert resp.status == 422, bad
        assert (await resp.json())["error"]["field"] in (
            None,
            "filter",
            "filter.colour",
            "filter.since",
        )


async def test_purge_needs_an_explicit_selection(gateway: Gateway) -> None:
    await gateway.create_source()
    created = await gateway.create_integration()
    iid = created["id"]
    await gateway.wired.queue.dead_letter_new(
        [_event(iid, f"evt_{n}") for n in range(4)], "rejected", None, time.time()
    )
    items = await _dead_letters(gateway, iid)
    url = f"/v1/admin/integrations/{iid}/dead-letters"

    assert (await gateway.admin.delete(url)).status == 422  # nothing named: nothing purged
    resp = await gateway.admin.delete(url, json={"ids": [items[0]["id"]]})
    assert await resp.json() == {"purged": 1}
    resp = await gateway.admin.delete(url, params={"ids": f"{items[1]['id']},{items[2]['id']}"})
    assert await resp.json() == {"purged": 2}
    resp = await gateway.admin.delete(url, params={"all": "true"})
    assert await resp.json() == {"purged": 1}
    assert await _dead_letters(gateway, iid) == []


async def test_dead_letter_paging_is_validated(gateway: Gateway) -> None:
    await gateway.create_source()
    created = await gateway.create_integration()
    url = f"/v1/admin/integrations/{created['id']}/dead-letters"
    await gateway.wired.queue.dead_letter_new(
        [_event(created["id"], f"evt_{n}") for n in range(3)], "rejected", None, time.time()
    )
    body = await (await gateway.admin.get(url, params={"limit": "2", "offset": "1"})).json()
    assert [d["event_id"] for d in body["dead_letters"]] == ["evt_1", "evt_2"]
    assert (body["limit"], body["offset"]) == (2, 1)
    for params, field in (({"limit": "0"}, "limit"), ({"offset": "x"}, "offset")):
        assert (await _error(await gateway.admin.get(url, params=params), 422))["field"] == field


async def test_oversized_body_is_a_json_413(gateway: Gateway) -> None:
    resp = await gateway.admin.post(
        "/v1/admin/sources",
        data=io.BytesIO(b" " * (2 * 1024 * 1024)),
        headers={"Content-Type": "application/json"},
    )
    assert (await _error(resp, 413))["code"] == "payload_too_large"


# ------------------------------------------------------------------------ a pause explained


async def test_a_bad_token_pause_says_why_where_to_fix_it_and_counts_the_failed_request(
    gateway: Gateway, tiktok: TikTokDouble
) -> None:
    await gateway.create_source()
    created = await gateway.create_integration()
    tiktok.play(Answer(code=40001, message="No permission to operate pixel code"))
    resp = await gateway.collect.post(
        "/v1/t",
        json={
            "source_id": "src_test",
            "event": "Product Added",
            "message_id": "evt_tok",
            "context": {"consent": {"advertising": True}},
        },
    )
    assert resp.status == 200
    worker = gateway.wired.worker
    assert worker is not None
    await worker.drain(timeout_s=10)
    await gateway.wired.ledger.flush()
    got = await (await gateway.admin.get(f"/v1/admin/integrations/{created['id']}")).json()
    status = got["status"]
    assert status["state"] == "paused"
    hint = status["pause_hint"]
    assert "TikTok rejected the access token" in hint["message"]
    assert "paste a new one" in hint["message"]
    assert hint["field"] == "config.access_token"
    assert hint["resume_expected_to_fail"] is True
    assert hint["failed_requests"] == 1

    # An admin's own pause needs no explanation.
    await gateway.admin.post(f"/v1/admin/integrations/{created['id']}/resume")
    await gateway.admin.post(f"/v1/admin/integrations/{created['id']}/pause")
    got = await (await gateway.admin.get(f"/v1/admin/integrations/{created['id']}")).json()
    assert got["status"]["pause_hint"] is None


# ------------------------------------------------------------------------------- public URL


async def test_the_snippets_address_is_the_public_url_setting_else_the_requests_host(
    gateway: Gateway, make_gateway: Any
) -> None:
    got = await (await gateway.admin.get("/v1/admin/public-url")).json()
    assert got["configured"] is False
    assert got["public_url"].startswith("http://")
    resp = await gateway.admin.get("/v1/admin/public-url", headers={"Host": "gw.internal.example"})
    assert (await resp.json())["public_url"] == "http://gw.internal.example"
    async with make_gateway(GATEWAY_PUBLIC_URL="https://collect.shop.example/") as other:
        got = await (await other.admin.get("/v1/admin/public-url")).json()
    assert got == {"public_url": "https://collect.shop.example", "configured": True}
