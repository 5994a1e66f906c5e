"""Secrets at rest and in cookies: authenticated encryption with key rotation.

Keys come from `GATEWAY_SECRET_KEY` (comma-separated; the first encrypts, all decrypt) or are
generated into the data directory. Any string of 32+ characters is accepted as a key: it is
stretched into a Fernet key with HKDF, so operators need not produce Fernet's exact format.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gateway.settings import Secret


def _fernet_for(key: Secret, purpose: bytes) -> Fernet:
    # A key per purpose: a cookie value can never be replayed as a stored secret or vice versa.
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(
        key.reveal().encode()
    )
    return Fernet(base64.urlsafe_b64encode(derived))


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
