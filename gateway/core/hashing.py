"""Normalising and hashing of the user fields TikTok matches on.

Pure: no I/O. Every hash is lowercase hex SHA-256. A value that already is one (64 hex characters,
in either case: some CRMs export upper-case digests) is taken as hashed and returned lower-cased,
so hashing twice is harmless and identities stored hashed (the identity cookie) pass straight
through.

Where the rules come from (reference implementations read, not copied):
- email, phone, external_id: TikTok's server-side GTM template (`tiktok/gtm-template-eapi`,
  template.tpl) trims every value, lower-cases email and phone, keeps the case of external_id and
  passes 64-hex values through. Phones are E.164 here, as TikTok asks; the GTM template leaves
  that to the advertiser and Segment approximates it by keeping the digits behind a '+'.
- first_name, last_name, zip_code: Segment's TikTok Conversions destination
  (`segmentio/action-destinations`, tiktok-conversions/formatter.ts `formatString`) lower-cases and
  removes whitespace before hashing; we also drop punctuation ("O'Brien" and "OBrien", "Jean-Luc"
  and "Jean Luc" are one person), as TikTok's matching advice asks for names.
- city, state: Segment's `formatAddress` keeps only letters and digits, lower-cased. Segment's
  pattern is ASCII-only, which would turn "São Paulo" into "sopaulo"; letters of every script are
  kept here. Unlike Segment these are hashed too: the gateway never stores them raw.
- country: ISO 3166-1 alpha-2, lower-case, then hashed; a name or alpha-3 code is resolved with
  `pycountry`, anything unknown is left out rather than guessed.
RudderStack's tiktok_ads destination (`rudderlabs/rudder-transformer`, tiktok_ads/util.js) trims
and hashes email, phone and external_id, keeping external_id's case, as the GTM template does.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable

import phonenumbers
import pycountry

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_ANY_CASE_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")


def _country_codes() -> dict[str, str]:
    """Every way pycountry names a country (codes, name, official and common names), lower-cased,
    to its lower-case alpha-2 code. Built at import: pycountry reads its data from disk, which
    must not happen on the event loop."""
    codes: dict[str, str] = {}
    for country in pycountry.countries:
        alpha_2 = str(country.alpha_2).lower()
        for attribute in ("alpha_2", "alpha_3", "name", "official_name", "common_name"):
            name = getattr(country, attribute, None)
            if name:
                codes.setdefault(str(name).lower(), alpha_2)
    # ISO 3166 reserves "UK" for the United Kingdom exceptionally; people write it more than GB.
    codes.setdefault("uk", "gb")
    return codes


_COUNTRY_CODES = _country_codes()


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def is_sha256_hex(value: object) -> bool:
    """Whether a value is a hash exactly as the gateway sends one (lowercase hex)."""
    return isinstance(value, str) and _SHA256_HEX.fullmatch(value) is not None


def prehashed(value: str) -> str | None:
    """A value that is already a SHA-256 digest in any case, lower-cased; else None."""
    return value.lower() if _ANY_CASE_SHA256_HEX.fullmatch(value) else None


def _hash_normalised(raw: str | None, normalise: Callable[[str], str | None]) -> str | None:
    """Every field's steps: trim; a value already hashed passes (lower-cased); else SHA-256 of
    the field's normal form, None when it has none (empty, or not a value of its kind)."""
    if raw is None:
        return None
    value = raw.strip()
    already = prehashed(value)
    if already:
        return already
    normal = normalise(value)
    return sha256_hex(normal) if normal else None


def hash_email(raw: str | None) -> str | None:
    """Trim, lowercase, SHA-256; None for anything that cannot be an address."""
    return _hash_normalised(raw, _email)


def _email(value: str) -> str | None:
    return value.lower() if "@" in value else None


def hash_phone(raw: str | None, default_region: str | None) -> str | None:
    """SHA-256 of the E.164 form (with '+'), only for a possible number; never guessed."""
    return _hash_normalised(raw, lambda phone: to_e164(phone, default_region))


def to_e164(phone: str, default_region: str | None) -> str | None:
    """E.164 with the leading '+', or None when the number is unparsable or not possible.

    A national number (no '+' or international prefix) takes `default_region`; without one it
    is unparsable, and so left out rather than given a country it may not have.
    """
    region = default_region.strip().upper() if default_region else None
    try:
        number = phonenumbers.parse(phone, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def hash_external_id(raw: str | None) -> str | None:
    """SHA-256 of the trimmed value, case kept; None when nothing is left.

    Case is kept as TikTok's own server-side GTM template and RudderStack do: user ids are often
    case-sensitive ("UserABC" and "userabc" may be two accounts), and lower-casing them would
    merge people. (Segment lower-cases; we follow TikTok's template.)
    """
    return _hash_normalised(raw, _as_is)


def _as_is(value: str) -> str:
    return value


def hash_name(raw: str | None) -> str | None:
    """first_name / last_name: letters and digits only, lower-cased, then SHA-256."""
    return _hash_compacted(raw)


def hash_city(raw: str | None) -> str | None:
    return _hash_compacted(raw)


def hash_state(raw: str | None) -> str | None:
    return _hash_compacted(raw)


def hash_zip_code(raw: str | None) -> str | None:
    """Postal code without spaces, dashes or other punctuation, lower-cased ("SW1A 1AA")."""
    return _hash_compacted(raw)


def hash_country(raw: str | None) -> str | None:
    """SHA-256 of the lower-case ISO 3166-1 alpha-2 code; None when the country is unknown."""
    return _hash_normalised(raw, country_code)


def country_code(value: str) -> str | None:
    """The lower-case alpha-2 code of a country given by code or English name."""
    return _COUNTRY_CODES.get(value.strip().lower())


def compact(value: str) -> str:
    """Lower-cased letters and digits of any script; spaces and punctuation dropped."""
    normalised = unicodedata.normalize("NFC", value).lower()
    return "".join(char for char in normalised if char.isalnum())


def _hash_compacted(raw: str | None) -> str | None:
    return _hash_normalised(raw, compact)
