"""First-party cookies: names, lifetimes, attributes, and the sealed identity cookie.

The identity (`_dfuser`) holds only hashes (the user id's, the emails', phones', names' and
address's), sealed with the gateway's key: any replica can read it, the browser cannot, and a
tampered or foreign value reads as no identity at all.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping

import msgspec

from gateway.core.crypto import CookieBox
from gateway.core.hashing import hash_external_id, is_sha256_hex
from gateway.core.hit import MAX_CLICK_ID_LENGTH
from gateway.core.identity import MAX_IDENTITY_VALUES, Identity

TTP = "_ttp"
ANONYMOUS_ID = "_dfid"
TTCLID = "ttclid"
IDENTITY = "_dfuser"

DAY_S = 24 * 60 * 60
THIRTEEN_MONTHS_S = 395 * DAY_S
THIRTY_DAYS_S = 30 * DAY_S

# Cookie values come from the browser: accept only what we (or TikTok's pixel) could have set
# (the pixel's current _ttp looks like "01KEMC163EX38R4MP15Q3AE1EF_.tt.1").
_SAFE_VALUE = re.compile(r"^[A-Za-z0-9._~|:+/=-]{1,200}$")
# TikTok's click ids ("E.C.P." and base64url, 320-340 characters today) and whatever of the same
# kind it may issue later: RFC 6265 cookie octets less quotes and backslash, so a click id goes
# back out in Set-Cookie as it came and can never split or break the header (no ';', ',',
# space, CR/LF or control characters).
_CLICK_ID_CHARS = r"[A-Za-z0-9!#$%&()*+\-./:<=>?@\[\]^_`{|}~]"
_CLICK_ID = re.compile(_CLICK_ID_CHARS + f"{{1,{MAX_CLICK_ID_LENGTH}}}")


_Hashes = str | list[str] | None


class _SealedIdentity(msgspec.Struct, omit_defaults=True):
    """The cookie's plaintext: short keys, one hash as a string, several as a list."""

    u: str | None = None  # a raw user id, as gateways before hashing wrote it; hashed on reading
    x: str | None = None  # the user id's hash
    e: _Hashes = None
    p: _Hashes = None
    fn: str | None = None
    ln: str | None = None
    ct: str | None = None
    st: str | None = None
    co: str | None = None
    zp: str | None = None


_identity_decoder = msgspec.json.Decoder(_SealedIdentity)


def _packed(hashes: tuple[str, ...]) -> _Hashes:
    if not hashes:
        return None
    return hashes[0] if len(hashes) == 1 else list(hashes)


def _unpacked(hashes: _Hashes) -> tuple[str, ...]:
    if hashes is None:
        return ()
    values = [hashes] if isinstance(hashes, str) else hashes
    return tuple(v for v in values if is_sha256_hex(v))[:MAX_IDENTITY_VALUES]


def _hash_or_none(value: str | None) -> str | None:
    return value if is_sha256_hex(value) else None


def seal_identity(box: CookieBox, identity: Identity) -> str:
    sealed = _SealedIdentity(
        x=identity.user_id_hash,
        e=_packed(identity.email_hashes),
        p=_packed(identity.phone_hashes),
        fn=identity.first_name,
        ln=identity.last_name,
        ct=identity.city,
        st=identity.state,
        co=identity.country,
        zp=identity.zip_code,
    )
    return box.seal(msgspec.json.encode(sealed))


def open_sealed_identity(box: CookieBox, value: str | None) -> tuple[Identity, bool]:
    """The identity in a cookie (an empty one when it is absent, foreign or tampered with), and
    whether it must be sealed again: an older gateway's cookie held the raw user id, which the
    cookie must not carry any longer."""
    if not value:
        return Identity(), False
    plaintext = box.open(value, ttl_s=THIRTEEN_MONTHS_S)
    if plaintext is None:
        return Identity(), False
    try:
        sealed = _identity_decoder.decode(plaintext)
    except msgspec.DecodeError:
        return Identity(), False
    identity = Identity(
        user_id_hash=_hash_or_none(sealed.x) or hash_external_id(sealed.u),
        email_hashes=_unpacked(sealed.e),
        phone_hashes=_unpacked(sealed.p),
        first_name=_hash_or_none(sealed.fn),
        last_name=_hash_or_none(sealed.ln),
        city=_hash_or_none(sealed.ct),
        state=_hash_or_none(sealed.st),
        country=_hash_or_none(sealed.co),
        zip_code=_hash_or_none(sealed.zp),
    )
    return identity, sealed.u is not None


def safe_cookie_value(value: str | None) -> str | None:
    """A browser-supplied id, or None when it is not something we could have set."""
    if value and _SAFE_VALUE.match(value):
        return value
    return None


def safe_click_id(value: str | None) -> str | None:
    """A TikTok click id exactly as given, or None when it could not be a cookie value."""
    if value and _CLICK_ID.fullmatch(value):
        return value
    return None


class VisitorCookies(msgspec.Struct, frozen=True, gc=False):
    """The gateway's cookies a request carried, each checked as what we could have set."""

    ttp: str | None = None
    anonymous_id: str | None = None
    ttclid: str | None = None
    identity: str | None = None  # the sealed value as received (opened by `IdentityCodec`)

    @classmethod
    def of(cls, jar: Mapping[str, str]) -> VisitorCookies:
        return cls(
            ttp=safe_cookie_value(jar.get(TTP)),
            anonymous_id=safe_cookie_value(jar.get(ANONYMOUS_ID)),
            ttclid=safe_click_id(jar.get(TTCLID)),
            identity=jar.get(IDENTITY) or None,
        )


class CookieHeaders:
    """The visitor's cookies by `Cookie` header, remembered.

    A visitor sends the same header with every hit until a cookie changes, and parsing it (the
    framework builds a `Morsel` per cookie, third parties' included) cost more than all the
    checks after it. Bounded: past `remembered` headers it starts afresh, so a flood of made-up
    headers only costs the parsing it would have cost anyway.
    """

    def __init__(self, remembered: int = 4096) -> None:
        self._remembered = remembered
        self._known: dict[str, VisitorCookies] = {}

    def read(self, header: str, jar: Callable[[], Mapping[str, str]]) -> VisitorCookies:
        """The cookies of `header`; `jar` parses it (the framework's own parser) when new."""
        known = self._known.get(header)
        if known is None:
            known = VisitorCookies.of(jar())
            if len(self._known) >= self._remembered:
                self._known = {}
            self._known[header] = known
        return known


class IdentityCodec:
    """Seals identities and opens identity cookies, remembering recent openings.

    A visitor sends the same sealed value on every hit and opening it costs a decryption, so
    the last few thousand results are kept (per process, in memory; the key never leaves).
    """

    def __init__(self, box: CookieBox, remembered: int = 8192) -> None:
        self._box = box
        self.open = functools.lru_cache(maxsize=remembered)(self._open)

    def _open(self, value: str | None) -> tuple[Identity, bool]:
        """The identity, and whether it must be sealed again (`open_sealed_identity`)."""
        return open_sealed_identity(self._box, value)

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
