"""Micro-benchmarks, so a regression in the side-by-side figures can be located.

    python -m bench.micro [--seconds 2] [--json]

- log: the hit log alone, on SQLite in a temporary directory: its append rate through group
  commit with 1..256 concurrent producers (one record per call, as one hit per request makes),
  a consumer's read + commit of batches of 500 (its cursor's work, nothing planned), and the disk
  bytes per record after a checkpoint; on Redis too when `GATEWAY_TEST_REDIS_URL` (or this
  machine's Redis) answers: the append rate at 64 producers and the stream's memory per record.
  The records are the workload's hits as collection renders them;
- collect: the pure part of a collection request per hit (decode + plan + render the record);
- deliver: the pure part of delivery per record (decode the record + plan it for the
  integration: consent, transform, encode);
- transform: TikTok events built per second on one core (`transform` + JSON encoding);
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
BATCH = 500  # what a consumer reads per batch: TikTok's batch


def log_records(count: int) -> list[Any]:
    """`count` records as collection appends them: the workload's hits, planned and rendered."""
    from gateway.collect.plan import plan_hits
    from gateway.collect.rawhit import render
    from gateway.log.base import LogRecord

    source, integration, hits = _fixtures(only_events=False)
    route = _route(source, integration)
    out = []
    for n in range(count):
        body, path_type, _ = hits[n % len(hits)]
        plan = plan_hits([_decode(body, path_type)], route, _facts(), 7)
        assert plan.request is not None
        for planned in plan.hits:
            data = render(planned.hit, plan.request, source.default_phone_region, planned.context)
            out.append(LogRecord(source.id, time.time(), data, planned.event_id))
    return out


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


async def _append_rate(
    log: Any, records: list[Any], producers: int, seconds: float
) -> dict[str, Any]:
    await log.open()
    done, elapsed = await _produce(log.append, [[r] for r in records], producers, seconds)
    commits = log.commits
    await log.close()
    return {
        "producers": producers,
        "records_per_s": round(done / elapsed, 1),
        "commits_per_s": round(commits / elapsed, 1),
        "records_per_commit": round(done / commits, 1) if commits else None,
    }


async def _read_commit_rate(directory: Path, records: list[Any], seconds: float) -> dict[str, Any]:
    """A consumer walking a backlog: read a batch, commit it, again."""
    from gateway.log.sqlite import SQLiteHitLog

    log = SQLiteHitLog(directory / "read.db", max_records=10**9)
    await log.open()
    await log.add_consumer("int_bench", workload.SOURCE_ID, "head")
    # Enough for the whole measurement, appended in large groups (not what is measured).
    fill = max(5_000, int(100_000 * seconds))
    for start in range(0, fill, len(records)):
        await log.append(records[: min(len(records), fill - start)])
    started = time.perf_counter()
    deadline = started + seconds
    read = batches = 0
    while time.perf_counter() < deadline:
        entries = await log.read("int_bench", BATCH)
        if not entries:
            break
        await log.commit("int_bench", entries)
        read += len(entries)
        batches += 1
    elapsed = time.perf_counter() - started
    await log.close()
    return {
        "batch": BATCH,
        "records_per_s": round(read / elapsed, 1),
        "batches_per_s": round(batches / elapsed, 1),
        "backlog_at_start": fill,
    }


def _file_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if p.is_file())


async def _sqlite_bytes_per_record(
    directory: Path, records: list[Any], rows: int
) -> dict[str, Any]:
    """Disk bytes per stored record, WAL checkpointed (closing does it)."""
    from gateway.log.sqlite import SQLiteHitLog

    log = SQLiteHitLog(directory / "bytes.db", max_records=10**9)
    await log.open()
    for start in range(0, rows, BATCH):
        await log.append([records[n % len(records)] for n in range(start, start + BATCH)])
    await log.close()
    return {
        "records": rows,
        "bytes_per_record": round(_file_bytes(log.path) / rows, 1),
        "record_data_bytes": round(sum(len(r.data) for r in records) / len(records), 1),
    }


