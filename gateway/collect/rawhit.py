"""The raw hit the debugger shows: the whole decoded hit, its traits hashed, and its request.

What the ledger keeps must never hold a raw email, phone, name or address: the hit is rendered
as collection decoded it (page URLs already redacted), with `traits`, `context.traits` and
`user_id` replaced by the hashes collection matches on. Rendering runs on the ledger's writer
thread (see `ledger.base.RawHit`), so the hashing costs the request path nothing.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from typing import Any

import msgspec

from gateway.collect import cookies
from gateway.core.hashing import hash_external_id
from gateway.core.hit import Hit, Traits
from gateway.core.identity import traits_identity
from gateway.destinations.base import HitContext
from gateway.ledger.base import RawHit, hashed_identity

# What the debugger shows for the identity cookie instead of its value (sealed, but still a
# bearer of the visitor's hashed identity: nobody needs to copy it out of the debugger).
SEALED = "(sealed: not shown)"

_encode = msgspec.json.Encoder().encode


@dataclass(slots=True)
class RawRequest:
    """The facts of one collection request, shared by the raw records of all its hits.

    `cookies_set` is filled after planning (the cookies depend on the plan); the writer renders
    the records later, so it sees them.
    """

    received_at: float
    ip: str | None
    user_agent: str | None
    locale: str | None
    from_server: bool
    source_id: str
    cookies_read: dict[str, str | None]
    identity_cookie_present: bool
    # The integrations the source had enabled when the hit came: only they read its record.
    integrations: list[str] = field(default_factory=list)
    cookies_set: dict[str, str] = field(default_factory=dict)
    # The encoded facts, made by the first of the request's hits the writer renders (the writer
    # renders after the response, once `cookies_set` is complete).
    _encoded: bytes | None = field(default=None, init=False, repr=False, compare=False)

    def encoded(self) -> bytes:
        """`as_json` as JSON, made once for all the request's hits."""
        if self._encoded is None:
            self._encoded = _encode(self.as_json())
        return self._encoded

    def as_json(self) -> dict[str, Any]:
        return {
            "received_at": _iso(self.received_at),
            "source_id": self.source_id,
            "integrations": self.integrations,
            "from_server": self.from_server,
            "ip": self.ip,
            "user_agent": self.user_agent,
            "locale": self.locale,
            "cookies_read": {
                **self.cookies_read,
                cookies.IDENTITY: "present" if self.identity_cookie_present else None,
            },
            "cookies_set": dict(self.cookies_set),
        }


def raw_hit(
    hit: Hit, request: RawRequest, phone_region: str | None, context: HitContext | None
) -> RawHit:
    """The raw record of one hit, rendered later on the ledger's writer thread."""
    return RawHit(functools.partial(render, hit, request, phone_region, context))


def render(
    hit: Hit, request: RawRequest, phone_region: str | None, context: HitContext | None
) -> bytes:
    """`{"hit": ..., "request": ..., "resolved": ...}`, joined from parts: the writer thread holds
    the GIL against the event loop while it renders, and the request's part is shared."""
    parts = [b'{"hit":', _encode(hashed_hit(hit, phone_region)), b',"request":', request.encoded()]
    if context is not None:
        parts += [b',"resolved":', _encode(resolved_json(context))]
    parts.append(b"}")
    return b"".join(parts)


def resolved_json(context: HitContext) -> dict[str, Any]:
    """What collection resolved for the hit (ids, cookies, event time, the identity cookie's
    hashes): re-processing plans the hit again with exactly these, so only the mapping changes.
    """
    return {
        "event_id": context.event_id,
        "event_time": context.event_time,
        "anonymous_id": context.anonymous_id,
        "ttp": context.ttp,
        "ttclid": context.ttclid,
        "ip": context.ip,
        "user_agent": context.user_agent,
        "locale": context.locale,
        "identity": hashed_identity(context.identity),
    }


def hashed_hit(hit: Hit, phone_region: str | None) -> Hit:
    """The hit to encode with every trait and the user id hashed (nothing raw about a person).

    A copy whose `user_id` and traits hold their hashes (a dict where `Traits` was: encoding
    does not check types), so msgspec encodes it straight from the structs, fields in place;
    a hit without any of them is encoded as it is.
    """
    changes: dict[str, Any] = {}
    if hit.user_id is not None:
        changes["user_id"] = hash_external_id(hit.user_id)
    if hit.traits is not None:
        changes["traits"] = _hashed_traits(hit.traits, phone_region)
    if hit.context is not None and hit.context.traits is not None:
        traits = _hashed_traits(hit.context.traits, phone_region)
        changes["context"] = msgspec.structs.replace(hit.context, traits=traits)
    return msgspec.structs.replace(hit, **changes) if changes else hit


def _hashed_traits(traits: Traits, phone_region: str | None) -> dict[str, Any]:
    return hashed_identity(traits_identity([traits], phone_region))


def _iso(timestamp: float) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(timestamp))
    return f"{stamp}.{int(timestamp * 1000) % 1000:03d}Z"
