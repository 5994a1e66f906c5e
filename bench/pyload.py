"""A Python load generator: the fallback when wrk is absent, and the exact-accounting client.

Keep-alive HTTP/1.1 over raw asyncio protocols (uvloop), `connections` requests in flight, the
same workload rotation as hits.lua. It reports what hits.lua's done() reports, plus its own CPU
time, so a reader can see whether it, rather than the server, was the bottleneck. With
`track_ids` it keeps the message id of every hit answered 2xx: the workers phase uses that to
prove that no acknowledged hit was lost or delivered twice.

    python -m bench.pyload --url http://127.0.0.1:8080 --duration 5 --connections 32
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import time
from typing import Any, cast
from urllib.parse import urlsplit

from bench import workload

# bench.run --random-ids: message ids that start at random, as the tag's UUIDs do.
RANDOM_IDS = os.environ.get("BENCH_RANDOM_IDS") == "1"


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[int] | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as such.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        head_end = self.buffer.find(b"\r\n\r\n")
        if head_end < 0 or self.waiter is None or self.waiter.done():
            return
        head = bytes(self.buffer[:head_end]).lower()
        length = 0
        marker = head.find(b"content-length:")
        if marker >= 0:
            line_end = head.find(b"\r\n", marker)
            length = int(head[marker + 15 : line_end if line_end >= 0 else None])
        if len(self.buffer) < head_end + 4 + length:
            return
        status = int(head[9:12])
        del self.buffer[: head_end + 4 + length]
        self.waiter.set_result(status)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection closed"))


class Load:
    def __init__(
        self,
        url: str,
        *,
        duration_s: float,
        connections: int,
        rate: float = 0.0,
        only_events: bool = False,
        track_ids: bool = False,
        batch_hits: int = 0,
        tag: str = "py",
        quantiles: tuple[float, ...] = (),
    ) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.duration_s = duration_s
        self.connections = connections
        self.rate = rate
        self.track_ids = track_ids
        self.requests = workload.requests(only_events=only_events)
        if batch_hits:
            # Static /v1/batch bodies (the outage phase): no message id to fill in.
            body = workload.batch_body(batch_hits)
            self.requests = [workload.Request("/v1/batch", "application/json", body, b"")]
        self.batch_hits = batch_hits
        self.tag = tag  # in every message id: several clients on one cluster never repeat one
        self.quantiles = quantiles
        self.cookies = workload.cookie_sets(workload.sealed_identity_cookie())
        self.n = 0
        self.latencies_us: list[float] = []
        self.errors = {"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0}
        self.acked: list[str] = []
        self.bytes = 0

    def _next(self) -> tuple[bytes, str]:
        self.n += 1
        n = self.n
        req = self.requests[n % len(self.requests)]
        mid = f"b{time.time_ns() // 1000}-{self.tag}-{n}"
        if RANDOM_IDS:  # as the tag's UUIDs: the hit log's event-id index sees random keys
            mid = f"r{secrets.token_hex(8)}.{mid}"
        body = req.pre if self.batch_hits else req.pre + mid.encode() + req.post
        headers = workload.headers_for(n, self.cookies)
        lines = [f"POST {req.path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        lines += [f"Content-Type: {req.content_type}", f"Content-Length: {len(body)}", "", ""]
        return "\r\n".join(lines).encode() + body, mid

    async def _worker(self, deadline: float, slots: list[float]) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await loop.create_connection(_Connection, self.host, self.port)
        except OSError:
            self.errors["connect"] += 1
            return
        assert conn.transport is not None
        try:
            while True:
                if self.rate > 0:
                    slots[0] += 1.0 / self.rate
                    wait = slots[0] - time.monotonic()
                    if wait > 0:
                        await asyncio.sleep(wait)
                if time.monotonic() >= deadline:
                    return
                payload, mid = self._next()
                conn.waiter = loop.create_future()
                started = time.perf_counter()
                conn.transport.write(payload)
                try:
                    status = await conn.waiter
                except ConnectionError:
                    self.errors["read"] += 1
                    return
                self.latencies_us.append((time.perf_counter() - started) * 1e6)
                self.bytes += len(payload)
                if status >= 400:
                    self.errors["status"] += 1
                elif self.track_ids:
                    self.acked.append(mid)
        finally:
            conn.transport.close()

    async def run(self) -> dict[str, Any]:
        cpu0 = sum(os.times()[:2])
        started = time.monotonic()
        deadline = started + self.duration_s
        slots = [started]
        await asyncio.gather(*(self._worker(deadline, slots) for _ in range(self.connections)))
        elapsed = time.monotonic() - started
        ordered = sorted(self.latencies_us)

        def pct(p: float) -> float:
            if not ordered:
                return 0.0
            return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]

        result: dict[str, Any] = {
            "requests": len(ordered),
            "duration_us": int(elapsed * 1e6),
            "bytes": self.bytes,
            "errors": self.errors,
            "latency_us": {
                "mean": sum(ordered) / len(ordered) if ordered else 0.0,
                "max": ordered[-1] if ordered else 0.0,
                "p50": pct(50),
                "p90": pct(90),
                "p99": pct(99),
                "p99_9": pct(99.9),
            },
            "loadgen_cpu_s": sum(os.times()[:2]) - cpu0,
        }
        if self.quantiles:
            result["quantiles"] = [pct(p) for p in self.quantiles]
        if self.track_ids:
            result["acked_ids"] = self.acked
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rate", type=float, default=0.0)
    parser.add_argument("--only-events", action="store_true")
    parser.add_argument("--track-ids", action="store_true")
    parser.add_argument("--batch-hits", type=int, default=0, help="send /v1/batch bodies")
    parser.add_argument("--tag", default="py", help="in every message id (b<µs>-<tag>-<n>)")
    parser.add_argument("--quantiles", default="", help="comma-separated percentiles to report")
    args = parser.parse_args()
    load = Load(
        args.url,
        duration_s=args.duration,
        connections=args.connections,
        rate=args.rate,
        only_events=args.only_events,
        track_ids=args.track_ids,
        batch_hits=args.batch_hits,
        tag=args.tag,
        quantiles=tuple(float(p) for p in args.quantiles.split(",") if p),
    )
    import uvloop

    result = uvloop.run(load.run())
    print("BENCH_JSON " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
