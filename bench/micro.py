"""Micro-benchmarks, so a regression in the side-by-side figures can be located.

    python -m bench.micro [--seconds 2] [--json]

- queue: enqueue rate through group commit with 1..256 concurrent producers (one event per
  call, as one hit per request makes), and claim + ack of full batches of 500, on the embedded
  SQLite queue in a temporary directory;
- log: the hit log's append rate with the same producers and its disk bytes per record, on
  SQLite (and on Redis when `GATEWAY_TEST_REDIS_URL` answers, 64 producers), each next to the
  queue's enqueue measured in the same run, as a ratio (one raw hit per record, against one
  transformed event per queue row);
- transform: TikTok events built per second on one core (`transform` + JSON encoding), and the
  whole pure part of a request (decode + plan, which transforms and encodes) in hits per second;
- units: the cost in µs of single operations the hot path may do per hit (decoding, a UUID,
  SHA-256, opening and sealing the identity cookie, a Set-Cookie, a labelled metric, ...).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec

from bench import workload

PRODUCERS = (1, 16, 64, 256)


def _event(n: int) -> Any:
    from gateway.core.models import NewEvent

    payload = msgspec.json.encode(
        {
            "event": "ViewContent",
            "event_time": int(time.time()),
            "event_id": f"evt_{n:012d}",
            "user": {
                "ttp": "2fQ0bE1xq9c3bench0000001",
                "ip": "203.0.113.7",
                "user_agent": "x" * 110,
            },
            "page": {
                "url": "https://shop.example/p/widget-1",
                "referrer": "https://www.google.com/",
            },
            "properties": {
                "contents": [
                    {"content_id": "SKU-0001", "content_name": "Widget 1", "price": 13.49}
                ],
                "content_type": "product",
                "currency": "USD",
                "value": 13.49,
            },
            "limited_data_use": False,
        }
    )
    return NewEvent("int_bench", f"evt_{n:012d}", "ViewContent", int(time.time()), payload, None)


async def _produce(
    write: Callable[[Any], Awaitable[Any]], items: list[Any], producers: int, seconds: float
) -> tuple[int, float]:
    """`producers` concurrent callers writing `items` in turn for `seconds`: (calls, elapsed)."""
    deadline = time.perf_counter() + seconds
    done = 0

    async def produce(offset: int) -> None:
        nonlocal done
        i = offset
        while time.perf_counter() < deadline:
            await write(items[i % len(items)])
            done += 1
            i += 1

    started = time.perf_counter()
    await asyncio.gather(*(produce(p) for p in range(producers)))
    return done, time.perf_counter() - started


async def _enqueue_rate(directory: Path, producers: int, seconds: float) -> dict[str, Any]:
    from gateway.queue.sqlite import SQLiteQueue

    queue = SQLiteQueue(directory / f"enqueue-{producers}.db", 10**9)
    await queue.open()
    events = [[_event(i)] for i in range(1000)]
    done, elapsed = await _produce(queue.enqueue, events, producers, seconds)
    commits = queue.commits
    await queue.close()
    return {
        "producers": producers,
        "events_per_s": round(done / elapsed, 1),
        "commits_per_s": round(commits / elapsed, 1),
        "events_per_commit": round(done / commits, 1) if commits else None,
    }


async def _claim_ack_rate(directory: Path, seconds: float) -> dict[str, Any]:
    from gateway.queue.sqlite import SQLiteQueue

    queue = SQLiteQueue(directory / "claim.db", 10**9)
    await queue.open()
    # Enough for the whole measurement, filled in large groups (not what is measured).
    fill = max(5_000, int(60_000 * seconds))
    chunk = [_event(i) for i in range(5_000)]
    for _ in range(fill // len(chunk)):
        await queue.enqueue(chunk)
    infos = 0
    started = time.perf_counter()
    deadline = started + seconds
    claimed = 0
    while time.perf_counter() < deadline:
        now = time.time()
        await queue.ready_info("int_bench", now)
        infos += 1
        events = await queue.claim("int_bench", 500, now, 60.0)
        if not events:
            break
        await queue.ack("int_bench", [e.id for e in events], now)
        claimed += len(events)
    elapsed = time.perf_counter() - started
    await queue.close()
    return {
        "batch": 500,
        "events_per_s": round(claimed / elapsed, 1),
        "batches_per_s": round(infos / elapsed, 1),
        "backlog_at_start": fill // len(chunk) * len(chunk),
    }


async def queue_bench(seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="gateway-micro-") as tmp:
        directory = Path(tmp)
        enqueue = [await _enqueue_rate(directory, n, seconds) for n in PRODUCERS]
        claim_ack = await _claim_ack_rate(directory, seconds)
    return {"enqueue": enqueue, "claim_ack": claim_ack}


def _log_record(n: int) -> Any:
    """What collect will append per hit: the hit as received and the request's facts."""
    from gateway.log.base import LogRecord

    templates = workload.hit_templates()
    path, body = templates[n % len(templates)]
    facts = {
        "path": path,
        "hit": body,
        "received_at": time.time(),
        "ip": workload.CLIENT_IPS[n % len(workload.CLIENT_IPS)],
        "user_agent": workload.USER_AGENTS[n % len(workload.USER_AGENTS)],
        "cookies": {"_ttp": "2fQ0bE1xq9c3bench0000001", "_dfid": "bench-visitor-0001"},
        "server_key": False,
    }
    data = msgspec.json.encode(facts)
    return LogRecord(workload.SOURCE_ID, time.time(), data, f"b{n:012d}")


