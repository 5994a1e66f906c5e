"""HTTP out to the TikTok Events API v1.3 (classify.py reads the answers).

`TikTokClient.send` is the one place that talks to TikTok. It never raises for a network fault:
aiohttp, asyncio and TLS errors are translated here into an `Answer` with `transport_error`,
so the delivery worker only ever looks at answers. The access token goes into the
`Access-Token` header and nowhere else: not into a log line, an answer or an error text, and
never to another origin: redirects are not followed (an HTTP client following one would resend
the header to wherever it points). A 3xx answer pauses the integration with the Location in
its reason: a wrong GATEWAY_TIKTOK_API_URL or a hijacked path does not fix itself, and retrying
would only pile up attempts.
"""

from __future__ import annotations

import io
import logging
import math
import time
from collections.abc import Sequence
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import msgspec

from gateway.core.models import EventSource, Integration, Source
from gateway.core.settings import Secret
from gateway.destinations.base import MAX_MESSAGE_CHARS, Answer, describe_transport_error, one_line
from gateway.destinations.tiktok.config import TikTokConfig

log = logging.getLogger(__name__)

# TikTok's answers are small JSON objects; anything longer is an error page we only need the
# start of.
_MAX_ANSWER_BYTES = 64 * 1024
# aiohttp warns about bytes bodies over 1 MiB (a single large write); a BytesIO is sent in
# chunks that yield to the loop. 1,000 rich events can pass that size.
_INLINE_BODY_BYTES = 2**20


def event_source_of(source: Source | None) -> EventSource:
    """Where the source's events happen; a source deleted under queued events counts as web."""
    return source.event_source if source is not None else EventSource.WEB


def event_source_id_of(source: Source | None, config: TikTokConfig) -> str:
    """The TikTok id the events are filed under: the source's own, else the pixel code."""
    own = source.event_source_id if source is not None else None
    return own or config.pixel_code


def build_body(
    event_source_id: str,
    test_event_code: str | None,
    payloads: Sequence[bytes],
    event_source: str = "web",
) -> bytes:
    """The request body, by concatenation: each payload is one `data[]` item, already JSON.

    Re-parsing and re-encoding hundreds of events per request would cost more than the request.
    `event_source` is where the events happen (web, app, offline, crm) and `event_source_id`
    the TikTok id they are filed under (a pixel code, an app id, an event set id).
    """
    parts = [
        b'{"event_source":',
        msgspec.json.encode(event_source),
        b',"event_source_id":',
        msgspec.json.encode(event_source_id),
    ]
    if test_event_code:
        parts += [b',"test_event_code":', msgspec.json.encode(test_event_code)]
    parts += [b',"data":[', b",".join(payloads), b"]}"]
    return b"".join(parts)


class TikTokClient:
    """Sends batches to TikTok's event/track endpoint through the process's shared session."""

    def __init__(
        self, session: aiohttp.ClientSession, api_url: str, *, timeout_s: float | None = None
    ) -> None:
        self._session = session
        self._api_url = api_url
        # None keeps the session's own timeout (wiring.py sets one).
        self._timeout = aiohttp.ClientTimeout(total=timeout_s) if timeout_s else None

    @property
    def api_url(self) -> str:
        return self._api_url

    async def send(
        self,
        event_source_id: str,
        access_token: Secret,
        test_event_code: str | None,
        payloads: Sequence[bytes],
        *,
        event_source: str = "web",
    ) -> Answer:
        body = build_body(event_source_id, test_event_code, payloads, event_source)
        headers = {
            "Access-Token": access_token.reveal(),
            "Content-Type": "application/json",
        }
        data: bytes | io.BytesIO = body if len(body) <= _INLINE_BODY_BYTES else io.BytesIO(body)
        try:
            async with self._session.post(
                self._api_url,
                data=data,
                headers=headers,
                timeout=self._timeout,
                allow_redirects=False,  # the token goes to the configured URL and nowhere else
            ) as response:
                if 300 <= response.status < 400:
                    return redirect_answer(response.status, response.headers.get("Location"))
                raw = await response.content.read(_MAX_ANSWER_BYTES)
                retry_after = parse_retry_after(response.headers.get("Retry-After"), time.time())
                return parse_answer(response.status, raw, retry_after)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            # OSError covers ssl.SSLError and socket errors aiohttp lets through.
            return Answer(None, None, "", None, None, _describe_exception(exc))


def redirect_answer(status: int, location: str | None) -> Answer:
    """A 3xx: the request was not repeated at `location`; the answer says where it pointed."""
    where = one_line(location) if location else "no Location"
    message = f"redirect to {where} not followed (check GATEWAY_TIKTOK_API_URL)"
    return Answer(status, None, one_line(message), None, None, None)


def parse_answer(status: int, raw: bytes, retry_after_s: float | None) -> Answer:
    """Read TikTok's JSON answer; a body that is not TikTok's JSON keeps `code` None."""
    data: Any
    try:
        data = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        data = None
    if not isinstance(data, dict):
        snippet = raw[:MAX_MESSAGE_CHARS].decode("utf-8", "replace").strip()
        return Answer(status, None, one_line(snippet), None, retry_after_s, None)
    code = _as_int(data.get("code"))
    message = data.get("message")
    request_id = data.get("request_id")
    return Answer(
        http_status=status,
        code=code,
        message=one_line(str(message)) if message is not None else "",
        request_id=str(request_id) if request_id is not None else None,
        retry_after_s=retry_after_s,
        transport_error=None,
    )


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Retry-After as seconds from now: delta-seconds, or an HTTP date (RFC 9110 allows both)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - now
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def _as_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def _describe_exception(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError) and not str(exc).strip():
        return "timeout"  # the client's own deadline (`GATEWAY_TIKTOK_TIMEOUT_S`)
    return describe_transport_error(exc)


class TikTokSender:
    """The `Client` of the TikTok destination: an integration's batch in TikTok's envelope."""

    def __init__(self, client: TikTokClient) -> None:
        self._client = client

    async def send(
        self,
        integration: Integration,
        source: Source | None,
        payloads: Sequence[bytes],
        *,
        test_event_code: str | None = None,
    ) -> Answer:
        config = tiktok_config(integration)
        return await self._client.send(
            event_source_id_of(source, config),
            config.access_token,
            test_event_code or config.test_event_code,
            payloads,
            event_source=event_source_of(source).value,
        )


def tiktok_config(integration: Integration) -> TikTokConfig:
    """The integration's config, which the registry made a TikTokConfig for vendor tiktok."""
    config = integration.config
    if not isinstance(config, TikTokConfig):
        raise TypeError(f"integration {integration.id!r} has no TikTok config")
    return config
