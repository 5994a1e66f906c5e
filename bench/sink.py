"""A lean TikTok Events API double for the benchmark, run as its own process.

`python -m bench.sink --port N` answers `POST /open_api/v1.3/event/track/` as TikTok does when
all is well (`{"code": 0, ...}`), fast: it decodes only what it measures. For each accepted event
whose `event_id` is a bench message id (`b<send time µs>-...`, see hits.lua) it records the time
from the hit's send to the event's arrival. Control endpoints for the harness:

    GET  /stats            counts since the last reset, batch sizes, hit-to-TikTok percentiles
                           (?sent_before_us=T: only of hits sent before T, see Sink.stats;
                           ?arrived_before_us=T: batch sizes of requests arrived before T)
    POST /reset            forget everything
    POST /mode?answer=503  answer every request with HTTP 503 (an outage); answer=ok to recover
    POST /track-ids?on=1   keep every event id, so /ids can prove none was lost or duplicated
    GET  /ids              the event ids received (with repeats), when tracking
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import os
import time
from collections import Counter
from typing import Any

import msgspec
from aiohttp import web

PATH = "/open_api/v1.3/event/track/"
_OK = b'{"code":0,"message":"OK","request_id":"bench","data":{}}'


class _Event(msgspec.Struct):
    event_id: str = ""


class _Body(msgspec.Struct):
    data: list[_Event] = []


_decoder = msgspec.json.Decoder(_Body)


class Sink:
    def __init__(self) -> None:
        self.answer = "ok"
        self.track_ids = False
        self.reset()

    def reset(self) -> None:
        self.requests = 0
        self.refused = 0
        self.events = 0
        self.first_at: float | None = None
        self.last_at: float | None = None
        self.latencies_ms = array.array("d")
        self.sent_us = array.array("d")  # the hit's send time, for each latency
        self.request_at_us = array.array("d")  # each accepted request's arrival
        self.request_events = array.array("l")  # and its number of events
        self.ids: list[str] = []

    async def track(self, request: web.Request) -> web.Response:
        raw = await request.read()
        now = time.time()
        if self.answer != "ok":
            self.refused += 1
            return web.Response(status=503)
        body = _decoder.decode(raw)
        self.requests += 1
        self.events += len(body.data)
        self.request_at_us.append(now * 1e6)
        self.request_events.append(len(body.data))
        if self.first_at is None:
            self.first_at = now
        self.last_at = now
        now_us = now * 1e6
        for event in body.data:
            event_id = event.event_id
            if self.track_ids:
                self.ids.append(event_id)
            if event_id.startswith("r"):  # bench.run --random-ids: "r<random>.b<µs>-..."
                event_id = event_id.partition(".")[2]
            if event_id.startswith("b"):
                stamp, _, _ = event_id[1:].partition("-")
                if stamp.isdigit():
                    self.latencies_ms.append((now_us - int(stamp)) / 1000.0)
                    self.sent_us.append(float(stamp))
        return web.Response(body=_OK, content_type="application/json")

    def stats(
        self, sent_before_us: float | None = None, arrived_before_us: float | None = None
    ) -> dict[str, Any]:
        """Counts; hit-to-TikTok percentiles over every timed event, and over those whose hit
        was sent before `sent_before_us` (the harness passes the load's end less the batch wait:
        the last events of a run wait for a batch that no further traffic fills)."""
        ordered = sorted(self.latencies_ms)
        steady = ordered
        if sent_before_us is not None:
            steady = sorted(
                lat
                for lat, sent in zip(self.latencies_ms, self.sent_us, strict=True)
                if sent < sent_before_us
            )
        sizes = [
            n
            for at, n in zip(self.request_at_us, self.request_events, strict=True)
            if arrived_before_us is None or at < arrived_before_us
        ]
        return {
            # Batches that left while the load ran (not the remainder drained after it).
            "events_per_request_steady": sum(sizes) / len(sizes) if sizes else None,
            "requests": self.requests,
            "refused": self.refused,
            "events": self.events,
            "events_per_request": self.events / self.requests if self.requests else None,
            "first_at": self.first_at,
            "last_at": self.last_at,
            "timed_events": len(ordered),
            "hit_to_tiktok_ms": {
                "p50": percentile(steady, 50),
                "p99": percentile(steady, 99),
                "events": len(steady),
            },
            "hit_to_tiktok_all_ms": {
                "p50": percentile(ordered, 50),
                "p99": percentile(ordered, 99),
                "max": ordered[-1] if ordered else None,
            },
            "cpu_s": sum(os.times()[:2]),
        }


def percentile(ordered: Any, pct: float) -> float | None:
    if not ordered:
        return None
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))
    return float(ordered[index])


def create_app(sink: Sink) -> web.Application:
    app = web.Application(client_max_size=64 * 2**20)
    app.router.add_post(PATH, sink.track)

    async def stats(request: web.Request) -> web.Response:
        sent = request.query.get("sent_before_us")
        arrived = request.query.get("arrived_before_us")
        return web.json_response(
            sink.stats(float(sent) if sent else None, float(arrived) if arrived else None)
        )

    async def reset(_: web.Request) -> web.Response:
        sink.reset()
        return web.json_response({"ok": True})

    async def mode(request: web.Request) -> web.Response:
        sink.answer = request.query.get("answer", "ok")
        return web.json_response({"answer": sink.answer})

    async def track_ids(request: web.Request) -> web.Response:
        sink.track_ids = request.query.get("on", "1") == "1"
        return web.json_response({"track_ids": sink.track_ids})

    async def ids(_: web.Request) -> web.Response:
        counts = Counter(sink.ids)
        duplicates = {k: v for k, v in counts.items() if v > 1}
        return web.json_response({"ids": sorted(counts), "duplicates": duplicates})

    app.router.add_get("/stats", stats)
    app.router.add_post("/reset", reset)
    app.router.add_post("/mode", mode)
    app.router.add_post("/track-ids", track_ids)
    app.router.add_get("/ids", ids)
    return app


async def _serve(port: int) -> None:
    runner = web.AppRunner(create_app(Sink()), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
    print(f"sink ready on {port}", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    import uvloop

    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(_serve(args.port))


if __name__ == "__main__":
    main()
