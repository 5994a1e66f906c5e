"""Property-based fuzzing of both ports against a real in-process gateway.

Collection: every endpoint gets generated hits (valid-ish and junk), batches, random JSON and
bytes, under generated headers (content types, encodings that tell the truth or lie, cookies,
Authorization, User-Agent and Origin with arbitrary bytes), sent over a bare socket so nothing
cleans the bytes up on the way. Admin: schemathesis generates requests (valid and invalid) for
every operation of the OpenAPI document (as `gateway/admin/openapi.py` builds it), authenticated
or not, on real and made-up ids.

Properties: never a 5xx; nothing logged at ERROR or with a traceback; a refused request stores
nothing (queued events and dead letters unchanged, configuration unchanged); /healthz answers
200 at the end.

Hypothesis runs in a worker thread and hands each request to the server's event loop. The
number of cases is `GATEWAY_FUZZ_EXAMPLES` per port (default 2000, about 10 s each on a
small machine); set it to 50000 for a long run.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import logging
import os
import sys
import zlib
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import brotli
import pytest
import schemathesis
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.core import NotSet

from gateway.admin.openapi import document
from tests.conftest import ADMIN_TOKEN, Gateway, MakeGateway

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

EXAMPLES = int(os.environ.get("GATEWAY_FUZZ_EXAMPLES", "2000"))
SOURCE = "src_fuzz"
T = TypeVar("T")

FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,  # no .hypothesis directory in the work tree
    suppress_health_check=list(HealthCheck),
    print_blob=True,  # a failure prints the seed that replays it
)


# -- plumbing: a log watcher, and hypothesis in a thread driving the server's loop -------------


class LogWatch(logging.Handler):
    """Every record at ERROR or above, or carrying a traceback, while it is attached.

    No exemption: a request aiohttp's own parser refuses is a client fault like any other, which
    the gateway's connection handler counts and logs without a traceback.
    """

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.bad: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR or record.exc_info:
            self.bad.append(f"{record.name}: {record.getMessage()}")


@pytest.fixture
def log_watch() -> Iterator[LogWatch]:
    watch = LogWatch()
    root = logging.getLogger()
    root.addHandler(watch)
    try:
        yield watch
    finally:
        root.removeHandler(watch)


def on_loop(loop: asyncio.AbstractEventLoop) -> Callable[[Awaitable[T]], T]:
    """Run a coroutine on the server's loop from hypothesis's thread and wait for its result."""

    def run(coroutine: Awaitable[T]) -> T:
        async def wrapped() -> T:
            return await coroutine

        return asyncio.run_coroutine_threadsafe(wrapped(), loop).result(timeout=60)

    return run


# -- collection: strategies --------------------------------------------------------------------

HOSTILE_TEXT = [
    "",
    " ",
    "x; Domain=evil.example; Max-Age=1",
    "x\r\nSet-Cookie: a=1",
    "\u00e9\u00e8",
    "\U0001f600",
    "\x00",
    "a" * 5000,
    "../../etc/passwd",
    "jane@example.org",
    "+1 (415) 555-0123",
    "https://shop.example/p?email=jane%40example.org&ttclid=E.C.P.x#f",
]


def mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any], odds: int = 9) -> Any:
    """`good` about `odds` times in `odds + 1`, else `bad`: enough hits get through the
    early checks to exercise what comes after them."""
    return st.integers(0, odds).flatmap(lambda n: bad if n == 0 else good)


text = mostly(st.text(max_size=30), st.sampled_from(HOSTILE_TEXT), 3)
json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    text,
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=12,
)


def maybe(strategy: st.SearchStrategy[Any]) -> Any:
    """Mostly the field's own kind of value, now and then any JSON at all."""
    return mostly(strategy, json_value, 40)


