"""One way to open a Redis client, shared by the Redis hit log and the shared rate limit."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis
import redis.asyncio as aioredis
from redis.driver_info import DriverInfo


def connect(url: str) -> aioredis.Redis:
    """A client (connections open lazily) with timeouts suited to a queue on the hit's path."""
    return aioredis.Redis.from_url(
        url,
        decode_responses=False,
        socket_connect_timeout=5,
        socket_timeout=15,
        # Named up front: left alone, redis-py reads its version from the package metadata
        # (a file read on the event loop) for every new connection.
        driver_info=DriverInfo(lib_version=redis.__version__).add_upstream_driver(
            "tiktok-event-gateway", "1"
        ),
    )


def split_redis_url(url: str) -> tuple[str, str]:
    """`redis://h/0?prefix=shop` -> (the URL for the client, the key prefix, `gateway` if none)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefix = next((v for k, v in query if k == "prefix" and v), "gateway")
    rest = urlencode([(k, v) for k, v in query if k != "prefix"])
    return urlunsplit(parts._replace(query=rest)), prefix
