"""Hashing of the user fields, against TikTok's own test vectors."""

from __future__ import annotations

import pytest

from gateway.hashing import (
    hash_email,
    hash_external_id,
    hash_phone,
    is_sha256_hex,
    sha256_hex,
)

# TikTok's examples (TIKTOK.md): independent literals, not computed by the code under test.
EMAIL_HASH = "848a771458438fc2ec420560d769fb9b9b86851ee338ec56517baabd79d3bb4f"
PHONE_HASH = "9f7ec22d72092cd3c0b58726ed9c2d91b92e51a3f29837508fb2948bb22dd2fd"
USER_123_HASH = "80fba0ae1c48e3978e43e4efc365e14e12ea0c830ba8ba5b9a2dafc7e3f2ab8b"
# sha256("") - a well-known constant, used as "some value that is already hashed".
HASHED = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_sha256_hex_is_lowercase_hex_of_utf8() -> None:
    assert sha256_hex("user_123") == USER_123_HASH
    assert sha256_hex("") == HASHED


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(HASHED, True, id="sha256-hex"),
        pytest.param(HASHED.upper(), False, id="uppercase"),
        pytest.param(HASHED[:-1], False, id="63-chars"),
        pytest.param(HASHED + "0", False, id="65-chars"),
        pytest.param("g" + HASHED[1:], False, id="non-hex-char"),
        pytest.param(f" {HASHED}", False, id="padded"),
        pytest.param(f"{HASHED}\n", False, id="trailing-newline"),
        pytest.param(HASHED.encode(), False, id="bytes"),
        pytest.param(None, False, id="none"),
        pytest.param(12345, False, id="int"),
    ],
)
def test_is_sha256_hex(value: object, expected: bool) -> None:
    assert is_sha256_hex(value) is expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(" ALICE_abc@gmail.com ", EMAIL_HASH, id="tiktok-vector"),
        pytest.param("alice_abc@gmail.com", EMAIL_HASH, id="already-normalised"),
        pytest.param("\tAlice_ABC@Gmail.COM\n", EMAIL_HASH, id="mixed-case-and-tabs"),
        pytest.param(HASHED, HASHED, id="already-hashed"),
        pytest.param(f"  {HASHED} ", HASHED, id="already-hashed-padded"),
        pytest.param(HASHED.upper(), None, id="uppercase-hex-is-not-an-address"),
        pytest.param("no-at-sign.example.com", None, id="no-at-sign"),
        pytest.param("", None, id="empty"),
        pytest.param("   ", None, id="blank"),
        pytest.param(None, None, id="none"),
    ],
)
def test_hash_email(raw: str | None, expected: str | None) -> None:
    assert hash_email(raw) == expected


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        pytest.param("(+1)2133734253", None, PHONE_HASH, id="tiktok-vector"),
        pytest.param("+12133734253", None, PHONE_HASH, id="e164"),
        pytest.param("+1 (213) 373-4253", "DE", PHONE_HASH, id="international-ignores-region"),
        pytest.param("(213) 373-4253", "US", PHONE_HASH, id="national-with-region"),
        pytest.param("213.373.4253", "us", PHONE_HASH, id="national-lowercase-region"),
        pytest.param(" 2133734253 ", "US", PHONE_HASH, id="national-padded"),
        pytest.param("2133734253", None, None, id="national-without-region"),
        pytest.param("12", "US", None, id="too-short"),
        pytest.param("+1 213", None, None, id="international-too-short"),
        pytest.param("+12133734253999999", None, None, id="too-long"),
        pytest.param("call me maybe", "US", None, id="not-a-number"),
        pytest.param("", "US", None, id="empty"),
        pytest.param(None, "US", None, id="none"),
        pytest.param(HASHED, None, HASHED, id="already-hashed"),
    ],
)
def test_hash_phone(raw: str | None, region: str | None, expected: str | None) -> None:
    assert hash_phone(raw, region) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param("user_123", USER_123_HASH, id="tiktok-vector"),
        pytest.param("  user_123\n", USER_123_HASH, id="trimmed"),
        pytest.param(HASHED, HASHED, id="already-hashed"),
        pytest.param("", None, id="empty"),
        pytest.param("  ", None, id="blank"),
        pytest.param(None, None, id="none"),
    ],
)
def test_hash_external_id(raw: str | None, expected: str | None) -> None:
    assert hash_external_id(raw) == expected


def test_external_id_keeps_case() -> None:
    # Unlike an email, an id is case-sensitive: only trimming normalises it.
    assert hash_external_id("USER_123") not in (None, USER_123_HASH)