url = st.one_of(
    st.sampled_from(
        [
            "https://shop.example/",
            "https://shop.example/p?ttclid=E.C.P.abc&utm_source=tt",
            "https://shop.example/thanks?email=a%40b.example&phone=%2B14155550123#x",
            "https://shop.example/u/jane@example.org?x=%ZZ&&=&a==b#?email=q",
            "javascript:alert(1)",
            "//no-scheme?mobile=5551234567",
        ]
    ),
    st.builds(lambda q: "https://shop.example/?" + q, st.text(max_size=60)),
    text,
)
numbers = mostly(
    st.integers(0, 10_000) | st.floats(0, 1e6),
    st.integers(-(10**20), 10**20) | st.floats(allow_nan=True) | text,
    5,
)
product = st.fixed_dictionaries(
    {},
    optional={
        name: maybe(kind)
        for name, kind in {
            "product_id": text,
            "sku": text,
            "name": text,
            "category": text,
            "brand": text,
            "price": numbers,
            "quantity": mostly(st.integers(0, 100), numbers, 5),
        }.items()
    },
)
properties = st.fixed_dictionaries(
    {},
    optional={
        "products": maybe(st.lists(product, max_size=3)),
        "total": maybe(numbers),
        "value": maybe(numbers),
        "revenue": maybe(numbers),
        "currency": maybe(st.sampled_from(["USD", "EUR", "usd", "XXX", ""])),
        "order_id": maybe(text),
        "query": maybe(text),
        "price": maybe(numbers),
    },
)
traits = st.fixed_dictionaries(
    {},
    optional={
        "email": maybe(mostly(st.sampled_from(["Jane@Example.org ", "a@b.example"]), text, 2)),
        "phone": maybe(mostly(st.sampled_from(["+1 (415) 555-0123", "4155550123"]), text, 2)),
        "first_name": text,
    },
)
context = st.fixed_dictionaries(
    {},
    optional={
        "page": maybe(
            st.fixed_dictionaries({}, optional={"url": url, "referrer": url, "title": text})
        ),
        "consent": maybe(
            st.dictionaries(st.sampled_from(["advertising", "analytics"]), st.booleans())
        ),
        "locale": maybe(mostly(st.sampled_from(["en-US", "fr"]), text, 3)),
        "traits": maybe(traits),
        "ip": maybe(st.sampled_from(["203.0.113.9", "::1", "999.1.1.1", "x"])),
        "user_agent": maybe(text),
        "limited_data_use": maybe(st.booleans()),
    },
)
hit = st.fixed_dictionaries(
    {
        "source_id": mostly(st.just(SOURCE), st.sampled_from(["src_nope", ""]) | text, 15),
        "event": maybe(
            mostly(st.sampled_from(["Order Completed", "Product Viewed", "Signed Up"]), text)
        ),
        "type": mostly(st.sampled_from(["page", "track", "identify"]), text | st.just("alias"), 20),
    },
    optional={
        "properties": maybe(properties),
        "traits": maybe(traits),
        "user_id": maybe(mostly(st.sampled_from(["u-1", "u-2"]), text, 3)),
        "anonymous_id": maybe(
            mostly(
                st.sampled_from(["anon-1", "a.b:c"]),
                st.sampled_from(["x; Domain=evil.example", "x\r\nSet-Cookie: a=1", "a b"]) | text,
                3,
            )
        ),
        "message_id": maybe(mostly(st.uuids().map(str), text, 3)),
        "timestamp": maybe(
            st.sampled_from(["2026-01-29T14:30:00Z", "1999-01-01T00:00:00Z", "yesterday"])
            | st.datetimes().map(lambda d: d.isoformat())
        ),
        "context": maybe(context),
    },
)


def _json_bytes(value: Any, ascii_only: bool) -> bytes:
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


def _body(batch: bool) -> Any:
    """Mostly what the endpoint takes (one hit, or a batch of them), else any JSON or bytes."""
    good = st.fixed_dictionaries({"batch": st.lists(hit, min_size=1, max_size=5)}) if batch else hit
    junk = st.one_of(
        hit if batch else st.fixed_dictionaries({"batch": st.lists(hit, max_size=3)}),
        st.fixed_dictionaries({"batch": json_value}),
        json_value,
    )
    as_json = st.builds(_json_bytes, mostly(good, junk, 4), st.booleans())
    raw = st.binary(min_size=1, max_size=300) | st.sampled_from(
        [b"", b"{", b"[" * 5000, b'{"source_id":"src_fuzz"' + b" " * 100]
    )
    return mostly(as_json, raw, 8)


