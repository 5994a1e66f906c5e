"""Request headers as text, whatever bytes the client sent."""

from __future__ import annotations

from collections.abc import Mapping


def header_text(headers: Mapping[str, str], name: str) -> str | None:
    """A header's value with every byte that is not UTF-8 read as U+FFFD.

    aiohttp keeps such bytes as lone surrogates, which no encoder accepts: left as they were, a
    Latin-1 User-Agent failed the hit when its event was serialised, and a Latin-1 token failed
    the check that hashes it. A value that was valid UTF-8 comes back unchanged.
    """
    value = headers.get(name)
    if value is None or value.isascii():
        return value
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
