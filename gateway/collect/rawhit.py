"""A hit's record in the hit log (also what the debugger shows as the hit as received): the
whole decoded hit, its traits hashed, its request's facts and what collection resolved.

What the log keeps must never hold a raw email, phone, name or address: the hit is rendered as
collection decoded it (page URLs already redacted), with `traits`, `context.traits` and `user_id`
replaced by the hashes collection matches on. That hashing is done once per hit (`HitHashes`):
an identify hit learns its identity from the same hashes its record shows.
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
from gateway.core.identity import Identity, traits_identity
from gateway.destinations.base import HitContext
from gateway.ledger.base import hashed_identity

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
        """The facts as JSON, made once for all the request's hits."""
        if self._encoded is None:
            self._encoded = _encode(
                _RequestJson(
                    received_at=_iso(self.received_at),
                    source_id=self.source_id,
                    integrations=self.integrations,
                    from_server=self.from_server,
                    ip=self.ip,
                    user_agent=self.user_agent,
                    locale=self.locale,
                    cookies_read=_CookiesRead(
                        ttp=self.cookies_read.get(cookies.TTP),
                        anonymous_id=self.cookies_read.get(cookies.ANONYMOUS_ID),
                        ttclid=self.cookies_read.get(cookies.TTCLID),
                        identity="present" if self.identity_cookie_present else None,
                    ),
                    cookies_set=self.cookies_set,
                )
            )
        return self._encoded


# The request's part of a record, encoded from structs (in C) rather than from dicts built per
# request; the JSON is the same: every key, in this order, nulls included.
class _CookiesRead(msgspec.Struct, gc=False):
    ttp: str | None = msgspec.field(name=cookies.TTP)
    anonymous_id: str | None = msgspec.field(name=cookies.ANONYMOUS_ID)
    ttclid: str | None = msgspec.field(name=cookies.TTCLID)
    identity: str | None = msgspec.field(name=cookies.IDENTITY)


class _RequestJson(msgspec.Struct):
    received_at: str
    source_id: str
    integrations: list[str]
    from_server: bool
    ip: str | None
    user_agent: str | None
    locale: str | None
    cookies_read: _CookiesRead
    cookies_set: dict[str, str]


@dataclass(frozen=True, slots=True)
class HitHashes:
    """A hit's own traits and user id, hashed once per hit."""

    traits: Identity | None
    context_traits: Identity | None
    user_id: str | None

    @classmethod
    def of(cls, hit: Hit, phone_region: str | None) -> HitHashes | None:
        """None when the hit says nothing of a person (most hits)."""
        context_traits = hit.context.traits if hit.context is not None else None
        if hit.traits is None and context_traits is None and hit.user_id is None:
            return None
        return cls(
            traits=_identity_of(hit.traits, phone_region),
            context_traits=_identity_of(context_traits, phone_region),
            user_id=hash_external_id(hit.user_id),
        )

    def learned(self) -> Identity:
        """What an identify hit teaches: its user id, then key by key its traits, then
        `context.traits` (as `traits_identity` over both would say)."""
        own = (self.traits or _NOBODY).filled_from(self.context_traits or _NOBODY)
        return Identity(user_id_hash=self.user_id).filled_from(own)


_NOBODY = Identity()


def _identity_of(traits: Traits | None, phone_region: str | None) -> Identity | None:
    return None if traits is None else traits_identity([traits], phone_region)


def render(
    hit: Hit,
    request: RawRequest,
    phone_region: str | None,
    context: HitContext | None,
    hashes: HitHashes | None = None,
) -> bytes:
    """`{"hit": ..., "request": ..., "resolved": ...}`, joined from parts (the request's part is
    encoded once for all its hits). `hashes`: the hit's, when planning made them already."""
    hashes = hashes or HitHashes.of(hit, phone_region)
    parts = [b'{"hit":', _encode(hashed_hit(hit, hashes)), b',"request":', request.encoded()]
    if context is not None:
        parts += [b',"resolved":', _encode(resolved_json(context))]
    parts.append(b"}")
    return b"".join(parts)


def resolved_json(context: HitContext) -> _ResolvedJson:
    """What collection resolved for the hit (ids, cookies, event time, the identity cookie's
    hashes): re-processing plans the hit again with exactly these, so only the mapping changes.
    """
    identity = context.identity
    return _ResolvedJson(
        event_id=context.event_id,
        event_time=context.event_time,
        anonymous_id=context.anonymous_id,
        ttp=context.ttp,
        ttclid=context.ttclid,
        ip=context.ip,
        user_agent=context.user_agent,
        locale=context.locale,
        identity=_NO_HASHES if identity.empty else hashed_identity(identity),
    )


class _ResolvedJson(msgspec.Struct, gc=False):
    """`resolved_json`'s fields, in the record's order (encoded in C, nulls included)."""

    event_id: str
    event_time: int
    anonymous_id: str | None
    ttp: str | None
    ttclid: str | None
    ip: str | None
    user_agent: str | None
    locale: str | None
    identity: dict[str, Any]


_NO_HASHES: dict[str, Any] = {}


def hashed_hit(hit: Hit, hashes: HitHashes | None) -> Hit:
    """The hit to encode with every trait and the user id hashed (nothing raw about a person).

    A copy whose `user_id` and traits hold their hashes (a dict where `Traits` was: encoding
    does not check types), so msgspec encodes it straight from the structs, fields in place;
    a hit without any of them is encoded as it is.
    """
    if hashes is None:
        return hit
    changes: dict[str, Any] = {}
    if hit.user_id is not None:
        changes["user_id"] = hashes.user_id
    if hashes.traits is not None:
        changes["traits"] = hashed_identity(hashes.traits)
    if hit.context is not None and hashes.context_traits is not None:
        traits = hashed_identity(hashes.context_traits)
        changes["context"] = msgspec.structs.replace(hit.context, traits=traits)
    return msgspec.structs.replace(hit, **changes) if changes else hit


def _iso(timestamp: float) -> str:
    return f"{_iso_second(int(timestamp))}.{int(timestamp * 1000) % 1000:03d}Z"


# Every request of the same second shares its text: formatting it (`gmtime`, `strftime`) cost
# more than the rest of the request's facts together.
@functools.lru_cache(maxsize=8)
def _iso_second(second: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
