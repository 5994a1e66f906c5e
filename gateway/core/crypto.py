"""Secrets at rest and in cookies: authenticated encryption with key rotation.

Keys come from `GATEWAY_SECRET_KEY` (comma-separated; the first encrypts, all decrypt) or are
generated into the data directory. Any string of 32+ characters is accepted as a key: it is
stretched with HKDF into a key per purpose, so operators need not produce an exact format.

Secrets at rest use Fernet (`SecretBox`). The identity cookie, sealed on the hot path, uses
AES-256-GCM (`CookieBox`): one call into the library instead of Fernet's cipher, padder and HMAC
objects, and a nonce from the pooled randomness of `gateway.core.ids` rather than a system call.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gateway.core import ids
from gateway.core.settings import Secret


def _derive(key: Secret, purpose: bytes) -> bytes:
    # A key per purpose: a cookie value can never be replayed as a stored secret or vice versa.
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(
        key.reveal().encode()
    )


def _fernet_for(key: Secret, purpose: bytes) -> Fernet:
    return Fernet(base64.urlsafe_b64encode(_derive(key, purpose)))


class SecretBox:
    """Encrypts and authenticates small values for one purpose ("token", "cookie", ...)."""

    def __init__(self, keys: Sequence[Secret], purpose: str) -> None:
        if not keys:
            raise ValueError("at least one key is needed")
        self._fernet = MultiFernet([_fernet_for(k, purpose.encode()) for k in keys])

    def seal(self, plaintext: bytes) -> str:
        return self._fernet.encrypt(plaintext).decode("ascii")

    def open(self, token: str, ttl_s: int | None = None) -> bytes | None:
        """The plaintext, or None when the token is foreign, tampered with or too old."""
        try:
            if ttl_s is None:
                return self._fernet.decrypt(token.encode("ascii"))
            return self._fernet.decrypt(token.encode("ascii"), ttl=ttl_s)
        except (InvalidToken, UnicodeEncodeError, ValueError):
            return None


class CookieBox:
    """Seals small values for a cookie with AES-256-GCM; the first key seals, every key opens.

    A sealed value is URL-safe base64 (unpadded) of: version (1 byte), the sealing time (8
    bytes, big-endian seconds, authenticated as associated data so `ttl_s` can trust it), the
    nonce (12 random bytes) and the ciphertext with its tag.
    """

    _VERSION = b"\x01"
    _HEADER = 1 + 8 + 12

    def __init__(self, keys: Sequence[Secret], purpose: str) -> None:
        if not keys:
            raise ValueError("at least one key is needed")
        self._aeads = [AESGCM(_derive(k, purpose.encode())) for k in keys]

    def seal(self, plaintext: bytes) -> str:
        header = self._VERSION + int(time.time()).to_bytes(8, "big")
        nonce = ids.random_bytes(12)
        sealed = header + nonce + self._aeads[0].encrypt(nonce, plaintext, header)
        return base64.urlsafe_b64encode(sealed).rstrip(b"=").decode("ascii")

    def open(self, token: str, ttl_s: int | None = None) -> bytes | None:
        """The plaintext, or None when the value is foreign, tampered with or too old."""
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            return None
        if len(raw) <= self._HEADER or raw[:1] != self._VERSION:
            return None
        header, nonce, body = raw[:9], raw[9 : self._HEADER], raw[self._HEADER :]
        if ttl_s is not None and int.from_bytes(header[1:], "big") + ttl_s < time.time():
            return None
        for aead in self._aeads:
            try:
                return aead.decrypt(nonce, body, header)
            except InvalidTag:
                continue
        return None


def new_token(prefix: str = "", nbytes: int = 24) -> str:
    return prefix + secrets.token_urlsafe(nbytes)


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def constant_time_in(candidate: str, allowed: Sequence[Secret]) -> bool:
    """Whether `candidate` equals one of `allowed`, without leaking which or how much matched."""
    digest = hashlib.sha256(candidate.encode()).digest()
    found = False
    for secret in allowed:
        # Compare digests so that lengths leak nothing; check every key, never stop early.
        found |= hmac.compare_digest(digest, hashlib.sha256(secret.reveal().encode()).digest())
    return found
