"""HTTP out to a webhook: a batch posted as `{"events": [...]}`, the answer read by status.

Like the TikTok client it never raises for a network fault (it answers with `transport_error`)
and never follows a redirect, so the secret header goes to the configured URL and nowhere else.
"""

from __future__ import annotations

from collections.abc import Sequence

import aiohttp

from gateway.core.models import Integration, Source
from gateway.destinations.base import Answer, Verdict, describe_transport_error, one_line
from gateway.destinations.webhook.config import WebhookConfig

SECRET_HEADER = "X-Webhook-Secret"
_MAX_ANSWER_BYTES = 4096


def build_body(payloads: Sequence[bytes]) -> bytes:
    """The request body by concatenation: each payload is one event, already JSON."""
    return b'{"events":[' + b",".join(payloads) + b"]}"


class WebhookSender:
    """The `Client` of the webhook destination."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._session = session

    async def send(
        self,
        integration: Integration,
        source: Source | None,
        payloads: Sequence[bytes],
        *,
        test_event_code: str | None = None,
    ) -> Answer:
        config = integration.config
        if not isinstance(config, WebhookConfig):
            raise TypeError(f"integration {integration.id!r} has no webhook config")
        headers = {"Content-Type": "application/json"}
        if config.secret is not None:
            headers[SECRET_HEADER] = config.secret.reveal()
        try:
            async with self._session.post(
                config.url, data=build_body(payloads), headers=headers, allow_redirects=False
            ) as response:
                raw = await response.content.read(_MAX_ANSWER_BYTES)
                return Answer(
                    http_status=response.status,
                    code=None,
                    message=one_line(raw.decode("utf-8", "replace")),
                    request_id=None,
                    retry_after_s=_retry_after(response.headers.get("Retry-After")),
                    transport_error=None,
                )
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return Answer(None, None, "", None, None, describe_transport_error(exc))


def classify(answer: Answer) -> Verdict:
    """Any 2xx is accepted; 5xx and network faults are retried; other 4xx dead-lettered
    (after isolation finds which events), except 429 (slow down), 408 (retry) and 413
    (split the batch). A redirect is not followed: it pauses the integration."""
    status = answer.http_status
    if answer.transport_error is not None or status is None or status >= 500 or status == 408:
        return Verdict.RETRY
    if 200 <= status < 300:
        return Verdict.ACCEPTED
    if status == 429:
        return Verdict.THROTTLED
    if status == 413:
        return Verdict.TOO_LARGE
    if 300 <= status < 400:
        return Verdict.PAUSE
    return Verdict.REJECT_CONTENT


def _retry_after(value: str | None) -> float | None:
    """Retry-After in delta-seconds (an HTTP date is ignored: the backoff decides then)."""
    try:
        seconds = float(value) if value else None
    except ValueError:
        return None
    return max(0.0, seconds) if seconds is not None and seconds < 86400 else None
