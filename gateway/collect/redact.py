"""Email addresses, phone numbers and secrets taken out of page URLs before anything keeps them.

Sites put them in URLs more often than they mean to (`/thanks?email=…`, a sign-up form sent by
GET, a password-reset link). A page URL and its referrer are stored, shown in the debugger and
sent to TikTok, so each is redacted as the hit arrives:

- a query parameter whose *name* says it holds contact details or a secret (see
  `_SENSITIVE_NAME_PARTS` and `_SENSITIVE_NAMES`) keeps its name and gets the value `REDACTED`;
- so does any parameter whose *value* holds an email address, or is a phone number (only digits
  and phone punctuation, 7 to 15 digits, and a valid number internationally or in the source's
  default phone region);
- the fragment is treated the same way when it carries parameters (`#/step?email=…`);
- an email address in the path becomes `REDACTED`.

Everything else (other parameters, their order and encoding, the fragment) is kept byte for
byte. `ttclid` is never redacted: it is a click id, not PII, and attribution needs it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import unquote, unquote_plus

import phonenumbers

REDACTED = "REDACTED"

_KEPT_NAMES = frozenset({"ttclid"})
_SENSITIVE_NAME_PARTS = ("mail", "phone", "mobile", "password", "passwd", "secret", "token")
_SENSITIVE_NAMES = frozenset({"tel", "cell", "msisdn", "sms", "whatsapp", "fax"})

# An address is found from its "@": up to 64 characters of local part before it, and labels
# then a top-level domain after it. Bounded on both sides so a hostile 2 KB URL costs
# microseconds, where one open-ended pattern backtracked for milliseconds.
_NOT_LOCAL = frozenset(" \t\r\n@/?#&=:;,<>\"'")
_MAX_LOCAL = 64
_DOMAIN = re.compile(r"(?:[\w-]{1,63}\.){1,8}[^\W\d_]{2,63}")
_PHONE_SHAPE = re.compile(r"\+?[\d\s().\-/]{7,40}")
_NOT_A_NAME = re.compile(r"[^a-z0-9]")
_MIN_PHONE_DIGITS, _MAX_PHONE_DIGITS = 7, 15
# Checking a number against the numbering plan costs ~60 us; past this many in one URL, a
# phone-shaped value is redacted unchecked, so a URL stuffed with them costs no more.
_PHONE_CHECKS_PER_URL = 8


def redact_url(url: str, phone_region: str | None = None) -> str:
    """`url` with contact details and secrets replaced by `REDACTED` (see the module's rules)."""
    if not any(mark in url for mark in "?#@"):
        return url  # the common case on the hot path: nothing that could hold either
    rest, hash_mark, fragment = url.partition("#")
    path, question_mark, query = rest.partition("?")
    path = _without_emails(path) if "@" in path else path
    checks = _PhoneChecks(phone_region)
    if query:
        query = _redact_params(query, checks)
    if "=" in fragment:
        route, route_mark, route_query = fragment.rpartition("?")
        fragment = route + route_mark + _redact_params(route_query, checks)
    return path + question_mark + query + hash_mark + fragment


def _redact_params(query: str, checks: _PhoneChecks) -> str:
    params = query.split("&")
    for index, param in enumerate(params):
        name, equals, value = param.partition("=")
        if equals and value and _is_sensitive(name, value, checks):
            params[index] = f"{name}={REDACTED}"
    return "&".join(params)


def _is_sensitive(raw_name: str, raw_value: str, checks: _PhoneChecks) -> bool:
    name = _NOT_A_NAME.sub("", _decoded(raw_name).lower())
    if name in _KEPT_NAMES:
        return False
    if name in _SENSITIVE_NAMES or any(part in name for part in _SENSITIVE_NAME_PARTS):
        return True
    value = _decoded(raw_value).strip()
    return any(_email_spans(value)) or checks.is_phone(value)


def _email_spans(text: str) -> Iterator[tuple[int, int]]:
    """Where email addresses stand in `text`, as (start, end)."""
    at = text.find("@")
    while at != -1:
        start = at
        while start > 0 and at - start < _MAX_LOCAL and text[start - 1] not in _NOT_LOCAL:
            start -= 1
        domain = _DOMAIN.match(text, at + 1) if start < at else None
        if domain:
            yield start, domain.end()
        at = text.find("@", at + 1)


def _without_emails(text: str) -> str:
    spans = list(_email_spans(text))
    for start, end in reversed(spans):
        text = text[:start] + REDACTED + text[end:]
    return text


def _decoded(text: str) -> str:
    """Percent-decoded until stable (a value may be encoded twice on its way into a link).

    Only the first pass reads `+` as a space: after it, a `+` is a real one (`+44 …`).
    """
    if "%" not in text and "+" not in text:
        return text
    text = unquote_plus(text)
    for _ in range(2):
        decoded = unquote(text)
        if decoded == text:
            break
        text = decoded
    return text


class _PhoneChecks:
    """Phone-number checks for one URL, at most `_PHONE_CHECKS_PER_URL` of them."""

    def __init__(self, region: str | None) -> None:
        self.region = region
        self.left = _PHONE_CHECKS_PER_URL

    def is_phone(self, value: str) -> bool:
        if not _PHONE_SHAPE.fullmatch(value):
            return False
        digits = sum(c.isdigit() for c in value)
        if not _MIN_PHONE_DIGITS <= digits <= _MAX_PHONE_DIGITS:
            return False
        international = value.startswith(("+", "00"))
        if not international and self.region is None:
            return False  # a bare number with no region to read it in: an id far more often
        if self.left <= 0:
            return True  # out of checks: redact rather than risk letting a number through
        self.left -= 1
        candidate = "+" + value[2:] if value.startswith("00") else value
        try:
            number = phonenumbers.parse(candidate, None if international else self.region)
        except phonenumbers.NumberParseException:
            return False
        return phonenumbers.is_valid_number(number)
