"""The identity cookie's sealing (AES-256-GCM): what opens, and everything that must not."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable

import pytest

from gateway.core.crypto import CookieBox
from gateway.core.settings import Secret

KEY = Secret("cookie-test-key-0123456789-abcdefghij")
OTHER = Secret("another-test-key-0123456789-abcdefghij")
PLAINTEXT = b'{"u":"u-42","e":"' + b"a" * 64 + b'"}'


def test_a_sealed_value_opens_and_never_shows_its_plaintext() -> None:
    box = CookieBox([KEY], "identity-cookie")
    sealed = box.seal(PLAINTEXT)
    assert box.open(sealed) == PLAINTEXT
    assert b"u-42" not in base64.urlsafe_b64decode(sealed + "=" * (-len(sealed) % 4))
    assert box.seal(PLAINTEXT) != sealed  # a fresh nonce every time
    assert set(sealed) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_the_first_key_seals_and_every_key_opens() -> None:
    old = CookieBox([KEY], "identity-cookie").seal(PLAINTEXT)
    rotated = CookieBox([OTHER, KEY], "identity-cookie")
    assert rotated.open(old) == PLAINTEXT
    assert CookieBox([OTHER], "identity-cookie").open(rotated.seal(PLAINTEXT)) == PLAINTEXT
    assert CookieBox([OTHER], "identity-cookie").open(old) is None


def test_a_key_serves_one_purpose() -> None:
    sealed = CookieBox([KEY], "identity-cookie").seal(PLAINTEXT)
    assert CookieBox([KEY], "another-purpose").open(sealed) is None


@pytest.mark.parametrize(
    "damage",
    [
        lambda v: v[:-1] + ("A" if v[-1] != "A" else "B"),  # the tag
        lambda v: v[:12] + ("A" if v[12] != "A" else "B") + v[13:],  # the sealing time
        lambda v: v[:20],  # cut short
        lambda v: ("B" if v[0] != "B" else "C") + v[1:],  # another version byte
        lambda v: "not base64 !",
        lambda v: "",
    ],
)
def test_a_damaged_value_opens_to_nothing(damage: Callable[[str], str]) -> None:
    box = CookieBox([KEY], "identity-cookie")
    assert box.open(damage(box.seal(PLAINTEXT))) is None


def test_a_value_older_than_its_ttl_opens_to_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    box = CookieBox([KEY], "identity-cookie")
    sealed = box.seal(PLAINTEXT)
    assert box.open(sealed, ttl_s=60) == PLAINTEXT
    later = time.time() + 61
    monkeypatch.setattr(time, "time", lambda: later)
    assert box.open(sealed, ttl_s=60) is None
    assert box.open(sealed) == PLAINTEXT  # no ttl asked: age does not matter
