"""TikTok client and answer classification: the table from TIKTOK.md, and the client against
the test double (a real server), including network faults."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest

from gateway.core.settings import Secret
from gateway.destinations.base import Answer as GatewayAnswer
from gateway.destinations.base import Verdict
from gateway.destinations.tiktok.classify import classify
from gateway.destinations.tiktok.client import TikTokClient, build_body, parse_retry_after
from tests.tiktok_double import Answer, TikTokDouble, check_request

TOKEN = "tok_live_abcdef0123456789"


def _answer(
    status: int | None = 200, code: int | None = 0, transport_error: str | None = None
) -> GatewayAnswer:
    return GatewayAnswer(status, code, "", None, None, transport_error)


CLASSIFY_TABLE = [
    pytest.param(_answer(200, 0), Verdict.ACCEPTED, id="ok"),
    pytest.param(_answer(200, 20001), Verdict.ACCEPTED, id="partial-success"),
    pytest.param(_answer(200, 40100), Verdict.THROTTLED, id="40100-rate-limit"),
    pytest.param(_answer(200, 40132), Verdict.THROTTLED, id="40132-throttled"),
    pytest.param(_answer(200, 61000), Verdict.THROTTLED, id="61000-throttled"),
    pytest.param(_answer(429, None), Verdict.THROTTLED, id="http-429"),
    pytest.param(_answer(429, 40100), Verdict.THROTTLED, id="http-429-with-code"),
    pytest.param(_answer(500, None), Verdict.RETRY, id="http-500"),
    pytest.param(_answer(502, None), Verdict.RETRY, id="http-502"),
    pytest.param(_answer(503, 0), Verdict.RETRY, id="http-503-even-with-code-0"),
    pytest.param(_answer(504, 40002), Verdict.RETRY, id="http-504-with-content-code"),
    pytest.param(_answer(None, None, "timeout"), Verdict.RETRY, id="timeout"),
    pytest.param(
        _answer(None, None, "ClientConnectorError: refused"), Verdict.RETRY, id="connection"
    ),
    pytest.param(_answer(None, None, "ClientSSLError: bad cert"), Verdict.RETRY, id="tls"),
    pytest.param(_answer(200, None), Verdict.RETRY, id="body-not-json"),
    pytest.param(_answer(200, 50000), Verdict.RETRY, id="50000-tiktok-side"),
    pytest.param(_answer(200, 51234), Verdict.RETRY, id="51234-tiktok-side"),
    pytest.param(_answer(200, 52999), Verdict.RETRY, id="52999-tiktok-side"),
    pytest.param(_answer(200, 60001), Verdict.RETRY, id="60001-tiktok-side"),
    pytest.param(_answer(200, 40001), Verdict.PAUSE, id="40001-no-permission"),
    pytest.param(_answer(200, 40102), Verdict.PAUSE, id="40102"),
    pytest.param(_answer(200, 40104), Verdict.PAUSE, id="40104"),
    pytest.param(_answer(200, 40105), Verdict.PAUSE, id="40105-bad-token"),
    pytest.param(_answer(200, 40113), Verdict.PAUSE, id="40113"),
    pytest.param(_answer(200, 40118), Verdict.PAUSE, id="40118"),
    pytest.param(_answer(200, 40130), Verdict.PAUSE, id="40130"),
    pytest.param(_answer(200, 40300), Verdict.PAUSE, id="40300"),
    pytest.param(_answer(200, 40301), Verdict.PAUSE, id="40301"),
    pytest.param(_answer(200, 40061), Verdict.TOO_LARGE, id="40061-too-large"),
    pytest.param(_answer(413, None), Verdict.TOO_LARGE, id="http-413-too-large"),
    pytest.param(_answer(200, 40000), Verdict.REJECT_CONTENT, id="40000-content"),
    pytest.param(_answer(200, 40002), Verdict.REJECT_CONTENT, id="40002-param"),
    pytest.param(_answer(200, 40003), Verdict.REJECT_CONTENT, id="40003-event"),
    pytest.param(_answer(200, 40062), Verdict.REJECT_CONTENT, id="40062-content"),
    pytest.param(_answer(200, 49999), Verdict.REJECT_CONTENT, id="49999-other-4xxxx"),
    pytest.param(_answer(400, 40002), Verdict.REJECT_CONTENT, id="http-400-with-content-code"),
    pytest.param(_answer(200, 12345), Verdict.RETRY, id="unknown-code"),
    pytest.param(_answer(200, 53000), Verdict.RETRY, id="53000-unknown"),
    pytest.param(_answer(404, None), Verdict.RETRY, id="http-404-no-code"),
    pytest.param(_answer(400, 0), Verdict.RETRY, id="code-0-without-http-200"),
]


@pytest.mark.parametrize(("answer", "verdict"), CLASSIFY_TABLE)
def test_classify(answer: GatewayAnswer, verdict: Verdict) -> None:
    assert classify(answer) is verdict


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(None, None, id="absent"),
        pytest.param("", None, id="empty"),
        pytest.param("3", 3.0, id="seconds"),
        pytest.param(" 1.5 ", 1.5, id="fraction"),
        pytest.param("-4", 0.0, id="negative-is-now"),
        pytest.param("soon", None, id="garbage"),
        pytest.param("nan", None, id="nan"),
        pytest.param("Wed, 21 Oct 2015 07:28:30 GMT", 30.0, id="http-date"),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    now = 1445412480.0  # 2015-10-21 07:28:00 UTC
    assert parse_retry_after(value, now) == expected


def test_build_body_concatenates_payloads_unchanged() -> None:
    payloads = [b'{"event":"PageView","event_id":"a","n":1.10}', b'{"event_id":"b"}']
    body = build_body('PIX"1', "TEST1", payloads)
    assert body == (
        b'{"event_source":"web","event_source_id":"PIX\\"1","test_event_code":"TEST1",'
        b'"data":[{"event":"PageView","event_id":"a","n":1.10},{"event_id":"b"}]}'
    )
    assert json.loads(body)["event_source_id"] == 'PIX"1'
    assert b"test_event_code" not in build_body("PIX", None, payloads)


def _event(event_id: str) -> bytes:
    return json.dumps(
        {
            "event": "CompletePayment",
            "event_time": 1769697000,
            "event_id": event_id,
            "user": {"ip": "203.0.113.50", "external_id": "ab" * 32},
            "properties": {"currency": "USD", "value": 12.5},
        },
        separators=(",", ":"),
    ).encode()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as s:
        yield s


async def test_send_builds_a_v13_request(
    session: aiohttp.ClientSession, tiktok: TikTokDouble
) -> None:
    client = TikTokClient(session, tiktok.url)
    answer = await client.send("PIXEL1", Secret(TOKEN), "TEST42", [_event("e1"), _event("e2")])

    assert classify(answer) is Verdict.ACCEPTED
    assert (answer.http_status, answer.code, answer.message) == (200, 0, "OK")
    assert answer.request_id and answer.transport_error is None
    [request] = tiktok.requests
    assert request.problems == []
    assert request.headers["Access-Token"] == TOKEN
    assert request.headers["Content-Type"] == "application/json"
    assert request.body["event_source"] == "web"
    assert request.body["event_source_id"] == "PIXEL1"
    assert request.body["test_event_code"] == "TEST42"
    assert request.event_ids == ["e1", "e2"]
    assert tiktok.accepted_ids() == ["e1", "e2"]
    assert {(a.pixel_code, a.test_event_code) for a in tiktok.accepted} == {("PIXEL1", "TEST42")}


async def test_send_a_body_over_one_mebibyte(
    session: aiohttp.ClientSession, tiktok: TikTokDouble
) -> None:
    # Long user agents and contents make 1,000 events weigh more than 1 MiB.
    big = [
        _event(f"e{i}").replace(b'"ip"', b'"user_agent":"' + b"M" * 1500 + b'","ip"')
        for i in range(1000)
    ]
    assert sum(map(len, big)) > 2**20
    answer = await TikTokClient(session, tiktok.url).send("PIXEL1", Secret(TOKEN), None, big)
    assert classify(answer) is Verdict.ACCEPTED
    assert len(tiktok.accepted) == 1000
    assert tiktok.requests[0].headers["Content-Type"] == "application/json"


async def test_send_without_test_event_code(
    session: aiohttp.ClientSession, tiktok: TikTokDouble
) -> None:
    await TikTokClient(session, tiktok.url).send("PIXEL1", Secret(TOKEN), None, [_event("e1")])
    assert "test_event_code" not in tiktok.requests[0].body


@pytest.mark.parametrize(
    ("scripted", "status", "code", "retry_after", "verdict"),
    [
        pytest.param(Answer(status=503), 503, None, None, Verdict.RETRY, id="503"),
        pytest.param(
            Answer(status=429, retry_after=2), 429, None, 2.0, Verdict.THROTTLED, id="429"
        ),
        pytest.param(
            Answer(code=40100, message="Too many requests", retry_after=1),
            200,
            40100,
            1.0,
            Verdict.THROTTLED,
            id="40100",
        ),
        pytest.param(
            Answer(code=40001, message="No permission"),
            200,
            40001,
            None,
            Verdict.PAUSE,
            id="40001",
        ),
        pytest.param(
            Answer(status=502, not_json=True), 502, None, None, Verdict.RETRY, id="html-502"
        ),
        pytest.param(Answer(not_json=True), 200, None, None, Verdict.RETRY, id="html-200"),
        pytest.param(
            Answer(code=40002, message="Invalid"),
            200,
            40002,
            None,
            Verdict.REJECT_CONTENT,
            id="40002",
        ),
    ],
)
async def test_send_reads_scripted_answers(
    session: aiohttp.ClientSession,
    tiktok: TikTokDouble,
    scripted: Answer,
    status: int,
    code: int | None,
    retry_after: float | None,
    verdict: Verdict,
) -> None:
    tiktok.play(scripted)
    answer = await TikTokClient(session, tiktok.url).send(
        "PIXEL1", Secret(TOKEN), None, [_event("e1")]
    )
    assert (answer.http_status, answer.code, answer.retry_after_s) == (status, code, retry_after)
    assert classify(answer) is verdict
    assert TOKEN not in repr(answer)
    assert tiktok.accepted == []


async def test_send_timeout_is_an_answer(tiktok: TikTokDouble) -> None:
    tiktok.play(Answer(delay_s=1.0))
    async with aiohttp.ClientSession() as session:
        client = TikTokClient(session, tiktok.url, timeout_s=0.1)
        answer = await client.send("PIXEL1", Secret(TOKEN), None, [_event("e1")])
    assert answer.transport_error == "timeout"
    assert answer.http_status is None
    assert classify(answer) is Verdict.RETRY


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_send_connection_refused_is_an_answer(session: aiohttp.ClientSession) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/open_api/v1.3/event/track/"
    answer = await TikTokClient(session, url).send("PIXEL1", Secret(TOKEN), None, [_event("e")])
    assert answer.transport_error is not None
    assert answer.http_status is None and answer.code is None
    assert TOKEN not in answer.transport_error
    assert classify(answer) is Verdict.RETRY


async def test_send_tls_error_is_an_answer(
    session: aiohttp.ClientSession, tiktok: TikTokDouble
) -> None:
    # An https:// URL pointing at the plain-HTTP double fails the TLS handshake.
    url = tiktok.url.replace("http://", "https://")
    answer = await TikTokClient(session, url).send("PIXEL1", Secret(TOKEN), None, [_event("e")])
    assert answer.transport_error is not None
    assert classify(answer) is Verdict.RETRY


async def test_double_refuses_bearer_token_and_bad_shape(
    session: aiohttp.ClientSession, tiktok: TikTokDouble
) -> None:
    client = TikTokClient(session, tiktok.url)
    bearer = await client.send("PIXEL1", Secret("Bearer " + TOKEN), None, [_event("e1")])
    assert bearer.code == 40105
    numeric_id = b'{"event":"PageView","event_time":1,"event_id":7,"user":{}}'
    bad = await client.send("PIXEL1", Secret(TOKEN), None, [numeric_id])
    assert bad.code == 40002
    assert "event_id must be a non-empty string" in bad.message
    assert tiktok.accepted == []
    assert len(tiktok.problems) == 2


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        pytest.param(
            {"event_source": "web", "event_source_id": "P", "data": []},
            "data must",
            id="empty-data",
        ),
        pytest.param(
            {
                "event_source": "store",
                "event_source_id": "P",
                "data": [{"event": "x", "event_time": 1, "event_id": "a", "user": {}}],
            },
            "event_source must be one of",
            id="unknown-event-source",
        ),
        pytest.param(
            {
                "event_source": "app",
                "event_source_id": "P",
                "data": [{"event": "x", "event_time": 1, "event_id": "a", "user": {}}],
            },
            "app.app_id",
            id="app-event-without-app",
        ),
        pytest.param(
            {
                "event_source": "crm",
                "event_source_id": "P",
                "data": [{"event": "x", "event_time": 1, "event_id": "a", "user": {}}],
            },
            "lead.lead_id",
            id="crm-event-without-lead",
        ),
        pytest.param(
            {
                "event_source": "offline",
                "event_source_id": "P",
                "data": [{"event": "x", "event_time": 1, "event_id": "a", "user": {"ip": "1"}}],
            },
            "user.email or user.phone",
            id="offline-event-without-email-or-phone",
        ),
        pytest.param(
            {
                "event_source": "web",
                "event_source_id": "P",
                "data": [
                    {
                        "event": "x",
                        "event_time": 1,
                        "event_id": "a",
                        "user": {},
                        "properties": {"value": None},
                    }
                ],
            },
            "properties.value",
            id="null-value",
        ),
        pytest.param(
            {
                "event_source": "web",
                "event_source_id": "P",
                "partner_name": "x",
                "data": [{"event": "x", "event_time": 1, "event_id": "a", "user": {}}],
            },
            "partner_name",
            id="unknown-top-level",
        ),
        pytest.param(
            {
                "event_source": "web",
                "event_source_id": "P",
                "data": [{"event": "x", "event_time": "2024-01-01", "event_id": "a", "user": {}}],
            },
            "event_time",
            id="iso-time",
        ),
        pytest.param(
            {
                "event_source": "web",
                "event_source_id": "P",
                "data": [
                    {
                        "event": "x",
                        "event_time": 1,
                        "event_id": "a",
                        "user": {"ip": "1.2.3.4"},
                        "context": {},
                    }
                ],
            },
            "context",
            id="v1-context",
        ),
        pytest.param(
            {
                "event_source": "web",
                "event_source_id": "P",
                "data": [
                    {"event": "x", "event_time": 1, "event_id": "a", "user": {"phone_number": "x"}}
                ],
            },
            "phone_number",
            id="unknown-user-key",
        ),
    ],
)
def test_double_checks_shape(body: dict[str, object], problem: str) -> None:
    problems = check_request("application/json", body)
    assert any(problem in p for p in problems), problems
