"""A TikTok Events API v1.3 test double: a real aiohttp server on 127.0.0.1 that the gateway
reaches by URL, exactly as it reaches TikTok.

It checks the shape of every request (header, body, each event) and answers as TikTok would:
code 40105 for a missing or "Bearer " token, 40002 with a message for a malformed body. It
records every request and every accepted event, and plays scripted answers one per request:

    async with TikTokDouble() as tiktok:
        tiktok.play(Answer(status=503), Answer(code=40100, message="Too many requests"))
        ...
        await tiktok.wait_for(lambda: len(tiktok.accepted) == 10)

Once the script runs out it answers success. `play_for(token, ...)` scripts the requests of one
access token (one integration) only, ahead of the shared script. `reject_event_ids` makes any
request containing one of those ids fail with 40002 (the isolation tests); `valid_tokens` answers
40001 for other tokens; `fail_ratio` answers a seeded share of requests with HTTP 503.
`Answer(status=302, location=url)` redirects. Requests to any other path or with any other
method are recorded in `strays` (with their headers): a second double can stand in for the
server a redirect points at.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

PATH = "/open_api/v1.3/event/track/"
MAX_EVENTS = 1000
TOP_LEVEL_KEYS = frozenset({"event_source", "event_source_id", "test_event_code", "data"})
EVENT_KEYS = frozenset(
    {
        "event",
        "event_time",
        "event_id",
        "user",
        "page",
        "properties",
        "limited_data_use",
        "lead",
        "app",
    }
)
EVENT_SOURCES = frozenset({"web", "app", "offline", "crm"})
# Properties TikTok reads as numbers: null (what JSON makes of NaN and infinity) is refused.
NUMBER_PROPERTIES = ("value", "num_items")
# Events API 2.0's user object: match keys (SHA-256, one string or an array) and raw signals.
HASHED_USER_KEYS = frozenset(
    {
        "external_id",
        "email",
        "phone",
        "first_name",
        "last_name",
        "city",
        "state",
        "country",
        "zip_code",
    }
)
USER_KEYS = HASHED_USER_KEYS | {"ttp", "ttclid", "ip", "user_agent", "locale"}
SHA256_HEX = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class Answer:
    """One scripted answer. Defaults are TikTok's success."""

    status: int = 200
    code: int = 0
    message: str = "OK"
    retry_after: float | str | None = None
    delay_s: float = 0.0
    not_json: bool = False
    # TikTok takes the events on arrival and only then is slow to answer (the answer may never
    # reach a client that gave up): what makes duplicates after a crash or a cut-off request.
    accept_first: bool = False
    # With a 3xx status: where the answer redirects to.
    location: str | None = None

    def accepts(self) -> bool:
        return self.status == 200 and not self.not_json and self.code in (0, 20001)


@dataclass(slots=True)
class RecordedRequest:
    at: float  # time.monotonic() when it arrived
    headers: dict[str, str]
    raw: bytes
    body: Any  # parsed JSON, or None when it was not JSON
    answer: Answer | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def events(self) -> list[dict[str, Any]]:
        data = self.body.get("data") if isinstance(self.body, dict) else None
        return data if isinstance(data, list) else []

    @property
    def event_ids(self) -> list[str]:
        return [e.get("event_id") for e in self.events if isinstance(e, dict)]


@dataclass(frozen=True, slots=True)
class AcceptedEvent:
    pixel_code: str  # the request's event_source_id (a pixel code for web sources)
    test_event_code: str | None
    event: dict[str, Any]
    at: float
    event_source: str = "web"


