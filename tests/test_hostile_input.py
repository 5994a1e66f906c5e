"""Hostile input on the public port and the admin port: each test performs one attack.

Cookie and header injection through hit values, header bytes that are not UTF-8, bodies whose
Content-Encoding lies, gzip bombs, email and phone numbers in page URLs, and the admin inputs
that used to answer 500.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import sqlite3
import sys
import zlib
from collections.abc import Callable
from typing import Any

import brotli
import pytest

from tests.conftest import ADMIN_TOKEN, Gateway
from tests.test_collect import GRANTED, events_of, hit, queue_depth, set_cookies, setup
from tests.tiktok_double import TikTokDouble

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

# -- values that reach a cookie or a header ----------------------------------------------------


@pytest.mark.parametrize(
    "anonymous_id",
    [
        pytest.param("x; Domain=example.com; SameSite=None; Max-Age=999999999", id="attributes"),
        pytest.param("x\r\nSet-Cookie: admin=1", id="crlf"),
        pytest.param("x\nLocation: https://evil.example", id="lf"),
        pytest.param('x" onload="', id="quote"),
        pytest.param("caf\u00e9", id="non-ascii"),
        pytest.param("a b", id="space"),
        pytest.param("x,y", id="comma"),
    ],
)
async def test_hostile_anonymous_id_is_refused_before_anything_is_stored(
    gateway: Gateway, anonymous_id: str
) -> None:
    await setup(gateway)
    for path, body in (
        ("/v1/p", hit(anonymous_id=anonymous_id)),
        ("/v1/batch", {"batch": [hit(type="page", anonymous_id=anonymous_id)]}),
    ):
        resp = await gateway.collect.post(path, json=body)
        assert resp.status == 400, await resp.text()
        error = (await resp.json())["error"]
        assert error["code"] == "invalid_field"
        assert "anonymous_id" in error["message"]
        assert set_cookies(resp) == {}
        assert "Set-Cookie" not in resp.headers
    assert await queue_depth(gateway) == 0


async def test_a_cookie_safe_anonymous_id_still_becomes_the_cookie(
    gateway: Gateway, tiktok: TikTokDouble
) -> None:
    await setup(gateway)
    resp = await gateway.collect.post("/v1/p", json=hit(anonymous_id="anon.42:segment-Z"))
    assert resp.status == 200
    assert set_cookies(resp)["_dfid"].value == "anon.42:segment-Z"
    await events_of(tiktok, 1)


# -- header bytes that are not UTF-8 -----------------------------------------------------------


async def _raw_post(
    gw: Gateway, path: str, head: list[bytes], body: bytes, port: str = "collect"
) -> tuple[int, bytes]:
    """POST over a bare socket, so header bytes go out exactly as given (no client encodes)."""
    server = (gw.collect if port == "collect" else gw.admin).server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        lines = [
            f"POST {path} HTTP/1.1".encode(),
            f"Host: {server.host}:{server.port}".encode(),
            b"Content-Type: application/json",
            f"Content-Length: {len(body)}".encode(),
            b"Connection: close",
            *head,
        ]
        writer.write(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        await writer.drain()
        response = await reader.read()
    finally:
        writer.close()
    status_line, _, rest = response.partition(b"\r\n")
    return int(status_line.split()[1]), rest


async def test_latin1_user_agent_is_accepted_with_replacement_characters(
    gateway: Gateway, tiktok: TikTokDouble
) -> None:
    await setup(gateway)
    agent = "Mozilla/5.0 (Caf\u00e9; r\u00e9sum\u00e9)"
    status, answer = await _raw_post(
        gateway,
        "/v1/p",
        [b"User-Agent: " + agent.encode("latin-1")],
        json.dumps(hit()).encode(),
    )
    assert status == 200, answer
    [event] = await events_of(tiktok, 1)
    assert event["user"]["user_agent"] == "Mozilla/5.0 (Caf\ufffd; r\ufffdsum\ufffd)"


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(b"Origin: https://shop.\xe9xample", id="origin"),
        pytest.param(b"Cookie: _dfid=caf\xe9; _ttp=\xff\xfe; _dfuser=\xe9\xe9", id="cookie"),
        pytest.param(b"Referer: https://shop.example/\xe9", id="referer"),
        pytest.param(b"Accept-Language: fr-\xe9", id="accept-language"),
    ],
)
async def test_latin1_bytes_in_other_headers_never_crash_a_hit(
    gateway: Gateway, tiktok: TikTokDouble, header: bytes
) -> None:
    await setup(gateway)
    status, answer = await _raw_post(gateway, "/v1/p", [header], json.dumps(hit()).encode())
    assert status == 200, answer
    await events_of(tiktok, 1)


async def test_latin1_authorization_is_a_401_not_a_crash(gateway: Gateway) -> None:
    await setup(gateway)
    status, answer = await _raw_post(
        gateway, "/v1/p", [b"Authorization: Bearer cl\xe9"], json.dumps(hit()).encode()
    )
    assert status == 401, answer
    assert b'"unauthorized"' in answer
    assert await queue_depth(gateway) == 0


async def test_latin1_admin_token_is_a_401_not_a_crash(gateway: Gateway) -> None:
    status, answer = await _raw_post(
        gateway, "/v1/admin/sources", [b"Authorization: Bearer t\xe9st"], b"{}", port="admin"
    )
    assert status == 401, answer
    assert b'"unauthorized"' in answer


# -- Content-Encoding --------------------------------------------------------------------------


async def _post_encoded(gw: Gateway, body: bytes, encoding: str) -> Any:
    return await gw.collect.post(
        "/v1/p",
        data=body,
        headers={"Content-Type": "application/json", "Content-Encoding": encoding},
    )


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "zstd"])
async def test_a_body_that_is_not_what_its_encoding_says_is_a_400(
    gateway: Gateway, caplog: pytest.LogCaptureFixture, encoding: str
) -> None:
    await setup(gateway)
    resp = await _post_encoded(gateway, json.dumps(hit()).encode(), encoding)
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "bad_encoding"
    assert await queue_depth(gateway) == 0
    assert "Traceback" not in caplog.text
    assert not [r for r in caplog.records if r.exc_info]


async def test_a_truncated_gzip_body_is_a_400(gateway: Gateway) -> None:
    await setup(gateway)
    packed = gzip.compress(json.dumps(hit()).encode())
    resp = await _post_encoded(gateway, packed[: len(packed) // 2], "gzip")
    assert resp.status == 400
    # zlib reads a cut stream as a shorter one: what arrives is the start of the JSON.
    assert (await resp.json())["error"]["code"] in ("bad_encoding", "malformed_json")
    assert await queue_depth(gateway) == 0


COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress,
    "deflate": zlib.compress,
    "br": brotli.compress,
    "zstd": zstd.compress,
}


@pytest.mark.parametrize("encoding", sorted(COMPRESSORS))
async def test_compressed_bodies_are_accepted(
    gateway: Gateway, tiktok: TikTokDouble, encoding: str
) -> None:
    await setup(gateway)
    resp = await _post_encoded(gateway, COMPRESSORS[encoding](json.dumps(hit()).encode()), encoding)
    assert resp.status == 200, await resp.text()
    await events_of(tiktok, 1)


@pytest.mark.parametrize("encoding", ["xyz", "compress", "gzip, gzip", "x-gzip"])
async def test_an_unknown_content_encoding_is_a_415(gateway: Gateway, encoding: str) -> None:
    await setup(gateway)
    resp = await _post_encoded(gateway, json.dumps(hit()).encode(), encoding)
    assert resp.status == 415
    assert (await resp.json())["error"]["code"] == "unsupported_encoding"
    assert await queue_depth(gateway) == 0


@pytest.mark.parametrize("encoding", sorted(COMPRESSORS))
async def test_a_compression_bomb_hits_the_body_size_limit(gateway: Gateway, encoding: str) -> None:
    await setup(gateway)
    # 64 MB of spaces inside a valid hit compress to at most about 64 KB.
    bomb = COMPRESSORS[encoding](b'{"source_id": "src_test",' + b" " * (64 << 20) + b"}")
    assert len(bomb) < gateway.wired.settings.max_body_bytes
    resp = await _post_encoded(gateway, bomb, encoding)
    assert resp.status == 413
    assert (await resp.json())["error"]["code"] == "payload_too_large"
    assert await queue_depth(gateway) == 0


# -- email and phone numbers in page URLs ------------------------------------------------------

EMAIL = "Jane.Doe+shop@Example.org"
PHONE = "+1 (415) 555-0123"


def _stored_bytes(gw: Gateway) -> list[tuple[str, bytes]]:
    """Every file of the data directory, and the SQLite rows read through SQLite itself."""
    found = []
    for path in gw.data_dir.rglob("*"):
        if not path.is_file():
            continue
        found.append((path.name, path.read_bytes()))
        if path.suffix == ".db":
            with sqlite3.connect(path) as db:
                for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'"):
                    rows = db.execute(f'SELECT * FROM "{table}"').fetchall()
                    found.append((f"{path.name}:{table}", repr(rows).encode()))
    return found


async def test_email_and_phone_in_page_urls_never_reach_disk_logs_or_tiktok(
    gateway: Gateway, tiktok: TikTokDouble, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    await setup(gateway)
    from urllib.parse import quote

    url = (
        "https://shop.example/thanks?utm_source=tt&email="
        + quote(EMAIL)
        + "&ttclid=E.C.P.click1&contact="
        + quote(PHONE)
        + "&mobile=4155550123&ref="
        + quote("jane@example.com")
        + "#done"
    )
    referrer = "https://shop.example/signup?e-mail=" + quote(EMAIL) + "&step=2"
    page = {"url": url, "referrer": referrer, "title": "Thanks"}
    resp = await gateway.collect.post(
        "/v1/t",
        json=hit(event="Signed Up", message_id="m-pii", context={"consent": GRANTED, "page": page}),
    )
    assert resp.status == 200
    # ttclid is not PII, and the click is still read from the URL.
    assert set_cookies(resp)["ttclid"].value == "E.C.P.click1"
    [event] = await events_of(tiktok, 1)
    assert event["user"]["ttclid"] == "E.C.P.click1"
    assert event["page"] == {
        "url": "https://shop.example/thanks?utm_source=tt&email=REDACTED"
        "&ttclid=E.C.P.click1&contact=REDACTED&mobile=REDACTED&ref=REDACTED#done",
        "referrer": "https://shop.example/signup?e-mail=REDACTED&step=2",
    }
    await gateway.wired.ledger.flush()
    needles = [
        EMAIL,
        quote(EMAIL),
        EMAIL.lower(),
        "jane@example.com",
        "555-0123",
        quote(PHONE),
        "4155550123",
    ]
    raw = "".join(r.raw.decode() for r in tiktok.requests)
    for needle in needles:
        assert needle not in raw, f"{needle!r} sent to TikTok"
        assert needle not in caplog.text, f"{needle!r} logged"
        for name, content in _stored_bytes(gateway):
            assert needle.encode() not in content, f"{needle!r} stored in {name}"
    # The debugger shows the redacted URL too.
    records = (await (await gateway.admin.get("/v1/admin/events?event_id=m-pii")).json())["records"]
    assert records and EMAIL not in json.dumps(records)


# -- admin inputs that used to be 500s ---------------------------------------------------------


@pytest.mark.parametrize(
    "last_event_id",
    [
        pytest.param("9" * 40, id="huge"),
        pytest.param("9" * 5000, id="too-many-digits"),
        pytest.param("\u00b2", id="superscript-two"),
        pytest.param("\u0661\u0662", id="arabic-indic-digits"),
        pytest.param("-1", id="negative"),
        pytest.param("abc", id="not-a-number"),
    ],
)
async def test_a_malformed_last_event_id_is_a_422(gateway: Gateway, last_event_id: str) -> None:
    resp = await gateway.admin.get(
        "/v1/admin/events/stream", headers={"Last-Event-ID": last_event_id}
    )
    assert resp.status == 422  # the admin API's answer to any value out of its range
    error = (await resp.json())["error"]
    assert error["field"] == "Last-Event-ID"


def _deep(depth: int) -> bytes:
    return b'{"name":' + b"[" * depth + b"]" * depth + b"}"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        pytest.param("POST", "/v1/admin/sources", _deep(100_000), id="deep-source"),
        pytest.param("PATCH", "/v1/admin/sources/src_test", _deep(100_000), id="deep-patch"),
        pytest.param("POST", "/v1/admin/integrations", _deep(100_000), id="deep-integration"),
        pytest.param(
            "POST", "/v1/admin/sources", b'{"name": ' + b"9" * 5000 + b"}", id="huge-integer"
        ),
    ],
)
async def test_hostile_json_on_admin_routes_is_a_400(
    gateway: Gateway, method: str, path: str, body: bytes
) -> None:
    await gateway.create_source()
    resp = await gateway.admin.request(
        method,
        path,
        data=body,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert resp.status == 400, await resp.text()
    assert (await resp.json())["error"]["code"] == "invalid_json"