# Any byte a header field value may hold (RFC 9110: visible ASCII, space, tab and obs-text,
# which is where Latin-1 and broken UTF-8 live). Control bytes are malformed HTTP, refused by
# aiohttp's parser before the gateway sees the request.
_FIELD_BYTES = bytes([9, *range(0x20, 0x7F), *range(0x80, 0x100)])
header_bytes = st.binary(max_size=80).map(
    lambda b: bytes(_FIELD_BYTES[c % len(_FIELD_BYTES)] for c in b)
)


@dataclass(frozen=True)
class CollectCase:
    path: str
    body: bytes
    encoding: str
    headers: tuple[tuple[bytes, bytes], ...]


ENCODINGS = [
    *["none"] * 20,
    *["gzip", "deflate", "br", "zstd"],
    *["gzip-lie", "deflate-lie", "br-lie", "zstd-lie"],
    *["xyz", "gzip, br", "identity"],
]


@st.composite
def collect_cases(draw: st.DrawFn, server_key: str) -> CollectCase:
    headers: list[tuple[bytes, bytes]] = []

    def sometimes(name: bytes, values: st.SearchStrategy[bytes], one_in: int = 2) -> None:
        if draw(st.integers(1, one_in)) == 1:
            headers.append((name, draw(values)))

    sometimes(
        b"Content-Type",
        mostly(
            st.sampled_from([b"application/json", b"text/plain;charset=UTF-8"]),
            st.sampled_from([b"application/xml", b"multipart/form-data; boundary=x"])
            | header_bytes,
            12,
        ),
    )
    sometimes(b"User-Agent", st.sampled_from([b"Mozilla/5.0 (Caf\xe9)"]) | header_bytes)
    sometimes(b"Origin", st.sampled_from([b"https://shop.example", b"null"]) | header_bytes)
    sometimes(b"Referer", header_bytes)
    sometimes(b"X-Forwarded-For", header_bytes)
    sometimes(b"Accept-Language", header_bytes)
    cookie_pair = st.tuples(
        st.sampled_from([b"_ttp", b"_dfid", b"ttclid", b"_dfuser", b"x"]), header_bytes
    ).map(lambda p: p[0] + b"=" + p[1])
    sometimes(b"Cookie", st.lists(cookie_pair, max_size=4).map(b"; ".join))
    basic = base64.b64encode(f"{SOURCE}:".encode())
    sometimes(
        b"Authorization",
        st.sampled_from([b"Bearer " + server_key.encode(), b"Bearer wrong", b"Basic " + basic])
        | header_bytes,
        one_in=5,
    )
    path = draw(st.sampled_from(["/v1/t", "/v1/p", "/v1/i", "/v1/batch"]))
    return CollectCase(
        path=path,
        body=draw(_body(path == "/v1/batch")),
        encoding=draw(st.sampled_from(ENCODINGS)),
        headers=tuple(headers),
    )


def _encoded(case: CollectCase) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    encode: dict[str, Callable[[bytes], bytes]] = {
        "gzip": gzip.compress,
        "deflate": zlib.compress,
        "br": brotli.compress,
        "zstd": zstd.compress,
    }
    name = case.encoding.removesuffix("-lie")
    if case.encoding == "none":
        return case.body, []
    lies = case.encoding.endswith("-lie") or name not in encode
    payload = case.body if lies else encode[name](case.body)
    return payload, [(b"Content-Encoding", name.encode())]


async def _send_raw(gw: Gateway, case: CollectCase) -> tuple[int, bytes]:
    payload, extra = _encoded(case)
    server = gw.collect.server
    head = [
        f"POST {case.path} HTTP/1.1".encode(),
        f"Host: {server.host}:{server.port}".encode(),
        f"Content-Length: {len(payload)}".encode(),
        b"Connection: close",
        *(name + b": " + value for name, value in (*case.headers, *extra)),
    ]
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(b"\r\n".join(head) + b"\r\n\r\n" + payload)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 30)
    finally:
        writer.close()
    # No answer at all is what a failure after the commit looked like: the client retries.
    assert answer.startswith(b"HTTP/1."), f"no answer to {case}"
    return int(answer.split(b" ", 2)[1]), answer


