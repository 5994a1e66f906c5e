"""TikTok's answers classified: what each means for the events of the request.

The table of TikTok's documented codes (accepted, throttled, pause, too large, content) as a
function; an answer the table does not know is retried, never dropped.
"""

from __future__ import annotations

import re

from gateway.destinations.base import Answer, PauseHint, Verdict

ACCEPTED_CODES = frozenset({0, 20001})
THROTTLED_CODES = frozenset({40100, 40132, 61000})
PAUSE_CODES = frozenset({40001, 40102, 40104, 40105, 40113, 40118, 40130, 40300, 40301})
TOO_LARGE_CODE = 40061
_TIKTOK_SIDE_CODES = range(50000, 53000)
_TIKTOK_SIDE_EXTRA = frozenset({60001})
_CONTENT_CODES = range(40000, 50000)


def classify(answer: Answer) -> Verdict:
    """TIKTOK.md's table, as a function. Unknown answers are retried, never dropped."""
    if answer.transport_error is not None:
        return Verdict.RETRY
    status = answer.http_status
    if status == 429:
        return Verdict.THROTTLED
    if status is None or status >= 500:
        return Verdict.RETRY
    if 300 <= status < 400:  # a redirect, not followed (see the module's docstring)
        return Verdict.PAUSE
    # Not in TIKTOK.md's table: a proxy in front of TikTok may refuse an oversized body at the
    # HTTP level; retrying the same body would fail forever, splitting it cannot hurt.
    if status == 413:
        return Verdict.TOO_LARGE
    code = answer.code
    if code is None:  # the body was not TikTok's JSON (a proxy's error page, a cut stream)
        return Verdict.RETRY
    if code in ACCEPTED_CODES:
        return Verdict.ACCEPTED if status == 200 else Verdict.RETRY
    return _classify_code(code)


def _classify_code(code: int) -> Verdict:
    if code in THROTTLED_CODES:
        return Verdict.THROTTLED
    if code in _TIKTOK_SIDE_CODES or code in _TIKTOK_SIDE_EXTRA:
        return Verdict.RETRY
    if code in PAUSE_CODES:
        return Verdict.PAUSE
    if code == TOO_LARGE_CODE:
        return Verdict.TOO_LARGE
    if code in _CONTENT_CODES:
        return Verdict.REJECT_CONTENT
    return Verdict.RETRY


# The pause codes that mean the token (or what it may do) is wrong: a new token fixes them.
# 40001 is also TikTok's answer for a token without permission on the pixel (TIKTOK.md).
_TOKEN_CODES = frozenset({40001, 40102, 40104, 40105})
_PAUSE_CODE = re.compile(r"^(\d{5})\b")


def explain_pause(reason: str | None) -> PauseHint | None:
    """The fix for a pause TikTok's answer caused (its reason starts with TikTok's code)."""
    match = _PAUSE_CODE.match(reason or "")
    if match is None:
        return None
    code = int(match.group(1))
    if code in _TOKEN_CODES:
        return PauseHint(
            f"TikTok rejected the access token ({reason}): paste a new one, made in Events "
            "Manager for this pixel.",
            "config.access_token",
        )
    if code in PAUSE_CODES:
        return PauseHint(
            f"TikTok refused this pixel's permissions ({reason}): check in Events Manager that "
            "the access token may send events for this pixel, then paste it again.",
            "config.access_token",
        )
    return None
