"""Normalising and hashing of the user fields TikTok matches on (email, phone, external id).

Pure: no I/O. Every hash is lowercase hex SHA-256. A value that already is one (64 lowercase hex
characters) is taken as hashed and returned as is, so hashing twice is harmless and identities
stored hashed (the identity cookie) pass straight through.
"""

from __future__ import annotations

import hashlib
import re

import phonenumbers

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def is_sha256_hex(value: object) -> bool:
    return isinstance(value, str) and _SHA256_HEX.fullmatch(value) is not None


def hash_email(raw: str | None) -> str | None:
    """Trim, lowercase, SHA-256; None for anything that cannot be an address."""
    if raw is None:
        return None
    email = raw.strip()
    if is_sha256_hex(email):
        return email
    email = email.lower()
    if "@" not in email:
        return None
    return sha256_hex(email)


def hash_phone(raw: str | None, default_region: str | None) -> str | None:
    """SHA-256 of the E.164 form (with '+'), only for a possible number; never guessed."""
    if raw is None:
        return None
    phone = raw.strip()
    if is_sha256_hex(phone):
        return phone
    e164 = to_e164(phone, default_region)
    return sha256_hex(e164) if e164 is not None else None


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
    """SHA-256 of the trimmed value; None when nothing is left."""
    if raw is None:
        return None
    external_id = raw.strip()
    if not external_id:
        return None
    if is_sha256_hex(external_id):
        return external_id
    return sha256_hex(external_id)