async def _redis_log(
    records: list[Any], seconds: float, producers: int = 64
) -> dict[str, Any] | None:
    """The Redis log's append rate and its stream's memory per record; None when Redis does not
    answer."""
    import os
    import uuid as uuidlib

    import redis.asyncio as aioredis

    from gateway.log.redis import RedisHitLog

    url = os.environ.get("GATEWAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    client = aioredis.Redis.from_url(url, socket_connect_timeout=2)
    prefix = f"gwmicro_{uuidlib.uuid4().hex[:10]}"
    try:
        await client.ping()
    except Exception:  # not reachable: the SQLite figures stand alone
        await client.aclose()
        return None
    try:
        log = RedisHitLog(url, max_records=10**9, prefix=prefix)
        appended = await _append_rate(log, records, producers, seconds)
        stream = f"{prefix}:log:{workload.SOURCE_ID}"
        entries = int(await client.xlen(stream))
        memory = int(await client.memory_usage(stream, samples=0) or 0)
        # The event-id hash beside the stream (the debugger's lookups by event id).
        id_hash = f"{prefix}:hitlog:ids:{workload.SOURCE_ID}"
        memory += int(await client.memory_usage(id_hash, samples=0) or 0)
        return {
            "producers": producers,
            "records_per_s": appended["records_per_s"],
            "redis_bytes_per_record": round(memory / entries, 1) if entries else None,
        }
    finally:
        keys = [k async for k in client.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()


async def log_bench(seconds: float) -> dict[str, Any]:
    from gateway.log.sqlite import SQLiteHitLog

    records = log_records(1000)
    with tempfile.TemporaryDirectory(prefix="gateway-micro-log-") as tmp:
        directory = Path(tmp)
        append = [
            await _append_rate(
                SQLiteHitLog(directory / f"append-{n}.db", max_records=10**9), records, n, seconds
            )
            for n in PRODUCERS
        ]
        read_commit = await _read_commit_rate(directory, records, seconds)
        disk = await _sqlite_bytes_per_record(directory, records, 20_000)
    return {
        "append": append,
        "read_commit": read_commit,
        "disk": disk,
        "redis": await _redis_log(records, seconds),
    }


def _fixtures(only_events: bool = True) -> tuple[Any, Any, list[Any]]:
    """The bench source, its TikTok integration, and the workload's hits: (body, path type,
    decoded hit) each."""
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
    for n, req in enumerate(workload.requests(only_events=only_events)):
        body = req.pre + f"b{n}".encode() + req.post
        path_type = {"/v1/p": "page", "/v1/t": "track", "/v1/i": "identify"}[req.path]
        hits.append((body, path_type, _decode(body, path_type)))
    return source, integration, hits


def _decode(body: bytes, path_type: str) -> Any:
    from gateway.collect.protocols.native import decode_hit

    return decode_hit(body, path_type)  # type: ignore[arg-type]


def _route(source: Any, integration: Any) -> Any:
    from gateway.collect.route import Route

    return Route(source=source, integrations=(integration,))


def _facts() -> Any:
    from gateway.collect.plan import RequestFacts
    from gateway.core.identity import Identity

    return RequestFacts(
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

    return {"transform_events_per_s": round(_rate(transform_all, seconds), 1)}


def collect_bench(seconds: float) -> dict[str, Any]:
    """Collection's pure part per hit, all the workload's hits: decode, plan, render."""
    from gateway.collect.plan import plan_hits
    from gateway.collect.rawhit import render

    source, integration, hits = _fixtures(only_events=False)
    route = _route(source, integration)
    facts = _facts()
    region = source.default_phone_region

    def collect_all() -> int:
        for body, path_type, _ in hits:
            plan = plan_hits([_decode(body, path_type)], route, facts, 7)
            assert plan.request is not None
            for planned in plan.hits:
                render(planned.hit, plan.request, region, planned.context, planned.hashes)
        return len(hits)

    return {"decode_plan_render_hits_per_s": round(_rate(collect_all, seconds), 1)}


def deliver_bench(seconds: float) -> dict[str, Any]:
    """Delivery's pure part per record, all the workload's hits: read the record, plan it for
    the integration (consent, transform, encode), as `LogConsumers` does before a batch goes."""
    from gateway.deliver.record import plan_for, read_record

    source, integration, _ = _fixtures()
    records = log_records(len(workload.requests()))
    events = 0

    def plan_all() -> int:
        nonlocal events
        for record in records:
            read = read_record(record.data, record.event_id)
            planned = plan_for(read, integration, source, record.received_at, record.event_id)
            events += planned.event is not None
        return len(records)

    events = 0
    plan_all()
    events_per_record = events / len(records)
    return {
        "read_plan_records_per_s": round(_rate(plan_all, seconds), 1),
        "events_per_record": round(events_per_record, 3),
    }


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

    results = {
        "log": uvloop.run(log_bench(args.seconds)),
        "collect": collect_bench(args.seconds),
        "deliver": deliver_bench(args.seconds),
        "transform": transform_bench(args.seconds),
        "units_us": units_bench(args.seconds),
    }
    if args.json:
        print("BENCH_JSON " + json.dumps(results), flush=True)
    else:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
