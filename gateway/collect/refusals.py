"""Noting the requests collection refuses in the debugger's ring (`ledger.refused`).

The collection app's error middleware (`collect.app`) sees the final answer, and for one of 400
or more appends a summary to the ring. Only refused requests pay anything, and nothing waits:
the body is the one the handler already read, decoded for ids and names only.
"""

from __future__ import annotations

import re
import time
from typing import Any

import msgspec
from aiohttp import web

from gateway.ledger.refused import Refusal, RefusedHits

MAX_EVENTS_SHOWN = 5
MAX_TEXT = 300  # an error message or a name, as kept
_SOURCE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_UNKNOWN_SOURCE = re.compile(r"source '([A-Za-z0-9_-]{1,64})' does not exist")


class _Peek(msgspec.Struct):
    """What the ring reads of a refused body: ids and names only (everything else ignored)."""

    source_id: Any = None
    type: Any = None
    event: Any = None
    batch: Any = None


_peek = msgspec.json.Decoder(_Peek)


def note(
    ring: RefusedHits, request: web.Request, status: int, answer: bytes | None, reason: str
) -> None:
    """Note an answer of 400 or more to a hit or a preflight; a GET (the tag, the demo, a stray
    /favicon.ico) is not a hit and is left out. Called by the collection app's error middleware
    only once an answer is a refusal, so a hit that succeeds pays one comparison."""
    if request.method in ("GET", "HEAD"):
        return
    ring.note(_refusal(request, status, answer, reason))


def note_response(ring: RefusedHits, request: web.Request, response: web.StreamResponse) -> None:
    """`note` for an answer made as a response (its body read for the gateway's error)."""
    body = response.body if isinstance(response, web.Response) else None
    note(ring, request, response.status, body if isinstance(body, bytes) else None, response.reason)


def _refusal(request: web.Request, status: int, answer: bytes | None, reason: str) -> Refusal:
    code, message = _error_of(answer, reason)
    peeked = _peek_body(request)
    source_id = _source_of(peeked, message)
    return Refusal(
        at=time.time(),
        source_id=source_id,
        method=request.method,
        path=request.path[:MAX_TEXT],
        status=status,
        code=code,
        message=message,
        summary=_summary(request, peeked),
    )


def _error_of(answer: bytes | None, reason: str) -> tuple[str, str]:
    """The (code, message) of the gateway's own error body, else the HTTP reason."""
    try:
        error = msgspec.json.decode(answer)["error"] if answer else None
    except (msgspec.DecodeError, KeyError, TypeError):
        error = None
    if isinstance(error, dict):
        return str(error.get("code", "http_error"))[:64], str(error.get("message", ""))[:MAX_TEXT]
    return "http_error", reason[:MAX_TEXT]


def _peek_body(request: web.Request) -> _Peek | None:
    # The handler has read the body already (aiohttp keeps it): no I/O here. One never read
    # (refused before reading, or too large) is not looked at.
    raw: Any = getattr(request, "_read_bytes", None)
    if not isinstance(raw, bytes) or not raw:
        return None
    try:
        return _peek.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None  # a body nested too deeply was refused for it: nothing to peek at


def _source_of(peeked: _Peek | None, message: str) -> str | None:
    candidates: list[Any] = []
    if peeked is not None:
        candidates.append(peeked.source_id)
        if isinstance(peeked.batch, list) and peeked.batch and isinstance(peeked.batch[0], dict):
            candidates.append(peeked.batch[0].get("source_id"))
    if match := _UNKNOWN_SOURCE.search(message):
        candidates.append(match.group(1))
    for candidate in candidates:
        if isinstance(candidate, str) and _SOURCE_ID.fullmatch(candidate):
            return candidate
    return None


def _summary(request: web.Request, peeked: _Peek | None) -> dict[str, Any]:
    """What the request was, without what it carried: no body, no header value but these."""
    hits: list[Any] = [peeked] if peeked is not None else []
    if peeked is not None and isinstance(peeked.batch, list):
        hits = [h for h in peeked.batch if isinstance(h, dict)]
    kinds = [_name(_field(h, "type")) for h in hits]
    events = [_name(_field(h, "event")) for h in hits]
    return {
        "content_type": request.content_type[:100],
        "bytes": request.content_length,
        "origin": (request.headers.get("Origin") or "")[:200] or None,
        "hits": len(hits),
        "types": sorted({k for k in kinds if k}),
        "events": [e for e in events if e][:MAX_EVENTS_SHOWN],
    }


def _field(hit: Any, name: str) -> Any:
    return hit.get(name) if isinstance(hit, dict) else getattr(hit, name, None)


def _name(value: Any) -> str | None:
    return value[:100] if isinstance(value, str) else None
