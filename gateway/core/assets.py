"""Files shipped inside the package (the tag, the OpenAPI document, the UI), read once.

The first read of each happens on a thread, so serving them never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import importlib.resources

_cache: dict[str, bytes] = {}


def _read(name: str) -> bytes:
    return importlib.resources.files("gateway").joinpath(name).read_bytes()


async def asset(name: str) -> bytes:
    """The bytes of a packaged file such as "static/df.js"."""
    data = _cache.get(name)
    if data is None:
        data = await asyncio.to_thread(_read, name)
        _cache[name] = data
    return data