async def _stored(gw: Gateway, integration_id: str) -> tuple[int, int]:
    """Events queued and dead letters: what a refused request must leave as it was."""
    stats = await gw.wired.queue.stats(integration_id)
    return await gw.wired.queue.depth(), stats.dead_lettered


async def _prepared(gw: Gateway) -> tuple[str, str]:
    """A source granting consent by default and a paused integration: whatever is accepted
    stays in the queue, so counts only ever grow, and only on a 2xx."""
    source = await gw.create_source(id=SOURCE, consent_default="grant", default_phone_region="US")
    integration = await gw.create_integration(source_id=SOURCE, consent_categories=[])
    resp = await gw.admin.post(f"/v1/admin/integrations/{integration['id']}/pause")
    assert resp.status == 200
    return str(source["server_key"]), str(integration["id"])


# The suite's 120 s per test is for the default run; a long run gets time in proportion.
long_run = pytest.mark.timeout(max(120, EXAMPLES // 10))


@long_run
async def test_fuzz_collection_endpoints(make_gateway: MakeGateway, log_watch: LogWatch) -> None:
    async with make_gateway() as gw:
        server_key, integration_id = await _prepared(gw)
        run = on_loop(asyncio.get_running_loop())
        seen: dict[int, int] = {}

        @FUZZ_SETTINGS
        @given(collect_cases(server_key))
        def property_holds(case: CollectCase) -> None:
            log_watch.bad.clear()
            before = run(_stored(gw, integration_id))
            status, answer = run(_send_raw(gw, case))
            seen[status] = seen.get(status, 0) + 1
            assert status < 500, answer[:2000]
            if status >= 400:
                assert run(_stored(gw, integration_id)) == before, answer[:500]
            assert log_watch.bad == [], log_watch.bad

        await asyncio.to_thread(property_holds)
        resp = await gw.collect.get("/healthz")
        assert resp.status == 200
        assert 200 in seen and len(seen) > 3, seen  # the generator reaches both sides
        print(f"collection fuzz: {sum(seen.values())} requests, statuses {sorted(seen.items())}")


# -- admin: schemathesis over the OpenAPI document ---------------------------------------------

MUTATING = frozenset({"POST", "PATCH", "PUT", "DELETE"})


OPENAPI = document()  # as served: the static part and the registry's destinations
# Values a generator that follows the schema rarely makes, and which broke parsers before:
# digits int() reads but a regex of [0-9] does not, numbers past 64 bits or Python's digit
# limit, and bodies nested past the recursion limit or not UTF-8.
HOSTILE_SCALARS = [
    "\u00b2",
    "\u0661\u0662",
    "9" * 40,
    "9" * 5000,
    "-1",
    "1e3",
    "0x10",
    " 7 ",
    "1_000",
    "NaN",
    "\u00e9",
    "%00",
]
HOSTILE_BODIES = [
    b"[" * 100_000 + b"]" * 100_000,
    b'{"name": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    b'{"name": ' + b"9" * 5000 + b"}",
    b'{"name": 1e999, "ids": [1e999]}',
    b"\xff\xfe{}",
    b"NaN",
    b"",
    b"null",
    b"[]",
]


def _parameters(method: str, path: str, where: str) -> list[str]:
    operation = OPENAPI["paths"].get(path, {})
    declared = [*operation.get("parameters", []), *operation.get(method, {}).get("parameters", [])]
    return [p["name"] for p in declared if p.get("in") == where]


@dataclass(frozen=True)
class AdminCase:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes | None


def _admin_case(case: Any, real_id: str | None, authorized: bool, twist: int) -> AdminCase:
    """The request schemathesis generated, authorized or not, on a real id or not, and now and
    then with one hostile value in place of a generated one (`twist` picks which)."""
    path_parameters = dict(case.path_parameters or {})
    if real_id is not None and "id" in path_parameters:
        path_parameters["id"] = real_id
    path = case.path
    for name, value in path_parameters.items():
        path = path.replace("{" + name + "}", str(value))
    headers = {str(k): str(v) for k, v in (case.headers or {}).items()}
    if authorized:
        headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
    raw: bytes | None = None
    if not isinstance(case.body, NotSet):
        raw = case.body if isinstance(case.body, bytes) else json.dumps(case.body).encode()
        headers.setdefault("Content-Type", "application/json")
    query = {str(k): str(v) for k, v in (case.query or {}).items()}
    method = case.method.upper()
    hostile = HOSTILE_SCALARS[twist % len(HOSTILE_SCALARS)]
    queries = _parameters(case.method.lower(), case.path, "query")
    header_names = _parameters(case.method.lower(), case.path, "header")
    if twist % 4 == 1 and queries:
        query[queries[twist % len(queries)]] = hostile
    elif twist % 4 == 2 and header_names:
        headers[header_names[twist % len(header_names)]] = hostile
    elif twist % 4 == 3 and method in MUTATING:
        raw = HOSTILE_BODIES[twist % len(HOSTILE_BODIES)]
        headers["Content-Type"] = "application/json"
    return AdminCase(method, path, query, headers, raw)


async def _send_admin(gw: Gateway, case: AdminCase) -> tuple[int, str]:
    session = gw.admin.session  # no default Authorization: each case sets its own
    url = gw.admin.make_url(case.path)
    async with session.request(
        case.method, url, params=case.query, headers=case.headers, data=case.body
    ) as resp:
        if resp.content_type == "text/event-stream":
            return resp.status, ""  # a live stream never ends: its answer is the status
        return resp.status, (await resp.text())[:2000]


async def _configuration(gw: Gateway) -> tuple[Any, ...]:
    sources = await gw.wired.store.list_sources()
    integrations = await gw.wired.store.list_integrations()
    return (sorted(repr(s) for s in sources), sorted(repr(i) for i in integrations))


@long_run
async def test_fuzz_admin_api(make_gateway: MakeGateway, log_watch: LogWatch) -> None:
    async with make_gateway() as gw:
        _, integration_id = await _prepared(gw)
        run = on_loop(asyncio.get_running_loop())
        schema = schemathesis.openapi.from_dict(OPENAPI)
        cases = st.one_of(
            schema.as_strategy(generation_mode=GenerationMode.POSITIVE),
            schema.as_strategy(generation_mode=GenerationMode.NEGATIVE),
        )
        seen: dict[int, int] = {}

        @FUZZ_SETTINGS
        @given(
            cases,
            st.sampled_from([None, None, SOURCE, integration_id]),
            st.sampled_from([True, True, True, False]),
            mostly(st.just(0), st.integers(1, 10_000), 2),
        )
        def property_holds(case: Any, real_id: str | None, authorized: bool, twist: int) -> None:
            log_watch.bad.clear()
            try:
                admin_case = _admin_case(case, real_id, authorized, twist)
                before = run(_configuration(gw)) if admin_case.method in MUTATING else None
                status, answer = run(_send_admin(gw, admin_case))
            except (ValueError, UnicodeEncodeError):
                assume(False)  # the client itself cannot send it (e.g. a header out of Latin-1)
                raise
            seen[status] = seen.get(status, 0) + 1
            assert status < 500, (admin_case, answer)
            if before is not None and status >= 400:
                assert run(_configuration(gw)) == before, admin_case
            assert log_watch.bad == [], log_watch.bad
            if admin_case.method == "DELETE" and status < 300 and real_id is not None:
                run(_recreate(gw))

        await asyncio.to_thread(property_holds)
        resp = await gw.admin.get("/healthz")
        assert resp.status == 200
        assert 200 in seen and len(seen) > 3, seen
        print(f"admin fuzz: {sum(seen.values())} requests, statuses {sorted(seen.items())}")


async def _recreate(gw: Gateway) -> None:
    """Put the fuzzed source and integration back after a case deleted one of them."""
    if await gw.wired.store.get_source(SOURCE) is None:
        await gw.create_source(id=SOURCE, consent_default="grant")
    if not await gw.wired.store.list_integrations():
        await gw.create_integration(source_id=SOURCE, consent_categories=[])
