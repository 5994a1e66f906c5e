"""First-party cookies: names, lifetimes, attributes, and the sealed identity cookie.

The identity (`_dfuser`) holds the user id and the *hashed* email and phone, sealed with the
gateway's key: any replica can read it, the browser cannot, and a tampered or foreign value reads
as no identity at all.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import msgspec

from gateway.crypto import CookieBox

TTP = "_ttp"
ANONYMOUS_ID = "_dfid"
TTCLID = "ttclid"
IDENTITY = "_dfuser"

DAY_S = 24 * 60 * 60
THIRTEEN_MONTHS_S = 395 * DAY_S
THIRTY_DAYS_S = 30 * DAY_S

# Cookie values come from the browser: accept only what we (or TikTok's pixel) could have set.
_SAFE_VALUE = re.compile(r"^[A-Za-z0-9._~|:+/=-]{1,200}$")


@dataclass(frozen=True, slots=True)
class Identity:
    user_id: str | None = None
    email_hash: str | None = None
    phone_hash: str | None = None

    def merged_with(self, other: Identity) -> Identity:
        """This identity updated by what `other` knows (identify adds, never erases)."""
        return Identity(
            user_id=other.user_id or self.user_id,
            email_hash=other.email_hash or self.email_hash,
            phone_hash=other.phone_hash or self.phone_hash,
        )

    @property
    def empty(self) -> bool:
        return not (self.user_id or self.email_hash or self.phone_hash)


class _SealedIdentity(msgspec.Struct, omit_defaults=True):
    u: str | None = None
    e: str | None = None
    p: str | None = None


_identity_decoder = msgspec.json.Decoder(_SealedIdentity)


def seal_identity(box: CookieBox, identity: Identity) -> str:
    sealed = _SealedIdentity(u=identity.user_id, e=identity.email_hash, p=identity.phone_hash)
    return box.seal(msgspec.json.encode(sealed))


def open_identity(box: CookieBox, value: str | None) -> Identity:
    """The identity in a cookie; an empty one when it is absent, foreign or tampered with."""
    if not value:
        return Identity()
    plaintext = box.open(value, ttl_s=THIRTEEN_MONTHS_S)
    if plaintext is None:
        return Identity()
    try:
        sealed = _identity_decoder.decode(plaintext)
    except msgspec.DecodeError:
        return Identity()
    return Identity(user_id=sealed.u, email_hash=sealed.e, phone_hash=sealed.p)


def safe_cookie_value(value: str | None) -> str | None:
    """A browser-supplied id, or None when it is not something we could have set."""
    if value and _SAFE_VALUE.match(value):
        return value
    return None


class IdentityCodec:
    """Seals identities and opens identity cookies, remembering recent openings.

    A visitor sends the same sealed value on every hit and opening it costs a decryption, so
    the last few thousand results are kept (per process, in memory; the key never leaves).
    """

    def __init__(self, box: CookieBox, remembered: int = 8192) -> None:
        self._box = box
        self.open = functools.lru_cache(maxsize=remembered)(self._open)

    def _open(self, value: str | None) -> Identity:
        return open_identity(self._box, value)

    def seal(self, identity: Identity) -> str:
        return seal_identity(self._box, identity)


@functools.lru_cache(maxsize=64)
def _attributes(max_age: int, secure: bool, domain: str | None, http_only: bool) -> str:
    parts = [f"Max-Age={max_age}", "Path=/", "SameSite=Lax"]
    if domain:
        parts.append(f"Domain={domain}")
    if secure:
        parts.append("Secure")
    if http_only:
        parts.append("HttpOnly")
    return "; " + "; ".join(parts)


def set_cookie_value(
    name: str, value: str, max_age: int, *, secure: bool, domain: str | None, http_only: bool
) -> str:
    """A `Set-Cookie` header value (SPEC: Path=/, SameSite=Lax, Secure on HTTPS, Domain).

    Written directly rather than through `http.cookies.Morsel`, which the profile showed to be
    slow: values here are UUIDs, sealed tokens or ids that passed `safe_cookie_value`, none of
    which needs quoting.
    """
    return f"{name}={value}{_attributes(max_age, secure, domain, http_only)}"