async def _append_rate(log: Any, producers: int, seconds: float) -> dict[str, Any]:
    await log.open()
    records = [[_log_record(i)] for i in range(1000)]
    done, elapsed = await _produce(log.append, records, producers, seconds)
    commits = log.commits
    await log.close()
    return {
        "producers": producers,
        "records_per_s": round(done / elapsed, 1),
        "records_per_commit": round(done / commits, 1) if commits else None,
    }


def _file_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if p.is_file())


async def _sqlite_bytes_per_row(directory: Path, rows: int) -> dict[str, Any]:
    """Disk bytes per stored row, WAL checkpointed (closing does it): log vs queue."""
    from gateway.log.sqlite import SQLiteHitLog
    from gateway.queue.sqlite import SQLiteQueue

    log = SQLiteHitLog(directory / "bytes-log.db", max_records=10**9)
    queue = SQLiteQueue(directory / "bytes-queue.db", 10**9)
    await log.open()
    await queue.open()
    for start in range(0, rows, 500):
        await log.append([_log_record(n) for n in range(start, start + 500)])
        await queue.enqueue([_event(n) for n in range(start, start + 500)])
    record_data = sum(len(_log_record(n).data) for n in range(1000)) / 1000
    event_payload = sum(len(_event(n).payload) for n in range(1000)) / 1000
    await log.close()
    await queue.close()
    log_bytes = _file_bytes(log.path) / rows
    queue_bytes = _file_bytes(queue.path) / rows
    return {
        "rows": rows,
        "log_bytes_per_record": round(log_bytes, 1),
        "log_record_data_bytes": round(record_data, 1),
        "queue_bytes_per_event": round(queue_bytes, 1),
        "queue_event_payload_bytes": round(event_payload, 1),
        "log_vs_queue": round(log_bytes / queue_bytes, 2),
    }


