"""The OpenAPI document is kept true: real answers to real calls validate against it.

Every operation the admin app routes is documented, every documented operation is exercised,
and each answer's body is checked against the schema for its path, method and status.
"""

from __future__ import annotations

import json
import time
from typing import Any

import aiohttp
import pytest
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]  # no stubs installed
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from gateway.core.models import NewEvent
from tests.conftest import Gateway

DOC_URI = "urn:gateway:openapi"
METHODS = ("get", "post", "patch", "put", "delete")


class Contract:
    """The live document, and a record of which operations the test exercised."""

    def __init__(self, doc: dict[str, Any], gateway: Gateway) -> None:
        self.doc = doc
        self.gateway = gateway
        self.registry: Registry[Any] = Registry().with_resource(
            DOC_URI, DRAFT202012.create_resource(doc)
        )
        self.covered: set[tuple[str, str]] = set()

    def _resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            target: Any = self.doc
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part.replace("~1", "/").replace("~0", "~")]
            node = target
        return node

    def check(
        self, template: str, method: str, status: int, body: Any, content_type: str | None = None
    ) -> None:
        operation = self.doc["paths"][template][method]
        responses = operation["responses"]
        assert str(status) in responses, f"{method.upper()} {template} -> {status} undocumented"
        response = self._resolve(responses[str(status)])
        if "content" not in response:
            assert body is None, f"{method.upper()} {template} -> {status} has a body"
            return
        if content_type is not None:
            assert content_type in response["content"], f"{template} answered {content_type}"
        if "application/json" not in response["content"]:
            return  # the UI's files, the event stream: their media type is all there is to check
        schema = response["content"]["application/json"]["schema"]
        if "$ref" in schema:
            schema = {"$ref": DOC_URI + schema["$ref"]}
        validator = Draft202012Validator(
            schema, registry=self.registry, format_checker=Draft202012Validator.FORMAT_CHECKER
        )
        errors = sorted(validator.iter_errors(body), key=lambda e: list(e.path))
        assert not errors, f"{method.upper()} {template} -> {status}: " + "; ".join(
            f"{list(e.path)}: {e.message}" for e in errors
        )

    async def call(
        self,
        method: str,
        template: str,
        status: int,
        *,
        path: str | None = None,
        auth: bool = True,
        **kwargs: Any,
    ) -> Any:
        url = path or template
        if auth:
            resp = await self.gateway.admin.request(method.upper(), url, **kwargs)
            text = await resp.text()
        else:
            async with (
                aiohttp.ClientSession() as raw,
                raw.request(method.upper(), self.gateway.admin.make_url(url), **kwargs) as raw_resp,
            ):
                resp = raw_resp
                text = await raw_resp.text()
        assert resp.status == status, f"{method.upper()} {url}: {resp.status} {text}"
        body = None
        if text and resp.content_type == "application/json":
            body = json.loads(text)
        self.check(template, method, status, body, resp.content_type)
        self.covered.add((template, method))
        return body


@pytest.fixture
async def contract(gateway: Gateway) -> Contract:
    resp = await gateway.admin.get("/v1/admin/openapi.json")
    assert resp.status == 200
    assert resp.content_type == "application/json"
    return Contract(await resp.json(), gateway)