class TikTokDouble:
    def __init__(self, *, seed: int = 0) -> None:
        self.requests: list[RecordedRequest] = []
        self.accepted: list[AcceptedEvent] = []
        self.strays: list[RecordedRequest] = []
        self.reject_event_ids: set[str] = set()
        self.valid_tokens: set[str] | None = None
        self.fail_ratio: float = 0.0
        # Requests with more events than this are answered 40061 ("batch too large").
        self.max_events: int = MAX_EVENTS
        self._script: deque[Answer] = deque()
        self._scripts: dict[str, deque[Answer]] = {}
        self._random = random.Random(seed)
        self._changed = asyncio.Event()
        self._server: TestServer | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    async def __aenter__(self) -> TikTokDouble:
        # 1,000 rich events pass aiohttp's default 1 MiB request limit; TikTok takes them.
        app = web.Application(client_max_size=32 * 2**20)
        app.router.add_post(PATH, self._track)
        app.router.add_route("*", "/{anything:.*}", self._stray)
        self._server = TestServer(app, host="127.0.0.1", port=0)
        await self._server.start_server()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            await self._server.close()
            self._server = None

    @property
    def url(self) -> str:
        assert self._server is not None, "use `async with TikTokDouble()`"
        return str(self._server.make_url(PATH))

    # -- scripting and inspection ------------------------------------------------------------
    def play(self, *answers: Answer) -> None:
        self._script.extend(answers)

    def play_for(self, token: str, *answers: Answer) -> None:
        """Answers for requests with this access token only (before the shared script)."""
        self._scripts.setdefault(token, deque()).extend(answers)

    def accepted_ids(self) -> list[str]:
        return [a.event["event_id"] for a in self.accepted]

    @property
    def problems(self) -> list[str]:
        """Every shape problem found in any request (a gateway bug when not empty)."""
        return [p for r in self.requests for p in r.problems]

    # `timeout`, not asyncio.timeout(): the tests' callers read better with a plain keyword.
    async def wait_for(
        self,
        predicate: Callable[[], bool],
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> None:
        """Wait until `predicate()` holds; TimeoutError if it does not within `timeout` s.

        Re-checked after every request, and every 50 ms for predicates on other state.
        """
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met within {timeout} s")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), 0.05)

    # -- the endpoint ------------------------------------------------------------------------
    async def _track(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = None
        record = RecordedRequest(time.monotonic(), dict(request.headers), raw, body)
        self.requests.append(record)
        try:
            return await self._answer(request, record)
        finally:
            self._changed.set()

    async def _stray(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        self.strays.append(RecordedRequest(time.monotonic(), dict(request.headers), raw, None))
        self._changed.set()
        return web.json_response({"code": 0, "message": "OK", "data": {}})

    async def _answer(self, request: web.Request, record: RecordedRequest) -> web.StreamResponse:
        token = request.headers.get("Access-Token")
        if not token or token.startswith("Bearer "):
            record.problems.append("Access-Token header missing or starts with 'Bearer '")
            return self._reply(record, Answer(code=40105, message="Access token is invalid"))
        record.problems.extend(check_request(request.content_type, record.body))
        if record.problems:
            return self._reply(record, Answer(code=40002, message="; ".join(record.problems)))
        answer = self._next_answer(token, record)
        if answer.accept_first:
            self._accept(record, answer)
        if answer.delay_s:
            await asyncio.sleep(answer.delay_s)
        return self._reply(record, answer)

    def _next_answer(self, token: str, record: RecordedRequest) -> Answer:
        own = self._scripts.get(token)
        if own:
            return own.popleft()
        if self._script:
            return self._script.popleft()
        if self.valid_tokens is not None and token not in self.valid_tokens:
            return Answer(code=40001, message="No permission to operate pixel code")
        if len(record.events) > self.max_events:
            return Answer(code=40061, message="Too many events in one request")
        for event_id in record.event_ids:
            if event_id in self.reject_event_ids:
                return Answer(code=40002, message=f"Invalid event: {event_id}")
        if self.fail_ratio and self._random.random() < self.fail_ratio:
            return Answer(status=503)
        return Answer()

    def _accept(self, record: RecordedRequest, answer: Answer) -> None:
        record.answer = answer
        if answer.accepts():
            body = record.body
            for event in record.events:
                self.accepted.append(
                    AcceptedEvent(
                        body["event_source_id"],
                        body.get("test_event_code"),
                        event,
                        record.at,
                        body["event_source"],
                    )
                )

    def _reply(self, record: RecordedRequest, answer: Answer) -> web.Response:
        if not answer.accept_first:
            self._accept(record, answer)
        headers = {}
        if answer.location is not None:
            headers["Location"] = answer.location
        if answer.retry_after is not None:
            headers["Retry-After"] = str(answer.retry_after)
        if answer.not_json:
            return web.Response(
                status=answer.status,
                text="<html>bad gateway</html>",
                content_type="text/html",
                headers=headers,
            )
        if answer.status != 200 and answer.code == 0:
            # An HTTP-level failure (a 503 from TikTok's edge) carries no business body.
            return web.Response(status=answer.status, text="", headers=headers)
        payload = {
            "code": answer.code,
            "message": answer.message,
            "request_id": uuid.uuid4().hex,
            "data": {},
        }
        return web.json_response(payload, status=answer.status, headers=headers)


def check_request(content_type: str, body: Any) -> list[str]:
    """Every reason TikTok would refuse this request's shape (empty when it is fine)."""
    if content_type != "application/json":
        return [f"Content-Type is {content_type!r}, not application/json"]
    if not isinstance(body, dict):
        return ["body is not a JSON object"]
    problems = [f"unknown top-level key {k!r}" for k in sorted(set(body) - TOP_LEVEL_KEYS)]
    event_source = body.get("event_source")
    if event_source not in EVENT_SOURCES:
        problems.append(f"event_source must be one of {sorted(EVENT_SOURCES)}")
    if not isinstance(body.get("event_source_id"), str) or not body["event_source_id"]:
        problems.append("event_source_id must be a non-empty string")
    if "test_event_code" in body and not isinstance(body["test_event_code"], str):
        problems.append("test_event_code must be a string")
    data = body.get("data")
    if not isinstance(data, list) or not 1 <= len(data) <= MAX_EVENTS:
        problems.append(f"data must be a list of 1..{MAX_EVENTS} events")
        return problems
    for index, event in enumerate(data):
        problems.extend(f"data[{index}]: {p}" for p in check_event(event))
        if isinstance(event, dict):
            source_problems = check_source_rules(event, event_source)
            problems.extend(f"data[{index}]: {p}" for p in source_problems)
    return problems


def check_source_rules(event: dict[str, Any], event_source: Any) -> list[str]:
    """What each event_source requires of an event (TikTok's Events API 2.0 documentation)."""
    lead, app, user = event.get("lead"), event.get("app"), event.get("user")
    problems = []
    if event_source == "crm" and not (
        isinstance(lead, dict) and isinstance(lead.get("lead_id"), str)
    ):
        problems.append("a crm event needs lead.lead_id (a string)")
    if event_source != "crm" and lead is not None:
        problems.append("lead is for crm events only")
    if event_source == "app" and not (isinstance(app, dict) and isinstance(app.get("app_id"), str)):
        problems.append("an app event needs app.app_id (the app's store id)")
    if event_source == "offline" and not (
        isinstance(user, dict) and ("email" in user or "phone" in user)
    ):
        problems.append("an offline event needs user.email or user.phone")
    return problems


def check_hashed_user_keys(user: dict[str, Any]) -> list[str]:
    """Match keys must arrive hashed: lowercase SHA-256 hex, alone or in a non-empty array."""
    problems = []
    for key in sorted(HASHED_USER_KEYS & set(user)):
        value = user[key]
        values = value if isinstance(value, list) and value else [value]
        if not all(isinstance(v, str) and SHA256_HEX.fullmatch(v) for v in values):
            problems.append(f"user.{key} must be lowercase SHA-256 hex (or an array of them)")
    return problems


def check_event(event: Any) -> list[str]:
    if not isinstance(event, dict):
        return ["is not an object"]
    problems = [f"unknown key {k!r}" for k in sorted(set(event) - EVENT_KEYS)]
    if not isinstance(event.get("event"), str) or not event["event"]:
        problems.append("event must be a non-empty string")
    event_time = event.get("event_time")
    if not isinstance(event_time, int) or isinstance(event_time, bool):
        problems.append("event_time must be an integer")
    if not isinstance(event.get("event_id"), str) or not event["event_id"]:
        problems.append("event_id must be a non-empty string")
    user = event.get("user")
    if not isinstance(user, dict):
        problems.append("user must be an object")
    else:
        problems.extend(f"unknown user key {k!r}" for k in sorted(set(user) - USER_KEYS))
        problems.extend(check_hashed_user_keys(user))
    for key in ("page", "properties"):
        if key in event and not isinstance(event[key], dict):
            problems.append(f"{key} must be an object")
    properties = event.get("properties")
    if isinstance(properties, dict):
        for key in NUMBER_PROPERTIES:
            number = properties.get(key, 0)
            if not isinstance(number, int | float) or isinstance(number, bool) or number < 0:
                problems.append(f"properties.{key} must be a number, not {number!r}")
    if "limited_data_use" in event and not isinstance(event["limited_data_use"], bool):
        problems.append("limited_data_use must be a boolean")
    return problems