async def _redis_log_vs_queue(seconds: float, producers: int = 64) -> dict[str, Any] | None:
    """The Redis backends side by side, or None when Redis does not answer."""
    import os
    import uuid as uuidlib

    import redis.asyncio as aioredis

    from gateway.log.redis import RedisHitLog
    from gateway.queue.redis import RedisQueue

    url = os.environ.get("GATEWAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    client = aioredis.Redis.from_url(url, socket_connect_timeout=2)
    prefix = f"gwmicro_{uuidlib.uuid4().hex[:10]}"
    try:
        await client.ping()
    except Exception:  # not reachable: the SQLite figures stand alone
        await client.aclose()
        return None
    try:
        log = await _append_rate(
            RedisHitLog(url, max_records=10**9, prefix=prefix), producers, seconds
        )
        queue = await _enqueue_on(RedisQueue(url, 10**9, prefix=prefix + "q"), producers, seconds)
        stream = f"{prefix}:log:{workload.SOURCE_ID}"
        entries = int(await client.xlen(stream))
        memory = int(await client.memory_usage(stream, samples=0) or 0)
        return {
            "producers": producers,
            "log_records_per_s": log["records_per_s"],
            "queue_events_per_s": queue["events_per_s"],
            "log_vs_queue_rate": round(log["records_per_s"] / queue["events_per_s"], 2),
            "log_stream_bytes_per_record": round(memory / entries, 1) if entries else None,
        }
    finally:
        keys = [k async for k in client.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()


async def _enqueue_on(queue: Any, producers: int, seconds: float) -> dict[str, Any]:
    await queue.open()
    events = [[_event(i)] for i in range(1000)]
    deadline = time.perf_counter() + seconds
    done = 0

    async def produce(offset: int) -> None:
        nonlocal done
        i = offset
        while time.perf_counter() < deadline:
            await queue.enqueue(events[i % 1000])
            done += 1
            i += 1

    started = time.perf_counter()
    await asyncio.gather(*(produce(p) for p in range(producers)))
    elapsed = time.perf_counter() - started
    await queue.close()
    return {"events_per_s": round(done / elapsed, 1)}


async def log_bench(seconds: float, queue_enqueue: list[dict[str, Any]]) -> dict[str, Any]:
    """The hit log's append next to the queue's enqueue (`queue_enqueue`, this run's figures)."""
    from gateway.log.sqlite import SQLiteHitLog

    with tempfile.TemporaryDirectory(prefix="gateway-micro-log-") as tmp:
        directory = Path(tmp)
        append = []
        for n, queued in zip(PRODUCERS, queue_enqueue, strict=True):
            log = SQLiteHitLog(directory / f"append-{n}.db", max_records=10**9)
            measured = await _append_rate(log, n, seconds)
            measured["vs_queue_enqueue"] = round(
                measured["records_per_s"] / queued["events_per_s"], 2
            )
            append.append(measured)
        disk = await _sqlite_bytes_per_row(directory, 20_000)
    return {"append": append, "disk": disk, "redis": await _redis_log_vs_queue(seconds)}


def _fixtures() -> tuple[Any, Any, list[Any]]:
    from gateway.collect.protocols.native import decode_hit
    from gateway.core.models import Integration, Source
    from gateway.core.settings import Secret
    from gateway.destinations.tiktok.config import TikTokConfig

    source = Source(id=workload.SOURCE_ID, name="Bench", default_phone_region="US")
    integration = Integration(
        id="int_bench",
        source_id=source.id,
        name="TikTok",
        config=TikTokConfig(pixel_code="CBENCHPIXEL000000001", access_token=Secret("t" * 20)),
        consent_categories=("advertising",),
    )
    hits = []
    for n, req in enumerate(workload.requests(only_events=True)):
        body = req.pre + f"b{n}".encode() + req.post
        path_type = {"/v1/p": "page", "/v1/t": "track", "/v1/i": "identify"}[req.path]
        hits.append((body, path_type, decode_hit(body, path_type)))  # type: ignore[arg-type]
    return source, integration, hits


def _rate(fn: Callable[[], int], seconds: float) -> float:
    """Units done per second by `fn` (which returns how many it did) over `seconds`."""
    fn()  # warm up
    done = 0
    started = time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        done += fn()
    return done / (time.perf_counter() - started)


def transform_bench(seconds: float) -> dict[str, Any]:
    from gateway.destinations.base import HitContext
    from gateway.destinations.tiktok.transform import transform

    source, integration, hits = _fixtures()
    context = HitContext(
        event_id="evt_1",
        event_time=int(time.time()),
        anonymous_id=str(uuid.uuid4()),
        ttp="2fQ0bE1xq9c3bench0000001",
        ip="203.0.113.7",
        user_agent=workload.USER_AGENTS[0],
    )

    def transform_all() -> int:
        for _, _, hit in hits:
            msgspec.json.encode(transform(hit, context, integration, source).event)
        return len(hits)

    out: dict[str, Any] = {"transform_events_per_s": round(_rate(transform_all, seconds), 1)}
    try:
        out["pipeline_hits_per_s"] = round(_pipeline_rate(source, integration, hits, seconds), 1)
    except Exception as exc:  # the collection module is being reworked: say so, do not fail
        out["pipeline_hits_per_s"] = None
        out["pipeline_error"] = f"{type(exc).__name__}: {exc}"
    return out


def _pipeline_rate(source: Any, integration: Any, hits: list[Any], seconds: float) -> float:
    from gateway.collect.plan import RequestFacts, plan_hits
    from gateway.collect.protocols.native import decode_hit
    from gateway.collect.route import Route
    from gateway.core.identity import Identity

    route = Route(source=source, integrations=(integration,))
    facts = RequestFacts(
        ip="203.0.113.7",
        user_agent=workload.USER_AGENTS[0],
        locale="en-US",
        secure=True,
        ttp=None,
        anonymous_id=None,
        ttclid_cookie=None,
        identity=Identity(),
        identity_cookie=None,
        from_server=False,
        received_at=time.time(),
    )

    def plan_all() -> int:
        for body, path_type, _ in hits:
            plan_hits([decode_hit(body, path_type)], route, facts, 7)
        return len(hits)

    return _rate(plan_all, seconds)


def units_bench(seconds: float) -> dict[str, float]:
    """µs per operation, one core."""
    from aiohttp import web
    from prometheus_client import CollectorRegistry, Counter

    from gateway.collect.cookies import open_sealed_identity, seal_identity
    from gateway.collect.protocols.native import decode_hit
    from gateway.core.crypto import CookieBox, sha256_hex
    from gateway.core.hashing import hash_email, hash_phone
    from gateway.core.identity import Identity
    from gateway.core.settings import Secret

    box = CookieBox((Secret(workload.SECRET_KEY),), purpose="identity-cookie")
    sealed = seal_identity(box, Identity(user_id_hash="a" * 64, email_hashes=("e" * 64,)))
    req = workload.requests(only_events=True)[4]
    body = req.pre + b"b1" + req.post
    counter = Counter("bench_hits", "x", ["type"], registry=CollectorRegistry())
    _, _, hits = _fixtures()
    payload_dict = json.loads(hits[3][0])

    def one(fn: Callable[[], object]) -> Callable[[], int]:
        def run() -> int:
            for _ in range(100):
                fn()
            return 100

        return run

    def set_cookie() -> None:
        response = web.Response(status=200)
        response.set_cookie("_ttp", "abc", max_age=34128000, path="/", samesite="Lax")

    ops: dict[str, Callable[[], object]] = {
        "msgspec_decode_hit": lambda: decode_hit(body, "track"),
        "json_loads_hit": lambda: json.loads(body),
        "uuid4_str": lambda: str(uuid.uuid4()),
        "sha256_hex": lambda: sha256_hex("customer.7@example.com"),
        "hash_email": lambda: hash_email("  Customer.7@Example.com "),
        "hash_phone": lambda: hash_phone("+1 (415) 555-0107", "US"),
        "open_identity_cookie": lambda: open_sealed_identity(box, sealed),
        "seal_identity_cookie": lambda: seal_identity(box, Identity(user_id_hash="a" * 64)),
        "aiohttp_response_with_set_cookie": set_cookie,
        "prometheus_labels_inc": lambda: counter.labels("track").inc(),
        "msgspec_encode_dict": lambda: msgspec.json.encode(payload_dict),
    }
    return {
        name: round(1e6 / _rate(one(fn), seconds / len(ops) * 2), 2) for name, fn in ops.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    parser.add_argument("--json", action="store_true", help="print one BENCH_JSON line")
    args = parser.parse_args()
    import uvloop

    queue = uvloop.run(queue_bench(args.seconds))
    results = {
        "queue": queue,
        "log": uvloop.run(log_bench(args.seconds, queue["enqueue"])),
        "transform": transform_bench(args.seconds),
        "units_us": units_bench(args.seconds),
    }
    if args.json:
        print("BENCH_JSON " + json.dumps(results), flush=True)
    else:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