def test_document_is_openapi_3_1_with_bearer_security(contract: Contract) -> None:
    doc = contract.doc
    assert doc["openapi"] == "3.1.0"
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": doc["components"]["securitySchemes"]["bearerAuth"]["description"],
    }
    assert doc["security"] == [{"bearerAuth": []}]
    for schema in doc["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)
    for template, item in doc["paths"].items():
        for method in METHODS:
            if method in item:
                operation = item[method]
                assert operation["operationId"]
                if template.startswith("/v1/admin/"):
                    assert "401" in operation["responses"], (template, method)
                    assert "security" not in operation  # the global bearer requirement holds


def test_every_routed_operation_is_documented(contract: Contract) -> None:
    app = contract.gateway.admin.app
    assert app is not None
    routed = {
        (route.resource.canonical, route.method.lower())
        for route in app.router.routes()
        if route.resource is not None and route.method.lower() in METHODS
    }
    documented = {
        (template, method)
        for template, item in contract.doc["paths"].items()
        for method in METHODS
        if method in item
    }
    assert routed == documented


async def test_real_answers_match_the_document(contract: Contract) -> None:
    c = contract
    gw = c.gateway

    # health and docs
    await c.call("get", "/healthz", 200, auth=False)
    await c.call("get", "/readyz", 200, auth=False)
    resp = await gw.admin.get("/metrics")
    assert resp.status == 200
    c.covered.add(("/metrics", "get"))
    await c.call("get", "/v1/admin/openapi.json", 200)
    await c.call("get", "/v1/admin/destinations", 200)

    # sources
    await c.call("get", "/v1/admin/sources", 401, auth=False)
    await c.call("get", "/v1/admin/sources", 200)
    await c.call(
        "post",
        "/v1/admin/sources",
        201,
        json={
            "id": "src_abc123",
            "name": "Shop",
            "allowed_origins": ["https://shop.example"],
            "default_phone_region": "US",
        },
    )
    generated = await c.call("post", "/v1/admin/sources", 201, json={"name": "Generated"})
    await c.call("post", "/v1/admin/sources", 409, json={"id": "src_abc123", "name": "Again"})
    await c.call("post", "/v1/admin/sources", 422, json={"name": "x", "consent_default": "no"})
    await c.call(
        "post",
        "/v1/admin/sources",
        400,
        data=b"{nope",
        headers={"Content-Type": "application/json"},
    )
    await c.call("get", "/v1/admin/sources", 200)
    src = "/v1/admin/sources/{id}"
    await c.call("get", src, 200, path="/v1/admin/sources/src_abc123")
    await c.call("get", src, 404, path="/v1/admin/sources/src_missing")
    await c.call(
        "patch",
        src,
        200,
        path="/v1/admin/sources/src_abc123",
        json={"cookie_domain": ".shop.example"},
    )
    await c.call("patch", src, 422, path="/v1/admin/sources/src_abc123", json={"colour": 1})
    await c.call("patch", src, 400, path="/v1/admin/sources/src_abc123", data=b"[")
    await c.call("patch", src, 404, path="/v1/admin/sources/src_missing", json={"name": "x"})

    # integrations
    seed = {
        "source_id": "src_abc123",
        "vendor": "tiktok",
        "name": "TikTok Events API",
        "enabled": True,
        "config": {"pixel_code": "CXXXXXXXXXXXXXXXXX", "access_token": "your_access_token"},
        "consent_categories": ["advertising"],
    }
    integration = await c.call("post", "/v1/admin/integrations", 201, json=seed)
    iid = integration["id"]
    await c.call(
        "post", "/v1/admin/integrations", 422, json={**seed, "config": {"access_token": "x"}}
    )
    await c.call("post", "/v1/admin/integrations", 422, json={**seed, "source_id": "src_nope"})
    await c.call("post", "/v1/admin/integrations", 400, data=b"")
    await c.call("get", "/v1/admin/integrations", 200)
    await c.call("get", "/v1/admin/integrations", 200, path="/v1/admin/integrations?source_id=x")
    one = "/v1/admin/integrations/{id}"
    await c.call("get", one, 200, path=f"/v1/admin/integrations/{iid}")
    await c.call("get", one, 404, path="/v1/admin/integrations/int_missing")
    await c.call(
        "patch",
        one,
        200,
        path=f"/v1/admin/integrations/{iid}",
        json={"config": {"test_event_code": "TEST1", "event_mapping": {"A": "B"}}},
    )
    await c.call("patch", one, 422, path=f"/v1/admin/integrations/{iid}", json={"enabled": 1})
    await c.call("patch", one, 400, path=f"/v1/admin/integrations/{iid}", data=b"{")
    await c.call("patch", one, 404, path="/v1/admin/integrations/int_missing", json={})
    for action in ("pause", "resume", "test"):
        template = f"/v1/admin/integrations/{{id}}/{action}"
        code = {"test_event_code": "TEST1"} if action == "test" else None
        await c.call(
            "post", template, 200, path=f"/v1/admin/integrations/{iid}/{action}", json=code
        )
        await c.call("post", template, 404, path=f"/v1/admin/integrations/int_missing/{action}")
        await c.call(
            "post", template, 401, path=f"/v1/admin/integrations/{iid}/{action}", auth=False
        )

    test = "/v1/admin/integrations/{id}/test"
    bad_code = {"test_event_code": 5}
    await c.call("post", test, 422, path=f"/v1/admin/integrations/{iid}/test", json=bad_code)
    await c.call("post", test, 400, path=f"/v1/admin/integrations/{iid}/test", data=b"{")
    unsaved = "/v1/admin/integrations/test"
    form = {"vendor": "tiktok", "source_id": "src_abc123", "config": seed["config"]}
    await c.call("post", unsaved, 200, json={**form, "test_event_code": "TEST1"})
    await c.call("post", unsaved, 200, json={"integration_id": iid, "test_event_code": "T"})
    await c.call("post", unsaved, 422, json=form)
    await c.call("post", unsaved, 404, json={"integration_id": "int_missing"})
    await c.call("post", unsaved, 400, data=b"[")
    await c.call("post", unsaved, 401, json=form, auth=False)
    await c.call("get", "/v1/admin/public-url", 200)
    await c.call("get", "/v1/admin/public-url", 401, auth=False)

    # dead letters
    await c.call(
        "post",
        "/v1/admin/integrations/{id}/pause",
        200,
        path=f"/v1/admin/integrations/{iid}/pause",
    )
    now = int(time.time())
    payload = b'{"event":"PageView","event_time":%d,"event_id":"evt_%d","user":{},"page":{}}'
    await gw.wired.queue.dead_letter_new(
        [
            NewEvent(iid, "evt_1", "PageView", now, payload % (now, 1), {"advertising": True}),
            NewEvent(iid, "evt_2", "PageView", now, payload % (now, 2), None),
            NewEvent(iid, "evt_3", "PageView", now, payload % (now, 3), {"advertising": True}),
        ],
        "rejected",
        "40002: bad event",
        time.time(),
    )
    dl = "/v1/admin/integrations/{id}/dead-letters"
    listing = await c.call("get", dl, 200, path=f"/v1/admin/integrations/{iid}/dead-letters")
    assert len(listing["dead_letters"]) == 3
    await c.call("get", dl, 422, path=f"/v1/admin/integrations/{iid}/dead-letters?limit=-1")
    await c.call("get", dl, 404, path="/v1/admin/integrations/int_missing/dead-letters")
    replay = "/v1/admin/integrations/{id}/dead-letters/replay"
    result = await c.call(
        "post",
        replay,
        200,
        path=f"/v1/admin/integrations/{iid}/dead-letters/replay",
        json={"ids": [listing["dead_letters"][0]["id"], listing["dead_letters"][1]["id"]]},
    )
    assert result["replayed"] == 1 and len(result["skipped"]) == 1
    filtered = await c.call(
        "post",
        replay,
        200,
        path=f"/v1/admin/integrations/{iid}/dead-letters/replay",
        json={"filter": {"reason": "rejected", "since": "2020-01-01T00:00:00Z"}},
    )
    assert filtered["replayed"] == 1  # evt_3; evt_2 has no consent, evt_1 went back above
    await c.call(
        "post", replay, 422, path=f"/v1/admin/integrations/{iid}/dead-letters/replay", json={}
    )
    await c.call(
        "post",
        replay,
        422,
        path=f"/v1/admin/integrations/{iid}/dead-letters/replay",
        json={"filter": {"since": "not a time"}},
    )
    await c.call(
        "post", replay, 400, path=f"/v1/admin/integrations/{iid}/dead-letters/replay", data=b"{"
    )
    await c.call(
        "post",
        replay,
        404,
        path="/v1/admin/integrations/int_missing/dead-letters/replay",
        json={"all": True},
    )
    fix = "/v1/admin/integrations/{id}/dead-letters/{dead_letter_id}/fix"
    at = f"/v1/admin/integrations/{iid}/dead-letters/{listing['dead_letters'][1]['id']}/fix"
    shown = await c.call(
        "post", fix, 200, path=at, json={"preview": True, "changes": {"event": "ViewContent"}}
    )
    assert shown["payload"]["event"] == "ViewContent" and shown["replayed"] is False
    await c.call("post", fix, 409, path=at, json={"changes": {"event": "ViewContent"}})
    await c.call("post", fix, 422, path=at, json={"changes": {"value": "x"}})
    await c.call("post", fix, 400, path=at, data=b"{")
    missing_fix = f"/v1/admin/integrations/{iid}/dead-letters/999999/fix"
    await c.call("post", fix, 404, path=missing_fix, json={"changes": {"value": 1}})
    await c.call("delete", dl, 422, path=f"/v1/admin/integrations/{iid}/dead-letters")
    await c.call("delete", dl, 400, path=f"/v1/admin/integrations/{iid}/dead-letters", data=b"{")
    by_filter = await c.call(
        "delete",
        dl,
        200,
        path=f"/v1/admin/integrations/{iid}/dead-letters?reason=rejected&event_name=Nothing",
    )
    assert by_filter == {"purged": 0}
    purged = await c.call(
        "delete", dl, 200, path=f"/v1/admin/integrations/{iid}/dead-letters", json={"all": True}
    )
    assert purged == {"purged": 1}
    await c.call(
        "delete",
        dl,
        404,
        path="/v1/admin/integrations/int_missing/dead-letters",
        json={"all": True},
    )

    # the event debugger: a hit leaves records in the ledger when the integration reads it,
    # which a paused one does not (the dead letters above were handled while it was paused)
    await c.call(
        "post",
        "/v1/admin/integrations/{id}/resume",
        200,
        path=f"/v1/admin/integrations/{iid}/resume",
    )
    resp = await gw.collect.post(
        "/v1/t",
        json={
            "source_id": "src_abc123",
            "event": "Order Completed",
            "message_id": "ORD-42",
            "traits": {"email": "jane@example.com"},
            "properties": {"total": 5, "currency": "USD"},
            "context": {"consent": {"advertising": True}, "page": {"url": "https://shop.example/"}},
        },
    )
    assert resp.status == 200
    await gw.delivered()
    events = "/v1/admin/events"
    listing = await c.call("get", events, 200)
    assert listing["records"][0]["event_id"] == "ORD-42"
    await c.call(
        "get",
        events,
        200,
        path=f"{events}?source_id=src_abc123&integration_id={iid}&event=CompletePayment&limit=5",
    )
    await c.call("get", events, 200, path=f"{events}?after=0&event_id=ORD-42")
    await c.call("get", events, 422, path=f"{events}?limit=0")
    await c.call("get", events, 401, auth=False)
    one_event = "/v1/admin/events/{event_id}"
    found = await c.call("get", one_event, 200, path=f"{events}/ORD-42")
    assert found["records"][0]["tiktok_event"] == "CompletePayment"
    await c.call("get", one_event, 404, path=f"{events}/nope")
    await c.call("get", one_event, 401, path=f"{events}/ORD-42", auth=False)
    stream = "/v1/admin/events/stream"
    await c.call("get", stream, 422, path=f"{stream}?after=x")
    await c.call("get", stream, 401, auth=False)
    resp = await gw.admin.get(f"{stream}?after=0&event_id=ORD-42")
    assert resp.status == 200
    assert resp.content_type == "text/event-stream"
    seen: list[str] = []
    async for line in resp.content:
        seen.append(line.decode().rstrip("\n"))
        if seen[-1].startswith("data: ") and any(x == "event: record" for x in seen):
            break
    resp.close()
    assert seen[0] == "event: ready"
    record = json.loads(seen[-1].removeprefix("data: "))
    c.check("/v1/admin/events/{event_id}", "get", 200, {"event_id": "ORD-42", "records": [record]})
    c.covered.add((stream, "get"))
    search = "/v1/admin/events/search"
    found = await c.call("post", search, 200, json={"q": "ORD-42", "hours": 1})
    assert [r["event_id"] for r in found["records"]] == ["ORD-42"]
    await c.call("post", search, 422, json={"hours": 0})
    await c.call("post", search, 400, data=b"{")
    await c.call("post", search, 401, json={}, auth=False)
    timeline = "/v1/admin/integrations/{id}/timeline"
    day = await c.call("get", timeline, 200, path=f"/v1/admin/integrations/{iid}/timeline?hours=24")
    assert len(day["points"]) == 144
    await c.call("get", timeline, 422, path=f"/v1/admin/integrations/{iid}/timeline?hours=3")
    await c.call("get", timeline, 404, path="/v1/admin/integrations/int_missing/timeline")
    await c.call("get", timeline, 401, path=f"/v1/admin/integrations/{iid}/timeline", auth=False)
    reprocess = "/v1/admin/integrations/{id}/reprocess"
    window = {"since": "2020-01-01T00:00:00Z", "until": "2099-01-01T00:00:00Z"}
    counted = await c.call(
        "post", reprocess, 200, path=f"/v1/admin/integrations/{iid}/reprocess", json=window
    )
    assert counted["dry_run"] is True and counted["counts"]["hits"] >= 1
    reprocess_path = f"/v1/admin/integrations/{iid}/reprocess"
    await c.call("post", reprocess, 422, path=reprocess_path, json={"since": "2020-01-01"})
    await c.call("post", reprocess, 400, path=reprocess_path, data=b"{")
    await c.call(
        "post", reprocess, 404, path="/v1/admin/integrations/int_missing/reprocess", json=window
    )
    await c.call("post", reprocess, 401, path=reprocess_path, json=window, auth=False)
    refused = await c.call("get", "/v1/admin/refused", 200, path="/v1/admin/refused?limit=5")
    assert refused["capacity"] == 1000
    await c.call("get", "/v1/admin/refused", 422, path="/v1/admin/refused?limit=0")
    await c.call("get", "/v1/admin/refused", 401, auth=False)
    quality = "/v1/admin/integrations/{id}/match-quality"
    answer = await c.call("get", quality, 200, path=f"/v1/admin/integrations/{iid}/match-quality")
    assert answer["events"] == 1 and answer["signals"]["email"] == {"events": 1, "share": 1.0}
    await c.call("get", quality, 422, path=f"/v1/admin/integrations/{iid}/match-quality?hours=0")
    await c.call("get", quality, 404, path="/v1/admin/integrations/int_missing/match-quality")
    await c.call(
        "get", quality, 401, path=f"/v1/admin/integrations/{iid}/match-quality", auth=False
    )

    # the UI's files need no token
    await c.call("get", "/", 200, auth=False)
    await c.call("get", "/ui/{name}", 200, path="/ui/app.js", auth=False)
    await c.call("get", "/ui/{name}", 404, path="/ui/missing.js", auth=False)

    # deletes
    await c.call("delete", one, 204, path=f"/v1/admin/integrations/{iid}")
    await c.call("delete", one, 404, path=f"/v1/admin/integrations/{iid}")
    await c.call("delete", src, 204, path=f"/v1/admin/sources/{generated['id']}")
    await c.call("delete", src, 404, path=f"/v1/admin/sources/{generated['id']}")
    await c.call("delete", src, 401, path="/v1/admin/sources/src_abc123", auth=False)

    documented = {
        (template, method)
        for template, item in c.doc["paths"].items()
        for method in METHODS
        if method in item
    }
    assert documented - c.covered == set()
